"""Python config: top-level global assignments, read with `ast`, patched in place.

As Gage 0.1.2 (`run_config_py.py`): only top-level `Assign` / `AnnAssign`
statements with `Name` targets count (`a = b = 7` gives both), and the
last assignment of a name wins. Values are ints, floats, `True`, `False`,
`None`, strings (their source text between the quotes, not unescaped) and
unary `-`, `+`, `~` over numbers; lists flatten to `key.0`, dicts with
string keys to `key.sub`.

Patching replaces only the source text of the changed values (inside any
parentheses), so the rest of the file is kept byte for byte. A string
written over a string literal keeps its prefix (lowercased) and quotes;
any other value is written as its `repr` (Gage crashes on a non-string
over a string literal; this doesn't).

Gage reads and patches with libcst, which costs a submit more to import
than all the rest of it; this module gives libcst's results with the
stdlib `ast` and leaves the file to libcst (`config_py_cst`) where it
could not be sure to: source `ast` rejects (libcst then reports the
error, or reads what it accepts), source with a control character (a
carriage return; libcst drops a form feed that starts a line) or with a
form libcst cannot parse (`(x): int = 1`), and a string written over a
string literal that is not plainly one token (a value with a backslash,
say). tests/test_config_py.py checks the two agree. Left: valid Python
that libcst fails on in some other way is read here where Gage stops
with a syntax error.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from .config_files import ConfigFile, Scalar

# One string literal token, as Python's tokenizer ends it: a backslash
# escapes the next character (also in raw strings), a one-quote string
# has no raw newline. An implicit concatenation does not match.
_STRING_TOKEN = re.compile(
    r"""(?P<prefix>[A-Za-z]{0,2})(?:
        (?P<q1>'{3})(?P<b1>(?:[^'\\]|\\.|'(?!''))*)'{3}
      | (?P<q2>"{3})(?P<b2>(?:[^"\\]|\\.|"(?!""))*)"{3}
      | (?P<q3>')(?P<b3>(?:[^'\\\n]|\\.)*)'
      | (?P<q4>")(?P<b4>(?:[^"\\\n]|\\.)*)"
    )\Z""",
    re.S | re.X,
)
# Characters ast and libcst read differently: all ASCII controls but tab and newline.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_WRITTEN_TYPES = (bool, int, float, str, type(None))


class _NotAValue(Exception):
    """An expression that is not a config value (a call, a name, ...)."""


class _Unsure(Exception):
    """The `ast` way may not give libcst's result: leave the file to libcst."""


class _Literal(NamedTuple):
    """Where a value is in the source, and the prefix and quotes of a string."""

    start: int
    end: int
    string: tuple[str, str] | None  # (prefix, quote) of a string literal


class PythonConfig(ConfigFile):
    """The config values of a Python module's top-level assignments."""

    def __init__(self, source: str):
        self._source = source
        self._cst: ConfigFile | None = None
        self._literals: dict[str, _Literal] = {}
        self.values = {}
        try:
            _AstReader(source, self.values, self._literals).read()
        except _Unsure:
            self._by_libcst()

    def patched(self, changes: dict[str, Scalar]) -> str:
        """The source with the values of `changes` replaced."""
        if self._cst is None:
            try:
                return self._patched_in_place(changes)
            except _Unsure:
                self._by_libcst()
        assert self._cst is not None
        return self._cst.patched(changes)

    def _by_libcst(self) -> None:
        from .config_py_cst import CstConfig

        self._cst = CstConfig(self._source)
        self.values = self._cst.values

    def _patched_in_place(self, changes: dict[str, Scalar]) -> str:
        edits: dict[tuple[int, int], str] = {}  # by place: of `a = b = 7`, the last key wins
        for key, value in changes.items():
            literal = self._literals[key]
            edits[literal.start, literal.end] = _code(literal, value)
        text = self._source
        for (start, end), code in sorted(edits.items(), reverse=True):
            text = text[:start] + code + text[end:]
        return text


def _code(literal: _Literal, value: Scalar) -> str:
    """The source of `value` written over `literal`, or raise _Unsure."""
    if type(value) not in _WRITTEN_TYPES:
        raise _Unsure(value)
    if literal.string is None or not isinstance(value, str):
        return repr(value)
    prefix, quote = literal.string
    if "\\" in value or "\r" in value or "\0" in value or ("b" in prefix and not value.isascii()):
        raise _Unsure(value)
    escaped = value.replace(quote[0], "\\" + quote[0])
    code = f"{prefix}{quote}{escaped}{quote}"
    if not _STRING_TOKEN.match(code):
        raise _Unsure(value)  # e.g. a newline in a one-quote string: libcst says what it makes
    return code


