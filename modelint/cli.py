"""`modelint` on the command line, with the conventions ruff users already know.

Exit codes: 0 no findings, 1 findings, 2 usage/config/internal error or nothing
could be checked. This module must stay cheap to import and never import torch.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from pathlib import Path

import click

from modelint import __version__

EXIT_CLEAN, EXIT_FINDINGS, EXIT_ERROR = 0, 1, 2
# Kept in step with modelint.formats.FORMATS (a test checks); listed here so that
# `--help` does not import the formatters.
FORMAT_NAMES = ["text", "concise", "json", "sarif", "github", "lsp"]


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    out: list[str] = []
    for value in values:
        out.extend(part.strip() for part in value.split(",") if part.strip())
    return tuple(out)


def _runtime_options(command):
    command = click.option("--runtime-timeout", type=click.FloatRange(min=1), default=None,
                           help="Seconds one file's probes may take, import included (default: the config's "
                                "runtime.timeout, else 60).")(command)
    return click.option("--device", type=click.Choice(["cpu", "cuda", "auto"]), default=None,
                        help="Where probes run; auto: CUDA when available (default: the config's runtime.device, "
                             "else cpu).")(command)


def _fail(message: str) -> None:
    click.echo(f"modelint: error: {message}", err=True)
    sys.exit(EXIT_ERROR)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="modelint", message="%(prog)s %(version)s")
def main() -> None:
    """Find PyTorch train/eval mode misuse."""


@main.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--select", multiple=True, help="Rule codes or prefixes to enable (comma-separated); replaces the config's.")
@click.option("--ignore", multiple=True, help="Rule codes or prefixes to disable.")
@click.option("--extend-select", multiple=True, help="Rule codes or prefixes to enable on top of the selection.")
@click.option("--format", "output_format", default="text", show_default=True,
              type=click.Choice(FORMAT_NAMES), help="Output format.")
@click.option("--statistics", is_flag=True, help="Show a count per rule instead of the findings.")
@click.option("--exit-zero", is_flag=True, help="Exit 0 even when there are findings.")
@click.option("-q", "--quiet", is_flag=True, help="Print findings only, no summary.")
@click.option("-v", "--verbose", is_flag=True,
              help="Also say on stderr how many results came from the cache and how many were analysed.")
@click.option("--stdin-filename", type=str, default=None,
              help="Read the source from stdin and report it under this file name.")
@click.option("--force-exclude", is_flag=True, help="Apply exclusions to paths passed on the command line too.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Use this config file instead of the closest pyproject.toml/modelint.toml.")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help="Worker processes (default: CPU count).")
@click.option("--no-cache", is_flag=True, help="Neither read nor write the cache.")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, envvar="MODELINT_CACHE_DIR",
              help="Cache folder [default: .modelint_cache; env MODELINT_CACHE_DIR].")
@click.option("--fix", is_flag=True, help="Apply safe fixes, then report what remains.")
@click.option("--unsafe-fixes", is_flag=True, help="Also apply (with --fix) or show fixes that may change behaviour.")
@click.option("--diff", is_flag=True, help="Print the fixes as a unified diff and write nothing (exit 1 if any).")
@_runtime_options
@click.option("--runtime", is_flag=True,
              help="Run each confirmable finding's model in a subprocess to confirm it (needs torch; runs your code).")
def check(paths, select, ignore, extend_select, output_format, statistics, exit_zero, quiet, verbose,
          stdin_filename, force_exclude, config_path, jobs, no_cache, cache_dir, fix, unsafe_fixes, diff, device,
          runtime_timeout, runtime) -> None:
    """Lint PATHS (files or folders; default: the current folder)."""
    if runtime:
        _require_torch("--runtime")
    from modelint.config import ConfigError, ConfigResolver
    from modelint.registry import UnknownCode, expand
    from modelint.runner import Overrides, run_paths, run_text

    overrides = Overrides(select=_split(select) or None, ignore=_split(ignore), extend_select=_split(extend_select))
    try:
        for selectors in (overrides.select or (), overrides.ignore, overrides.extend_select):
            expand(selectors)
    except UnknownCode as error:
        _fail(f"unknown rule code or prefix `{error}` (see `modelint rules`)")
    try:
        resolver = ConfigResolver(Path(config_path) if config_path else None)
        server = None
        if stdin_filename is not None or list(paths) == ["-"]:
            data = sys.stdin.buffer.read() if sys.stdin is not None else b""
            if fix or diff:
                _fix_stdin(data, stdin_filename or "-", resolver, overrides, unsafe_fixes, diff)
            run = run_text(data, stdin_filename or "-", resolver, overrides, force_exclude=force_exclude)
        else:
            targets = list(paths) or ["."]
            cache = None if no_cache else (cache_dir or ".modelint_cache")
            server = _probe_server_started(device) if runtime else None
            run = run_paths(targets, resolver, overrides, force_exclude=force_exclude, jobs=jobs, cache_dir=cache)
            if fix or diff:
                from modelint.fix_command import fix_files

                report = fix_files(run, resolver, overrides, unsafe_fixes, write=not diff)
                if diff:
                    if report.diff:
                        click.echo(report.diff, nl=False)
                    for message in report.problems:
                        click.echo(f"modelint: warning: {message}", err=True)
                    sys.exit(EXIT_FINDINGS if report.diff else EXIT_CLEAN)
                for message in report.problems:
                    click.echo(f"modelint: warning: {message}", err=True)
                if report.changed:
                    run = run_paths(targets, resolver, overrides, force_exclude=force_exclude, jobs=jobs,
                                    cache_dir=cache)
                run.fixed = report.applied
    except ConfigError as error:
        _fail(str(error))

    if verbose:
        _print_cache_report(run)
    findings = run.findings
    if runtime:
        from modelint.runtime import attach_verdicts

        attach_verdicts(findings, device, runtime_timeout, jobs=jobs or 2,
                        settings_for=_runtime_settings_for(resolver), index=run.index, server=server)
    from modelint.formats import FORMATS

    if statistics:
        _print_statistics(findings, output_format)
    else:
        rendered = FORMATS[output_format](findings) if output_format not in ("text", "concise") else \
            FORMATS[output_format](findings, show_unsafe=unsafe_fixes)
        if rendered:
            click.echo(rendered)
        if output_format in ("text", "concise") and not quiet:
            _print_summary(run, unsafe_fixes)
            if runtime:
                _print_runtime_summary(findings)
    if run.internal_errors:
        sys.exit(EXIT_ERROR)
    if run.results and run.files_checked == 0:
        sys.exit(EXIT_ERROR)  # nothing could be checked at all
    if findings and not exit_zero:
        sys.exit(EXIT_FINDINGS)
    sys.exit(EXIT_CLEAN)


def _print_summary(run, unsafe_fixes: bool = False) -> None:
    findings = run.findings
    failed = run.files_failed
    fixed = getattr(run, "fixed", 0)
    if not findings:
        click.echo(f"Found {fixed} finding{'s' if fixed != 1 else ''} ({fixed} fixed, 0 remaining)." if fixed
                   else "All checks passed!")
        return
    count = len(findings)
    noun = "finding" if count + fixed == 1 else "findings"
    parts = []
    if fixed:
        parts.append(f"{fixed} fixed, {count} remaining")
    if failed:
        parts.append(f"{failed} file{'s' if failed != 1 else ''} could not be checked")
    extra = f" ({'; '.join(parts)})" if parts else ""
    click.echo(f"Found {count + fixed} {noun}{extra}.")
    safe = sum(1 for f in findings if f.fix is not None and f.fix.applicability == "safe")
    unsafe = sum(1 for f in findings if f.fix is not None and f.fix.applicability == "unsafe")
    if unsafe_fixes:
        safe, unsafe = safe + unsafe, 0
    if safe or unsafe:
        option = "`--fix --unsafe-fixes`" if unsafe_fixes else "`--fix`"
        line = f"[*] {safe} fixable with the {option} option" if safe else "No fixes available"
        if unsafe:
            line += f" ({unsafe} hidden fix{'es' if unsafe != 1 else ''} can be enabled with the `--unsafe-fixes` option)"
        click.echo(line + ".")


def _print_cache_report(run) -> None:
    """One stderr line: did the cache serve this run? (Results of both phases and of helper files count.)"""
    stats = run.cache
    if stats.folder is None:
        click.echo(f"modelint: no cache: {stats.analysed} analysed.", err=True)
        return
    click.echo(f"modelint: cache {stats.folder}: {stats.hits} from the cache, {stats.analysed} analysed "
               f"(hit rate {stats.hit_rate:.0%}).", err=True)


def _print_runtime_summary(findings) -> None:
    verdicts = Counter((f.runtime or {}).get("verdict") for f in findings if f.runtime)
    if not verdicts:
        click.echo("Runtime: no finding of a rule the runtime checker can measure.")
        return
    order = ("confirmed", "not reproduced", "not run")
    click.echo("Runtime: " + ", ".join(f"{verdicts[v]} {v}" for v in order if verdicts[v]) + ".")


def _fix_stdin(data: bytes, filename: str, resolver, overrides, unsafe: bool, diff: bool) -> None:
    """`--fix` on stdin prints the fixed source (or the diff) to stdout, as ruff does."""
    import difflib

    from modelint import fixer, source
    from modelint.runner import codes_for

    try:
        text = source.decode(data)
    except source.UnreadableSource as error:
        _fail(f"{filename}: {error}")
    codes = codes_for(filename, resolver.for_file(Path(filename)), overrides)
    outcome = fixer.fix_text(text, filename, codes, unsafe)
    if diff:
        click.echo("".join(difflib.unified_diff(source.physical_lines(text, keepends=True),
                                                source.physical_lines(outcome.fixed, keepends=True),
                                                f"a/{filename}", f"b/{filename}")), nl=False)
        sys.exit(EXIT_FINDINGS if outcome.changed else EXIT_CLEAN)
    click.echo(outcome.fixed, nl=False)
    sys.exit(EXIT_CLEAN)


def _print_statistics(findings, output_format: str) -> None:
    # Each finding carries its rule's name: no need to import the rules (and libcst) for them.
    names = {f.code: f.name for f in findings}
    counts = Counter(f.code for f in findings)
    rows = []
    for code, count in sorted(counts.items(), key=lambda item: (-item[1], item[0])):
        rows.append({"code": code, "name": names[code], "count": count})
    if output_format == "json":
        import json

        click.echo(json.dumps(rows, indent=2))
        return
    width = max((len(str(r["count"])) for r in rows), default=1)
    for row in rows:
        click.echo(f"{row['count']:>{width}}\t{row['code']}\t{row['name']}")


@main.command()
@click.argument("targets", nargs=-1, required=True)
@_runtime_options
@click.option("--format", "output_format", default="text", type=click.Choice(["text", "json"]), show_default=True)
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="Use this pyproject.toml / modelint.toml instead of the nearest one.")
def verify(targets, device, runtime_timeout, output_format, config_path) -> None:
    """Confirm findings at run time: TARGETS are PATH or PATH:LINE (runs your code in a subprocess).

    With a LINE, the finding(s) on that line are checked; a line without a finding is measured
    as it stands (the mode modelint sees there), e.g. to show that a fix works. Exit 1 if
    anything is confirmed, 0 otherwise, 2 on errors.
    """
    _require_torch("verify")
    from modelint.config import ConfigError, ConfigResolver
    from modelint.runner import Overrides, run_paths
    from modelint.runtime import PROBED_CODES, attach_verdicts, summary_line

    wanted: dict[str, set[int] | None] = {}
    for target in targets:
        path, line = _split_target(target)
        if not Path(path).is_file():
            _fail(f"{path}: not a file")
        key = str(Path(path))
        if line is None:
            wanted[key] = None
        elif wanted.get(key, set()) is not None:
            wanted.setdefault(key, set()).add(line)
    server = _probe_server_started(device)
    try:
        resolver = ConfigResolver(Path(config_path) if config_path else None)
        run = run_paths(list(wanted), resolver, Overrides(), jobs=1, cache_dir=None)
    except ConfigError as error:
        _fail(str(error))
    chosen = []
    for finding in run.findings:
        lines = wanted.get(str(Path(finding.path)), set())
        if finding.code in PROBED_CODES and (lines is None or finding.location.row in lines):
            chosen.append(finding)
    bare = {path: sorted(line for line in lines if not any(
        f.location.row == line and str(Path(f.path)) == path for f in chosen))
        for path, lines in wanted.items() if lines}
    sites = attach_verdicts(chosen, device, runtime_timeout, lines={p: ls for p, ls in bare.items() if ls},
                            settings_for=_runtime_settings_for(resolver), index=run.index, server=server)
    if output_format == "json":
        import json

        from modelint.formats import FORMATS

        rows = json.loads(FORMATS["json"](chosen) or "[]")
        rows += [{"filename": site.path, "location": {"row": site.line, "column": 1}, "code": None,
                  "runtime": site.runtime} for site in sites]
        click.echo(json.dumps(rows, indent=2))
    else:
        from modelint.formats.text import full

        if chosen:
            click.echo(full(chosen))
        for site in sites:
            click.echo(f"{site.path}:{site.line}: no finding here; {summary_line(site.runtime)}")
        if not chosen and not sites:
            click.echo("Nothing to verify: no finding of a runtime-checkable rule "
                       f"({', '.join(sorted(PROBED_CODES))}).")
    verdicts = [f.runtime for f in chosen] + [site.runtime for site in sites]
    sys.exit(EXIT_FINDINGS if any((v or {}).get("verdict") == "confirmed" for v in verdicts) else EXIT_CLEAN)


def _split_target(target: str) -> tuple[str, int | None]:
    head, sep, tail = target.rpartition(":")
    if sep and tail.isdigit() and not Path(target).exists():
        return head, int(tail)
    return target, None


def _probe_server_started(device: str | None):
    """The CPU probes' fork server, its torch import started now so that it overlaps the linting;
    None for `--device cuda/auto` (a child per file there)."""
    if device not in (None, "cpu"):
        return None
    from modelint.runtime.launch import ForkServer

    server = ForkServer()
    server.start_soon()
    return server


def _runtime_settings_for(resolver):
    """path -> the [tool.modelint.runtime] settings of its closest config (defaults if that one is broken:
    the lint already said so)."""
    from modelint.config import ConfigError, RuntimeSettings

    def settings_for(path: str):
        try:
            return resolver.for_file(Path(path)).runtime
        except ConfigError:
            return RuntimeSettings()

    return settings_for


def _require_torch(what: str) -> None:
    from modelint.runtime import torch_available

    if not torch_available():
        _fail(f"{what} needs PyTorch, which is not installed here: pip install 'modelint[runtime]'")


@main.command()
@click.argument("code")
def rule(code: str) -> None:
    """Print the documentation of one rule (e.g. `modelint rule MDL001`)."""
    from modelint.registry import all_rules

    rules = all_rules()
    rule_class = rules.get(code.strip().upper())
    if rule_class is None:
        _fail(f"unknown rule `{code}`; known rules: {', '.join(rules)}")
    click.echo(f"# {rule_class.name} ({rule_class.code})\n")
    click.echo(f"Severity: {rule_class.severity}. Fix: {rule_class.fix_safety}.\n")
    click.echo(rule_class.docs())


@main.command()
def lsp() -> None:
    """Run the Language Server over stdio (needs `pip install 'modelint[lsp]'`)."""
    try:
        from modelint.lsp.server import main as serve
    except ImportError as error:
        _fail(f"the language server needs pygls: pip install 'modelint[lsp]' ({error})")
    serve()


@main.command("rules")
@click.option("--format", "output_format", default="text", type=click.Choice(["text", "json", "markdown"]),
              show_default=True, help="markdown: the whole docs/rules.md page, every rule's documentation.")
def rules_command(output_format: str) -> None:
    """List every rule."""
    from modelint.registry import all_rules, rules_markdown

    if output_format == "markdown":
        click.echo(rules_markdown(), nl=False)
        return
    rules = all_rules()
    if output_format == "json":
        import json

        click.echo(json.dumps([
            {"code": r.code, "name": r.name, "severity": r.severity, "summary": r.summary,
             "fix": r.fix_safety, "url": r.url(), "fixtures": r.fixtures, "explanation": r.docs()}
            for r in rules.values()
        ], indent=2))
        return
    for r in rules.values():
        click.echo(f"{r.code}  {r.name:<30} {r.severity:<8} {r.summary}")


def run() -> None:
    """Console entry point with ruff's guarantees: no traceback reaches the user."""
    try:
        main(standalone_mode=True)
        code = EXIT_CLEAN
    except SystemExit as done:
        code = done.code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = EXIT_CLEAN
    except Exception as error:  # the last line of defence: one line, exit 2
        click.echo(f"modelint: internal error: {type(error).__name__}: {error}", err=True)
        code = EXIT_ERROR
    _leave(code)


def _leave(code) -> None:
    """Exit without tearing the interpreter down, once the output is flushed (as mypy does).

    Freeing libcst's hundreds of classes and every module one by one takes a cold
    one-file run ~30 ms, a tenth of it; by now nothing is left to clean up (worker
    pools and runtime probes have been waited for, files are closed).
    """
    if code is None:
        code = EXIT_CLEAN
    elif not isinstance(code, int):  # sys.exit("message"), as Python itself treats it
        print(code, file=sys.stderr)
        code = 1
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except BrokenPipeError:
            code = EXIT_CLEAN  # the reader left (`| head`): as a BrokenPipeError during the run
        except (OSError, ValueError):
            pass
    os._exit(code)
