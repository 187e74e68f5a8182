"""docs/rules.md: the page every finding links to, generated from the rules' own docstrings.

Two promises: the committed page is what the rules say today (so it never goes stale),
and every link modelint prints (JSON `url`, SARIF `helpUri`, LSP `codeDescription.href`)
lands on a heading that exists on it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from helpers_cli import modelint
from modelint.registry import OTHER_CODES, REGENERATE, RULE_DOCS_URL, RULES_PAGE, all_rules, rule_url, rules_markdown

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / RULES_PAGE
FIXTURES = ROOT / "fixtures"
STALE = (f"{RULES_PAGE} differs from what the rules' docstrings say. Regenerate it from the repository root "
         f"with\n\n    {REGENERATE}\n\nand commit the result (edit the docstrings in rules/*.py, never the page).")


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a page: one per heading outside code blocks (lowercased, punctuation
    dropped, spaces to hyphens, repeats numbered -1, -2, ...), plus explicit `<a id/name="...">`."""
    anchors: set[str] = set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", markdown))
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if fenced or not heading:
            continue
        slug = re.sub(r"[^\w\- ]", "", heading.group(1).strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _assert_resolves(url: str, anchors: set[str]) -> None:
    page, _, anchor = url.partition("#")
    assert page == RULE_DOCS_URL.partition("#")[0] and urlsplit(page).path.endswith("/" + RULES_PAGE), url
    assert anchor in anchors, f"{url}: no heading with the anchor #{anchor} in {RULES_PAGE}"


def _urls(value) -> list[str]:
    """Every string in a JSON document that links to the rules page."""
    if isinstance(value, dict):
        return [url for item in value.values() for url in _urls(item)]
    if isinstance(value, list):
        return [url for item in value for url in _urls(item)]
    return [value] if isinstance(value, str) and RULES_PAGE in value else []


def test_the_committed_page_is_what_the_rules_say() -> None:
    assert PAGE.exists(), STALE
    assert PAGE.read_text(encoding="utf-8") == rules_markdown(), STALE


def test_the_cli_prints_the_page() -> None:
    printed = modelint("rules", "--format", "markdown", cwd=ROOT)
    assert printed.returncode == 0 and printed.stdout == rules_markdown()


def test_every_rule_has_its_section_with_its_own_docs() -> None:
    text = rules_markdown()
    for code, rule in all_rules().items():
        section = text.split(f"\n## {code}\n", 1)[1].split("\n## ", 1)[0]
        assert rule.name in section and rule.summary in section
        # The docstring's paragraphs are there word for word (headings one level down).
        for paragraph in rule.docs().split("\n\n"):
            if not paragraph.startswith("#"):
                assert paragraph in section, (code, paragraph)


def test_every_url_modelint_prints_resolves_to_an_anchor(tmp_path: Path) -> None:
    anchors = github_anchors(PAGE.read_text(encoding="utf-8"))
    cache = ["--cache-dir", str(tmp_path / "cache")]  # the fixtures are analysed once for the three formats
    printed: dict[str, list[str]] = {}
    for output_format in ("json", "sarif", "lsp"):
        run = modelint("check", *cache, "--exit-zero", "--format", output_format, str(FIXTURES), cwd=tmp_path)
        assert run.returncode == 0, run.stderr
        printed[output_format] = _urls(json.loads(run.stdout))
    listing = modelint("rules", "--format", "json", cwd=tmp_path)
    printed["rules --format json"] = _urls(json.loads(listing.stdout))
    for source, urls in printed.items():
        linked = {url.rpartition("#")[2].upper() for url in urls}
        assert linked >= set(all_rules()), (source, set(all_rules()) - linked)  # the fixtures show every rule
        for url in set(urls):
            _assert_resolves(url, anchors)


@pytest.mark.parametrize("code", [*all_rules(), *(code for code, _, _ in OTHER_CODES)])
def test_every_code_that_may_be_linked_has_an_anchor(code: str) -> None:
    """The language server links every MDL code, MDL000 included; the other codes get a section too."""
    _assert_resolves(rule_url(code), github_anchors(PAGE.read_text(encoding="utf-8")))


def test_the_pages_own_links_resolve() -> None:
    text = PAGE.read_text(encoding="utf-8")
    anchors = github_anchors(text)
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if target.startswith("#"):
            assert target[1:] in anchors, target
        elif not re.match(r"\w+://", target):
            assert (PAGE.parent / target).exists(), target
