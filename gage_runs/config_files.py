"""Config files as flat dotted keys: the common interface, JSON, YAML and TOML.

A config file is read into `values`, a flat mapping of dotted keys to
scalars: nested mappings give `opt.lr`, lists give `layers.0`. Patching
returns the file's new text with some of those keys set to new values.

Gage 0.1.2 supports Python files only; JSON, YAML and TOML are a
deliberate addition (design §2.2). YAML and TOML keep their comments and
layout (ruamel.yaml round-trip in `config_yaml`, tomlkit in
`config_toml`, each imported only when such a file is read); JSON is
rewritten with the file's own indent.
"""

from __future__ import annotations

import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import Any

Scalar = None | bool | int | float | str
KeyPath = tuple[Any, ...]


class ConfigFormatError(ValueError):
    """A config file cannot be parsed, or a value cannot be written to it.

    The message is the reason only; the caller names the file.
    """


class ConfigFile(ABC):
    """A parsed config file: its flat `values` and a way to patch them."""

    values: dict[str, Scalar]

    @abstractmethod
    def patched(self, changes: dict[str, Scalar]) -> str:
        """Return the file's text with `changes` (keys of `values`) applied."""


_SCALAR_TYPES = (bool, int, float, str)


def _is_scalar(value: Any) -> bool:
    """A config scalar (a date, say, is not)."""
    return value is None or isinstance(value, _SCALAR_TYPES)


def _plain_scalar(value: Any) -> Scalar:
    """`value` as a plain Python scalar, without library subclasses."""
    type_ = next((t for t in _SCALAR_TYPES if isinstance(value, t)), None)
    return value if type_ is None else type_(value)


def _flatten(data: Any, key: str = "", path: KeyPath = ()) -> Iterator[tuple[str, KeyPath, Scalar]]:
    """Yield `(dotted_key, path, value)` for every scalar leaf under `data`."""
    if isinstance(data, dict):
        items = ((str(k), k) for k in data)
    elif isinstance(data, list):
        items = ((str(i), i) for i in range(len(data)))
    else:
        return
    for name, index in items:
        child = data[index]
        child_key = f"{key}.{name}" if key else name
        if isinstance(child, dict | list):
            yield from _flatten(child, child_key, path + (index,))
        elif _is_scalar(child):
            yield child_key, path + (index,), _plain_scalar(child)


class DataConfig(ConfigFile):
    """A config file parsed into nested mappings and lists."""

    def __init__(self, text: str):
        self._text = text
        self._data = self._load(text)
        self._paths: dict[str, KeyPath] = {}
        self.values = {}
        for key, path, value in _flatten(self._plain_data()):
            self._paths[key] = path
            self.values[key] = value

    def patched(self, changes: dict[str, Scalar]) -> str:
        for key, value in changes.items():
            *parents, last = self._paths[key]
            container = self._data
            for index in parents:
                container = container[index]
            container[last] = self._converted(key, container[last], value)
        return self._dump()

    def _plain_data(self) -> Any:
        """The parsed data as mappings and lists of scalars (for reading)."""
        return self._data

    def _converted(self, key: str, old: Any, new: Scalar) -> Any:
        """The object to store for `new` in place of `old`."""
        return new

    @abstractmethod
    def _load(self, text: str) -> Any:
        """Parse `text`, raising ConfigFormatError."""

    @abstractmethod
    def _dump(self) -> str:
        """The text of the (patched) data."""


class JsonConfig(DataConfig):
    """A JSON file; rewritten with its detected indent when patched."""

    def _load(self, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as e:
            raise ConfigFormatError(f"invalid JSON at line {e.lineno}: {e.msg}") from None

    def _dump(self) -> str:
        text = json.dumps(
            self._data, indent=_json_indent(self._text), ensure_ascii=self._text.isascii()
        )
        return text + "\n" if self._text.endswith("\n") else text


def _json_indent(text: str) -> str | None:
    """The indent of the first indented line of `text`, None if compact."""
    m = re.search(r"\n([ \t]+)\S", text)
    if m:
        return m.group(1)
    return "" if "\n" in text.strip() else None


def one_line(s: str | None) -> str:
    return " ".join((s or "").split())
