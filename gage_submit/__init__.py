"""gage_submit: the `gage-submit` command, which sends Gage ops to the worker pool.

`cli` is the entry point: a plain submit is read by `submit_args` and run by
`submit_command` without click, anything else goes to `group`, the click
group, which loads each command from its module in `commands/`; `submit`
plans and submits runs (`flags` for grids, `project` to find the op and runs
dir; `gage_queue.broker.send` queues them); `info`, `listing`, `filters`,
`watch`, `render`, `progress` and `term` serve the commands that list, show,
follow, wait for and cancel runs.
"""

PROG = "gage-submit"
