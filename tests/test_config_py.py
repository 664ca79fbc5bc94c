"""Python config read with `ast` gives what libcst (Gage's way) gives, byte for byte.

`config_py.PythonConfig` reads and patches with the stdlib `ast` and
leaves a file to `config_py_cst.CstConfig` (libcst, the reference) where
it cannot be sure. Every case here is compared with the reference: the
values read, and the text (or the error) of patching each key with values
of every type, on hand-written sources and on generated ones.
"""

from __future__ import annotations

import itertools
import random
import subprocess
import sys

import pytest

from gage_runs import config_py
from gage_runs.config_files import ConfigFormatError
from gage_runs.config_py import PythonConfig
from gage_runs.config_py_cst import CstConfig

SOURCES = [
    "lr = 0.1\nbatch = 32\nepochs = 3\ndropout = 0.2\noptimizer = \"adam\"\n",
    "x = 1",  # no trailing newline
    "a = 0x1F\nb = 1_000\nc = 1e-3\nd = 0o17\ne = 0b101\nf = 1.\ng = .5\nh = 3j\n",
    "a = -1\nb = +2.5\nc = ~3\nd = - 1\ne = -(1)\nf = (-1)\ng = not 1\nh = -True\ni = ~False\n",
    "a = --1\nb = -~1\nc = ~1.5\nd = -None\ne = -'s'\nf = -(-(2))\n",
    "a = True\nb = False\nc = None\nd = ...\ne = (True)\n",
    "a = 'x'\nb = \"y\"\nc = '''z'''\nd = \"\"\"w\"\"\"\ne = ''\nf = \"\"\ng = ''''q'''\n",
    "a = r'x\\d'\nb = R\"y\"\nc = u'z'\nd = b'w'\ne = rb'v'\nf = Br\"u\"\ng = BR'''t'''\n",
    "a = f'x'\nb = 'x' 'y'\nc = ('x'\n     'y')\nd = 'x' f'{1}'\ne = b'x' b'y'\n",
    "a = 'it\\'s'\nb = \"say \\\"hi\\\"\"\nc = 'back\\\\'\nd = '''multi\nline'''\n",
    "a = 'x\\\ny'\nb = \"\"\"a\"b\"\"c\"\"\"\nc = '''a''b'''\n",
    "a = (  # comment\n    1  # more\n)\nb = [\n    1,  # one\n    2,\n]\n",
    "a = b = 7\nc: int = 8\nd: float\ne, f = 1, 2\ng[0] = 1\nh.i = 2\nj += 3\n",
    "a = 1; b = 2; c = 'three'\n",
    "a = 1\na = 2\nb = [1, 2]\nb = 3\n",
    "if True:\n    a = 1\nelse:\n    b = 2\nc = 3\ndef f():\n    d = 4\nclass K:\n    e = 5\n",
    "a = [1, 'two', [3, 4], {'k': 5}, *rest, 6]\nb = [[[1]]]\n",
    "a = {'x': 1, \"y\": 'two', 'z': [3, 4], 'n': {'m': 5}}\n",
    "a = {1: 2, None: 3, 'ok': 4, ('t'): 5, **more, 'x' 'y': 6, f'f': 7, b'b': 8, r'r': 9}\n",
    "a = {'k': 1, 'k': 2}\nb = {'''t''': 3, \"\"\"u\"\"\": 4}\n",
    "s = 'é'; t = 1\nu = 'naïve' ; v = 2.5\nw = ['ü', 3, 'ß', 4]\n",
    "x = '日本語'  ;  y = 42\nz = {'ключ': 'значение', 'n': 7}\n",
    "a = 1\t# tab\nb = 2\nc\t=\t3\n",
    "a = \\\n    1\nb = -\\\n1\n",
    "import os\nx = os.getcwd()\ny = len('abc')\nz = None if x else 1\nw = 1 + 2\nv = (1, 2)\n",
    "a: 'str' = 'annotated'\nb: list = [1]\n(c) = 4\nd.e: int = 5\nf[0]: int = 6\n",
    "a = '\\d'\nb = 1if 1else 2\n",  # warnings from ast stay quiet
    "x = 1\n" * 3 + "# just a comment\n\n\n",
    "",
    "a = 'x'  # 'not this'\nb = \"#\"\n",
    "a = 10**2\nb = 1 if 1 else 2\nc = lambda: 1\nd = [i for i in range(3)]\n",
    "a = 123456789012345678901234567890\nb = 1e400\nc = -1e400\nd = 0.0\ne = -0.0\n",
]

