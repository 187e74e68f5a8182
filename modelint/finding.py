"""What the engine hands to every front end: findings, positions, fixes."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, order=True)
class Location:
    """1-based row; 1-based column counted in Unicode code points (as ruff does)."""

    row: int
    column: int


@dataclass(frozen=True)
class Edit:
    start: Location
    end: Location
    content: str


@dataclass(frozen=True)
class Fix:
    message: str
    edits: tuple[Edit, ...]
    applicability: str = "safe"  # "safe" | "unsafe"


@dataclass(frozen=True)
class Related:
    """Another place that proves a finding: where eval() was set, the caller that forgot it."""

    path: str
    location: Location
    message: str
    # Set while the location is still to be looked up: the n-th call of `path` (see runner).
    call: int | None = None
    cell: int | None = None  # in a notebook: the location is within this code cell


@dataclass
class Finding:
    path: str
    code: str
    name: str
    message: str
    severity: str  # "error" | "warning"
    location: Location
    end_location: Location
    fix: Fix | None = None
    related: tuple[Related, ...] = ()
    runtime: dict | None = None
    noqa_row: int | None = None
    # Set while the location is still to be looked up: the n-th call of `path` (see runner).
    call: int | None = None
    cell: int | None = None  # notebooks: the code cell (1-based); location is then cell-relative
    unless_called: str | None = None  # dropped when another file calls this function (see Report)
    method_callers_unseen: str | None = None  # (see Report)
    function_callers_unseen: tuple[str, ...] = ()  # (see Report)
    method_callers_switch: str | None = None  # (see Report)
    held_from_creators: tuple | None = None  # (see Report)
    model_class_unseen: bool = False  # (see Report)
    users_elsewhere: tuple | None = None  # (see Report)
    built_by: tuple | None = None  # (see Report)

    @property
    def sort_key(self) -> tuple:
        return (self.path, self.cell or 0, self.location.row, self.location.column, self.code)


# Codes for files modelint could not check, as ruff spells them, and for a rule that failed.
SYNTAX_ERROR = "E999"
IO_ERROR = "E902"
# Valid as far as CPython goes, but over one of modelint's limits (size, nesting, time; see
# modelint.limits) or beyond libcst, its parser: reported, not analysed.
NOT_ANALYSED = "E903"
INTERNAL_ERROR = "MDL000"
NOT_CHECKED_NAMES = {SYNTAX_ERROR: "syntax-error", IO_ERROR: "io-error", NOT_ANALYSED: "not-analysed"}
# How an E903 for a file past its time limit starts (modelint.limits.timeout_message): such a
# result depends on the machine's load, not only on the file, and is not cached.
TIMED_OUT = "not checked: analysing the file took longer than its time limit"


@dataclass
class FileResult:
    path: str
    findings: list[Finding] = field(default_factory=list)
    checked: bool = True  # False: the file could not be read or parsed
    # Function summaries for the project index (modelint.summary.FileSummary).
    summary: object = None
    # Findings this file's code proves about another file (a helper it calls).
    foreign: list[Finding] = field(default_factory=list)
    # Served from the cache by the runner (not analysed in this run); never stored as True.
    cached: bool = False
    # What the analysis asked the project index (modelint.asked.Asked); None without an index.
    asked: object = None


def not_checked(path: str, code: str, message: str, row: int = 1, column: int = 1) -> FileResult:
    """The result for a file that could not be read or parsed: one error line, no findings."""
    location = Location(max(row, 1), max(column, 1))
    finding = Finding(path, code, NOT_CHECKED_NAMES[code], message, "error", location, location)
    return FileResult(path, [finding], checked=False)
