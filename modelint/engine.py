"""Parse once, compute facts once, run the selected rules, apply suppressions.

`lint_source` is the whole per-file pipeline and is a pure function of its
inputs, so front ends can run it in a process pool or on an editor buffer.
"""

from __future__ import annotations

import ast
import re
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import PurePath

import libcst as cst

from modelint import limits, source, suppression
from modelint.asked import AskingIndex
from modelint.facts import FileFacts
from modelint.facts.libraries import NOT_PROJECT
from modelint.facts.torch_api import OTHER_FRAMEWORKS
from modelint.relevance import names_torch
from modelint.summary import ClassShape, FileSummary
from modelint.finding import (INTERNAL_ERROR, IO_ERROR, NOT_ANALYSED, FileResult, Finding, Location,
                              Related, not_checked)
from modelint.registry import FLOW_RULES, all_rules
from modelint.source import physical_lines


# A file of another framework (it imports TensorFlow, JAX, MegEngine, Paddle..., and never torch): its models
# have no torch modes to misuse, and no torch file subclasses its classes. Checked for syntax only.
_OTHER_FRAMEWORK = re.compile(r"^[ \t]*(?:import|from)[ \t]+(?:%s)\b" % "|".join(OTHER_FRAMEWORKS), re.M)
_IMPORTS_TORCH = re.compile(r"^[ \t]*(?:import|from)[ \t]+torch\b", re.M)
# Only a file that says "modelint" (any case: `# MODELINT: NOQA`) can hold a file-level directive.
_MENTIONS_MODELINT = re.compile("modelint", re.IGNORECASE)


@dataclass(frozen=True)
class Selection:
    codes: frozenset[str]
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()


def lint_path(path: str, codes: frozenset[str], index=None) -> FileResult:
    if path.endswith(".ipynb"):
        try:
            with open(path, "rb") as handle:
                return lint_bytes(handle.read(), path, codes, index)
        except OSError as error:
            return not_checked(path, IO_ERROR, f"cannot read file: {error.strerror or error}")
    try:
        text = source.read(path)
    except source.UnreadableSource as error:
        return not_checked(path, IO_ERROR, str(error))
    return lint_source(text, path, codes, index)


def lint_bytes(data: bytes, path: str, codes: frozenset[str], index=None) -> FileResult:
    if path.endswith(".ipynb"):
        from modelint.notebook import lint_notebook

        return lint_notebook(data, path, codes, index)
    try:
        text = source.decode(data)
    except source.UnreadableSource as error:
        return not_checked(path, IO_ERROR, str(error))
    return lint_source(text, path, codes, index)


def parse(text: str, code: str | None = None) -> cst.Module:
    """libcst's tree of `text` (`code`: its limits.code_only, when made already), or limits.Verdict: the line
    to report instead (E999, E903).

    modelint.limits looks first (libcst's native parser crashes the process on some deep
    files and takes minutes on huge ones); when libcst fails, CPython's parser gives the
    message and position, as `python file.py` would.
    """
    verdict = limits.check(text, code)
    if verdict is not None:
        raise verdict
    try:
        with _parsed_nodes_trusted():
            return cst.parse_module(text)
    except Exception as error:  # ParserSyntaxError, and a few other kinds from the native parser
        libcst_error = error
    verdict = limits.cpython_parse(text)
    if isinstance(verdict, limits.Verdict):
        raise verdict
    if isinstance(libcst_error, cst.ParserSyntaxError):
        why = _one_line(libcst_error.message)
        row, column = limits.clamp(text, libcst_error.raw_line, libcst_error.raw_column + 1)
    else:
        why, row, column = _one_line(libcst_error), 1, 1
    raise limits.Verdict(NOT_ANALYSED, f"not checked: Python accepts this file but libcst, modelint's parser, "
                                       f"does not ({why})", row, column)


