"""The commands of `gage-submit`, one module each.

Each module defines `command`, a click command that `gage_submit.cli`
loads only when it is asked for, so a command pays at start-up for its own
imports alone; what they share (options, the status choices, settings,
run lookup) is in `common`. Heavy imports stay inside the functions that
need them: none of these modules imports Celery, and `list` no broker.
"""
