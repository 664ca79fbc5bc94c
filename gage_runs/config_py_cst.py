"""Python config read and patched with libcst, as Gage 0.1.2 does: the reference.

`config_py.PythonConfig` does the same with the stdlib `ast` (libcst
costs a submit more to import than the rest of it) and hands a file to
`CstConfig` where it cannot be sure of giving the same result;
tests/test_config_py.py checks the two agree. The rules are in
`config_py`'s docstring.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator

import libcst as cst

from .config_files import ConfigFile, ConfigFormatError, Scalar

_Assign = cst.Assign | cst.AnnAssign

_NAMES: dict[str, Scalar] = {"True": True, "False": False, "None": None}


class _NotAValue(Exception):
    """An expression that is not a config value (a call, a name, ...)."""


class CstConfig(ConfigFile):
    """The config values of a Python module's top-level assignments, by libcst."""

    def __init__(self, source: str):
        try:
            self._module = cst.parse_module(source)
        except cst.ParserSyntaxError as e:
            raise ConfigFormatError(f"invalid Python syntax at line {e.raw_line}") from None
        self._nodes: dict[str, cst.BaseExpression] = {}
        self.values = {}
        for assign in _top_level_assigns(self._module):
            for name in _target_names(assign):
                self._read(name, assign.value)

    def _read(self, key: str, node: cst.BaseExpression) -> None:
        """Record `node`'s value under `key`, flattening lists and dicts."""
        if isinstance(node, cst.List):
            for i, element in enumerate(node.elements):
                if isinstance(element, cst.Element):
                    self._read(f"{key}.{i}", element.value)
        elif isinstance(node, cst.Dict):
            for element in node.elements:
                if isinstance(element, cst.DictElement) and isinstance(
                    element.key, cst.SimpleString
                ):
                    self._read(f"{key}.{element.key.raw_value}", element.value)
        else:
            try:
                self.values[key] = _value(node)
            except _NotAValue:
                return
            self._nodes[key] = node

    def patched(self, changes: dict[str, Scalar]) -> str:
        """The source with the value nodes of `changes` replaced."""
        replacements = {
            self._nodes[key]: _value_node(key, self._nodes[key], value)
            for key, value in changes.items()
        }
        return self._module.visit(_Replacer(replacements)).code


def _top_level_assigns(module: cst.Module) -> Iterator[_Assign]:
    for statement in module.body:
        if isinstance(statement, cst.SimpleStatementLine):
            for small in statement.body:
                if isinstance(small, _Assign) and small.value is not None:
                    yield small


def _target_names(assign: _Assign) -> Iterator[str]:
    targets = (
        [t.target for t in assign.targets] if isinstance(assign, cst.Assign) else [assign.target]
    )
    for target in targets:
        if isinstance(target, cst.Name):
            yield target.value


def _value(node: cst.BaseExpression) -> Scalar:
    """The config value of a literal expression, or raise _NotAValue."""
    if isinstance(node, cst.Integer | cst.Float):
        return ast.literal_eval(node.value)
    if isinstance(node, cst.SimpleString):
        return node.raw_value
    if isinstance(node, cst.Name) and node.value in _NAMES:
        return _NAMES[node.value]
    if isinstance(node, cst.UnaryOperation):
        return _unary(node.operator, _value(node.expression))
    raise _NotAValue(node)


def _unary(op: cst.BaseUnaryOp, operand: Scalar) -> Scalar:
    if isinstance(operand, str) or operand is None:
        raise _NotAValue(operand)
    if isinstance(op, cst.Minus):
        return -operand
    if isinstance(op, cst.Plus):
        return +operand
    if isinstance(op, cst.BitInvert) and isinstance(operand, int):
        return ~int(operand)
    raise _NotAValue(op)


def _value_node(key: str, old: cst.BaseExpression, value: Scalar) -> cst.BaseExpression:
    """The expression for `value` in place of `old` (keeping its parentheses)."""
    if isinstance(old, cst.SimpleString) and isinstance(value, str):
        quote = old.quote
        escaped = value.replace(quote[0], "\\" + quote[0])
        code = f"{old.prefix}{quote}{escaped}{quote}"
    else:
        code = repr(value)
    try:
        new = cst.parse_expression(code)
    except cst.ParserSyntaxError:
        raise ConfigFormatError(f"cannot write {key}={value!r} as Python") from None
    return new.with_changes(lpar=old.lpar, rpar=old.rpar)


class _Replacer(cst.CSTTransformer):
    """Swap nodes (by identity) for their replacements."""

    def __init__(self, replacements: dict[cst.CSTNode, cst.CSTNode]):
        super().__init__()
        self._replacements = replacements

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode) -> cst.CSTNode:
        return self._replacements.get(original_node, updated_node)