def lint_source(text: str, path: str, codes: frozenset[str], index=None) -> FileResult:
    """Every finding of the selected rules in one file's text.

    Within the per-file time limit (modelint.limits): a file that takes longer gets one
    E903 line instead of its findings.
    """
    if "\x00" in text:
        return not_checked(path, IO_ERROR, "file contains NUL bytes (binary file?)")
    with limits.time_limit(limits.timeout_seconds(len(text))) as seconds:
        try:
            return _lint_source(text, path, codes, index)
        except limits.Timeout:
            return not_checked(path, NOT_ANALYSED, limits.timeout_message(seconds))


def _lint_source(text: str, path: str, codes: frozenset[str], index) -> FileResult:
    file_noqa = suppression.file_noqa(text) if _MENTIONS_MODELINT.search(text) else None
    if file_noqa == suppression.ALL:
        return FileResult(path)
    # (what the code says, not its docstrings and comments: a tokenizer's docs mention torch tensors)
    code = limits.code_only(text)
    if index is None and not names_torch(code):
        return _syntax_only(text, code, path, bool(codes & FLOW_RULES))
    if _OTHER_FRAMEWORK.search(code) and not _IMPORTS_TORCH.search(code):
        return _syntax_only(text, code, path, False)
    try:
        module = parse(text, code)
    except limits.Verdict as verdict:
        legacy = _legacy_async(text) if verdict.code == limits.SYNTAX_ERROR else None
        if legacy is None:
            return not_checked(path, verdict.code, verdict.message, verdict.row, verdict.column)
        # Reported all the same (Python 3.7+ refuses the file), and the rest is checked as PyTorch read it.
        module, text = legacy
        result = _lint_parsed(module, text, path, codes, index, file_noqa)
        result.findings = [replace(f, fix=None) if f.fix is not None else f for f in result.findings]  # (no
        # fix is offered: the file does not parse before or after it)
        error = not_checked(path, verdict.code, verdict.message + _LEGACY_ASYNC_NOTE, verdict.row, verdict.column)
        result.findings[:0] = error.findings
        return result
    return _lint_parsed(module, text, path, codes, index, file_noqa)


@contextmanager
def _parsed_nodes_trusted():
    """libcst checks every node it builds (`CSTNode.__post_init__` runs `_validate`), which is for trees built
    by hand: the parser only builds valid ones (libcst's own comment there says as much). Skipped while
    parsing, about a tenth of the parse; restored after, for the nodes a fix builds."""
    validate = _NODE.__dict__.get("__post_init__")
    if validate is None:  # (another libcst: leave it be)
        yield
        return
    _NODE.__post_init__ = _trusted
    try:
        yield
    finally:
        _NODE.__post_init__ = validate


_NODE = cst.CSTNode


def _trusted(_node) -> None:
    return None


# `x.cuda(async=True)`: PyTorch's name for `non_blocking=` before 0.4, a keyword since Python 3.7. Read as
# another name of the same length, so that every line and column stays where it is.
_ASYNC_ARGUMENT = re.compile(r"([(,]\s*)async(\s*=(?!=))")
_LEGACY_ASYNC_NOTE = " (`async=` is `non_blocking=` since PyTorch 0.4; the rest of the file was checked)"


def _legacy_async(text: str) -> tuple[cst.Module, str] | None:
    """The file's tree with each `async=` keyword argument renamed, when that is all that keeps it from parsing."""
    patched = _ASYNC_ARGUMENT.sub(r"\1_asyn\2", text) if "async" in text else text
    if patched == text:
        return None
    try:
        return parse(patched), patched
    except limits.Verdict:
        return None


def _lint_parsed(module: cst.Module, text: str, path: str, codes: frozenset[str], index, file_noqa) -> FileResult:
    with limits.deep_recursion():
        try:
            return _analyse(module, text, path, codes, index, file_noqa)
        except Exception as error:
            # libcst's code generation (positions, code in messages) recurses once per nesting level:
            # Python 3.12 caps that at ~750 levels whatever the recursion limit (its C recursion
            # limit), and libcst may turn the RecursionError into another error on the way out.
            if not _from_recursion(error):
                raise
            return not_checked(path, NOT_ANALYSED, "not checked: the file is nested too deeply to analyse "
                                                   "(this Python's recursion limit)")


