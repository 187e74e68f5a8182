"""Code -> rule. Every module of `modelint.rules` that defines a Rule subclass registers it."""

from __future__ import annotations

import importlib
import pkgutil
import re
from functools import lru_cache

RULE_DOCS_URL = "https://github.com/modelint/modelint/blob/main/docs/rules.md#{code}"
# Rules whose facts come from the mode flow: only they make summaries worth computing. (Here, not
# in the engine, so that a run served from the cache can name them without importing libcst.)
FLOW_RULES = frozenset({"MDL001", "MDL002", "MDL003", "MDL007"})
_MODULE_NAME = re.compile(r"^(mdl\d{3})_")


def rule_url(code: str) -> str:
    return RULE_DOCS_URL.format(code=code.lower())


@lru_cache(maxsize=1)
def rule_codes() -> frozenset[str]:
    """Codes of every rule, from the rule modules' names (`mdl001_missing_eval_mode.py`).

    Selection and caching need only the codes; importing the rules (and libcst with
    them) waits until a file must actually be linted.
    """
    import modelint.rules as package

    return frozenset(match.group(1).upper() for info in pkgutil.iter_modules(package.__path__)
                     if (match := _MODULE_NAME.match(info.name)))


@lru_cache(maxsize=1)
def all_rules() -> dict:
    """Code -> rule class, importing every rule module."""
    import modelint.rules as package
    from modelint.rule import Rule

    found: dict[str, type[Rule]] = {}
    for info in pkgutil.iter_modules(package.__path__):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, Rule) and value is not Rule and getattr(value, "code", None):
                found[value.code] = value
    return dict(sorted(found.items()))


# The page `rule_url` points at, relative to the repository root; `rules_markdown` writes it.
RULES_PAGE = "docs/rules.md"
REGENERATE = "modelint rules --format markdown > docs/rules.md"
# Codes that are not rules but can still be reported (and linked: the LSP links every MDL code).
OTHER_CODES = (
    ("MDL000", "internal-error", "A rule failed on the file: a bug in modelint (please report it with the file). "
                                 "The other rules still ran; the exit code is 2."),
    ("E999", "syntax-error", "CPython does not compile the file: its own message and position."),
    ("E902", "io-error", "The file cannot be read: missing, unreadable, binary (NUL bytes), or not valid in its "
                         "declared encoding."),
    ("E903", "not-analysed", "Valid Python that modelint does not analyse: over the size or nesting limits, "
                             "rejected by libcst (modelint's parser), or past the time limit. The message says which."),
)


def rules_markdown() -> str:
    """docs/rules.md: one section per rule, from the rule's own docstring, under the anchor its URL uses."""
    rules = all_rules()
    out = [
        "# modelint rules",
        "",
        f"<!-- Generated from the rules' docstrings (rules/*.py) by `{REGENERATE}`. Edit the rules, not this page. -->",
        "",
        "Every finding links to its rule's section here. `modelint rule CODE` prints the same text in a terminal.",
        "",
        "| code | name | severity | fix | summary |",
        "|---|---|---|---|---|",
    ]
    for code, rule in rules.items():
        out.append(f"| [{code}](#{_anchor(code)}) | {rule.name} | {rule.severity} | {rule.fix_safety} | "
                   f"{rule.summary.replace('|', '&#124;')} |")
    for code, rule in rules.items():
        fixtures = f" · fixtures: [`fixtures/{rule.fixtures}/`](../fixtures/{rule.fixtures}/)" if rule.fixtures else ""
        out += ["", f"## {code}", "",
                f"**{rule.name}** · severity: {rule.severity} · fix: {rule.fix_safety}{fixtures}", "",
                rule.summary, "", *_demoted(rule.docs())]
    out += ["", "## Other codes", "", "Reported for files that could not be checked, and for modelint's own failures."]
    for code, name, text in OTHER_CODES:
        out += ["", f"### {code}", "", f"**{name}**: {text}"]
    return "\n".join(out) + "\n"


def _anchor(code: str) -> str:
    """The anchor GitHub (and most Markdown renderers) give a heading that is just the code."""
    return code.lower()


def _demoted(text: str) -> list[str]:
    """A docstring's `## Section` headings one level down, so they sit under the rule's heading."""
    lines, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        lines.append("#" + line if not fenced and line.startswith("#") else line)
    return lines


class UnknownCode(ValueError):
    pass


def expand(selectors: tuple[str, ...] | list[str]) -> set[str]:
    """Codes matched by selectors: exact codes, prefixes (`MDL00`), or `ALL`."""
    codes = rule_codes()
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


def select_codes(select, ignore, extend_select, per_file_ignores, path: str, root) -> frozenset[str]:
    """The codes in force for one file, ruff's way: select (default ALL) + extend - ignore."""
    import os

    codes = expand(select) if select is not None else set(rule_codes())
    codes |= expand(extend_select)
    codes -= expand(ignore)
    if per_file_ignores:
        import pathspec

        relative = os.path.relpath(os.path.abspath(path), root).replace(os.sep, "/")
        for pattern, ignored in per_file_ignores:
            spec = pathspec.GitIgnoreSpec.from_lines([pattern])
            if spec.match_file(relative) or spec.match_file(os.path.basename(path)):
                codes -= expand(ignored)
    return frozenset(codes)
