"""TOML config files, patched with tomlkit (comments and layout kept)."""

from __future__ import annotations

import re
from typing import Any

import tomlkit
import tomlkit.exceptions
import tomlkit.items

from .config_files import ConfigFormatError, DataConfig, Scalar, one_line


class TomlConfig(DataConfig):
    """A TOML file, patched with tomlkit (comments and layout kept)."""

    def _load(self, text: str) -> Any:
        try:
            return tomlkit.parse(text)
        except tomlkit.exceptions.ParseError as e:
            reason = re.sub(r" at line \d+ col \d+$", "", str(e))
            raise ConfigFormatError(f"invalid TOML at line {e.line}: {reason}") from None
        except tomlkit.exceptions.TOMLKitError as e:
            raise ConfigFormatError(f"invalid TOML: {one_line(str(e))}") from None

    def _plain_data(self) -> Any:
        return self._data.unwrap()

    def _converted(self, key: str, old: Any, new: Scalar) -> Any:
        """Keep a 'literal' string literal; TOML has no null."""
        if new is None:
            raise ConfigFormatError(f"cannot set {key} to null: TOML has no null value")
        if isinstance(new, str) and _is_literal_string(old) and "'" not in new and "\n" not in new:
            return tomlkit.string(new, literal=True)
        return new

    def _dump(self) -> str:
        return tomlkit.dumps(self._data)


def _is_literal_string(item: Any) -> bool:
    return isinstance(item, tomlkit.items.String) and item.type == tomlkit.items.StringType.SLL