# Sources left to libcst: it reads them or reports its own error.
NOT_AST = [
    "x = 1\r\ny = 2\r\n",
    "x = 1\ry = 2\n",
    "x = (\n",
    "print 'hi'\n",
    "x = 1\n  y = 2\n",
    "def f(:\n",
    "x = 1 = 2\n",
    "\ufeffx = 1\n",
    "a = 1\n\x0cb = 2\n",  # libcst drops the form feed
    "a = 1\x0b\n",  # libcst rejects the vertical tab
    "a = 1\x00\n",
    "(d): int = 5\n",  # libcst fails on these
    "a = 1\ndef f():\n    if x:\n        (d): int = 5\n",
    "a = 1\nclass A:\n    ((b)): int\n",
]

NEW_VALUES = [
    0, 2, -3, 10**30, 0.5, -0.25, 1e100, float("inf"), float("-inf"), 1.0, -0.0, True, False,
    None, "", "plain", "it's", 'say "hi"', "both ' and \"", "a\nb", "back\\slash",
    "tab\there", "ü", "日本", "'''", '"""', "x'''y", "end'", 'end"', "\\", "a\rb", "nul\0",
    "{}", "#", [1, 2],
]


def outcome(make, source: str, changes=None):
    """`make(source)`'s values, or its patched text for `changes`, or the error it raises."""
    try:
        config = make(source)
        return config.values if changes is None else config.patched(changes)
    except ConfigFormatError as e:
        return ("ConfigFormatError", str(e))


def assert_same(source: str, changes=None) -> None:
    expected = outcome(CstConfig, source, changes)
    got = outcome(PythonConfig, source, changes)
    assert got == expected, f"source {source!r}, changes {changes!r}"
    if isinstance(got, dict):  # values of the same types too (1 == 1.0 == True)
        assert [type(v) for v in got.values()] == [type(v) for v in expected.values()]


def by_ast(source: str) -> bool:
    return PythonConfig(source)._cst is None


@pytest.mark.parametrize("source", SOURCES)
def test_values_and_patches_are_libcsts(source):
    assert by_ast(source), "these sources are read without libcst"
    assert_same(source)
    keys = list(CstConfig(source).values)
    for key, value in itertools.product(keys, NEW_VALUES):
        assert_same(source, {key: value})
    for pair in itertools.combinations(keys, 2):
        assert_same(source, dict(zip(pair, ["one", 2], strict=True)))
    if keys:
        assert_same(source, dict.fromkeys(keys, "all"))
        assert_same(source, dict.fromkeys(reversed(keys), -1))


@pytest.mark.parametrize("source", NOT_AST)
def test_unsure_sources_are_left_to_libcst(source):
    with pytest.raises(config_py._Unsure):
        config_py._AstReader(source, {}, {})
    assert_same(source)
    values = outcome(CstConfig, source)
    for key in values if isinstance(values, dict) else []:
        assert_same(source, {key: 5})


def test_a_chained_assignment_is_written_once_with_the_last_key():
    source = "a = b = 7\n"
    assert PythonConfig(source).patched({"a": 1, "b": 2}) == "a = b = 2\n"
    assert_same(source, {"b": 2, "a": 1})


def test_plain_writes_need_no_libcst_and_unsure_ones_are_libcsts():
    source = "lr = 0.1\nname = 'x'\n"
    config = PythonConfig(source)
    assert config.patched({"lr": 0.05, "name": "y"}) == "lr = 0.05\nname = 'y'\n"
    assert config._cst is None
    assert config.patched({"name": "a\\b"}) == CstConfig(source).patched({"name": "a\\b"})
    assert config._cst is not None


