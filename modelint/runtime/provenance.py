"""Where a model comes from and what its constructor is given, worked out from the source text.

`Resolver.builds_for(expr)` follows a model expression back to the calls that build it: a local
or module-level assignment, a function's parameter to the project's calls of that function
(`evaluate(model, ...)` called from `train.py`), `self.model` to its assignment in the class and
`__init__`'s parameter to the class's constructor calls. `Resolver.argument(expr)` turns a
constructor argument into something the probe child can rebuild: a literal folded from literals,
module-level constants, simple arithmetic, `argparse` defaults and config-class defaults; a
reference to a class or function (`BasicBlock`, `nn.ReLU`); a nested build; or, in the flagged
file only, the expression's text. What none of these gives is left to the child's guesses.

Build spec (JSON for the child):
  {"callee": ref, "args": [arg...], "kwargs": {name: arg}, "site": "file.py:12", "text": "Net(3, p=0.5)"}
  ref: {"file": path, "name": "Net"} (a project file) | {"module": "torchvision", "name": "models.resnet18"}
  arg: {"value": "16"} | {"ref": ref} | {"build": spec} | {"expr": "len(vocab)"} (flagged file's namespace)
No torch, no user code: this runs in the linting process.
"""

from __future__ import annotations

import ast
import operator
import os

from modelint.runtime.project_scan import FileIndex, Project

CHAIN_METHODS = frozenset({"to", "cuda", "cpu", "eval", "train", "double", "float", "half", "bfloat16",
                           "requires_grad_", "share_memory", "type", "to_empty"})
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
        ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos, ast.Not: operator.not_}
_BUILTINS = {"int": int, "float": float, "round": round, "max": max, "min": min, "abs": abs, "len": len,
             "sum": sum, "tuple": tuple, "list": list, "bool": bool}
_LOADERS = ("torch.load", "torch.jit.load", "from_pretrained", "load_from_checkpoint", "joblib.load", "pickle.load")
MAX_DEPTH = 5


class Unresolved(Exception):
    pass


def _literal(value) -> bool:
    try:
        return ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return False


def unwrap_chain(expr: ast.expr) -> ast.expr:
    """`Net(3).to(device).eval()` -> `Net(3)`."""
    while isinstance(expr, ast.Call) and isinstance(expr.func, ast.Attribute) and \
            expr.func.attr in CHAIN_METHODS and isinstance(expr.func.value, (ast.Call, ast.Name, ast.Attribute)):
        expr = expr.func.value
    return expr


