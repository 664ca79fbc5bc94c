"""Loading JSON (with `//` comment lines), TOML and YAML data files."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


class DataFileError(ValueError):
    """A data file cannot be parsed; the message says where and why."""


def load_data_file(path: str) -> Any:
    """Parse a data file by its extension, as Gage's `load_project_data`."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFileError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    return parse_data(text, os.path.splitext(path)[1])


def parse_data(text: str, ext: str) -> Any:
    """Parse JSON, TOML or YAML text; DataFileError says where and why."""
    ext = ext.lower()
    if ext == ".json":
        return _load_json(text)
    if ext == ".toml":
        return _load_toml(text)
    if ext in (".yaml", ".yml"):
        return _load_yaml(text)
    raise DataFileError(f"unsupported file type {ext or '(none)'!r}")


def _load_json(text: str) -> Any:
    # Gage drops `//` comment lines; blank them instead to keep line numbers.
    lines = text.splitlines(keepends=True)
    kept = "".join("\n" if line.lstrip().startswith("//") else line for line in lines)
    try:
        return json.loads(kept)
    except json.JSONDecodeError as e:
        raise DataFileError(f"invalid JSON at line {e.lineno}: {e.msg}") from None


def _load_toml(text: str) -> Any:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise DataFileError(_toml_error_message(str(e), text)) from None


def _toml_error_message(msg: str, text: str) -> str:
    m = re.fullmatch(r"(.*?) \((?:at line (\d+), column \d+|at end of document)\)", msg)
    if not m:
        return f"invalid TOML: {msg}"
    problem, line = m.groups()
    if not line:
        return f"invalid TOML at end of file: {problem}"
    lines = text.splitlines()
    bad_line = lines[int(line) - 1] if int(line) <= len(lines) else ""
    hint = ""
    if bad_line.lstrip().startswith("$"):
        hint = " (quote keys that start with '$', as in \"$runs-dir\" = ...)"
    return f"invalid TOML at line {line}: {problem}{hint}"


def _load_yaml(text: str) -> Any:
    import yaml  # on first use: it costs more to import than the rest of us

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        raise DataFileError(_yaml_error_message(e)) from None
    except yaml.YAMLError as e:
        raise DataFileError(f"invalid YAML: {one_line(str(e))}") from None


def _yaml_error_message(e: Any) -> str:
    mark = e.problem_mark or e.context_mark
    where = f" at line {mark.line + 1}" if mark else ""
    msg = f"invalid YAML{where}: {e.problem or e.context}"
    if e.problem and e.context:
        started = f" at line {e.context_mark.line + 1}" if e.context_mark else ""
        msg += f" ({e.context}{started})"
    return one_line(msg)


def one_line(s: str) -> str:
    """Whitespace, newlines included, folded to single spaces."""
    return " ".join(s.split())