def _with_class_shapes(facts: FileFacts, summary: FileSummary | None) -> FileSummary | None:
    """Add the file's classes (and the imported classes its rules asked about) for the project index."""
    if not facts.collector.classes and "receivers" not in facts.__dict__:
        return summary
    receivers = facts.receivers
    shapes = receivers.shapes()
    asked = receivers.unresolved | facts.modules.undecided_bases
    if summary is None:
        if not shapes and not asked:
            return None
        summary = FileSummary(facts.path)
    summary.shapes = shapes
    summary.asked_classes = asked
    return summary


def _from_recursion(error: BaseException) -> bool:
    """Was this raised by, or while handling, a RecursionError?"""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, RecursionError):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _analyse(module: cst.Module, text: str, path: str, codes: frozenset[str], index, file_noqa) -> FileResult:
    lines = physical_lines(text)
    # (what the facts ask the index is recorded: the runner analyses the file again only for other answers)
    asking = AskingIndex(index) if index is not None else None
    facts = FileFacts(module, path, index=asking, lines=lines, text=text)
    try:
        return _report(facts, path, codes, asking, file_noqa)
    finally:
        facts.release()


def _report(facts: FileFacts, path: str, codes: frozenset[str], asking, file_noqa) -> FileResult:
    """The file's findings and summary, from its facts."""
    lines = facts.lines
    reports = []
    internal: list[Finding] = []
    for code, rule_class in all_rules().items():
        if code not in codes:
            continue
        try:
            for report in rule_class().check(facts):
                reports.append((rule_class, report))
        except Exception as error:
            if _from_recursion(error):
                raise  # too deep for this Python: the whole file gets one E903 line
            internal.append(_internal(path, code, f"{type(error).__name__}: {_one_line(error)} at {_where(error)}"))
    summary = None
    if codes & FLOW_RULES:
        try:
            summary = facts.flow.file_summary()
        except Exception:  # a failed flow was already reported by the rules that need it
            summary = None
    summary = _with_class_shapes(facts, summary)
    asked = asking.asked() if asking is not None else None
    if summary is not None and asking is not None:
        # (what it looked up in other files, answered or not, as an analysis without the index records it: the
        # runner reads there which helpers other files call, and which files to summarise as helpers)
        summary.unresolved |= asking.references(path)
    if not reports:
        return FileResult(path, internal, summary=summary, asked=asked)
    positions = facts.positions
    positions.prepare(node for _, report in reports if report.elsewhere is None
                      for node in (report.node, report.stmt, *(note for note, _ in report.notes),
                                   *(edit.node for edit in (report.fix.edits if report.fix else ()))))
    findings: list[Finding] = []
    foreign: list[Finding] = []
    for rule_class, report in reports:
        if report.elsewhere is not None:
            # Positioned (and checked for `# noqa`) by the runner, which can read that file.
            other, ordinal = report.elsewhere
            foreign.append(Finding(other, rule_class.code, rule_class.name, _shown(report.message), rule_class.severity,
                                   Location(0, 0), Location(0, 0), related=report.related, call=ordinal,
                                   unless_called=report.unless_called,
                                   method_callers_unseen=report.method_callers_unseen))
            continue
        span = positions[report.node]
        start = Location(span.start.line, span.start.column + 1)
        end = Location(span.end.line, span.end.column + 1)
        stmt_row = positions[report.stmt].start.line if report.stmt is not None else start.row
        if suppression.covers(file_noqa, rule_class.code):
            continue
        noqa_row = None
        for row in {start.row, stmt_row}:
            if row <= len(lines) and suppression.covers(suppression.line_noqa(lines[row - 1]), rule_class.code):
                noqa_row = row
        if noqa_row is not None:
            continue
        notes = tuple(
            Related(path, Location(positions[node].start.line, positions[node].start.column + 1), _shown(message))
            for node, message in report.notes
        )
        findings.append(
            Finding(path, rule_class.code, rule_class.name, _shown(report.message), rule_class.severity, start, end,
                    fix=_resolve_fix(report.fix, positions, lines), related=notes + report.related,
                    unless_called=report.unless_called, method_callers_unseen=report.method_callers_unseen,
                    function_callers_unseen=report.function_callers_unseen,
                    method_callers_switch=report.method_callers_switch, held_from_creators=report.held_from_creators,
                    model_class_unseen=report.model_class_unseen, users_elsewhere=report.users_elsewhere,
                    built_by=report.built_by)
        )
    findings.extend(internal)
    findings.sort(key=lambda f: f.sort_key)
    return FileResult(path, _dedupe(findings), summary=summary, foreign=foreign, asked=asked)


