"""`[tool.modelint]` in pyproject.toml (or modelint.toml): found, read and checked once.

The closest config file above a checked file wins, as in ruff. Every key is
validated when read; a bad key or value is a `ConfigError` with the file, the key
and what was expected, which the CLI turns into one line and exit code 2.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

CONFIG_FILES = ("modelint.toml", ".modelint.toml", "pyproject.toml")

DEFAULT_EXCLUDE = (
    ".bzr", ".direnv", ".eggs", ".git", ".git-rewrite", ".hg", ".ipynb_checkpoints", ".mypy_cache", ".nox",
    ".pants.d", ".pytest_cache", ".pytype", ".ruff_cache", ".svn", ".tox", ".venv", ".vscode", "__pypackages__",
    "_build", "buck-out", "build", "dist", "node_modules", "site-packages", "venv", "__pycache__",
    ".modelint_cache",
)

_LIST_KEYS = ("select", "ignore", "extend-select", "exclude", "extend-exclude", "eval-function-patterns")
_KNOWN_KEYS = (*_LIST_KEYS, "per-file-ignores", "respect-gitignore", "runtime")
_RUNTIME_KEYS = ("device", "timeout", "probes", "inputs")


class ConfigError(Exception):
    pass


@dataclass(frozen=True)
class Settings:
    root: Path  # folder the config's relative paths start from
    path: Path | None = None  # the config file, None for defaults
    select: tuple[str, ...] | None = None
    ignore: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    extend_exclude: tuple[str, ...] = ()
    respect_gitignore: bool = True
    eval_function_patterns: tuple[str, ...] = field(default=())
    runtime: "RuntimeSettings" = field(default_factory=lambda: RuntimeSettings())


@dataclass(frozen=True)
class RuntimeSettings:
    """[tool.modelint.runtime]: how `--runtime` builds models it cannot build alone."""

    device: str | None = None  # "cpu" | "cuda" | "auto"; the command line wins
    timeout: float | None = None  # seconds per file
    probes: tuple[tuple[str, str], ...] = ()  # class name -> constructor call, e.g. ("ConvNet", "ConvNet(3, 10)")
    inputs: tuple[tuple[str, str], ...] = ()  # class name -> input expression, e.g. "torch.randn(2, 3, 32, 32)"


def _read_table(path: Path) -> dict | None:
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: invalid TOML: {error}") from None
    except OSError as error:
        raise ConfigError(f"{path}: cannot read: {error.strerror or error}") from None
    if path.name == "pyproject.toml":
        table = data.get("tool", {}).get("modelint")
        if table is None:
            return None
    else:
        table = data.get("tool", {}).get("modelint", data)
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.modelint] must be a table")
    return table


def _string_list(path: Path, key: str, value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{path}: `{key}` must be a list of strings, got {value!r}")
    return tuple(value)


def settings_from_table(path: Path, table: dict) -> Settings:
    from modelint.registry import UnknownCode, expand

    for key in table:
        if key not in _KNOWN_KEYS:
            import difflib  # only for a misspelled key

            hint = difflib.get_close_matches(key.replace("_", "-"), _KNOWN_KEYS, n=1)
            suggestion = f" (did you mean `{hint[0]}`?)" if hint else ""
            raise ConfigError(f"{path}: unknown key `{key}` in [tool.modelint]{suggestion}")
    values: dict = {}
    for key in _LIST_KEYS:
        if key in table:
            values[key] = _string_list(path, key, table[key])
    for key in ("select", "ignore", "extend-select"):
        if key in values:
            try:
                expand(values[key])
            except UnknownCode as error:
                raise ConfigError(f"{path}: `{key}` names unknown rule code or prefix `{error}`") from None
    per_file: list[tuple[str, tuple[str, ...]]] = []
    raw = table.get("per-file-ignores", {})
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: `per-file-ignores` must be a table of pattern = [codes]")
    for pattern, codes in raw.items():
        codes = _string_list(path, f"per-file-ignores.{pattern}", codes)
        try:
            expand(codes)
        except UnknownCode as error:
            raise ConfigError(f"{path}: `per-file-ignores` names unknown rule code or prefix `{error}`") from None
        per_file.append((pattern, codes))
    runtime = _runtime_settings(path, table.get("runtime", {}))
    respect = table.get("respect-gitignore", True)
    if not isinstance(respect, bool):
        raise ConfigError(f"{path}: `respect-gitignore` must be true or false")
    return Settings(
        root=path.parent,
        path=path,
        select=values.get("select"),
        ignore=values.get("ignore", ()),
        extend_select=values.get("extend-select", ()),
        per_file_ignores=tuple(per_file),
        exclude=values.get("exclude", DEFAULT_EXCLUDE),
        extend_exclude=values.get("extend-exclude", ()),
        respect_gitignore=respect,
        eval_function_patterns=values.get("eval-function-patterns", ()),
        runtime=runtime,
    )


def _runtime_settings(path: Path, table: object) -> RuntimeSettings:
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: `runtime` must be a table ([tool.modelint.runtime])")
    for key in table:
        if key not in _RUNTIME_KEYS:
            import difflib

            hint = difflib.get_close_matches(key, _RUNTIME_KEYS, n=1)
            suggestion = f" (did you mean `{hint[0]}`?)" if hint else ""
            raise ConfigError(f"{path}: unknown key `{key}` in [tool.modelint.runtime]{suggestion}")
    device = table.get("device")
    if device is not None and device not in ("cpu", "cuda", "auto"):
        raise ConfigError(f"{path}: `runtime.device` must be \"cpu\", \"cuda\" or \"auto\", got {device!r}")
    timeout = table.get("timeout")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0):
        raise ConfigError(f"{path}: `runtime.timeout` must be a positive number of seconds, got {timeout!r}")
    tables = {}
    for key in ("probes", "inputs"):
        raw = table.get(key, {})
        if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
            raise ConfigError(f"{path}: `runtime.{key}` must be a table of class name = \"python expression\"")
        tables[key] = tuple(raw.items())
    return RuntimeSettings(device, float(timeout) if timeout is not None else None, tables["probes"],
                           tables["inputs"])


def load(path: Path) -> Settings:
    table = _read_table(path)
    if table is None:
        raise ConfigError(f"{path}: has no [tool.modelint] table")
    return settings_from_table(path, table)


class ConfigResolver:
    """Closest config for a folder, cached per folder (one read per config file)."""

    def __init__(self, explicit: Path | None = None, cwd: Path | None = None) -> None:
        self.cwd = (cwd or Path.cwd()).resolve()
        self._explicit = load(explicit) if explicit is not None else None
        self._by_dir: dict[Path, Settings] = {}
        self.default = Settings(root=self.cwd)

    def for_dir(self, directory: Path) -> Settings:
        if self._explicit is not None:
            return self._explicit
        directory = Path(os.path.abspath(directory))
        cached = self._by_dir.get(directory)
        if cached is not None:
            return cached
        found = None
        for name in CONFIG_FILES:
            candidate = directory / name
            if os.path.isfile(candidate):  # not Path.is_file(): it raises in a folder we may not search
                table = _read_table(candidate)
                if table is not None:
                    found = settings_from_table(candidate, table)
                    break
        if found is None:
            parent = directory.parent
            found = self.for_dir(parent) if parent != directory else self.default
        self._by_dir[directory] = found
        return found

    def for_file(self, path: Path) -> Settings:
        return self.for_dir(Path(os.path.abspath(path)).parent)
