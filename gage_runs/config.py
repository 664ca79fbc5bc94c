"""Read and apply run config: key specs, file selection and `log/patched` diffs.

An op's `config` entries select files and keys with specs of the form
`[-]FILE_GLOB[#KEY_GLOB]` (run-format.md §4.3):

* `FILE` includes the file with key glob `*` (all top-level keys);
  `-FILE` excludes the file.
* `FILE#KEY` includes the file and the matching keys; `-FILE#KEY`
  excludes those keys and keeps the file.
* `#KEY` selects no file: it only adds a key glob for the entry's other
  files. Key globs of an entry apply to every file the entry selects.
* Every top-level directory is pruned (at any depth, by name, as Gage
  does) unless an include file glob starts with `<dir>/`.

File globs follow Gage's rules (`**` spans directories, `*` and `?` stay
within one), key globs the same over dotted keys. Files are read by
extension: `.py` (libcst's results, mostly by `ast`: `config_py`), `.json`,
`.yaml`/`.yml`, `.toml`. A file of another type is skipped when a wildcard
selects it (Gage warns and skips it) and is an error when a spec names it
exactly.
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

from .config_files import ConfigFile, ConfigFormatError, Scalar
from .errors import ConfigError
from .file_select import glob_to_regex
from .types import OpDef

__all__ = ["apply_config", "read_project_config"]

# Parsers by extension, as "module:class", imported on first use: ruamel.yaml
# and tomlkit (and libcst, which `config_py` needs rarely) cost more to import
# than a small submit takes.
_FORMATS = {
    ".py": "config_py:PythonConfig",
    ".json": "config_files:JsonConfig",
    ".yaml": "config_yaml:YamlConfig",
    ".yml": "config_yaml:YamlConfig",
    ".toml": "config_toml:TomlConfig",
}


def _parser(ext: str) -> Callable[[str], ConfigFile] | None:
    spec = _FORMATS.get(ext.lower())
    if spec is None:
        return None
    module, cls = spec.split(":")
    return getattr(importlib.import_module(f".{module}", __package__), cls)


def read_project_config(project_dir: str, opdef: OpDef) -> dict[str, Scalar]:
    """The current values of the config keys `opdef` selects in `project_dir`."""
    config: dict[str, Scalar] = {}
    for entry in opdef.get_config():
        for selected in _select(project_dir, entry.get_keys()):
            config.update({key: selected.file.values[key] for key in selected.keys})
    return config


def apply_config(run_dir: str, opdef: OpDef, config: dict[str, Any]) -> str:
    """Patch the selected files in `run_dir` with `config`; return the diff.

    Only keys a file already has are written, and only files whose text
    changes are rewritten. The result is the unified diffs of the changed
    files, sorted by path, or "" if nothing changed.
    """
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for entry in opdef.get_config():
        for selected in _select(run_dir, entry.get_keys()):
            text = _patch_file(run_dir, selected, config)
            if text is not None:
                before.setdefault(selected.path, selected.text)
                after[selected.path] = text
    return "".join(_diff(path, before[path], after[path]) for path in sorted(after))


class _Selected(NamedTuple):
    """A selected config file: its relative path, text, parsed form and keys."""

    path: str
    text: str
    file: ConfigFile
    keys: list[str]


def _select(root: str, specs: list[str]) -> list[_Selected]:
    parsed = [_parse_spec(spec) for spec in specs]
    named = {s.file_glob for s in parsed if s.file_glob and not s.file_exclude}
    files = [
        (path, *_load(root, path))
        for path in _select_files(root, parsed)
        if path in named or _parser(os.path.splitext(path)[1])
    ]
    key_selected = _key_select(parsed)
    keys = {key for _path, _text, file in files for key in file.values if key_selected(key)}
    return [
        _Selected(path, text, file, [key for key in file.values if key in keys])
        for path, text, file in files
    ]


def _patch_file(run_dir: str, selected: _Selected, config: dict[str, Any]) -> str | None:
    """Write `config` into one selected file: its new text, None if unchanged."""
    changes = _changes(selected, config)
    if not changes:
        return None
    with _about_file(selected.path):
        text = selected.file.patched(changes)
        if text == selected.text:
            return None
        _write_text(os.path.join(run_dir, selected.path), text)
    return text


def _changes(selected: _Selected, config: dict[str, Any]) -> dict[str, Scalar]:
    """The selected keys whose value in `config` differs from the file's."""
    values = selected.file.values
    return {
        key: config[key]
        for key in selected.keys
        if key in config and not _same_value(config[key], values[key])
    }


def _same_value(a: Any, b: Any) -> bool:
    """Equal and of the same type (so `1`, `1.0` and `True` all differ)."""
    return type(a) is type(b) and a == b


# Key specs


class _KeySpec(NamedTuple):
    file_glob: str | None
    file_exclude: bool
    key_glob: str | None
    key_exclude: bool


