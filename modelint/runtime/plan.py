"""The parent side of the runtime checker: from a finding (or a bare line) to a probe.

A probe says which module to build (candidates: a constructor and its arguments as
source text, evaluated in the user's module by the child), and which two scenarios
to compare: the mode the flagged code runs in, reproduced as operations on the live
module (`eval()`, `train()`, `.training = x`), against the fixed mode or the file
with the finding's fix applied. The mode at a forward pass or a training step comes
from modelint's own flow facts; the child never executes the user's training loop, except
when nothing builds the model: then the function around the line is called with a stand-in
module and the line is watched (witness_plan.py, witness.py).

No torch here: this runs in the linting process.
"""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field

from modelint.finding import Finding
from modelint.runtime.project_scan import Project
from modelint.runtime.provenance import Resolver, unwrap_chain
from modelint.runtime.static_facts import EVAL as EVAL_MODE, TRAIN as TRAIN_MODE, UNKNOWN, StaticFacts
from modelint.runtime.witness_plan import no_module_reason, witness_spec

# `model.eval()`, `model.train()`, `model.train(False)` as a statement of its own.
_MODE_CALL = re.compile(r"^\s*(?P<target>[A-Za-z_][\w.]*)\.(?P<method>eval|train)\((?P<arg>True|False)?\)\s*(#.*)?$")
_HINT = re.compile(r"#\s*modelint:\s*probe\s+(?P<expr>[A-Za-z_][\w.]*\s*\(.*\))\s*$", re.IGNORECASE)
_INPUT_HINT = re.compile(r"#\s*modelint:\s*probe-input\s+(?P<expr>.+?)\s*$", re.IGNORECASE)
MAX_CANDIDATES = 8  # builds tried per probe (each with up to three sets of guesses)


def op_call(method: str, arg: bool | None = None, path: list[str] | None = None) -> dict:
    op = {"op": "call", "method": method, "path": path or []}
    if arg is not None:
        op["arg"] = arg
    return op


EVAL = op_call("eval")
TRAIN = op_call("train")


def scenario(describe: str, ops: list[dict], grad: bool = False, source: str = "original") -> dict:
    return {"describe": describe, "ops": ops, "grad": grad, "source": source}


def variant(kind: str, flagged: dict, fixed: dict) -> dict:
    return {"kind": kind, "flagged": flagged, "fixed": fixed}


@dataclass
class Probe:
    id: str
    code: str | None
    line: int
    candidates: list[dict] = field(default_factory=list)
    variants: list[dict] = field(default_factory=list)
    contains: str | None = None
    not_run: str | None = None  # decided here already, without running anything
    call: dict | None = None  # a functional call outside any module, measured on its own (see _plan_call)
    witness: dict | None = None  # no module to build: the function is called with stand-ins (witness.py)
    witness_key: str | None = None  # the model whose mode the witness watches,
    witness_claim: str = "training"  # and what the finding says of it at the line (witness_plan.py)

    def request(self) -> dict:
        return {"id": self.id, "code": self.code, "candidates": self.candidates, "variants": self.variants,
                "contains": self.contains, "call": self.call, "line": self.line, "witness": self.witness}


@dataclass
class FilePlan:
    path: str
    probes: list[Probe]
    fixed_sources: dict[str, str]
    input_hint: str | None
    input_hints: dict[str, str] = field(default_factory=dict)  # class name -> input, from the config


class _Source:
    """One file read once: ast for shapes (classes, assignments), modelint's facts for mode."""

    def __init__(self, path: str, text: str, index=None) -> None:
        self.path, self.text = path, text
        self.lines = text.split("\n")
        self.tree = ast.parse(text)
        self.facts = StaticFacts(path, text, index)
        self.classes = {node.name: node for node in ast.walk(self.tree) if isinstance(node, ast.ClassDef)}
        self.module_classes = self._module_classes()

    def _module_classes(self) -> list[str]:
        """Classes of this file that derive from nn.Module (directly or through each other)."""
        known: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name, node in self.classes.items():
                if name in known:
                    continue
                for base in node.bases:
                    text = ast.unparse(base)
                    tail = text.rsplit(".", 1)[-1]
                    if tail in known or text.endswith(("nn.Module", "Module")) or "LightningModule" in text:
                        known.add(name)
                        changed = True
                        break
        return [name for name in self.classes if name in known]

    def hint(self) -> tuple[dict | None, str | None]:
        probe_hint = input_hint = None
        for line in self.lines:
            if probe_hint is None and (match := _HINT.search(line)):
                probe_hint = _constructor(_parse_expr(match["expr"]), hint=True)
            if input_hint is None and (match := _INPUT_HINT.search(line)):
                input_hint = match["expr"]
        return probe_hint, input_hint

    def enclosing_class(self, line: int) -> ast.ClassDef | None:
        best = None
        for node in self.classes.values():
            if node.lineno <= line <= (node.end_lineno or node.lineno) and node.name in self.module_classes:
                if best is None or node.lineno > best.lineno:
                    best = node
        return best

    def outermost_classes(self) -> list[str]:
        """Module classes, those that no other class of the file builds first (the whole model)."""
        used: set[str] = set()
        for name in self.module_classes:
            for node in ast.walk(self.classes[name]):
                if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id != name:
                    used.add(node.func.id)
        return sorted(self.module_classes, key=lambda n: (n in used, -self.classes[n].lineno))


