"""Code -> rule. Every module of `modelint.rules` that defines a Rule subclass registers it."""

from __future__ import annotations

import importlib
import pkgutil
from functools import lru_cache

from modelint.rule import Rule


@lru_cache(maxsize=1)
def all_rules() -> dict[str, type[Rule]]:
    import modelint.rules as package

    found: dict[str, type[Rule]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Rule) and value is not Rule and getattr(value, "code", None):
                found[value.code] = value
    return dict(sorted(found.items()))


class UnknownCode(ValueError):
    pass


def expand(selectors: tuple[str, ...] | list[str]) -> set[str]:
    """Codes matched by selectors: exact codes, prefixes (`MDL00`), or `ALL`."""
    codes = all_rules()
    out: set[str] = set()
    for selector in selectors:
        selector = selector.strip().upper()
        if not selector:
            continue
        if selector == "ALL":
            out.update(codes)
            continue
        matched = {code for code in codes if code.startswith(selector)}
        if not matched:
            raise UnknownCode(selector)
        out.update(matched)
    return out
