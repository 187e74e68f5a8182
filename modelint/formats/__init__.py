"""Output formats: each is a function of the findings (and nothing else).

A formatter takes the sorted findings of a run and returns the text to print.
Front ends pick one by name; adding a format is adding a module and a line here.
A run imports only the module of the format it prints (SARIF's hashing, JSON's
encoder: a few milliseconds a one-file run does not need).
"""

from __future__ import annotations

from importlib import import_module
from typing import Callable

from modelint.finding import Finding

Formatter = Callable[[list[Finding]], str]


def _lazy(module: str, function: str) -> Formatter:
    def render(*args, **kwargs) -> str:
        return getattr(import_module(f"modelint.formats.{module}"), function)(*args, **kwargs)

    render.__qualname__ = render.__name__ = f"{module}.{function}"
    return render


FORMATS: dict[str, Formatter] = {
    "text": _lazy("text", "full"),
    "concise": _lazy("text", "concise"),
    "json": _lazy("json_format", "render"),
    "sarif": _lazy("sarif", "render"),
    "github": _lazy("github", "render"),
    "lsp": _lazy("lsp_format", "render"),
}
