"""YAML config files, patched by a ruamel.yaml round trip (comments kept)."""

from __future__ import annotations

import io
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.representer import RoundTripRepresenter
from ruamel.yaml.scalarstring import ScalarString

from .config_files import ConfigFormatError, DataConfig, Scalar, one_line


class YamlConfig(DataConfig):
    """A YAML file, patched by a ruamel.yaml round trip (comments kept)."""

    def _load(self, text: str) -> Any:
        try:
            return _yaml(text).load(text)
        except MarkedYAMLError as e:
            line = f" at line {e.problem_mark.line + 1}" if e.problem_mark else ""
            reason = ", ".join(filter(None, [e.context, e.problem]))
            raise ConfigFormatError(f"invalid YAML{line}: {one_line(reason)}") from None
        except YAMLError as e:
            raise ConfigFormatError(f"invalid YAML: {one_line(str(e))}") from None

    def _converted(self, key: str, old: Any, new: Scalar) -> Any:
        """Keep a string's quoting style (plain, 'single', "double", block)."""
        if isinstance(old, ScalarString) and isinstance(new, str):
            return type(old)(new)
        return new

    def _dump(self) -> str:
        out = io.StringIO()
        _yaml(self._text).dump(self._data, out)
        text = out.getvalue()
        return text if self._text.endswith("\n") else text.rstrip("\n")


def _yaml(text: str) -> YAML:
    """A round-trip YAML instance set up to write like `text`."""
    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096
    yaml.explicit_start = re.search(r"^---(\s|$)", text, re.M) is not None
    mapping, offset = _yaml_indents(text)
    yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
    yaml.Representer = _YamlRepresenter
    return yaml


class _YamlRepresenter(RoundTripRepresenter):
    """Writes None as `null` (ruamel's default is an empty value)."""

    def represent_none(self, data: None) -> Any:
        return self.represent_scalar("tag:yaml.org,2002:null", "null")


_YamlRepresenter.add_representer(type(None), _YamlRepresenter.represent_none)


_YAML_KEY_ONLY_P = re.compile(r"[^-#\s][^#]*:\s*(#.*)?$")


def _yaml_indents(text: str) -> tuple[int, int]:
    """Guess `(mapping indent, sequence dash offset)` from block lines."""
    mapping = offset = None
    parent = None
    for line in text.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if parent is not None and indent >= parent:
            if stripped == "-" or stripped.startswith("- "):
                offset = indent - parent if offset is None else offset
            elif mapping is None and indent > parent:
                mapping = indent - parent
        parent = indent if _YAML_KEY_ONLY_P.match(stripped) else None
    return mapping or 2, offset or 0