_EXCLUDE_P = re.compile(r"- *")


def _parse_spec(spec: str) -> _KeySpec:
    """Parse `[-]FILE_GLOB[#KEY_GLOB]` as Gage does."""
    if spec.startswith("\\-"):
        body, exclude = spec[1:], False
    else:
        m = _EXCLUDE_P.match(spec)
        body, exclude = (spec[m.end() :], True) if m else (spec, False)
    file_glob, hash_, key_glob = body.partition("#")
    if not hash_:
        if not file_glob:
            raise ConfigError(f"invalid config key spec {spec!r}")
        return _KeySpec(file_glob, exclude, None if exclude else "*", exclude)
    return _KeySpec(file_glob or None, exclude and not key_glob, key_glob, exclude)


def _key_select(specs: list[_KeySpec]) -> Callable[[str], bool]:
    include = [_key_glob_regex(s.key_glob) for s in specs if s.key_glob and not s.key_exclude]
    exclude = [_key_glob_regex(s.key_glob) for s in specs if s.key_glob and s.key_exclude]

    def selected(key: str) -> bool:
        return any(p.match(key) for p in include) and not any(p.match(key) for p in exclude)

    return selected


_KEY_GLOB_P = re.compile(r"\*\*\.?|\*|\?")
_KEY_GLOB_REGEX = {"*": r"[^.]*", "?": r"[^.]?", "**": r"(?:.+\.)*", "**.": r"(?:.+\.)*"}


def _key_glob_regex(glob: str) -> re.Pattern[str]:
    """A dotted-key glob as an anchored regex: `*` stays within one key part."""
    parts: list[str] = []
    pos = 0
    for m in _KEY_GLOB_P.finditer(glob):
        parts += [re.escape(glob[pos : m.start()]), _KEY_GLOB_REGEX[m.group()]]
        pos = m.end()
    parts += [re.escape(glob[pos:]), "$"]
    return re.compile("".join(parts))


# File selection


def _select_files(root: str, specs: list[_KeySpec]) -> list[str]:
    """Relative paths of the files under `root` the specs select, sorted."""
    rules = [(not s.file_exclude, glob_to_regex(s.file_glob)) for s in specs if s.file_glob]
    if not rules or not os.path.isdir(root):
        return []
    pruned = _unused_dirs(root, specs)
    return sorted(path for path in _walk(root, pruned) if _file_selected(rules, path))


def _unused_dirs(root: str, specs: list[_KeySpec]) -> set[str]:
    """Top-level dirs no include file glob starts with (`<dir>/`)."""
    used = [s.file_glob for s in specs if s.file_glob and not s.file_exclude]
    return {
        name
        for name in os.listdir(root)
        if os.path.isdir(os.path.join(root, name))
        and not any(glob.startswith(name + "/") for glob in used)
    }


def _walk(root: str, pruned: set[str]) -> Iterator[str]:
    for dirpath, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = sorted(name for name in dirs if name not in pruned)
        reldir = os.path.relpath(dirpath, root)
        for name in sorted(files):
            yield name if reldir == "." else f"{reldir}/{name}".replace(os.sep, "/")


def _file_selected(rules: list[tuple[bool, re.Pattern[str]]], path: str) -> bool:
    """The last rule whose glob matches `path` decides; none means no."""
    selected = False
    for include, pattern in rules:
        if pattern.match(path):
            selected = include
    return selected


# Files


@contextmanager
def _about_file(path: str) -> Iterator[None]:
    """Report a ConfigFormatError as a ConfigError naming `path`."""
    try:
        yield
    except ConfigFormatError as e:
        raise ConfigError(f"config file {path}: {e}") from None


def _load(root: str, path: str) -> tuple[str, ConfigFile]:
    with _about_file(path):
        ext = os.path.splitext(path)[1]
        load = _parser(ext)
        if load is None:
            kind = f"'{ext}'" if ext else "(no extension)"
            raise ConfigFormatError(
                f"unsupported file type {kind} (expected .py, .json, .yaml, .yml or .toml)"
            )
        text = _read_text(os.path.join(root, path))
        return text, load(text)


def _read_text(filename: str) -> str:
    try:
        with open(filename, encoding="utf-8", newline="") as f:
            return f.read()
    except UnicodeDecodeError:
        raise ConfigFormatError("not UTF-8 text") from None
    except OSError as e:
        raise ConfigFormatError(f"cannot read: {e.strerror}") from None


def _write_text(filename: str, text: str) -> None:
    try:
        with open(filename, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    except OSError as e:
        raise ConfigFormatError(f"cannot write: {e.strerror}") from None


def _diff(path: str, old: str, new: str) -> str:
    import difflib  # only when a config file changed

    lines = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), path, path
    )
    return "".join(lines)
