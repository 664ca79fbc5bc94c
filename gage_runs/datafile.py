"""Loading JSON (with `//` comment lines), TOML and YAML data files."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DATA_FILE_EXTENSIONS = (".json", ".toml", ".yaml", ".yml")


class DataFileError(ValueError):
    """A data file cannot be parsed; the message says where and why."""


def load_data_file(path: str) -> Any:
    """Parse a data file by its extension, as Gage's `load_project_data`."""
    ext = os.path.splitext(path)[1].lower()
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFileError(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    if ext == ".json":
        return _load_json(text)
    if ext == ".toml":
        return _load_toml(text)
    if ext in (".yaml", ".yml"):
        return _load_yaml(text)
    raise DataFileError(f"unsupported file type {ext or '(none)'!r}")


def _load_json(text: str) -> Any:
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
        raise DataFileError(f"invalid TOML: {e}") from None


def _load_yaml(text: str) -> Any:
    import yaml  # on first use: it costs more to import than the rest of us

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise DataFileError(f"invalid YAML{where}: {problem}") from None
