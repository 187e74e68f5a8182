"""`modelint lsp`: diagnostics, `# noqa` and fix code actions over stdio (pygls 2.x).

Buffers are linted as they are in the editor (not as saved), with the closest
`[tool.modelint]` config of the document's path; workspace settings
(`{"modelint": {"select": [...], "ignore": [...]}}`) override it as the command
line would. Positions are converted to the UTF-16 offsets LSP speaks.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from urllib.parse import unquote, urlparse

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from modelint import __version__
from modelint.formats.lsp_format import SEVERITY, utf16_column
from modelint.source import physical_lines

DEBOUNCE_SECONDS = 0.3
_NOQA = re.compile(r"#\s*noqa(?::\s*(?P<codes>[A-Z]+[0-9]+(?:[\s,]+[A-Z]+[0-9]+)*))?", re.IGNORECASE)


def _path(uri: str) -> str:
    parsed = urlparse(uri)
    return unquote(parsed.path) if parsed.scheme == "file" else "untitled.py"


class ModelintServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__("modelint", __version__)
        self.settings: dict = {}
        self.findings: dict[str, list] = {}
        self._pending: dict[str, asyncio.Task] = {}

    def overrides(self):
        from modelint.runner import Overrides

        def codes(key: str) -> tuple[str, ...]:
            value = self.settings.get(key) or ()
            return tuple(value) if isinstance(value, (list, tuple)) else ()

        return Overrides(select=codes("select") or None, ignore=codes("ignore"), extend_select=codes("extendSelect"))

    def lint(self, uri: str) -> None:
        from modelint.config import ConfigError, ConfigResolver
        from modelint.registry import UnknownCode, rule_url

        document = self.workspace.get_text_document(uri)
        path = _path(uri)
        lines = physical_lines(document.source)
        try:
            from modelint.runner import run_text

            run = run_text(document.source, path, ConfigResolver(cwd=Path(path).parent), self.overrides())
            findings = run.findings
        except (ConfigError, UnknownCode) as error:
            self.window_show_message(types.ShowMessageParams(types.MessageType.Error, f"modelint: {error}"))
            findings = []
        self.findings[uri] = findings
        diagnostics = []
        for finding in findings:
            diagnostic = types.Diagnostic(
                range=_range(lines, finding.location.row, finding.location.column, finding.end_location.row,
                             finding.end_location.column),
                message=finding.message,
                severity=types.DiagnosticSeverity(SEVERITY.get(finding.severity, 2)),
                code=finding.code,
                source="modelint",
                code_description=types.CodeDescription(href=rule_url(finding.code)) if finding.code.startswith("MDL")
                else None,
                related_information=[
                    types.DiagnosticRelatedInformation(
                        location=types.Location(uri=Path(r.path).resolve().as_uri(),
                                                range=_range(lines if r.path == path else [], r.location.row,
                                                             r.location.column, r.location.row, r.location.column)),
                        message=r.message)
                    for r in finding.related
                ] or None,
            )
            diagnostics.append(diagnostic)
        self.text_document_publish_diagnostics(
            types.PublishDiagnosticsParams(uri=uri, version=document.version, diagnostics=diagnostics))


def _position(lines: list[str], row: int, column: int) -> types.Position:
    line = lines[row - 1] if 0 < row <= len(lines) else ""
    return types.Position(line=max(row - 1, 0), character=utf16_column(line, column))


def _range(lines: list[str], row: int, column: int, end_row: int, end_column: int) -> types.Range:
    return types.Range(start=_position(lines, row, column), end=_position(lines, end_row, end_column))


server = ModelintServer()


@server.feature(types.INITIALIZE)
def initialize(ls: ModelintServer, params: types.InitializeParams) -> None:
    options = params.initialization_options or {}
    if isinstance(options, dict):
        ls.settings = dict(options.get("modelint", options))


@server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
def did_change_configuration(ls: ModelintServer, params: types.DidChangeConfigurationParams) -> None:
    settings = params.settings or {}
    if isinstance(settings, dict):
        ls.settings = dict(settings.get("modelint", settings))
    for uri in list(ls.findings):
        ls.lint(uri)


@server.feature(types.TEXT_DOCUMENT_DID_OPEN)
def did_open(ls: ModelintServer, params: types.DidOpenTextDocumentParams) -> None:
    ls.lint(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_SAVE)
def did_save(ls: ModelintServer, params: types.DidSaveTextDocumentParams) -> None:
    ls.lint(params.text_document.uri)


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
async def did_change(ls: ModelintServer, params: types.DidChangeTextDocumentParams) -> None:
    uri = params.text_document.uri
    pending = ls._pending.pop(uri, None)
    if pending is not None:
        pending.cancel()

    async def later() -> None:
        await asyncio.sleep(DEBOUNCE_SECONDS)
        ls.lint(uri)

    ls._pending[uri] = asyncio.ensure_future(later())


@server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
def did_close(ls: ModelintServer, params: types.DidCloseTextDocumentParams) -> None:
    uri = params.text_document.uri
    ls.findings.pop(uri, None)
    ls.text_document_publish_diagnostics(types.PublishDiagnosticsParams(uri=uri, diagnostics=[]))


@server.feature(types.TEXT_DOCUMENT_CODE_ACTION,
                types.CodeActionOptions(code_action_kinds=[types.CodeActionKind.QuickFix]))
def code_action(ls: ModelintServer, params: types.CodeActionParams) -> list[types.CodeAction]:
    uri = params.text_document.uri
    document = ls.workspace.get_text_document(uri)
    lines = physical_lines(document.source)
    actions = []
    wanted = params.range
    for finding in ls.findings.get(uri, []):
        row = finding.location.row - 1
        if not (wanted.start.line <= row <= wanted.end.line) or not finding.code.startswith("MDL"):
            continue
        if finding.fix is not None:
            edits = [types.TextEdit(range=_range(lines, e.start.row, e.start.column, e.end.row, e.end.column),
                                    new_text=e.content) for e in finding.fix.edits]
            actions.append(types.CodeAction(
                title=f"{finding.fix.message} ({finding.code})" + (" [unsafe]" if finding.fix.applicability != "safe" else ""),
                kind=types.CodeActionKind.QuickFix,
                is_preferred=finding.fix.applicability == "safe",
                edit=types.WorkspaceEdit(changes={uri: edits})))
        noqa = _noqa_edit(lines, row, finding.code)
        if noqa is not None:
            actions.append(types.CodeAction(title=f"Disable {finding.code} for this line",
                                            kind=types.CodeActionKind.QuickFix,
                                            edit=types.WorkspaceEdit(changes={uri: [noqa]})))
    return actions


def _noqa_edit(lines: list[str], row: int, code: str) -> types.TextEdit | None:
    line = lines[row] if row < len(lines) else ""
    match = _NOQA.search(line)
    end = types.Position(line=row, character=utf16_column(line, len(line) + 1))
    if match is None:
        return types.TextEdit(range=types.Range(start=end, end=end), new_text=f"  # noqa: {code}")
    codes = match.group("codes")
    if codes is None or code in codes.upper():
        return None  # a blanket noqa already covers it
    at = types.Position(line=row, character=utf16_column(line, match.end() + 1))
    return types.TextEdit(range=types.Range(start=at, end=at), new_text=f", {code}")


def main() -> None:
    server.start_io()
