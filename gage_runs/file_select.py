"""Gage's file pattern syntax and file selection (run-format §4.1).

A pattern is a shell-style split of `GLOB [TOKEN...]`. A leading `-`
(optionally followed by spaces) makes it an exclude; a leading `\\-`
stands for a literal dash. Tokens are the type filters `text`, `binary`
and `dir`, `size<N`, `size>N`, `sentinel=PATH` (dir rules) and
`max-matches=N`.

Selection walks the tree as Gage 0.1.2 does, quirks included, so a run
staged here holds the same files as one staged by Gage.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from glob import iglob
from typing import Literal

from gage_runs.errors import SourcePatternError

__all__ = [
    "BINARY_EXTENSIONS",
    "TEXT_EXTENSIONS",
    "FileSelectRule",
    "glob_to_regex",
    "is_text_file",
    "parse_pattern",
    "parse_patterns",
    "select_files",
]

FileType = Literal["text", "binary", "dir"]

_TYPES: tuple[FileType, ...] = ("text", "binary", "dir")

# Gage's lists, quirks kept: `.tsx.txt` and `js` never equal an extension
# from `os.path.splitext`, so `.txt` and `.js` files go to the heuristic.
TEXT_EXTENSIONS = frozenset(
    {
        ".csv", ".html", ".json", ".jsx", ".md", ".py", ".r", ".sh", ".ts",
        ".tsx.txt", ".yaml", ".yml", "js",
    }
)  # fmt: skip

BINARY_EXTENSIONS = frozenset(
    {
        ".ai", ".bmp", ".gif", ".ico", ".jpeg", ".jpg", ".png", ".ps", ".psd",
        ".svg", ".tif", ".tiff",
        ".aif", ".mid", ".midi", ".mpa", ".mp3", ".ogg", ".wav", ".wma",
        ".avi", ".mov", ".mp4", ".mpeg", ".swf", ".wmv",
        ".7z", ".deb", ".gz", ".pkg", ".rar", ".rpm", ".tar", ".xz", ".z", ".zip",
        ".doc", ".docx", ".key", ".pdf", ".ppt", ".pptx", ".xlr", ".xls", ".xlsx",
        ".bin", ".pickle", ".pkl", ".pyc",
    }
)  # fmt: skip

_TEXT_SAMPLE_SIZE = 1024
_PRINTABLE_ASCII = b"\n\r\t\f\b" + bytes(range(32, 127))
_HIGH_ASCII = bytes(range(127, 256))

_EXCLUDE_PREFIX = re.compile(r"- *")
_NUMBER = re.compile(r"[0-9]+")
_GLOB_TOKEN = re.compile(r"\*\*/?|\*|\?")
_GLOB_TOKEN_REGEX = {
    "**/": "(?:.+/)*",
    "**": "(?:.+/)*",
    "*": "[^/]*",
    "?": "[^/]?",
}


# ---------------------------------------------------------------------
# Globs and patterns
# ---------------------------------------------------------------------


def glob_to_regex(glob: str) -> re.Pattern[str]:
    """Compile a Gage glob to a regex for `re.match` on a `/` relpath.

    `**/` and `**` match any run of leading dirs (`(?:.+/)*`), `*` matches
    within one path part, `?` matches at most one character, and all
    other text is literal. The regex ends with `$`, so with `match` it is
    anchored at both ends: `*.py` matches top-level files only, and
    `x/**` matches no file at all.
    """
    parts: list[str] = []
    pos = 0
    for m in _GLOB_TOKEN.finditer(glob):
        parts.append(re.escape(glob[pos : m.start()]))
        parts.append(_GLOB_TOKEN_REGEX[m.group()])
        pos = m.end()
    parts.append(re.escape(glob[pos:]))
    parts.append("$")
    return re.compile("".join(parts))


@dataclass(frozen=True)
class FileSelectRule:
    """One parsed pattern: an include or exclude with its filters."""

    pattern: str
    include: bool
    regex: re.Pattern[str]
    type: FileType | None = None
    sentinel: str = ""
    size_lt: int | None = None
    size_gt: int | None = None
    max_matches: int | None = None

    @property
    def is_dir_rule(self) -> bool:
        """True if the rule applies to directories (and so never to files)."""
        return self.type == "dir"


def parse_patterns(patterns: Iterable[str]) -> list[FileSelectRule]:
    """Parse each pattern (see `parse_pattern`)."""
    return [parse_pattern(p) for p in patterns]


def parse_pattern(pattern: str) -> FileSelectRule:
    """Parse one pattern, raising `SourcePatternError` if it is malformed."""
    if not isinstance(pattern, str):
        raise SourcePatternError(f"source code pattern must be a string, not {pattern!r}")
    include, spec = _split_include(pattern)
    try:
        parts = shlex.split(spec)
    except ValueError as e:
        raise _pattern_error(pattern, str(e).lower()) from None
    if not parts:
        raise _pattern_error(pattern, "missing glob")
    glob, *tokens = parts
    return FileSelectRule(pattern, include, glob_to_regex(glob), **_parse_tokens(pattern, tokens))


def _split_include(pattern: str) -> tuple[bool, str]:
    if pattern.startswith("\\-"):
        return True, pattern[1:]
    m = _EXCLUDE_PREFIX.match(pattern)
    return (False, pattern[m.end() :]) if m else (True, pattern)


def _parse_tokens(pattern: str, tokens: list[str]) -> dict:
    """Rule options for `tokens`, with Gage's precedence on repeats.

    A repeated `size<`/`size>` keeps the last value; a repeated
    `sentinel=`/`max-matches=` keeps the first.
    """
    opts: dict = {}
    for token in tokens:
        if token in _TYPES:
            _set_type(pattern, opts, token)
        elif token.startswith("size<"):
            opts["size_lt"] = _parse_number(pattern, token, token[5:])
        elif token.startswith("size>"):
            opts["size_gt"] = _parse_number(pattern, token, token[5:])
        elif token.startswith("max-matches="):
            opts.setdefault("max_matches", _parse_number(pattern, token, token[12:]))
        elif token.startswith("sentinel="):
            opts.setdefault("sentinel", _parse_sentinel(pattern, token))
        else:
            raise _pattern_error(pattern, f"unknown token {token!r}")
    return opts


def _set_type(pattern: str, opts: dict, token: str) -> None:
    if opts.setdefault("type", token) != token:
        raise _pattern_error(pattern, f"conflicting types {opts['type']!r} and {token!r}")


def _parse_number(pattern: str, token: str, value: str) -> int:
    if not _NUMBER.fullmatch(value):
        raise _pattern_error(pattern, f"expected a whole number in {token!r}")
    return int(value)


def _parse_sentinel(pattern: str, token: str) -> str:
    sentinel = token[9:]
    if not sentinel:
        raise _pattern_error(pattern, f"missing path in {token!r}")
    return sentinel


def _pattern_error(pattern: str, reason: str) -> SourcePatternError:
    return SourcePatternError(f"invalid source code pattern {pattern!r}: {reason}")


# ---------------------------------------------------------------------
# Text test
# ---------------------------------------------------------------------


def is_text_file(path: str) -> bool:
    """True if `path` is a regular file that looks like text, as Gage decides.

    A known text or binary extension decides first; otherwise a
    heuristic on the first 1024 bytes. Missing paths and non-regular
    files are not text.
    """
    try:
        st = os.stat(path)
    except OSError:
        return False
    return _is_text(path, st)


def _is_text(path: str, st: os.stat_result) -> bool:
    if not stat.S_ISREG(st.st_mode):
        return False
    ext = os.path.splitext(path)[1].lower()
    if ext in TEXT_EXTENSIONS:
        return True
    if ext in BINARY_EXTENSIONS:
        return False
    try:
        sample = _read_head(path)
    except OSError:
        return False
    return _is_text_sample(sample)


def _read_head(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, _TEXT_SAMPLE_SIZE)
    finally:
        os.close(fd)


def _is_text_sample(sample: bytes) -> bool:
    """Gage's binaryornot-style heuristic on a file's first bytes.

    Only a sample that looks binary, or holds a NUL or 0xFF byte, can be
    binary; chardet is consulted for those alone, and then decides.
    """
    if not sample:
        return True
    size = len(sample)
    low_ratio = len(sample.translate(None, _PRINTABLE_ASCII)) / size
    high_ratio = len(sample.translate(None, _HIGH_ASCII)) / size
    likely_binary = (low_ratio > 0.3 and high_ratio < 0.05) or (
        low_ratio > 0.8 and high_ratio > 0.8
    )
    if not likely_binary and b"\x00" not in sample and b"\xff" not in sample:
        return True
    return _decodable_as_unicode(sample)


def _decodable_as_unicode(sample: bytes) -> bool:
    import chardet  # slow to import; needed for few files

    detected = chardet.detect(sample)
    encoding = detected["encoding"]
    if detected["confidence"] <= 0.9 or encoding == "ascii":
        return False
    try:
        sample.decode(encoding or "utf-8")
    except (LookupError, UnicodeDecodeError):
        return False
    return True


# ---------------------------------------------------------------------
# Selection
# ---------------------------------------------------------------------


class _PathInfo:
    """What rules ask about one path, each fact computed at most once."""

    def __init__(self, path: str):
        self.path = path

    @cached_property
    def st(self) -> os.stat_result | None:
        try:
            return os.stat(self.path)
        except OSError:
            return None

    @cached_property
    def is_text(self) -> bool:
        return self.st is not None and _is_text(self.path, self.st)

    @property
    def is_dir(self) -> bool:
        return self.st is not None and stat.S_ISDIR(self.st.st_mode)

    def has(self, sentinel: str) -> bool:
        return next(iglob(sentinel, root_dir=self.path), None) is not None


def _rule_accepts(rule: FileSelectRule, info: _PathInfo) -> bool:
    """Size and type tests (the pattern is tested first, by the caller)."""
    return _size_ok(rule, info) and _type_ok(rule, info)


def _size_ok(rule: FileSelectRule, info: _PathInfo) -> bool:
    """Gage's size test, quirks kept.

    With both bounds either one suffices, a bound of 0 never holds, and
    a path that cannot be stat'ed passes.
    """
    if rule.size_lt is None and rule.size_gt is None:
        return True
    if info.st is None:
        return True
    size = info.st.st_size
    if rule.size_gt and size > rule.size_gt:
        return True
    return bool(rule.size_lt and size < rule.size_lt)


def _type_ok(rule: FileSelectRule, info: _PathInfo) -> bool:
    if rule.type is None:
        return True
    if rule.type == "dir":
        return info.is_dir and (not rule.sentinel or info.has(rule.sentinel))
    return info.is_text == (rule.type == "text")


@dataclass
class _CountedRule:
    """A rule and how many paths it has matched so far in one walk."""

    rule: FileSelectRule
    matches: int = 0

    def test(self, relpath: str, info: _PathInfo) -> bool:
        """Gage's rule test: max-matches, pattern, then size and type."""
        rule = self.rule
        if rule.max_matches is not None and self.matches >= rule.max_matches:
            return False
        if not rule.regex.match(relpath) or not _rule_accepts(rule, info):
            return False
        self.matches += 1
        return True