def _parse_expr(text: str) -> ast.expr | None:
    try:
        return ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        return None


def _constructor(value: ast.expr | None, hint: bool = False) -> dict | None:
    """A hint's or the config's `Net(3, p=0.5)`: a build spec whose parts are evaluated in the user's file."""
    value = unwrap_chain(value) if value is not None else None
    if not isinstance(value, ast.Call):
        return None
    callee = ast.unparse(value.func)
    if not re.fullmatch(r"[A-Za-z_][\w.]*", callee):
        return None
    if any(isinstance(a, ast.Starred) for a in value.args) or any(k.arg is None for k in value.keywords):
        return None
    return {"callee": {"expr": callee, "name": callee}, "args": [{"expr": ast.unparse(a)} for a in value.args],
            "kwargs": {k.arg: {"expr": ast.unparse(k.value)} for k in value.keywords}, "hint": hint,
            "text": ast.unparse(value)[:200]}


def class_name(candidate: dict) -> str:
    return (candidate["callee"].get("name") or candidate["callee"].get("expr") or "").rsplit(".", 1)[-1]


def _split_key(key: str) -> tuple[str, list[str]]:
    """`self.net.encoder` -> ("self.net", ["encoder"]); `model` -> ("model", [])."""
    parts = key.split(".")
    count = 2 if parts[0] == "self" and len(parts) > 1 else 1
    return ".".join(parts[:count]), parts[count:]


