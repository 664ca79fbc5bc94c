"""Gage files: project discovery, loading, validation, ops and the runs dir.

Behaviour follows gage 0.1.2 (`project_util.py`, `gagefile.py`,
`run_context.py`, `var.py`), except that a Gage file is validated when it
is loaded (gage only validates in `gage check`) and every failure is a
one-line `GageFileError`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from functools import cache
from typing import TYPE_CHECKING, Any, NamedTuple

from .datafile import DataFileError, one_line, parse_data
from .errors import GageFileError, OpNotFound
from .schema_check import SchemaCheck
from .types import Data, OpDef, OpRef

if TYPE_CHECKING:
    import jsonschema
    from jsonschema import ValidationError as _Error

__all__ = [
    "load_project_op",
    "GAGEFILE_NAMES",
    "PROJECT_MARKERS",
    "GageFile",
    "find_gagefile",
    "find_project_dir",
    "get_opdef",
    "load_gagefile",
    "project_namespace",
    "resolve_runs_dir",
]

PROJECT_MARKERS = (
    ".gage",
    "gage.json",
    "gage.toml",
    "gage.yaml",
    "gageconfig.json",
    "gageconfig.toml",
    "gageconfig.yaml",
    "pyproject.toml",
    ".vscode",
    ".git",
)

GAGEFILE_NAMES = (
    os.path.join(".gage", "gage.toml"),
    os.path.join(".gage", "gage.yaml"),
    os.path.join(".gage", "gage.json"),
    "gage.toml",
    "gage.yaml",
    "gage.json",
)

# What each format calls a mapping, for messages.
_TABLE_WORD = {".toml": "table", ".json": "object", ".yaml": "mapping", ".yml": "mapping"}


class GageFile:
    """A loaded Gage file: op names mapped to op data, plus `$` settings."""

    def __init__(self, filename: str, data: Data):
        self.filename = filename
        self._data = data

    def __repr__(self) -> str:
        return f'<GageFile "{self.filename}">'

    def as_json(self) -> Data:
        return self._data

    def get_runs_dir(self) -> str | None:
        return self._data.get("$runs-dir")

    def get_operations(self) -> dict[str, OpDef]:
        return {
            name: OpDef(name, data, self.filename)
            for name, data in self._data.items()
            if not name.startswith("$")
        }


# =================================================================
# Project dir and Gage file lookup
# =================================================================


def find_project_dir(start: str) -> str | None:
    """Return the nearest dir from `start` up that has a Gage project marker."""
    dirname = os.path.abspath(start)
    while True:
        if _has_project_marker(dirname):
            return dirname
        parent = os.path.dirname(dirname)
        if parent == dirname:
            return None
        dirname = parent


def _has_project_marker(dirname: str) -> bool:
    return any(os.path.exists(os.path.join(dirname, name)) for name in PROJECT_MARKERS)


def find_gagefile(project_dir: str) -> str | None:
    """Return the path of the project's Gage file, in gage's lookup order."""
    for name in GAGEFILE_NAMES:
        path = os.path.join(project_dir, name)
        if os.path.isfile(path):
            return path
    return None


def project_namespace(project_dir: str) -> str:
    """Return the op namespace for a project: its real dir name, spaces as `-`."""
    return re.sub(r"\s", "-", os.path.basename(os.path.realpath(project_dir)))


# =================================================================
# Runs dir
# =================================================================


def resolve_runs_dir(
    project_dir: str | None,
    gagefile: GageFile | None,
    override: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> str:
    """Return the absolute runs dir, resolved as gage resolves it.

    In order: `override` (`--runs-dir`), `GAGE_RUNS`, `RUNS_DIR`, the Gage
    file's `$runs-dir` joined to the project dir, `<project>/.gage/runs`,
    `~/.gage/runs`. Pass `gagefile=None` if the Gage file is missing or
    broken (gage then uses the project default). Relative paths are relative
    to the cwd; a leading `~` is expanded.
    """
    path = (
        override
        or env.get("GAGE_RUNS")
        or env.get("RUNS_DIR")
        or _project_runs_dir(project_dir, gagefile)
        or os.path.join("~", ".gage", "runs")
    )
    return os.path.abspath(os.path.expanduser(path))


class RunsDirSource(NamedTuple):
    """A runs dir, where it came from in words, and whether the project chose it."""

    path: str
    source: str
    from_project: bool  # the Gage file's `$runs-dir` or the project's `.gage/runs`


def runs_dir_source(
    start: str,
    override: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> RunsDirSource:
    """The runs dir every command uses from `start`, and where it came from.

    The order of `resolve_runs_dir` with the project found from `start`
    as Gage finds it; a missing or broken Gage file means the project's
    default runs dir, as in Gage.
    """
    project_dir = find_project_dir(start)
    gagefile = None
    path = find_gagefile(project_dir) if project_dir else None
    if path:
        try:
            gagefile = load_gagefile(path)
        except GageFileError:
            gagefile = None
    runs_dir = resolve_runs_dir(project_dir, gagefile, override, env)
    if override:
        return RunsDirSource(runs_dir, "--runs-dir", False)
    for name in ("GAGE_RUNS", "RUNS_DIR"):
        if env.get(name):
            return RunsDirSource(runs_dir, name, False)
    if project_dir and gagefile is not None and gagefile.get_runs_dir():
        return RunsDirSource(runs_dir, f"$runs-dir of {path}", True)
    if project_dir:
        return RunsDirSource(runs_dir, f"the project {project_dir}", True)
    return RunsDirSource(runs_dir, "the default, no project here", False)


def _project_runs_dir(project_dir: str | None, gagefile: GageFile | None) -> str | None:
    if not project_dir:
        return None
    configured = gagefile.get_runs_dir() if gagefile else None
    if configured:
        return os.path.join(project_dir, configured)
    return os.path.join(project_dir, ".gage", "runs")


# =================================================================
# Operations
# =================================================================


def load_project_op(project_dir: str, op_name: str | None) -> tuple[GageFile, OpDef, OpRef]:
    """The project's Gage file, the op (the default op if `op_name` is None),
    and the op's reference (namespace: the project dir's name)."""
    path = find_gagefile(project_dir)
    if path is None:
        names = ", ".join(GAGEFILE_NAMES)
        raise GageFileError(f"no Gage file in {project_dir} (looked for {names})")
    gagefile = load_gagefile(path)
    opdef = get_opdef(gagefile, op_name)
    return gagefile, opdef, OpRef(project_namespace(project_dir), opdef.name)


def get_opdef(gagefile: GageFile, name: str | None) -> OpDef:
    """Return the op called `name`, or the default op if `name` is None.

    The default op is the only op, or else the first op (by name) with
    `default` set, as in gage.
    """
    opdefs = gagefile.get_operations()
    if name is not None:
        return _named_opdef(gagefile, opdefs, name)
    return _default_opdef(gagefile, opdefs)


def _named_opdef(gagefile: GageFile, opdefs: dict[str, OpDef], name: str) -> OpDef:
    try:
        return opdefs[name]
    except KeyError:
        where = _display_path(gagefile.filename)
        if not opdefs:
            raise OpNotFound(f"{where} defines no operations (looking for '{name}')") from None
        raise OpNotFound(
            f"{where} has no operation '{name}'{_did_you_mean(name, opdefs)}"
            f" (available: {_op_list(opdefs)})"
        ) from None


def _default_opdef(gagefile: GageFile, opdefs: dict[str, OpDef]) -> OpDef:
    if len(opdefs) == 1:
        return next(iter(opdefs.values()))
    for name in sorted(opdefs):
        if opdefs[name].get_default():
            return opdefs[name]
    where = _display_path(gagefile.filename)
    if not opdefs:
        raise OpNotFound(f"{where} defines no operations")
    raise OpNotFound(
        f"{where} has no default operation: specify one of {_op_list(opdefs)}"
        " (or set 'default = true' on one)"
    )


def _op_list(opdefs: Iterable[str]) -> str:
    return ", ".join(sorted(opdefs))


def _did_you_mean(name: str, choices: Iterable[str]) -> str:
    from difflib import get_close_matches  # only for a name that is not there

    matches = get_close_matches(name, list(choices), n=1)
    return f" (did you mean '{matches[0]}'?)" if matches else ""


# =================================================================
# Loading
# =================================================================


def load_gagefile(path: str) -> GageFile:
    """Load and validate a Gage file (TOML, YAML or JSON, by extension)."""
    where = _display_path(path)
    ext = os.path.splitext(path)[1].lower()
    if ext not in (".toml", ".yaml", ".yml", ".json"):
        raise GageFileError(f"{where}: unsupported file type (expected .toml, .yaml or .json)")
    try:
        data = parse_data(_read_text(path, where), ext)
    except DataFileError as e:
        raise GageFileError(f"{where}: {e}") from None
    if data is None:  # an empty YAML file
        data = {}
    _validate(data, where, _TABLE_WORD[ext])
    return GageFile(path, data)


def _display_path(path: str) -> str:
    """`path` relative to the cwd if it is under it, else as given."""
    rel = os.path.relpath(path)
    return path if rel == os.pardir or rel.startswith(os.pardir + os.sep) else rel


def _read_text(path: str, where: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        raise GageFileError(f"{where}: file does not exist") from None
    except UnicodeDecodeError as e:
        raise GageFileError(f"{where}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise GageFileError(f"{where}: cannot read file: {e.strerror}") from None


# =================================================================
# Validation
# =================================================================


def _validate(data: Any, where: str, table: str) -> None:
    if not isinstance(data, dict):
        raise GageFileError(
            f"{where}: expected {_a(table)} of operations at the top level,"
            f" got {_describe(data, table)}"
        )
    _check_keys(data, [], where)
    if _schema_check().is_valid(data):
        return  # jsonschema (slow to import) is only asked to explain a failure
    error = _most_relevant(_validator().iter_errors(data))
    if error is not None:
        raise GageFileError(f"{where}: {_schema_error_message(error, table)}")


@cache
def _schema() -> Data:
    # Beside this module (a plain open: importlib.resources costs a start-up ~10 ms).
    with open(os.path.join(os.path.dirname(__file__), "gagefile.schema.json"), "rb") as f:
        return json.loads(f.read())


@cache
def _schema_check() -> SchemaCheck:
    return SchemaCheck(_schema())


@cache
def _validator() -> jsonschema.Draft202012Validator:
    import jsonschema

    return jsonschema.Draft202012Validator(_schema())


def _check_keys(value: Any, path: list[str | int], where: str) -> None:
    """Fail on non-string mapping keys (YAML reads `yes:` as True, `1:` as 1)."""
    if isinstance(value, dict):
        for key, item in value.items():
            if not isinstance(key, str):
                prefix, key_path = _context(path)
                within = f" in '{key_path}'" if key_path else ""
                raise GageFileError(
                    f"{where}: {prefix}key {key!r}{within} must be a string (quote it)"
                )
            _check_keys(item, [*path, key], where)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_keys(item, [*path, i], where)


# Choosing the error to report. At each level this takes the error jsonschema
# rates most relevant (`best_match`'s key). For an anyOf it descends into the
# one branch the value most plausibly meant, which `best_match`'s own descent
# often gets wrong (it favours the string branch for a mistyped table).

_WEAK = ("anyOf", "oneOf")


def _most_relevant(errors: Iterable[_Error]) -> _Error | None:
    from jsonschema.exceptions import relevance

    error = max(errors, key=relevance, default=None)
    while error is not None and error.validator in _WEAK:
        branch = _likely_branch(error)
        if branch is None:
            break
        error = max(branch, key=relevance)
    return error


def _likely_branch(error: _Error) -> list[_Error] | None:
    """The errors of the one branch the value most plausibly meant, or None.

    Branches whose type (or `const` discriminator) the value doesn't match
    are out. Of the rest, a branch with no errors at the value itself beats
    one with, then the deepest errors win; a tie means no branch is likely.
    """
    candidates = [b for b in _branches(error) if not any(_rules_out(e) for e in b)]
    ranked = sorted(candidates, key=_branch_fit, reverse=True)
    if not ranked or (len(ranked) > 1 and _branch_fit(ranked[0]) == _branch_fit(ranked[1])):
        return None
    return ranked[0]


def _branches(error: _Error) -> list[list[_Error]]:
    by_index: dict[Any, list[_Error]] = {}
    for e in error.context or []:
        by_index.setdefault(e.relative_schema_path[0], []).append(e)
    return list(by_index.values())


def _rules_out(error: _Error, nested: bool = False) -> bool:
    """Whether `error` shows the value can't be meant for its branch.

    A nested anyOf rules its branch out only if the value's type fits none
    of its own branches (its `const` discriminators are its own business).
    """
    if error.validator == "const":
        return not nested
    if error.relative_path:
        return False
    if error.validator == "type":
        return True
    return error.validator in _WEAK and all(
        any(_rules_out(e, nested=True) for e in branch) for branch in _branches(error)
    )


def _branch_fit(branch: list[_Error]) -> tuple[bool, int]:
    return (
        all(e.relative_path for e in branch),
        max(len(e.relative_path) for e in branch),
    )


def _schema_error_message(error: _Error, table: str) -> str:
    if error.validator == "additionalProperties":
        return _unknown_key_message(error)
    if error.validator == "required":
        missing = next(key for key in error.validator_value if key not in error.instance)
        return f"{_subject(error.absolute_path)} is missing required key '{missing}'"
    anchor = _expected_anchor(error)
    if anchor is None:
        return f"{_subject(error.absolute_path)}: {one_line(error.message)}"
    expected = anchor.schema["x-expected"].format(table=table, a_table=_a(table))
    got = _describe(anchor.instance, table)
    return f"{_subject(anchor.absolute_path)} must be {expected}, got {got}"


def _expected_anchor(error: _Error) -> _Error | None:
    """`error` or the nearest error enclosing it whose schema says what it expects."""
    e: _Error | None = error
    while e is not None and not (isinstance(e.schema, dict) and "x-expected" in e.schema):
        e = e.parent
    return e


def _unknown_key_message(error: _Error) -> str:
    known = list(error.schema.get("properties", {}))
    patterns = list(error.schema.get("patternProperties", {}))
    key = next(
        key
        for key in error.instance
        if key not in known and not any(re.search(p, key) for p in patterns)
    )
    prefix, key_path = _context(error.absolute_path)
    within = f" in '{key_path}'" if key_path else ""
    return f"{prefix}unknown key '{key}'{within}{_did_you_mean(key, known)}"


def _context(path: Iterable[str | int]) -> tuple[str, str]:
    """Split a path into an op prefix and a key path: `("op 'train': ", "exec.run")`."""
    parts = list(path)
    if not parts or str(parts[0]).startswith("$"):
        return "", _key_path(parts)
    return f"op '{parts[0]}': ", _key_path(parts[1:])


def _subject(path: Iterable[str | int]) -> str:
    """What a path names: `op 'train'`, `op 'train': 'exec.run'`, `'$runs-dir'`."""
    prefix, key_path = _context(path)
    if not key_path:
        return prefix.rstrip(": ")
    return f"{prefix}'{key_path}'"


def _key_path(parts: list[str | int]) -> str:
    """`["config", 0, "keys"]` -> `config[0].keys`."""
    s = ""
    for part in parts:
        if isinstance(part, int):
            s += f"[{part}]"
        else:
            s += f".{part}" if s else part
    return s


def _describe(value: Any, table: str) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if not value else "a string"
    if isinstance(value, list):
        return "an empty list" if not value else "a list"
    if isinstance(value, dict):
        return _a(table)
    return f"a {type(value).__name__}"


def _a(noun: str) -> str:
    return f"an {noun}" if noun[0] in "aeiou" else f"a {noun}"