def _resolve_fix(fix, positions, lines: list[str]):
    """A rule's node-based fix -> positioned edits (None if a node cannot be placed)."""
    if fix is None:
        return None
    from modelint.finding import Edit, Fix

    edits = []
    for edit in fix.edits:
        span = positions.get(edit.node)
        if span is None:
            return None
        start = Location(span.start.line, span.start.column + 1)
        end = Location(span.end.line, span.end.column + 1)
        line = lines[start.row - 1] if start.row <= len(lines) else ""
        indent = line[: len(line) - len(line.lstrip())]
        if edit.where == "replace":
            edits.append(Edit(start, end, edit.content))
        elif edit.where == "before":
            edits.append(Edit(start, start, edit.content))
        elif edit.where == "after":
            edits.append(Edit(end, end, edit.content))
        elif edit.where == "line_before":
            at = Location(start.row, 1)
            edits.append(Edit(at, at, f"{indent}{edit.content}\n"))
        elif edit.where == "line_after":
            at = Location(end.row + 1, 1)
            edits.append(Edit(at, at, f"{indent}{edit.content}\n"))
        elif edit.where == "delete_lines":
            edits.append(Edit(Location(start.row, 1), Location(end.row + 1, 1), ""))
    return Fix(fix.message, tuple(edits), fix.applicability)


def call_positions(path: str) -> tuple[list[tuple[Location, Location]], list[str]] | None:
    """Start/end of every call of a file, in the order the facts pass meets them, and its lines.

    Summaries name calls by that ordinal so that positions (a costly pass) are only
    computed for the few calls a cross-file finding or note actually shows.
    """
    try:
        text = source.read(path)
        with limits.time_limit(limits.timeout_seconds(len(text))), limits.deep_recursion():
            try:
                module = parse(text)
            except limits.Verdict as verdict:
                # (a pre-0.4 `x.cuda(async=True)` file is checked as read with the keyword renamed: its calls
                # are counted on that tree, at the same lines and columns)
                legacy = _legacy_async(text) if verdict.code == limits.SYNTAX_ERROR else None
                if legacy is None:
                    raise
                module, text = legacy
            facts = FileFacts(module, path, lines=physical_lines(text), text=text)
            positions = facts.positions
            positions.everything()
            out = []
            for site in facts.collector.calls:
                span = positions[site.node]
                out.append((Location(span.start.line, span.start.column + 1),
                            Location(span.end.line, span.end.column + 1)))
    except (Exception, limits.Timeout):
        return None
    return out, physical_lines(text)


def _dedupe(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple] = set()
    out = []
    for finding in findings:
        key = (finding.code, finding.location, finding.end_location)
        if key not in seen:
            seen.add(key)
            out.append(finding)
    return out


def _shown(message: str) -> str:
    """The analysis names an element of a container as `args[]` (every subscript one abstract element);
    a reader sees `args[...]`."""
    return _ELEMENT.sub("[...]", message) if "[]" in message else message


_ELEMENT = re.compile(r"(?<=[\w\])])\[\](?=[\w.\[`])")


