"""`log/files` (what was added, modified and deleted) and the `manifest`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import NamedTuple

from .errors import RunFormatError
from .fsmode import append_text, set_readonly, write_text
from .meta import run_meta_path, runner_log
from .types import Run

SOURCE, RUNTIME, DEPENDENCY, GENERATED = "s", "r", "d", "g"


class LoggedFile(NamedTuple):
    event: str  # a added, m modified, d deleted
    type: str  # s source, r runtime, d dependency, g generated
    modified: int | None
    path: str


class RunManifestEntry(NamedTuple):
    type: str
    digest: str
    path: str


def _files_log_path(run: Run) -> str:
    return run_meta_path(run, "log", "files")


def iter_files_log(run: Run) -> Iterator[LoggedFile]:
    """The entries of `log/files`, in order."""
    path = _files_log_path(run)
    if not os.path.exists(path):
        return
    with open(path) as f:
        for lineno, line in enumerate(f, 1):
            yield _decode_logged_file(line.rstrip("\n"), lineno)


def _decode_logged_file(line: str, lineno: int) -> LoggedFile:
    parts = line.split(" ", 3)
    if len(parts) == 4 and parts[0] in "amd" and parts[1] in "srdg":
        event, type, modified, path = parts
        if modified == "-":
            return LoggedFile(event, type, None, path)
        if modified.isdigit():
            return LoggedFile(event, type, int(modified), path)
    raise RunFormatError(f"log/files line {lineno} is malformed: {line!r}")


def _scan_files(root: str) -> Iterator[os.DirEntry]:
    try:
        entries = list(os.scandir(root))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.is_file():
            yield entry
        elif entry.is_dir():
            yield from _scan_files(entry.path)


def apply_to_files_log(run: Run, type: str) -> None:
    """Log run-dir files added or modified since the last entry, then deletions."""
    logged = {entry.path: entry.modified for entry in iter_files_log(run)}
    seen: set[str] = set()
    lines: list[str] = []
    prefix_len = len(os.path.join(run.run_dir, ""))
    for entry in sorted(_scan_files(run.run_dir), key=lambda e: e.path):
        path = entry.path[prefix_len:]
        seen.add(path)
        modified = int(entry.stat().st_mtime * 1_000_000)
        if path in logged and logged[path] == modified:
            continue
        event = "m" if path in logged else "a"
        lines.append(f"{event} {type} {modified or '-'} {path}\n")
    lines.extend(f"d {type} - {path}\n" for path in logged if path not in seen)
    append_text(_files_log_path(run), "".join(lines))


def reduce_files_log(run: Run) -> list[tuple[str, str]]:
    """(type, path) of every file the log says is in the run dir."""
    paths: dict[str, str] = {}
    for entry in iter_files_log(run):
        if entry.event == "a":
            paths[entry.path] = entry.type
        elif entry.event == "d":
            paths.pop(entry.path, None)
    return [(type, path) for path, type in paths.items()]


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class RunManifest:
    """A run's manifest: `<type> <sha256> <path>` per file."""

    def __init__(self, run: Run):
        self.filename = run_meta_path(run, "manifest")

    def __iter__(self) -> Iterator[RunManifestEntry]:
        if not os.path.exists(self.filename):
            return
        with open(self.filename) as f:
            for line in f:
                parts = line.rstrip("\n").split(" ", 2)
                if len(parts) != 3:
                    raise RunFormatError(f"manifest entry is malformed: {line!r}")
                yield RunManifestEntry(*parts)

    def digests(self) -> dict[str, str]:
        return {entry.path: entry.digest for entry in self}

    def write(self, entries: list[RunManifestEntry]) -> None:
        """Replace the manifest (atomically, never via a symlink), leaving it shared-writable."""
        text = "".join(f"{e.type} {e.digest} {e.path}\n" for e in entries)
        write_text(self.filename, text, readonly=False)


def write_manifest(run: Run, *, finalizing: bool) -> None:
    """Make logged run files read-only and write their manifest.

    When finalizing, a staged file whose digest changed is logged.
    """
    manifest = RunManifest(run)
    staged_digests = manifest.digests() if finalizing else {}
    entries = []
    for type, path in reduce_files_log(run):
        filename = os.path.join(run.run_dir, path)
        if not os.path.islink(filename):
            set_readonly(filename)
        digest = file_sha256(filename)
        if staged_digests.get(path, digest) != digest:
            runner_log(run, f'File "{path}" was modified during the run')
        entries.append(RunManifestEntry(type, digest, path))
    manifest.write(entries)
