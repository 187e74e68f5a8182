"""When no module can be built: which function to call so that the flagged line can be watched.

The parent half of `witness.py`: from the finding's line and model key to the function to call (the
top-level function or the method of a top-level class around the line; a closure inside it runs when
it does) and the claim to check there. Only a
model that the function receives (a parameter, or `self.<attr>` of a plain class) can be replaced by
a stand-in; a model the function builds or loads itself is not witnessed. No torch, no user code.
"""

from __future__ import annotations

import ast



def no_module_reason(why: str, tried: str = "") -> str:
    """The `not run` reason when no module could be built (and, if it ran, what the witness met)."""
    return f"no nn.Module to build ({why}); " + (f"{tried}; " if tried else "") + \
        "add `# modelint: probe ClassName(...)`"


def _enclosing_functions(tree: ast.Module, line: int) -> tuple[list[ast.AST], ast.ClassDef | None]:
    """The functions around `line`, outermost first, when the outermost can be called from the module
    (a top-level function, or a method of a top-level class), and that class; ([], None) otherwise."""
    for node in tree.body:
        owner = None
        if isinstance(node, ast.ClassDef) and _spans(node, line):
            owner = node
            node = next((m for m in node.body if isinstance(m, ast.FunctionDef) and _spans(m, line)), None)
        if isinstance(node, ast.FunctionDef) and _spans(node, line):
            chain = [node]
            while True:
                inner = next((n for n in ast.walk(chain[-1]) if n is not chain[-1] and
                              isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef))
                              and _spans(n, line)), None)
                if inner is None:
                    return chain, owner
                if not isinstance(inner, ast.FunctionDef):
                    return [], None
                chain.append(inner)
    return [], None


def _spans(node: ast.AST, line: int) -> bool:
    return node.lineno <= line <= (node.end_lineno or node.lineno)


# Methods only a module has: what a function does with a name says that the name holds a module.
_MODULE_METHODS = frozenset({"eval", "train", "parameters", "named_parameters", "modules", "named_modules",
                             "children", "state_dict", "load_state_dict", "requires_grad_", "buffers"})


def _used_as_modules(scope: ast.AST, names: list[str]) -> list[str]:
    """`netD` / `self.netD` among `names` that `scope` calls module-only methods on."""
    found = []
    for node in ast.walk(scope):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                node.func.attr in _MODULE_METHODS:
            receiver = node.func.value
            text = ast.unparse(receiver) if isinstance(receiver, (ast.Name, ast.Attribute)) else ""
            if text in names and text not in found:
                found.append(text)
    return found


def _parameters(function: ast.FunctionDef) -> list[str]:
    return [a.arg for a in function.args.posonlyargs + function.args.args + function.args.kwonlyargs]


def witness_spec(tree: ast.Module, line: int, key: str, claim: str, code: str | None,
                 why: str | None = None) -> dict | None:
    """The request for `witness.witness()`, or None when the line cannot be reached by calling a
    function of the file with the model handed in. claim: what the finding (or, on a bare line, the
    question `verify` asks) says about the model there: "training", "eval" or "grad"."""
    functions, owner = _enclosing_functions(tree, line)
    if not functions:
        return None
    parts = key.split(".")
    if not all(part.isidentifier() for part in parts):
        return None
    if parts[0] == "self":
        # `self` of the outermost method (a closure sees it too); a nested def rebinding it is not followed.
        if owner is None or len(parts) < 2 or any("self" in _parameters(f) for f in functions[1:]):
            return None
        root, path = ".".join(parts[:2]), parts[2:]
    else:
        # The innermost function binding the name as a parameter; only the outermost can be called,
        # so the model must come through its parameters (a closure reads them).
        binders = [f for f in functions if parts[0] in _parameters(f)]
        if not binders or binders[-1] is not functions[0]:
            return None
        root, path = parts[0], parts[1:]
    function = functions[0]
    # The function's other models (a GAN's discriminator next to the watched generator) get stand-ins
    # too: an optimizer over their parameters, their own eval()/train(), must work for the line to run.
    candidates = _parameters(function)
    scope: ast.AST = function
    if owner is not None:
        scope = owner
        candidates = candidates[1:] + sorted({ast.unparse(n) for n in ast.walk(owner) if isinstance(n, ast.Attribute)
                                              and isinstance(n.value, ast.Name) and n.value.id == "self"})
    others = [name for name in _used_as_modules(scope, candidates) if name != root]
    return {"function": function.name, "owner": owner.name if owner is not None else None, "line": line,
            "root": root, "path": path, "claim": claim, "code": code, "why": why, "modules": others}