class _Selector:
    """Applies rules in walk order, keeping each rule's match counter."""

    def __init__(self, rules: list[FileSelectRule]):
        self._dir_rules = [_CountedRule(r) for r in rules if r.is_dir_rule]
        self._file_rules = [_CountedRule(r) for r in rules if not r.is_dir_rule]

    @property
    def can_select(self) -> bool:
        """False if no file rule includes, so nothing can be selected."""
        return any(c.rule.include for c in self._file_rules)

    def keep_dir(self, relpath: str, info: _PathInfo) -> bool:
        """False if the last dir rule with a result excludes the dir."""
        return _last_result(self._dir_rules, relpath, info) is not False

    def select_file(self, relpath: str, info: _PathInfo) -> bool:
        """True if the last file rule with a result includes the file."""
        return _last_result(self._file_rules, relpath, info) is True


def _last_result(rules: list[_CountedRule], relpath: str, info: _PathInfo) -> bool | None:
    # Every rule is tested: a rule counts each match, even one a later
    # rule overrides, and max-matches compares against that count.
    result = None
    for counted in rules:
        if counted.test(relpath, info):
            result = counted.rule.include
    return result


def select_files(
    root: str, patterns: Sequence[str], *, exclude_dirs: Iterable[str] = (),
    followlinks: bool = True,
) -> list[str]:
    """Select files under `root` with `patterns`, walking as Gage does.

    Returns sorted relative paths with `/` separators. `os.walk` follows links (unless
    `followlinks` is False), visiting names in sorted order. Dirs are
    tested against `dir` rules only and pruned if excluded; files
    against the other rules. For both, the last rule with a result
    decides. Dirs in `exclude_dirs` (absolute paths, compared by
    identity so links are caught) are pruned before any rule.
    """
    selector = _Selector(parse_patterns(patterns))
    if not selector.can_select:
        return []
    excluded = _dir_ids(exclude_dirs)
    prefix = os.path.join(root, "")
    selected: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=followlinks):
        relroot = "" if dirpath == root else dirpath[len(prefix) :] + "/"
        dirnames[:] = _kept_dirs(selector, dirpath, relroot, dirnames, excluded)
        for name in sorted(filenames):
            info = _PathInfo(os.path.join(dirpath, name))
            if selector.select_file(relroot + name, info):
                selected.append(relroot + name)
    selected.sort()
    return selected


def _kept_dirs(
    selector: _Selector,
    dirpath: str,
    relroot: str,
    dirnames: list[str],
    excluded: set[tuple[int, int]],
) -> list[str]:
    kept = []
    for name in sorted(dirnames):
        info = _PathInfo(os.path.join(dirpath, name))
        if excluded and _stat_id(info.st) in excluded:
            continue
        if selector.keep_dir(relroot + name, info):
            kept.append(name)
    return kept


def _dir_ids(dirs: Iterable[str]) -> set[tuple[int, int]]:
    ids = set()
    for path in dirs:
        with contextlib.suppress(OSError):
            ids.add(_stat_id(os.stat(path)))
    return ids


def _stat_id(st: os.stat_result | None) -> tuple[int, int] | None:
    return (st.st_dev, st.st_ino) if st else None
