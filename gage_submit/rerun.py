"""`gage-submit rerun`: new runs of an old run's op, staged from the old run's source code.

The old run's staged source files (the `s` entries of its `log/files`)
are copied to a scratch dir and staged from there, so a rerun runs the
code the old run ran, whatever the project holds now. Its config is the
old run's overlaid by the new flags (a grid makes one run per
combination); the command and its environment are the old run's.
Each new run records the run it came from in `<id>.meta/queue/rerun-of`.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from dataclasses import dataclass
from typing import Any

from gage_runs.files_log import SOURCE, reduce_files_log
from gage_runs.fsmode import make_dirs, write_text
from gage_runs.lifecycle import stage_run
from gage_runs.meta import init_run_meta, make_run, meta_config, meta_opcmd, meta_opdef
from gage_runs.sidecars import log_user_attrs
from gage_runs.staging import discard_run, system_attrs
from gage_runs.types import OpCmd, OpDef, Run

from .errors import SubmitError
from .lineage import write_rerun_of
from .progress import run_ref


@dataclass(frozen=True)
class RerunSource:
    """What a rerun takes from the old run."""

    run: Run
    opdef: OpDef
    cmd: OpCmd
    config: dict[str, Any]


def rerun_source(run: Run) -> RerunSource:
    """The old run's op, command and config; SubmitError if it was never staged."""
    from gage_runs.meta import meta_timestamp

    if meta_timestamp(run, "staged") is None:
        raise SubmitError(
            f"run {run_ref(run)} was never staged, so it has no source code to rerun"
        )
    return RerunSource(run, meta_opdef(run), meta_opcmd(run), meta_config(run))


def stage_rerun(
    source: RerunSource, config: dict[str, Any], runs_dir: str, *, label: str | None = None,
    run_id: str | None = None,
) -> Run:
    """Make and stage a run of the old run's op from its source code, with `config`.

    As `gage_runs.staging.stage_op`: a failing hook leaves the run
    pending; a file-system error removes it and propagates. `run_id` is
    the new run's id if the caller chose it.
    """
    with tempfile.TemporaryDirectory(prefix="gage-rerun-") as scratch:
        _copy_source_files(source.run, scratch)
        run = make_run(source.run.opref, runs_dir, run_id)
        try:
            init_run_meta(run, source.opdef, config, source.cmd, system_attrs())
            _copy_project_ref(source.run, run)
            log_user_attrs(run, {"label": label} if label else {})
            write_rerun_of(run, source.run)
            stage_run(run, scratch)
        except OSError:
            discard_run(run)
            raise
    return run


def _copy_source_files(run: Run, dest: str) -> None:
    """The old run's source files, writable (config patching rewrites them)."""
    for type, relpath in reduce_files_log(run):
        src = os.path.join(run.run_dir, relpath)
        if type != SOURCE or not os.path.isfile(src):
            continue
        target = os.path.join(dest, relpath)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(src, target)
        os.chmod(target, stat.S_IMODE(os.stat(src).st_mode) | stat.S_IWUSR)


def _copy_project_ref(old: Run, new: Run) -> None:
    """`<id>.project` as the old run's: the rerun belongs to the same project."""
    try:
        with open(old.run_dir + ".project") as f:
            ref = f.read()
    except FileNotFoundError:
        return
    make_dirs(os.path.dirname(new.run_dir))
    write_text(new.run_dir + ".project", ref, readonly=False)
