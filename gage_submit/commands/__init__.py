"""The commands of `gage-submit`, one module each.

Each module defines `command`, a click command that `gage_submit.group`
loads only when it is asked for, so a command pays at start-up for its own
imports alone; what they share (the status choices, settings, run lookup)
is in `common`, their shared click options in `options`. Heavy imports stay
inside the functions that need them: none of these modules imports Celery,
and `list` no broker. A plain submit loads none of them but `common`
(`gage_submit.submit_args`).
"""

COMMANDS = {  # name -> (its module in gage_submit.commands, loaded when used; its short help)
    "submit": ("submit", "Stage runs of an op and queue them (the default command)."),
    "list": ("list", "List runs with their status."),
    "show": ("show", "Show one run in full: status, host, times, config."),
    "status": ("show", "Show one run in full: status, host, times, config."),
    "logs": ("logs", "Print a run's output; -f follows it."),
    "wait": ("wait", "Wait for runs to end."),
    "cancel": ("cancel", "Cancel queued or running runs."),
    "rerun": ("rerun", "Run a run again from its staged source code, flags changed."),
    "queue": ("queue", "Queue runs staged by `gage run --stage`."),
    "priority": ("priority", "Change the priority of queued runs not yet started."),
    "pool": ("pool", "Show the workers, their runs and GPUs, and who waits."),
    "compare": ("compare", "Compare runs' flags and metrics side by side."),
    "view": ("view", "Serve a web page of runs, their output and the pool."),
}
"""`--help` lists the short helps from here, so it loads no command module; a test
holds them equal to each command's own."""
