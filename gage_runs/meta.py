"""A run's meta dir: making runs, writing and reading meta files."""

from __future__ import annotations

import json
import os
import threading
import time
from typing import Any

from .errors import RunFormatError
from .fsmode import append_text, make_new_dir, write_text
from .names import make_run_id, run_name_for_id
from .types import OpCmd, OpDef, OpRef, Run, RunSummary

META_SCHEMA = "1"
OPREF_SCHEMA = "1"

_ts_lock = threading.Lock()
_last_ts = 0


def run_meta_path(run: Run, *parts: str) -> str:
    """The path of a file in the run's meta dir."""
    return os.sep.join((run.meta_dir, *parts))  # os.path.join's checks cost on every listed file


def make_run_timestamp() -> int:
    """Epoch microseconds, strictly increasing within this process."""
    global _last_ts
    with _ts_lock:
        ts = max(time.time_ns() // 1000, _last_ts + 1)
        _last_ts = ts
        return ts


# ---------------------------------------------------------------------
# opref


def encode_opref(opref: OpRef) -> str:
    for part in (opref.op_ns, opref.op_name):
        if not part or " " in part:
            raise ValueError(f"invalid opref part {part!r}: must be non-empty, no spaces")
    return f"{OPREF_SCHEMA} {opref.op_ns} {opref.op_name}"


def decode_opref(text: str) -> OpRef:
    parts = text.rstrip().split(" ", 2)
    if len(parts) != 3 or parts[0] != OPREF_SCHEMA:
        raise ValueError(f"invalid opref {text!r}")
    return OpRef(parts[1], parts[2])


# ---------------------------------------------------------------------
# runner log


def runner_log(run: Run, message: str) -> None:
    """Append a line to `log/runner` in Gage's format."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime())
    append_text(run_meta_path(run, "log", "runner"), f"{stamp} {message}\n")


# ---------------------------------------------------------------------
# making runs


def make_run(opref: OpRef, location: str, id: str | None = None) -> Run:
    """Create the meta dir of a new run under `location` and write opref."""
    run_id = id or make_run_id()
    run_dir = os.path.join(location, run_id)
    meta_dir = run_dir + ".meta"
    make_new_dir(os.path.realpath(meta_dir))
    write_text(os.path.join(meta_dir, "opref"), encode_opref(opref))
    return Run(run_id, opref, meta_dir, run_dir, run_name_for_id(run_id))


def encode_json(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True)


def write_meta(run: Run, relpath: str, text: str, *, log_as: str | None = None) -> None:
    """Write a read-only meta file, logging `Writing meta <log_as>` first."""
    runner_log(run, f"Writing meta {log_as or relpath}")
    write_text(run_meta_path(run, *relpath.split("/")), text)


def write_timestamp(run: Run, name: str) -> None:
    write_meta(run, name, str(make_run_timestamp()))


def init_run_meta(
    run: Run,
    opdef: OpDef,
    config: dict[str, Any],
    cmd: OpCmd,
    system_attrs: dict[str, Any] | None = None,
) -> None:
    """Write the run's meta files: schema, id, opdef, config, proc, sys."""
    write_text(run_meta_path(run, "__schema__"), META_SCHEMA)
    write_meta(run, "id", run.id)
    write_meta(run, "opdef.json", encode_json(opdef.as_json()), log_as="opdef")
    write_meta(run, "config.json", encode_json(config), log_as="config")
    write_meta(run, "proc/cmd.json", json.dumps(cmd.args, indent=2), log_as="proc cmd")
    write_meta(run, "proc/env.json", encode_json(cmd.env), log_as="proc env")
    for name, value in (system_attrs or {}).items():
        write_meta(run, f"sys/{name}.json", json.dumps(value), log_as=f"sys/{name}")
    write_timestamp(run, "initialized")


# ---------------------------------------------------------------------
# reading meta


def read_meta(run: Run, *parts: str) -> str:
    path = run_meta_path(run, *parts)
    try:
        return read_small(path)
    except FileNotFoundError:
        raise RunFormatError(f"run {run.id}: missing meta file {'/'.join(parts)}") from None


def _read_meta_json(run: Run, *parts: str) -> Any:
    text = read_meta(run, *parts)
    try:
        return json.loads(text)
    except ValueError as e:
        raise RunFormatError(f"run {run.id}: malformed {'/'.join(parts)}: {e}") from None


def meta_opdef(run: Run) -> OpDef:
    data = _read_meta_json(run, "opdef.json")
    if not isinstance(data, dict):
        raise RunFormatError(f"run {run.id}: opdef.json must hold a JSON object")
    return OpDef(run.opref.op_name, data)


def meta_config(run: Run) -> dict[str, Any]:
    data = _read_meta_json(run, "config.json")
    if not isinstance(data, dict):
        raise RunFormatError(f"run {run.id}: config.json must hold a JSON object")
    return data


def meta_opcmd(run: Run) -> OpCmd:
    args = _read_meta_json(run, "proc", "cmd.json")
    env = _read_meta_json(run, "proc", "env.json")
    if not (isinstance(args, str) or (isinstance(args, list) and args)):
        raise RunFormatError(f"run {run.id}: proc/cmd.json must hold a command")
    if not isinstance(env, dict):
        raise RunFormatError(f"run {run.id}: proc/env.json must hold a JSON object")
    return OpCmd(args, {str(k): str(v) for k, v in env.items()})


def read_small(path: str) -> str:
    """A meta file's text, read with plain system calls.

    Listings read several small files per run; this is several times
    faster than `open()` with its text wrapper. Raises as `open()` does.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = [os.read(fd, _CHUNK)]
        while len(chunks[-1]) == _CHUNK:
            chunks.append(os.read(fd, _CHUNK))
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


_CHUNK = 65536


def meta_timestamp(run: Run, name: str) -> int | None:
    """A timestamp meta file (`staged`, `started`, ...) or None if missing."""
    try:
        return int(read_small(run_meta_path(run, name)).rstrip())
    except (FileNotFoundError, ValueError):
        return None


def meta_exit_code(run: Run) -> int | None:
    try:
        return int(read_small(run_meta_path(run, "proc", "exit")).rstrip())
    except (FileNotFoundError, ValueError):
        return None


def run_summary(run: Run) -> RunSummary:
    """The run's summary.json (written at finalize); empty if missing or bad."""
    try:
        data = json.loads(read_small(run_meta_path(run, "summary.json")))
    except (OSError, ValueError):
        return RunSummary({})
    return RunSummary(data if isinstance(data, dict) else {})


def run_for_meta_dir(meta_dir: str) -> Run:
    """The run of a meta dir; raises RunFormatError if it isn't one."""
    try:
        opref = decode_opref(read_small(meta_dir + "/opref"))
    except (OSError, ValueError) as e:
        raise RunFormatError(f"{meta_dir} is not a run meta dir: {e}") from None
    run_dir = meta_dir[: -len(".meta")] if meta_dir.endswith(".meta") else meta_dir
    try:
        run_id = read_small(meta_dir + "/id").rstrip()
    except FileNotFoundError:
        run_id = os.path.basename(run_dir)
    try:
        name = run_name_for_id(run_id)
    except ValueError:
        raise RunFormatError(f"{meta_dir}: run id {run_id!r} is not hex") from None
    return Run(run_id, opref, meta_dir, run_dir, name)