class Planner:
    def __init__(self, path: str, text: str, constructors: dict[str, str] | None = None, index=None) -> None:
        self.source = _Source(path, text, index)
        self.constructors = constructors or {}  # class name -> constructor call, from the config
        self.fixed_sources: dict[str, str] = {}
        self.hint, self.input_hint = self.source.hint()
        self.functional_fixes: list = []  # the edits of every MDL008 finding of the file
        self.project = Project(path, self.source.tree)
        self.index = self.project.index(path)
        self.resolver = Resolver(self.project)
        # Classes whose nn.Module base is defined in another file of the project (`MessagePassing`).
        self.source.module_classes += [name for name, node in self.source.classes.items()
                                       if name not in self.source.module_classes and self.index is not None
                                       and self.resolver.is_module_class(self.index, node)]

    # --- where the module comes from ------------------------------------------------------------

    def _own(self, name: str, **extra) -> dict:
        """A class of the flagged file, built with what its signature needs (guessed by the child)."""
        return {"callee": {"file": self.project.flagged, "name": name}, "args": [], "kwargs": {}, "path": [],
                "text": f"{name}(...)", **extra}

    def candidates_for_key(self, key: str, line: int, function: str | None, params: list[str]) -> list[dict]:
        """Builds for the model `key` as the code at `line` sees it: where it was constructed (followed
        through assignments, parameters and callers across the project), then the file's own classes."""
        root, path = _split_key(key)
        owner = self.source.enclosing_class(line)
        if key.split(".")[0] == "self" and owner is not None:
            # A module's own method: the model is that class (or a subclass of it in the file).
            return [dict(c, path=self._op_path(key, line)) for c in self.candidates_for_class(owner)]
        found = self.resolver.builds_at(self.index, root, line)
        for candidate in found:
            candidate["path"] = path
        fallback = [self._own(name, require_mode_dependent=True) for name in self.source.outermost_classes()]
        return self._with_hint(found + fallback)

    def candidates_for_class(self, node: ast.ClassDef) -> list[dict]:
        name = node.name
        subclasses = [n for n, c in self.source.classes.items()
                      if n in self.source.module_classes and any(ast.unparse(b).rsplit(".", 1)[-1] == name
                                                                 for b in c.bases)]
        built = []
        for n in [name, *subclasses]:
            for index, call in self.project.calls_of(self.project.flagged, n)[:8]:
                spec = self.resolver.build(index, call)
                if spec is not None and (spec["args"] or spec["kwargs"]):
                    built.append(dict(spec, callee={"file": self.project.flagged, "name": n}, path=[]))
        own = [self._own(n) for n in [name, *subclasses]]
        containers = [self._own(n, require_mode_dependent=True)
                      for n in self.source.outermost_classes() if n not in (name, *subclasses)]
        return self._with_hint(built + own + containers)

    def _with_hint(self, candidates: list[dict]) -> list[dict]:
        configured = []
        for candidate in candidates:  # the config's constructor for a class, before the file's own call
            call = self.constructors.get(class_name(candidate))
            built = _constructor(_parse_expr(call)) if call else None
            if built is not None:
                configured.append(dict(built, path=candidate.get("path", []), hint=True))
        unique, seen = [], set()
        for candidate in ([dict(self.hint, path=[])] if self.hint else []) + configured + candidates:
            marker = json.dumps([candidate["callee"], candidate["args"], candidate["kwargs"],
                                 candidate.get("path", [])], sort_keys=True)
            if marker not in seen:
                seen.add(marker)
                unique.append(candidate)
        return unique[:MAX_CANDIDATES]

    # --- what the line does ---------------------------------------------------------------------

    def plan(self, probe_id: str, line: int, code: str | None, finding: Finding | None) -> Probe:
        probe = Probe(probe_id, code, line)
        try:
            self._plan(probe, line, code, finding)
        except RecursionError:
            probe.not_run = "the file is nested too deeply to plan a probe"
        if not probe.not_run and not probe.candidates and probe.call is None:
            followed = "; ".join(dict.fromkeys(self.resolver.notes)) or \
                "no construction found in this file, its callers or the project files that import it"
            probe.witness = witness_spec(self.source.tree, line, probe.witness_key, probe.witness_claim, code,
                                         followed) if probe.witness_key else None
            if probe.witness is None:
                probe.not_run = no_module_reason(followed)
        return probe

    def _plan(self, probe: Probe, line: int, code: str | None, finding: Finding | None) -> None:
        if code in ("MDL008", "MDL009", "MDL012") or (code is None and self._class_line(line)):
            self._plan_class(probe, line, code, finding)
            return
        text = self.source.lines[line - 1] if 0 < line <= len(self.source.lines) else ""
        if code == "MDL010" or (code is None and re.search(r"\.training\s*=[^=]", text)):
            self._plan_flag(probe, line, text)
            return
        if code is None and (match := _MODE_CALL.search(text)):
            self._plan_mode_call(probe, line, match)
            return
        forwards, steps = self.source.facts.sites_at(line)
        if code in ("MDL001", "MDL002") or (code is None and forwards):
            if not forwards:
                probe.not_run = f"no forward pass of a tracked model at line {line}"
                return
            self._plan_forward(probe, forwards[0], code, line)
            return
        if code == "MDL003" or (code is None and steps):
            if not steps:
                probe.not_run = f"no training step at line {line}"
                return
            self._plan_step(probe, steps[0], code, line)
            return
        probe.not_run = f"nothing at line {line} that the runtime checker can measure (a forward pass, a " \
                        f"training step, a `.training` assignment or an nn.Module class)"

    def _class_line(self, line: int) -> bool:
        return self.source.enclosing_class(line) is not None

    def _plan_forward(self, probe: Probe, forward, code: str | None, line: int) -> None:
        probe.candidates = self.candidates_for_key(forward.key, line, forward.function, list(forward.params))
        probe.witness_key, probe.witness_claim = forward.key, "grad" if code == "MDL002" else "training"
        root, _ = _split_key(forward.key)
        model = forward.key
        if code == "MDL002":
            # Memory, not mode, is measured: a model without Dropout/BatchNorm shows it as well.
            probe.candidates = [{k: v for k, v in c.items() if k != "require_mode_dependent"} for c in probe.candidates]
            probe.variants = [variant(
                "memory",
                scenario(f"{model}(...) in eval mode with autograd on", [EVAL], grad=not forward.grad_free),
                scenario("the same under torch.no_grad()", [EVAL], grad=False))]
            return
        mode = TRAIN_MODE if code == "MDL001" else forward.mode
        if mode == UNKNOWN:
            probe.not_run = f"modelint cannot tell the mode of `{model}` at line {line} (it comes from a caller)"
            return
        ops = [TRAIN] if mode == TRAIN_MODE else [EVAL]
        probe.variants = [variant(
            "stochastic",
            scenario(f"{model}(...) in {'training' if mode == TRAIN_MODE else 'eval'} mode, as at line {line}", ops),
            scenario(f"after {root}.eval()", [EVAL]))]
        if code is None and mode == EVAL_MODE:  # a bare line: is the graph it records wasted too?
            grad = not forward.grad_free
            probe.variants.append(variant(
                "memory", scenario(f"{model}(...) with autograd {'on' if grad else 'off'}, as at line {line}",
                                   [EVAL], grad=grad),
                scenario("under torch.no_grad()", [EVAL], grad=False)))

    def _plan_step(self, probe: Probe, step, code: str | None, line: int) -> None:
        if not step.models:
            probe.not_run = f"no tracked model at the training step on line {line}"
            return
        key, fact_mode, _ = next((m for m in step.models if m[2]), step.models[0])
        probe.candidates = self.candidates_for_key(key, line, step.function, list(step.params))
        probe.witness_key, probe.witness_claim = key, "eval"
        mode = EVAL_MODE if code == "MDL003" else fact_mode
        if mode == UNKNOWN:
            probe.not_run = f"modelint cannot tell the mode of `{key}` at line {line}"
            return
        ops = [EVAL] if mode == EVAL_MODE else [TRAIN]
        root, _ = _split_key(key)
        probe.variants = [variant(
            "inert",
            scenario(f"training step with {key} in {'eval' if mode == EVAL_MODE else 'training'} mode, as at line "
                     f"{line}", ops),
            scenario(f"after {root}.train()", [TRAIN]))]

    def _plan_flag(self, probe: Probe, line: int, text: str) -> None:
        match = re.search(r"(?P<target>[A-Za-z_][\w.]*)\.training\s*=\s*(?P<value>True|False)\b", text)
        if not match:
            probe.not_run = f"line {line} does not assign True/False to `.training`"
            return
        target, value = match["target"], match["value"] == "True"
        probe.candidates = [dict(c, stand_ins=True) for c in self._candidates_at(target, line)]
        path = self._op_path(target, line)
        if not probe.candidates and not path and not target.startswith("self."):
            # Nothing builds the model (it is a parameter of a helper). The statement's effect does not
            # depend on the model: `.training = x` sets one flag and no submodule's. It is shown on a
            # stand-in holding one Dropout, and the verdict says that it was (see probe.STAND_IN_NOTE).
            probe.candidates = [{"callee": {"stand_in": "module"}, "args": [], "kwargs": {}, "path": [],
                                 "text": "StandIn()", "stand_in_model": target}]
        if value:
            probe.variants = [variant(
                "inert",
                scenario(f"{target}.training = True after eval(): only that flag changes", [
                    EVAL, {"op": "flag", "path": path, "value": True}]),
                scenario(f"{target}.train()", [EVAL, op_call("train", path=path)]))]
        else:
            probe.variants = [variant(
                "stochastic",
                scenario(f"{target}.training = False: only that flag changes",
                         [{"op": "flag", "path": path, "value": False}]),
                scenario(f"{target}.eval()", [op_call("eval", path=path)]))]

    def _plan_mode_call(self, probe: Probe, line: int, match: re.Match) -> None:
        """A line that sets the mode with a method call (the fixed twin of a `.training =` line)."""
        target = match["target"]
        to_eval = match["method"] == "eval" or match["arg"] == "False"
        probe.candidates = self._candidates_at(target, line)
        path = self._op_path(target, line)
        call = op_call(match["method"], {"True": True, "False": False}.get(match["arg"] or ""), path)
        statement = match.group(0).split("#")[0].strip()
        if to_eval:
            probe.variants = [variant("stochastic", scenario(statement, [call]),
                                      scenario(f"{target}.eval()", [op_call("eval", path=path)]))]
        else:
            probe.variants = [variant("inert", scenario(f"{statement} after eval()", [EVAL, call]),
                                      scenario(f"{target}.train()", [EVAL, op_call("train", path=path)]))]

    def gate_dropout_p(self, finding: Finding) -> list:
        """The fix modelint does not offer for `scaled_dot_product_attention(..., dropout_p=p)`:
        `dropout_p=(p if self.training else 0.0)`, so that the fixed twin can be measured."""
        from modelint.finding import Edit, Location

        for node in ast.walk(self.source.tree):
            if isinstance(node, ast.Call) and node.lineno == finding.location.row and \
                    node.col_offset + 1 == finding.location.column:
                for keyword in node.keywords:
                    if keyword.arg == "dropout_p" and keyword.value.end_lineno == keyword.value.lineno:
                        value = keyword.value
                        line = self.source.lines[value.lineno - 1]
                        # ast columns count UTF-8 bytes; modelint's locations count characters.
                        start = len(line.encode("utf-8")[:value.col_offset].decode("utf-8", "replace")) + 1
                        end = len(line.encode("utf-8")[:value.end_col_offset].decode("utf-8", "replace")) + 1
                        text = ast.unparse(value)
                        return [Edit(Location(value.lineno, start), Location(value.lineno, end),
                                     f"({text} if self.training else 0.0)")]
        return []

    def _candidates_at(self, target: str, line: int) -> list[dict]:
        """Candidates for `target` as the function around `line` sees it (its parameters lead to callers);
        `self.encoder` inside an nn.Module class: that class (see `_op_path`)."""
        owner = self.source.enclosing_class(line)
        if owner is not None and target.split(".")[0] == "self":
            path = self._op_path(target, line)  # the forward pass measures the submodule itself
            return [dict(candidate, path=path) for candidate in self.candidates_for_class(owner)]
        function = self._enclosing_function(line)
        if function is None:
            return self.candidates_for_key(target, line, None, [])
        return self.candidates_for_key(target, line, function.name, [a.arg for a in function.args.args])

    def _op_path(self, target: str, line: int) -> list[str]:
        """Where a mode operation on `target` applies, from the module that is built: below `self` in
        an nn.Module class (the class is built), below the built model elsewhere."""
        if target.split(".")[0] == "self" and self.source.enclosing_class(line) is not None:
            return target.split(".")[1:]
        return _split_key(target)[1]

    def _call_at(self, tree: ast.AST, row: int, column: int) -> ast.Call | None:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and node.lineno == row and node.col_offset + 1 == column:
                return node
        return None

    def _plan_call(self, probe: Probe, finding: Finding) -> None:
        """MDL008 outside any nn.Module class (an evaluation function, a functional model): no module
        to build, so the flagged call itself is run, twice, on a stand-in tensor for its first argument
        (the activations), its other arguments as the function's defaults and the file's names give
        them; then the call as modelint's fix writes it. What is measured is the user's own call."""
        row, column = finding.location.row, finding.location.column
        call = self._call_at(self.source.tree, row, column)
        where = f"line {row} is not inside an nn.Module class of this file"
        if call is None or not call.args or isinstance(call.args[0], ast.Starred):
            probe.not_run = f"{where}, and its call has no tensor argument to stand in for"
            return
        if finding.fix is None or not finding.fix.edits:
            probe.not_run = f"{where}, and modelint offers no fix to compare the call with"
            return
        from modelint.fixer import apply_edits

        try:
            fixed_call = self._call_at(ast.parse(apply_edits(self.source.text, finding.fix.edits)), row, column)
        except SyntaxError:
            fixed_call = None
        if fixed_call is None or not fixed_call.args:
            probe.not_run = f"{where}, and the fixed call could not be located"
            return
        placeholder = ast.Name(id="__modelint_input__", ctx=ast.Load())

        def text(node: ast.Call) -> str:
            copy = ast.Call(func=node.func, args=[placeholder, *node.args[1:]], keywords=node.keywords)
            return ast.unparse(copy)

        defaults: dict[str, str] = {}
        function = self._enclosing_function(row)
        if function is not None:
            arguments = function.args
            positional = arguments.posonlyargs + arguments.args
            for arg, default in zip(positional[len(positional) - len(arguments.defaults):], arguments.defaults):
                defaults[arg.arg] = ast.unparse(default)
            for arg, default in zip(arguments.kwonlyargs, arguments.kw_defaults):
                if default is not None:
                    defaults[arg.arg] = ast.unparse(default)
        probe.call = {"flagged": text(call), "fixed": text(fixed_call), "defaults": defaults,
                      "shown": ast.unparse(call)[:120], "fix": finding.fix.message or "the fix"}

    def _container_at(self, line: int) -> str | None:
        """`X` of a `self.X = ...` statement that starts at `line` (the container an MDL009 finding names)."""
        for node in ast.walk(self.source.tree):
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.lineno == line:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and \
                            target.value.id == "self":
                        return target.attr
        return None

    def _enclosing_function(self, line: int):
        best = None
        for node in ast.walk(self.source.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.lineno <= line <= (node.end_lineno or node.lineno):
                if best is None or node.lineno > best.lineno:
                    best = node
        return best

    def _plan_class(self, probe: Probe, line: int, code: str | None, finding: Finding | None) -> None:
        node = self.source.enclosing_class(line)
        if node is None and code == "MDL008" and finding is not None:
            self._plan_call(probe, finding)
            return
        if node is None:
            probe.not_run = f"line {line} is not inside an nn.Module class of this file"
            return
        # A wrapper's module parameters (`backbone`) may get a stand-in: the class's own mode handling is
        # what is measured. Never for a forward pass or a training step, whose effect is the model's.
        probe.candidates = [dict(c, stand_ins=True) for c in self.candidates_for_class(node)]
        overrides = {f.name for f in node.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
        base_fix = scenario("every submodule switched to eval mode, as nn.Module.train(False) does",
                            [{"op": "base", "value": False}])
        if code == "MDL012" and "eval" in overrides and "train" not in overrides:
            probe.variants = [variant(
                "bypass",
                scenario("model.train(False), which skips the eval() override", [op_call("train", False)]),
                scenario("model.eval(), the override", [EVAL]))]
        elif code == "MDL012":
            probe.variants = [variant("stochastic", scenario("after model.eval(), through the train() override",
                                                             [EVAL]), base_fix)]
        elif code == "MDL009":
            attr = self._container_at(line)
            if attr is not None:
                # The one container of the finding, isolated: the other plain containers (and modules built
                # in forward) are registered on both sides, so that a Dropout elsewhere cannot confirm it.
                flagged = scenario(f"after model.eval(), `self.{attr}` left unregistered (any other plain "
                                   f"container registered)", [{"op": "register", "keep": attr, "owner": node.name},
                                                              EVAL])
            else:
                flagged = scenario("after model.eval()", [EVAL])
            probe.variants = [variant("stochastic", flagged,
                                      scenario("submodules registered (nn.ModuleList/ModuleDict), then eval()",
                                               [{"op": "register"}, EVAL]))]
        elif code == "MDL008":
            # Every MDL008 fix of the file at once: a second functional call left as it was would keep
            # the "fixed" module stochastic and hide the effect of this one.
            if self.functional_fixes:
                from modelint.fixer import apply_edits

                fixed = "fix_MDL008"
                self.fixed_sources[fixed] = apply_edits(self.source.text, self.functional_fixes)
                fixed_eval = scenario("after model.eval(), with the fix applied", [EVAL], source=fixed)
                # Only the class that makes the call in training mode: a BatchNorm elsewhere in the
                # model would otherwise show training-mode effects on both sides.
                owner_training = [EVAL, {"op": "flag_type", "type": node.name, "value": True}]
                fixed_train = scenario(f"{node.name} in training mode, with the fix applied", owner_training,
                                       source=fixed)
            else:
                fixed_eval = base_fix
                fixed_train = None
            probe.variants = [variant("stochastic", scenario("after model.eval()", [EVAL]), fixed_eval)]
            if fixed_train is not None:
                probe.variants.append(variant("inert", scenario(f"{node.name} in training mode", owner_training),
                                              fixed_train))
        else:  # a bare line in a class: how does it behave in eval mode?
            probe.variants = [variant("stochastic", scenario("after model.eval()", [EVAL]), base_fix)]
        probe.contains = node.name if code == "MDL012" else None


def plan_file(path: str, text: str, findings: list[Finding], lines: list[int] | None = None,
              constructors: dict[str, str] | None = None, inputs: dict[str, str] | None = None,
              index=None) -> FilePlan:
    """Probes for the probe-able findings of one file, and for bare `lines` (verify PATH:LINE).

    constructors / inputs: [tool.modelint.runtime] probes / inputs, by class name. index: the run's
    ProjectIndex (what calls into other files do), for the static facts.
    """
    planner = Planner(path, text, constructors, index)
    planner.functional_fixes = [edit for f in findings if f.code == "MDL008"
                                for edit in (f.fix.edits if f.fix is not None else planner.gate_dropout_p(f))]
    probes = []
    for number, finding in enumerate(findings):
        probes.append(planner.plan(f"f{number}", finding.location.row, finding.code, finding))
    for line in lines or []:
        probes.append(planner.plan(f"l{line}", line, None, None))
    return FilePlan(path, probes, planner.fixed_sources, planner.input_hint, dict(inputs or {}))