def test_reading_and_patching_import_no_libcst():
    code = (
        "import sys\n"
        "from gage_runs.config_py import PythonConfig\n"
        "c = PythonConfig('lr = 0.1\\nopt = \"adam\"\\n')\n"
        "assert c.patched({'lr': 0.05, 'opt': 'sgd'}) == 'lr = 0.05\\nopt = \"sgd\"\\n'\n"
        "assert 'libcst' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


# Generated sources: random statements from pieces, compared the same way.

_ATOMS = [
    "1", "-2", "+3.5", "~4", "0x10", "1e3", "2j", "True", "None", "...", "name", "f(1)",
    "'s'", '"d"', "'''t'''", "r'r\\d'", "b'b'", "'a' 'b'", "f'{x}'", "'é'", "\"it's\"",
    "'x\\'y'", "(1)", "( -1 )", "-(2)", "not 1", "1 + 2", "(1, 2)", "[]", "{}",
]


def _expr(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth < 2 and roll < 0.15:
        items = [_expr(rng, depth + 1) for _ in range(rng.randint(0, 3))]
        if rng.random() < 0.2:
            items.append("*rest")
        sep = rng.choice([", ", ",\n    ", ",  # c\n  "])
        return "[" + sep.join(items) + rng.choice(["", ","] if items else [""]) + "]"
    if depth < 2 and roll < 0.3:
        keys = rng.choices(["'k'", '"j"', "'é'", "1", "b'b'", "'a' 'b'", "None"], k=rng.randint(0, 3))
        items = [f"{k}: {_expr(rng, depth + 1)}" for k in keys]
        if rng.random() < 0.2:
            items.append("**more")
        return "{" + ", ".join(items) + "}"
    atom = rng.choice(_ATOMS)
    return "(" + rng.choice(["", " ", "  # p\n"]) + atom + ")" if rng.random() < 0.15 else atom


def _statement(rng: random.Random) -> str:
    name = rng.choice("abcde")
    form = rng.randrange(7)
    if form == 0:
        return f"{name} = {rng.choice('fgh')} = {_expr(rng)}"
    if form == 1:
        return f"{name}: int = {_expr(rng)}"
    if form == 2:
        return f"{name} = {_expr(rng)}; {rng.choice('fgh')} = {_expr(rng)}"
    if form == 3:
        return f"if x:\n    {name} = {_expr(rng)}"
    if form == 4:
        before = rng.choice(["", "é = 1; ", 's = "ü"; '])
        return f"{before}{name} = {_expr(rng)}  # {name}"
    return f"{name} = {_expr(rng)}"


def test_generated_sources_agree():
    rng = random.Random(20240611)
    fast = 0
    for _ in range(300):
        source = "\n".join(_statement(rng) for _ in range(rng.randint(1, 6))) + "\n"
        assert_same(source)
        fast += by_ast(source)
        keys = list(CstConfig(source).values)
        for key in keys:
            assert_same(source, {key: rng.choice(NEW_VALUES)})
        if len(keys) > 1:
            chosen = rng.sample(keys, 2)
            assert_same(source, {chosen[0]: rng.choice(NEW_VALUES), chosen[1]: "z"})
    assert fast == 300


def test_the_string_token_pattern_is_one_token_only():
    one = ["''", '""', "''''''", "'a'", "'''a'b'''", '"""a""b"""', "'\\''", "r'\\d'",
           "'''\n'''", "'x\\\ny'", "rb'\\''", '""""a"""']
    more = ["'a' 'b'", "'a''b'", "'''a''''''b'''", "'a'\n'b'", "'a", "'a\nb'", "'''a''''"]
    assert [bool(config_py._STRING_TOKEN.match(s)) for s in one] == [True] * len(one)
    assert [bool(config_py._STRING_TOKEN.match(s)) for s in more] == [False] * len(more)
