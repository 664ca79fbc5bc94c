"""Shell completion: op names from the project's Gage file, runs from the runs dir.

Click's own completion drives it (README "Shell completion"): the shell
calls `gage-submit` with `_GAGE_SUBMIT_COMPLETE=bash_complete` (or
`zsh_complete`, `fish_complete`) and the words typed so far, and these
callbacks give the candidates. They never fail: a missing or broken Gage
file or runs dir completes nothing. The project is the one of `-C DIR`
if typed already, else the cwd's; the runs dir is found as for `list`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import click
    from click.shell_completion import CompletionItem

HELP_AT_MOST = 50
"""Runs get their op and status as help (zsh and fish show it) only when at most this
many match: each costs a few reads."""


def op_items(ctx: click.Context, incomplete: str) -> list[CompletionItem]:
    """The ops of the project's Gage file whose names start with `incomplete`."""
    from click.shell_completion import CompletionItem

    from gage_queue.text import shown
    from gage_runs.gagefile import find_gagefile, find_project_dir, load_gagefile

    try:
        project_dir = find_project_dir(_param(ctx, "project_dir") or ".")
        gagefile = find_gagefile(project_dir) if project_dir else None
        ops = load_gagefile(gagefile).get_operations() if gagefile else {}
    except Exception:  # noqa: BLE001 - completion offers nothing rather than fail
        return []
    return [
        CompletionItem(name, help=shown(opdef.get_description() or "", 80) or None)
        for name, opdef in sorted(ops.items()) if name.startswith(incomplete)
    ]


def complete_ops(ctx: click.Context, param: click.Parameter,
                 incomplete: str) -> list[CompletionItem]:
    """`shell_complete` of an option or argument that takes an op name."""
    return op_items(ctx, incomplete)


def complete_dirs(ctx: click.Context, param: click.Parameter,
                  incomplete: str) -> list[CompletionItem]:
    """`shell_complete` of a DIR option: the shell completes directory names."""
    from click.shell_completion import CompletionItem

    return [CompletionItem(incomplete, type="dir")]


def complete_submit_args(ctx: click.Context, param: click.Parameter,
                         incomplete: str) -> list[CompletionItem]:
    """`shell_complete` of submit's `[OP] [NAME=VALUE]...`: the op comes first."""
    if ctx.params.get(param.name or "") or "=" in incomplete:
        return []
    return op_items(ctx, incomplete)


def complete_runs(ctx: click.Context, param: click.Parameter,
                  incomplete: str) -> list[CompletionItem]:
    """`shell_complete` of a RUN argument: run names, or ids once `incomplete` is a prefix
    of one (newest first; an empty word gets names only)."""
    from click.shell_completion import CompletionItem

    from gage_runs.runs_dir import scan_runs

    from .project import runs_dir_for_reading

    try:
        entries = scan_runs(runs_dir_for_reading(_param(ctx, "project_dir"),
                                                 _param(ctx, "runs_dir")))
    except Exception:  # noqa: BLE001 - completion offers nothing rather than fail
        return []
    already = set(ctx.params.get(param.name or "") or ()) if param.nargs == -1 else set()
    matches = [(entry, entry.name) for entry in entries if entry.name.startswith(incomplete)]
    if incomplete:
        matches += [(entry, entry.id) for entry in entries if entry.id.startswith(incomplete)]
    matches = [(entry, value) for entry, value in matches if value not in already]
    with_help = len(matches) <= HELP_AT_MOST
    return [CompletionItem(value, help=_run_help(entry) if with_help else None)
            for entry, value in matches]


def _run_help(entry: object) -> str | None:
    """`train, completed`: a run's op and status."""
    from gage_queue.snapshots import run_state
    from gage_queue.text import shown

    try:
        run = entry.load()  # type: ignore[attr-defined]
        return None if run is None else f"{shown(run.opref.op_name, 40)}, {run_state(run)}"
    except Exception:  # noqa: BLE001
        return None


def _param(ctx: click.Context | None, name: str) -> str | None:
    """An option's value typed so far in this command or the group above it."""
    while ctx is not None:
        value = ctx.params.get(name)
        if value:
            return str(value)
        ctx = ctx.parent
    return None