def _syntax_only(text: str, code: str, path: str, follow_calls: bool) -> FileResult:
    """`code`: the text's limits.code_only, made already."""
    tree = limits.too_large(text, code) or limits.cpython_parse(text)
    if isinstance(tree, limits.Verdict):
        return not_checked(path, tree.code, tree.message, tree.row, tree.column)
    if not follow_calls:
        return FileResult(path)
    # It mentions nothing of torch itself, but it may build a project's model and hand
    # it to a project helper: keep what it imports, so the runner can take a closer look.
    imported: set[str] = set()
    bound: dict[str, str] = {}  # a name imported here -> its reference as imported
    modules: dict[str, str] = {}  # `import zoo_loaders` (not the standard library's): name -> module
    attributes: set[tuple[str, str]] = set()  # `zoo.load_tagger`: (name, attribute)
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            attributes.add((node.value.id, node.attr))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] not in NOT_PROJECT:
                    modules[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else \
                        alias.name.split(".")[0]
        elif isinstance(node, ast.ImportFrom):
            module = "." * node.level + (node.module or "")
            for alias in node.names:
                reference = (f"{module}{alias.name}" if module.strip(".") == "" else f"{module}.{alias.name}") \
                    if module else alias.name
                imported.add(reference)
                bound[alias.asname or alias.name] = reference
                if not node.module:  # (`from . import zoo`: a module of the package, whole)
                    modules[alias.asname or alias.name] = reference
    # (`model = zoo.load_tagger(path)`: a function of a module it imports, by `import zoo` or `from . import zoo`)
    imported.update(f"{modules[name]}.{attribute}" for name, attribute in attributes if name in modules)
    # (its functions: a helper another file calls, `do_eval(model, loader)`, is analysed once that call is seen)
    functions = {node.name for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    # (its classes' imported bases: a task's hook on a trainer template of the project, `self.model(images)` in
    # `evaluate()`, is analysed once the index knows that base)
    bases = {bound[base.id] for node in tree.body if isinstance(node, ast.ClassDef)
             for base in node.bases if isinstance(base, ast.Name) and base.id in bound}
    shapes = _plain_class_shapes(tree)
    return FileResult(path, summary=FileSummary(path, unresolved=imported, syntax_only=True, shapes=shapes,
                                                plain_functions=functions, asked_classes=bases)
                      if imported or shapes else None)


def _plain_class_shapes(tree: ast.Module) -> dict[str, ClassShape]:
    """The top-level classes of a file naming no torch that have no base (or `object`) and switch no mode
    (no `.train(...)`/`.eval()` call in their body): plain classes, as the index tells a subclass of another
    file that asks (`class Deployer(Named)`: no module, so the models it builds are followed as an object's)."""
    shapes = {}
    for node in tree.body:
        if not isinstance(node, ast.ClassDef) or node.keywords or any(
                not (isinstance(base, ast.Name) and base.id == "object") for base in node.bases):
            continue
        defines = {item.name for item in node.body if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef))}
        defines |= {target.id for item in node.body if isinstance(item, ast.Assign)
                    for target in item.targets if isinstance(target, ast.Name)}
        switches = False
        for inner in ast.walk(node):
            if isinstance(inner, ast.Attribute) and isinstance(inner.ctx, ast.Store) \
                    and isinstance(inner.value, ast.Name) and inner.value.id == "self":
                defines.add(inner.attr)
            elif isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute) \
                    and inner.func.attr in ("train", "eval"):
                switches = True
                break
        if not switches:
            shapes[node.name] = ClassShape((), frozenset(defines))
    return shapes


def _internal(path: str, code: str, why: str) -> Finding:
    location = Location(1, 1)
    return Finding(path, INTERNAL_ERROR, "internal-error",
                   f"rule {code} failed on this file ({why}); the other rules ran. Please report this.",
                   "error", location, location)


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _where(error: BaseException) -> str:
    import traceback  # only when a rule failed

    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "?"
    frame = frames[-1]
    return f"{PurePath(frame.filename).name}:{frame.lineno}"