class Resolver:
    def __init__(self, project: Project) -> None:
        self.project = project
        self.notes: list[str] = []  # why a model could not be followed (`loaded with torch.load`)

    # --- scopes ------------------------------------------------------------------------------

    @staticmethod
    def _assignments(scope: ast.AST, name: str, before: int | None) -> list[ast.expr]:
        """Values assigned to plain `name` in `scope` (not in nested functions), nearest above `before` first."""
        found = []
        nodes = scope.body if isinstance(scope, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)) else []
        stack = list(nodes)
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for target in targets:
                    value = _element_for(target, node.value, name)
                    if value is not None:
                        found.append((node.lineno, value))
            stack.extend(ast.iter_child_nodes(node))
        found.sort(key=lambda n: (before is not None and n[0] >= before, -n[0]))
        return [value for _line, value in found]

    def _function(self, index: FileIndex, node: ast.AST):
        scope = index.enclosing(node)
        while scope is not None and not isinstance(scope, (ast.FunctionDef, ast.AsyncFunctionDef)):
            scope = index.enclosing(scope)
        return scope

    def _class(self, index: FileIndex, node: ast.AST) -> ast.ClassDef | None:
        scope = index.enclosing(node)
        while scope is not None and not isinstance(scope, ast.ClassDef):
            scope = index.enclosing(scope)
        return scope

    def _callers(self, index: FileIndex, function, name: str) -> list[tuple[FileIndex, ast.expr]]:
        """The values passed as parameter `name` of `function` by its calls in the project."""
        params = [a.arg for a in function.args.posonlyargs + function.args.args]
        owner = index.enclosing(function)
        if isinstance(owner, ast.ClassDef):
            if function.name == "__init__":
                calls = self.project.calls_of(index.path, owner.name)
            else:  # `self.evaluate(model)` / `trainer.evaluate(model)` in this file
                calls = [(index, n) for n in ast.walk(index.tree) if isinstance(n, ast.Call) and
                         isinstance(n.func, ast.Attribute) and n.func.attr == function.name]
            params = params[1:]
        elif owner is None:
            calls = self.project.calls_of(index.path, function.name)
        else:
            calls = []
        if name not in params:
            return []
        position = params.index(name)
        values = []
        for caller, call in calls:
            head = call.args[:position + 1]
            if len(head) == position + 1 and not any(isinstance(a, ast.Starred) for a in head):
                value = head[-1]
            else:
                value = next((k.value for k in call.keywords if k.arg == name), None)
            if value is not None:
                values.append((caller, value))
        return values

    def _name_values(self, index: FileIndex, name: str, at: ast.AST, depth: int):
        """(file, value, node to resolve it at) for what `name` holds at `at`: local assignments, a
        parameter's default or callers' arguments, module-level assignments and imports."""
        function = self._function(index, at)
        if function is not None:
            local = self._assignments(function, name, getattr(at, "lineno", None))
            if local:
                return [(index, value, value) for value in local]
            arguments = function.args
            positional = arguments.posonlyargs + arguments.args
            defaults = dict(zip([a.arg for a in positional][len(positional) - len(arguments.defaults):],
                                arguments.defaults))
            defaults.update({a.arg: d for a, d in zip(arguments.kwonlyargs, arguments.kw_defaults) if d is not None})
            if name in [a.arg for a in positional + arguments.kwonlyargs]:
                found = [(caller, value, value) for caller, value in self._callers(index, function, name)] \
                    if depth < MAX_DEPTH else []
                if name in defaults and defaults[name] is not None:
                    found.append((index, defaults[name], defaults[name]))
                return found
        module_level = self._assignments(index.tree, name, None)
        if module_level:
            return [(index, value, value) for value in module_level]
        found = self.project.definition(index, name)
        if found is not None and isinstance(found[1], ast.expr):
            return [(found[0], found[1], found[1])]
        return []

    def _self_values(self, index: FileIndex, attr: str, at: ast.AST):
        """Values assigned to `self.<attr>` in the class around `at` and its project base classes (a
        class's `__init__` first, then its other methods, then class attributes and dataclass fields)."""
        owner = self._class(index, at)
        if owner is None:
            return []
        found, queue, seen = [], [(index, owner)], set()
        while queue and len(seen) < 8:
            where, klass = queue.pop(0)
            if id(klass) in seen:
                continue
            seen.add(id(klass))
            found += [(where, value, value) for value in self._class_assignments(klass, attr)]
            for base in klass.bases:
                name = base.id if isinstance(base, ast.Name) else None
                found_base = self.project.definition(where, name) if name else None
                if found_base is not None and isinstance(found_base[1], ast.ClassDef):
                    queue.append(found_base)
        return found

    @staticmethod
    def _class_assignments(owner: ast.ClassDef, attr: str) -> list[ast.expr]:
        ranked = []
        for method in owner.body:
            if isinstance(method, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(method):
                    if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                        if any(isinstance(t, ast.Attribute) and t.attr == attr and isinstance(t.value, ast.Name)
                               and t.value.id == "self" for t in targets):
                            ranked.append((0 if method.name == "__init__" else 1, node.value))
        for node in owner.body:  # dataclass fields and class attributes: `n_d: int = 8`
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.target.id == attr \
                    and node.value is not None:
                ranked.append((2, node.value))
            if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == attr for t in node.targets):
                ranked.append((2, node.value))
        return [value for _, value in sorted(ranked, key=lambda r: r[0])]

    # --- values --------------------------------------------------------------------------------

    def fold(self, index: FileIndex, expr: ast.expr, depth: int = 0):
        """The literal value of `expr` as the program would compute it, or Unresolved."""
        if depth > 12:
            raise Unresolved
        if isinstance(expr, ast.Constant):
            return expr.value
        if isinstance(expr, (ast.Tuple, ast.List)):
            items = [self.fold(index, e, depth + 1) for e in expr.elts if not isinstance(e, ast.Starred)]
            if len(items) != len(expr.elts):
                raise Unresolved
            return tuple(items) if isinstance(expr, ast.Tuple) else items
        if isinstance(expr, ast.Dict):
            if None in expr.keys:
                raise Unresolved
            return {self.fold(index, k, depth + 1): self.fold(index, v, depth + 1) for k, v in zip(expr.keys, expr.values)}
        if isinstance(expr, ast.BinOp) and type(expr.op) in _OPS:
            left, right = self.fold(index, expr.left, depth + 1), self.fold(index, expr.right, depth + 1)
            if isinstance(expr.op, ast.Pow) and (not isinstance(right, (int, float)) or abs(right) > 64):
                raise Unresolved
            if isinstance(expr.op, ast.Mult) and (isinstance(left, (str, list, tuple)) or
                                                  isinstance(right, (str, list, tuple))):
                if (left if isinstance(left, int) else right) > 10_000:
                    raise Unresolved
            try:
                return _OPS[type(expr.op)](left, right)
            except Exception:  # noqa: BLE001 - 1 / 0, "a" - 1
                raise Unresolved from None
        if isinstance(expr, ast.UnaryOp) and type(expr.op) in _UNARY:
            try:
                return _UNARY[type(expr.op)](self.fold(index, expr.operand, depth + 1))
            except Unresolved:
                raise
            except Exception:  # noqa: BLE001
                raise Unresolved from None
        if isinstance(expr, ast.Call) and isinstance(expr.func, ast.Name) and expr.func.id in _BUILTINS \
                and not expr.keywords and expr.func.id not in self._shadowed(index):
            try:
                return _BUILTINS[expr.func.id](*[self.fold(index, a, depth + 1) for a in expr.args])
            except Unresolved:
                raise
            except Exception:  # noqa: BLE001
                raise Unresolved from None
        if isinstance(expr, ast.Call) and ast.unparse(expr.func) in ("field", "dataclasses.field"):
            keywords = {k.arg: k.value for k in expr.keywords}
            if "default" in keywords:
                return self.fold(index, keywords["default"], depth + 1)
            factory = keywords.get("default_factory")
            if isinstance(factory, ast.Name) and factory.id in ("list", "dict", "tuple", "set"):
                return {"list": [], "dict": {}, "tuple": (), "set": set()}[factory.id]
            raise Unresolved
        if isinstance(expr, ast.Subscript):
            base, key = self.fold(index, expr.value, depth + 1), self.fold(index, expr.slice, depth + 1)
            try:
                return base[key]
            except Exception:  # noqa: BLE001
                raise Unresolved from None
        if isinstance(expr, ast.Name):
            if expr.id in ("True", "False", "None"):
                return {"True": True, "False": False, "None": None}[expr.id]
            for where, value, _ in self._name_values(index, expr.id, expr, depth + 1):
                try:
                    return self.fold(where, value, depth + 1)
                except Unresolved:
                    continue
            raise Unresolved
        if isinstance(expr, ast.Attribute):
            return self._fold_attribute(index, expr, depth)
        raise Unresolved

    def _shadowed(self, index: FileIndex) -> set[str]:
        return set(index.defs) | set(index.imports) | set(index.constants)

    def _fold_attribute(self, index: FileIndex, expr: ast.Attribute, depth: int):
        base = expr.value
        if isinstance(base, ast.Name) and base.id == "self":
            computed = False  # set from data somewhere (`self.input_dim = X.shape[1]`)
            for where, value, _ in self._self_values(index, expr.attr, expr):
                try:
                    folded = self.fold(where, value, depth + 1)
                except Unresolved:
                    computed = True
                    continue
                if folded is None and computed:
                    raise Unresolved  # a `None` placeholder for what the data decides
                return folded
            raise Unresolved
        if isinstance(base, ast.Name):
            # `cfg.hidden` where cfg = Config(...) / `Config.hidden`: the keyword or the class default.
            holders = [(index, base)] + [(w, unwrap_chain(v)) for w, v, _ in
                                          self._name_values(index, base.id, expr, depth + 1)]
            for where, holder in holders:
                klass, keywords = holder, {}
                if isinstance(holder, ast.Call):
                    klass, keywords = holder.func, {k.arg: k.value for k in holder.keywords if k.arg}
                if expr.attr in keywords:
                    return self.fold(where, keywords[expr.attr], depth + 1)
                if isinstance(klass, ast.Name):
                    found = self.project.definition(where, klass.id)
                    if found is not None and isinstance(found[1], ast.ClassDef):
                        for node in found[1].body:
                            target = node.target if isinstance(node, ast.AnnAssign) else \
                                node.targets[0] if isinstance(node, ast.Assign) and len(node.targets) == 1 else None
                            if isinstance(target, ast.Name) and target.id == expr.attr and node.value is not None:
                                return self.fold(found[0], node.value, depth + 1)
            # `args.lr` with `parser.add_argument("--lr", default=...)` in this file or one it imports.
            for where in [index] + self._imported_files(index):
                if expr.attr in where.argparse:
                    return self.fold(where, where.argparse[expr.attr], depth + 1)
        raise Unresolved

    def _imported_files(self, index: FileIndex) -> list[FileIndex]:
        out = []
        for module, original, level in index.imports.values():
            for dotted in ([module, f"{module}.{original}"] if original else [module]):
                path = self.project.module_file(index.path, dotted, level)
                other = self.project.index(path) if path else None
                if other is not None and other not in out and other is not index:
                    out.append(other)
        return out

    # --- references, builds, arguments ---------------------------------------------------------

    def reference(self, index: FileIndex, expr: ast.expr) -> dict | None:
        """A class/function named by `expr` (`Net`, `models.Net`, `nn.ReLU`, `torchvision.models.resnet18`)."""
        parts = []
        node = expr
        while isinstance(node, ast.Attribute):
            parts.insert(0, node.attr)
            node = node.value
        if not isinstance(node, ast.Name):
            return None
        head = node.id
        if not parts and head in index.defs:
            return {"file": index.path, "name": head}
        if head in index.imports:
            module, original, level = index.imports[head]
            if original is None:  # `import torchvision` / `import numpy as np`
                path = self.project.module_file(index.path, module, level)
                if path and len(parts) == 1:
                    return {"file": path, "name": parts[0]}
                return {"module": module, "name": ".".join(parts)} if parts else None
            path = self.project.module_file(index.path, module, level)
            if path is not None:
                found = self.project.definition(index, head)
                if found is not None and isinstance(found[1], (ast.ClassDef, ast.FunctionDef)) and not parts:
                    return {"file": found[0].path, "name": found[1].name}
                return None
            if level:
                return None
            return {"module": module, "name": ".".join([original, *parts])}
        if not parts and head in index.constants:  # `Model = Net` aliases
            value = index.constants[head]
            if isinstance(value, (ast.Name, ast.Attribute)):
                return self.reference(index, value)
        return None

    def build(self, index: FileIndex, call: ast.Call, depth: int = 0) -> dict | None:
        """A build spec for `call` (a class or a factory function), or None."""
        callee = self.reference(index, call.func)
        if callee is None:
            return None
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            return None
        return {"callee": callee, "args": [self.argument(index, a, depth + 1) for a in call.args],
                "kwargs": {k.arg: self.argument(index, k.value, depth + 1) for k in call.keywords},
                "site": f"{os.path.basename(index.path)}:{call.lineno}", "text": ast.unparse(call)[:200]}

    def argument(self, index: FileIndex, expr: ast.expr, depth: int = 0) -> dict:
        try:
            value = self.fold(index, expr)
            if _literal(value):
                return {"value": repr(value)}
        except Unresolved:
            pass
        except (RecursionError, MemoryError, OverflowError):
            pass
        if depth < MAX_DEPTH:
            if isinstance(expr, (ast.Name, ast.Attribute)):
                ref = self.reference(index, expr)
                if ref is not None:
                    return {"ref": ref}
                builds = self.builds_for(index, expr, depth + 1)
                if builds:
                    return {"build": builds[0]}
            elif isinstance(expr, ast.Call):
                inner = unwrap_chain(expr)
                if inner is not expr:  # `encoder.to(device)`
                    return self.argument(index, inner, depth + 1)
                spec = self.build(index, inner, depth + 1)
                if spec is not None:
                    return {"build": spec}
        if os.path.abspath(index.path) == self.project.flagged:
            return {"expr": ast.unparse(expr)}
        return {"unknown": ast.unparse(expr)[:80]}

    def builds_for(self, index: FileIndex, expr: ast.expr, depth: int = 0, seen: set | None = None) -> list[dict]:
        """Build specs for the module `expr` holds, the nearest construction first."""
        seen = set() if seen is None else seen
        if depth > MAX_DEPTH or (index.path, id(expr)) in seen:
            return []
        seen.add((index.path, id(expr)))
        expr = unwrap_chain(expr)
        if isinstance(expr, ast.Call):
            text = ast.unparse(expr.func)
            if text.endswith(_LOADERS) or text.rsplit(".", 1)[-1] in ("load", "load_state_dict"):
                self.notes.append(f"{os.path.basename(index.path)}:{expr.lineno} loads it (`{text}(...)`)")
                checkpoint = self._hugging_face(index, expr, depth)
                return [checkpoint] if checkpoint is not None else []
            if text in ("copy.deepcopy", "deepcopy") and expr.args:
                return self.builds_for(index, expr.args[0], depth + 1, seen)
            spec = self.build(index, expr, depth)
            return [spec] if spec is not None else []
        values = []
        if isinstance(expr, ast.Name):
            values = self._name_values(index, expr.id, expr, depth + 1)
        elif isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
            values = self._self_values(index, expr.attr, expr)
        found = []
        for where, value, _ in values:
            for spec in self.builds_for(where, value, depth + 1, seen):
                if spec not in found:
                    found.append(spec)
        return found

    def _hugging_face(self, index: FileIndex, call: ast.Call, depth: int) -> dict | None:
        """`AutoModel.from_pretrained(name, num_labels=2)` of a transformers class: a build spec that the
        child turns into the same class built from a small configuration (see build.Builder.from_pretrained)."""
        if not (isinstance(call.func, ast.Attribute) and call.func.attr == "from_pretrained"):
            return None
        callee = self.reference(index, call.func.value)
        if callee is None or (callee.get("module") or "").split(".")[0] != "transformers":
            return None
        if any(isinstance(a, ast.Starred) for a in call.args) or any(k.arg is None for k in call.keywords):
            return None
        return {"callee": callee, "args": [self.argument(index, a, depth + 1) for a in call.args[:1]],
                "kwargs": {k.arg: self.argument(index, k.value, depth + 1) for k in call.keywords},
                "loader": "from_pretrained", "site": f"{os.path.basename(index.path)}:{call.lineno}",
                "text": ast.unparse(call)[:200]}

    def builds_at(self, index: FileIndex, text: str, line: int) -> list[dict]:
        """Build specs for the model expression `text` (`model`, `self.model`) as seen at `line`."""
        try:
            expr = ast.parse(text, mode="eval").body
        except SyntaxError:
            return []
        expr.lineno = line  # type: ignore[attr-defined]
        scope = None
        for node in ast.walk(index.tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.lineno <= line <= (node.end_lineno or node.lineno):
                if scope is None or node.lineno > scope.lineno:
                    scope = node
        if scope is None:  # module level: the nearest class around the line, if any
            for node in ast.walk(index.tree):
                if isinstance(node, ast.ClassDef) and node.lineno <= line <= (node.end_lineno or node.lineno):
                    scope = node
        if scope is not None:
            index.parents[id(expr)] = scope
        return self.builds_for(index, expr)

    def is_module_class(self, index: FileIndex, klass: ast.ClassDef, depth: int = 0) -> bool:
        """Does `klass` derive from nn.Module, through base classes defined anywhere in the project?"""
        for base in klass.bases:
            text = ast.unparse(base)
            if text.endswith(("nn.Module", "Module")) or "LightningModule" in text:
                return True
            found = self.project.definition(index, text) if isinstance(base, ast.Name) and depth < 8 else None
            if found is not None and isinstance(found[1], ast.ClassDef) and found[1] is not klass and \
                    self.is_module_class(found[0], found[1], depth + 1):
                return True
        return False


def _element_for(target: ast.expr, value: ast.expr, name: str) -> ast.expr | None:
    """What `name` gets from `target = value`: the value for `name = value`, the matching element for
    `best_loss, best = loss, copy.deepcopy(model)`; None when it binds no `name` we can follow."""
    if isinstance(target, ast.Name):
        return value if target.id == name else None
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)) \
            and len(target.elts) == len(value.elts) \
            and not any(isinstance(e, ast.Starred) for e in (*target.elts, *value.elts)):
        for element, bound in zip(target.elts, value.elts):
            found = _element_for(element, bound, name)
            if found is not None:
                return found
    return None
