"""The condition reasons the translator can set, read from its source: the string
literals it passes or binds as a reason.

A literal counts as a reason when it is bound to a name containing "reason": in an
assignment, as a parameter default, or passed to such a parameter of a translator
function or class (``Conditions.set(type, status, reason, ...)``,
``BackendError(reason, ...)``); or when it is the first item of a tuple returned by a
``*conflict*`` function."""

from __future__ import annotations

import ast
import pathlib
from collections.abc import Iterator

TRANSLATOR = pathlib.Path(__file__).parents[2] / "twistgw" / "translate"


def _is_reason_name(name: str) -> bool:
    return "reason" in name.lower()


def _literal(node: ast.AST | None) -> Iterator[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        yield node.value


def _names(function: ast.FunctionDef) -> list[str]:
    """A function's parameter names as callers pass them, positional ones first."""
    args = function.args
    names = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs]
    return [name for name in names if name not in ("self", "cls")]


def _parameters(trees: list[ast.Module]) -> dict[str, list[str]]:
    """The parameter names of each translator function, and of each class's
    ``__init__`` under the class's name."""
    found = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):
                found[node.name] = _names(node)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef) and item.name == "__init__":
                        found[node.name] = _names(item)
    return found


def _defaults(function: ast.FunctionDef) -> Iterator[str]:
    """Literal defaults of the parameters named like a reason."""
    args = function.args
    positional = args.posonlyargs + args.args
    defaulted = positional[len(positional) - len(args.defaults) :]
    pairs = list(zip(defaulted, args.defaults, strict=True))
    pairs += zip(args.kwonlyargs, args.kw_defaults, strict=True)
    for arg, default in pairs:
        if default is not None and _is_reason_name(arg.arg):
            yield from _literal(default)


def _assigned(node: ast.Assign) -> Iterator[str]:
    for target in node.targets:
        if isinstance(target, ast.Name) and _is_reason_name(target.id):
            yield from _literal(node.value)
        elif isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
            for name, value in zip(target.elts, node.value.elts, strict=True):
                if isinstance(name, ast.Name) and _is_reason_name(name.id):
                    yield from _literal(value)


def _call_name(call: ast.Call) -> str | None:
    if isinstance(call.func, ast.Name):
        return call.func.id
    if isinstance(call.func, ast.Attribute):
        return call.func.attr
    return None


def _called(call: ast.Call, parameters: dict[str, list[str]]) -> Iterator[str]:
    params = parameters.get(_call_name(call) or "", [])
    for param, arg in zip(params, call.args, strict=False):
        if _is_reason_name(param):
            yield from _literal(arg)
    for keyword in call.keywords:
        if keyword.arg is not None and _is_reason_name(keyword.arg):
            yield from _literal(keyword.value)


def _returned(function: ast.FunctionDef) -> Iterator[str]:
    if "conflict" not in function.name:
        return
    for node in ast.walk(function):
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple):
            yield from _literal(node.value.elts[0])


def translator_reasons() -> set[str]:
    """Every reason literal in twistgw/translate/."""
    trees = [ast.parse(path.read_text()) for path in sorted(TRANSLATOR.glob("*.py"))]
    parameters = _parameters(trees)
    found: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Call):
                found.update(_called(node, parameters))
            elif isinstance(node, ast.Assign):
                found.update(_assigned(node))
            elif isinstance(node, ast.FunctionDef):
                found.update(_defaults(node))
                found.update(_returned(node))
    return found
