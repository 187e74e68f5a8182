"""Positions placed statement by statement are libcst's own, or libcst's way is used."""

from __future__ import annotations

from pathlib import Path

import libcst as cst
import pytest
from libcst.metadata import MetadataWrapper, PositionProvider

from modelint.facts.positions import Positions
from modelint.facts.walk import iter_nodes

ROOT = Path(__file__).resolve().parent.parent

TRICKY = {
    "decorators_and_comments": (
        "import torch\n\n# a comment\n\n@torch.no_grad()\n# between\n@staticmethod\n\n"
        "def f(model, x):\n    # inside\n\n    return model(x)\n"
    ),
    "crlf_and_no_final_newline": "def f(m, x):\r\n    m.eval()\r\n    return m(x)",
    "lone_cr": "def f(m, x):\r    m.eval()\r    return m(x)\r",
    "tabs_and_form_feed": "class A:\n\tdef f(self, x):\n\t\treturn self.m(x)\n\x0c\ndef g(m):\n  m.eval()\n",
    "backslash_and_parentheses": "x = \\\n    model(1)\ny = (\n    model(2)\n)\nif (a and\n        b):\n    model(3)\n",
    "compound_statements": (
        "async def f(m, loader):\n    async with ctx() as c:\n        async for x in loader:\n            m(x)\n"
        "    try:\n        m(1)\n    except ValueError as e:\n        m(2)\n    except TypeError:\n        pass\n"
        "    else:\n        m(3)\n    finally:\n        m(4)\n    try:\n        m(5)\n    except* OSError:\n        m(6)\n"
    ),
    "elif_else_loops": (
        "for x in y:\n    if a:\n        m(x)\n    elif b:\n        m(2)\n    elif c: m(3)\n    else:\n        m(4)\n"
        "else:\n    m(5)\nwhile True:\n    m(6)\nelse:\n    m(7)\n"
    ),
    "match_and_suites": "match x:\n    case 1:\n        m(1)\n    case _: m(2)\nif a: m(3); m(4)\n",
    "semicolons_and_strings": 's = """\nmodel(0)\n"""; t = model(1)\nu = f"{model(2)}"\n',
    "unicode": "é = 'ü'; model(é)\n# ∑\nmodel('日本')\n",
}


def _compare(text: str, batches: bool = True) -> int:
    module = cst.parse_module(text)
    full = MetadataWrapper(module, unsafe_skip_copy=True).resolve(PositionProvider)
    nodes = [node for node in iter_nodes(module) if node is not module]
    if not batches:  # (what findings show: calls, statements, names, attributes)
        nodes = [node for node in nodes if isinstance(node, (cst.Call, cst.BaseStatement, cst.Name, cst.Attribute))]
    if not nodes:
        return 0
    # One node at a time, a third of them and all of them at once: each must agree with libcst.
    for batch in ([nodes[len(nodes) // 2]], nodes[::3], nodes) if batches else (nodes,):
        positions = Positions(module, text)
        positions.prepare(batch)
        for node in batch:
            assert positions[node] == full[node], (type(node).__name__, text)
    return len(nodes)


@pytest.mark.parametrize("name", sorted(TRICKY))
def test_tricky_code_is_placed_as_libcst_places_it(name: str) -> None:
    assert _compare(TRICKY[name]) > 0


def test_fixtures_are_placed_as_libcst_places_them() -> None:
    for path in sorted((ROOT / "fixtures").rglob("*.py"))[::4]:  # (a quarter: each costs two generations)
        text = path.read_text(encoding="utf-8")
        try:
            cst.parse_module(text)
        except cst.ParserSyntaxError:
            continue
        _compare(text, batches=False)


def test_only_the_statements_around_the_nodes_are_generated() -> None:
    text = "".join(f"def f{i}(m, x):\n    m.eval()\n    return m(x)\n\n" for i in range(200))
    module = cst.parse_module(text)
    last = module.body[-1]
    call = next(node for node in iter_nodes(last) if isinstance(node, cst.Call) and node.func.value == "m")
    positions = Positions(module, text)
    positions.prepare([call])
    assert positions[call].start.line == 799
    assert module.body[0] not in positions._provider._computed  # the first function was never generated


def test_a_node_of_another_tree_is_not_placed() -> None:
    module = cst.parse_module("x = 1\n")
    assert Positions(module, "x = 1\n").get(cst.Name("y")) is None
