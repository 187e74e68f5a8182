"""The language server end to end, driven through stdio by pytest-lsp's real client."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

pytest.importorskip("pygls")
pytest_lsp = pytest.importorskip("pytest_lsp")

from lsprotocol import types  # noqa: E402
from pytest_lsp import ClientServerConfig, LanguageClient  # noqa: E402

BUGGY = "import torch\nm = torch.nn.Dropout()\ns = '🚀é'; m.eval\n"
FIXED = "import torch\nm = torch.nn.Dropout()\ns = '🚀é'; m.eval()\n"


@pytest_lsp.fixture(config=ClientServerConfig(server_command=[sys.executable, "-m", "modelint", "lsp"]))
async def client(lsp_client: LanguageClient):
    await lsp_client.initialize_session(types.InitializeParams(capabilities=types.ClientCapabilities()))
    yield
    await lsp_client.shutdown_session()


async def _diagnostics(client: LanguageClient, uri: str) -> list[types.Diagnostic]:
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return client.diagnostics[uri]


@pytest.mark.asyncio
async def test_open_edit_save_close(client: LanguageClient, tmp_path: Path) -> None:
    path = tmp_path / "train.py"
    path.write_text(BUGGY)
    uri = path.as_uri()
    client.text_document_did_open(types.DidOpenTextDocumentParams(
        text_document=types.TextDocumentItem(uri=uri, language_id="python", version=1, text=BUGGY)))
    [diagnostic] = await _diagnostics(client, uri)
    assert diagnostic.code == "MDL005" and diagnostic.severity == types.DiagnosticSeverity.Error
    assert diagnostic.code_description is not None and diagnostic.source == "modelint"
    # `s = '🚀é'; ` is 10 code points, 11 UTF-16 units.
    assert diagnostic.range.start == types.Position(line=2, character=11)

    actions = await client.text_document_code_action_async(types.CodeActionParams(
        text_document=types.TextDocumentIdentifier(uri=uri), range=diagnostic.range,
        context=types.CodeActionContext(diagnostics=[diagnostic])))
    titles = [a.title for a in actions]
    assert any("noqa" not in t and "MDL005" in t for t in titles)  # the fix
    noqa = next(a for a in actions if a.title.startswith("Disable MDL005"))
    [edit] = noqa.edit.changes[uri]
    assert edit.new_text == "  # noqa: MDL005"

    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=2),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text=FIXED)]))
    assert len(await _diagnostics(client, uri)) == 0

    path.write_text(FIXED)
    client.text_document_did_save(types.DidSaveTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    assert len(await _diagnostics(client, uri)) == 0

    client.text_document_did_change(types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=3),
        content_changes=[types.TextDocumentContentChangeWholeDocument(text="import torch\ndef f(:\n")]))
    [syntax] = await _diagnostics(client, uri)
    assert syntax.code == "E999"

    client.text_document_did_close(types.DidCloseTextDocumentParams(text_document=types.TextDocumentIdentifier(uri=uri)))
    assert len(await _diagnostics(client, uri)) == 0
