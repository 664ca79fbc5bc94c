"""A new run staged from an old run's source code: reruns and retries.

The old run's staged source files (the `s` entries of its `log/files`,
and its `d` ones, for its project-files dependencies) are copied to a
scratch dir and staged from there, so the new run runs the code the old
one ran, whatever its project holds now. The op, the
command and its environment are the old run's; the config is given.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gage_runs.files_log import DEPENDENCY, SOURCE, reduce_files_log
from gage_runs.fsmode import make_dirs, write_text
from gage_runs.lifecycle import stage_run
from gage_runs.meta import init_run_meta, make_run, meta_config, meta_opcmd, meta_opdef
from gage_runs.sidecars import log_user_attrs
from gage_runs.staging import discard_run, system_attrs
from gage_runs.types import OpCmd, OpDef, Run


@dataclass(frozen=True)
class RunSource:
    """What a new run takes from an old one."""

    run: Run
    opdef: OpDef
    cmd: OpCmd
    config: dict[str, Any]

    @classmethod
    def of(cls, run: Run) -> RunSource:
        return cls(run, meta_opdef(run), meta_opcmd(run), meta_config(run))


def stage_from_run(
    source: RunSource, config: dict[str, Any], runs_dir: str, *, label: str | None = None,
    run_id: str | None = None, before_staging: Callable[[Run], None] | None = None,
) -> Run:
    """Make and stage a run of the old run's op from its source code, with `config`.

    As `staging.stage_op`: a failing hook leaves the run pending; a
    file-system error removes it and propagates. `run_id` is the new run's
    id if the caller chose it; `before_staging(run)` writes what the caller
    records about the new run (which run it reruns or retries).
    """
    import tempfile  # a rerun's or a retry's alone, not every submit's

    with tempfile.TemporaryDirectory(prefix="gage-restage-") as scratch:
        _copy_source_files(source.run, scratch)
        run = make_run(source.run.opref, runs_dir, run_id)
        try:
            init_run_meta(run, source.opdef, config, source.cmd, system_attrs())
            _copy_project_ref(source.run, run)
            log_user_attrs(run, {"label": label} if label else {})
            if before_staging is not None:
                before_staging(run)
            stage_run(run, scratch)
        except OSError:
            discard_run(run)
            raise
    return run


def _copy_source_files(run: Run, dest: str) -> None:
    """The old run's source files and dependency files, writable (config patching rewrites
    them): its project-files dependencies are copied from there again."""
    for type, relpath in reduce_files_log(run):
        src = os.path.join(run.run_dir, relpath)
        if type not in (SOURCE, DEPENDENCY) or not os.path.isfile(src):
            continue
        target = os.path.join(dest, relpath)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        shutil.copyfile(src, target)
        os.chmod(target, stat.S_IMODE(os.stat(src).st_mode) | stat.S_IWUSR)


def _copy_project_ref(old: Run, new: Run) -> None:
    """`<id>.project` as the old run's: the new run belongs to the same project."""
    try:
        with open(old.run_dir + ".project") as f:
            ref = f.read()
    except FileNotFoundError:
        return
    make_dirs(os.path.dirname(new.run_dir))
    write_text(new.run_dir + ".project", ref, readonly=False)
