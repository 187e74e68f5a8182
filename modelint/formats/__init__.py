"""Output formats: each is a function of the findings (and nothing else).

A formatter takes the sorted findings of a run and returns the text to print.
Front ends pick one by name; adding a format is adding a module and a line here.
"""

from __future__ import annotations

from typing import Callable

from modelint.finding import Finding
from modelint.formats import github, json_format, lsp_format, sarif, text

Formatter = Callable[[list[Finding]], str]

FORMATS: dict[str, Formatter] = {
    "text": text.full,
    "concise": text.concise,
    "json": json_format.render,
    "sarif": sarif.render,
    "github": github.render,
    "lsp": lsp_format.render,
}