class _AstReader:
    """Reads a module's config values and where they are, with `ast`."""

    def __init__(self, source: str, values: dict[str, Scalar], literals: dict[str, _Literal]):
        if _CONTROL.search(source):
            raise _Unsure("a control character")  # libcst drops a leading form feed, say
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an invalid escape is not ours to report
                self._module = ast.parse(source)
        except (SyntaxError, ValueError, RecursionError):
            raise _Unsure("not parsed by ast") from None
        if any(_libcst_rejects(node) for node in _statements(self._module.body)):
            raise _Unsure("a form libcst does not parse")
        self._source = source
        self._lines = source.split("\n")
        self._line_starts = [0]
        for line in self._lines:
            self._line_starts.append(self._line_starts[-1] + len(line) + 1)
        self._values = values
        self._literals = literals

    def read(self) -> None:
        for statement in self._module.body:
            if isinstance(statement, ast.Assign):
                targets = statement.targets
            elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
                targets = [statement.target]
            else:
                continue
            for target in targets:
                if isinstance(target, ast.Name):
                    self._read(target.id, statement.value)

    def _read(self, key: str, node: ast.expr) -> None:
        """Record `node`'s value under `key`, flattening lists and dicts."""
        if isinstance(node, ast.List):
            for i, element in enumerate(node.elts):
                if not isinstance(element, ast.Starred):
                    self._read(f"{key}.{i}", element)
        elif isinstance(node, ast.Dict):
            for key_node, value in zip(node.keys, node.values, strict=True):
                string = None if key_node is None else self._string(key_node)
                if string is not None:
                    self._read(f"{key}.{string[2]}", value)
        else:
            try:
                self._values[key] = self._value(node)
            except _NotAValue:
                return
            string = self._string(node)
            quoting = None if string is None else (string[0].lower(), string[1])
            self._literals[key] = _Literal(*self._span(node), quoting)

    def _value(self, node: ast.expr) -> Scalar:
        """The config value of a literal expression, or raise _NotAValue."""
        if isinstance(node, ast.Constant):
            value = node.value
            if value is None or type(value) in (bool, int, float):
                return value
            string = self._string(node)
            if string is not None:
                return string[2]
        elif isinstance(node, ast.UnaryOp):
            return _unary(node.op, self._value(node.operand))
        raise _NotAValue(node)

    def _string(self, node: ast.expr) -> tuple[str, str, str] | None:
        """Prefix, quote and body of a string (or bytes) literal of one token, else None."""
        if not (isinstance(node, ast.Constant) and isinstance(node.value, str | bytes)):
            return None
        return _string_parts(_STRING_TOKEN.match(self._source, *self._span(node)))

    def _span(self, node: ast.expr) -> tuple[int, int]:
        assert node.end_lineno is not None and node.end_col_offset is not None
        return (
            self._offset(node.lineno, node.col_offset),
            self._offset(node.end_lineno, node.end_col_offset),
        )

    def _offset(self, lineno: int, col_bytes: int) -> int:
        """The index in the source of a position `ast` gives (a UTF-8 column)."""
        line = self._lines[lineno - 1]
        col = col_bytes if line.isascii() else len(line.encode()[:col_bytes].decode())
        return self._line_starts[lineno - 1] + col


def _statements(nodes: Iterable[ast.AST]) -> Iterator[ast.AST]:
    """Every statement in `nodes` and in their blocks, at any depth."""
    for node in nodes:
        yield node
        for block in ("body", "orelse", "finalbody", "handlers", "cases"):
            yield from _statements(getattr(node, block, ()))


def _libcst_rejects(statement: ast.AST) -> bool:
    """Python libcst 1.x fails to parse: an annotated target in parentheses, `(x): int`."""
    return isinstance(statement, ast.AnnAssign) and (
        (statement.target.lineno, statement.target.col_offset)
        != (statement.lineno, statement.col_offset)
    )


def _string_parts(match: re.Match[str] | None) -> tuple[str, str, str] | None:
    """(prefix, quote, body) of a `_STRING_TOKEN` match."""
    if match is None:
        return None
    n = next(n for n in "1234" if match[f"q{n}"] is not None)
    return match["prefix"], match[f"q{n}"], match[f"b{n}"]


def _unary(op: ast.unaryop, operand: Scalar) -> Scalar:
    if isinstance(operand, str) or operand is None:
        raise _NotAValue(operand)
    if isinstance(op, ast.USub):
        return -operand
    if isinstance(op, ast.UAdd):
        return +operand
    if isinstance(op, ast.Invert) and isinstance(operand, int):
        return ~int(operand)
    raise _NotAValue(op)
