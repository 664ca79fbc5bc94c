"""`gage-submit view`: serve a web page over the runs dir (the `view` extra).

Only click is imported here: the web framework loads when the command
runs, and a base install without the extra gets a one-line error.
"""

from __future__ import annotations

import click

from .options import project_options

DEFAULT_PORT = 8040
EXTRA_MODULES = ("starlette", "uvicorn", "jinja2")


@click.command("view", short_help="Serve a web page of runs, their output and the pool.")
@project_options
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; any but 127.0.0.1, ::1 or localhost needs the token"
              " it prints.")
@click.option("--port", type=click.IntRange(0, 65535), default=DEFAULT_PORT, show_default=True,
              help="Port to listen on (0: a free one).")
@click.option("--allow-actions", is_flag=True,
              help="Let the page cancel and label runs (needs the token it prints).")
def command(project_dir: str | None, runs_dir: str | None, host: str, port: int,
            allow_actions: bool) -> int:
    """Serve runs, one run with its live output, compare with plots, and the pool.

    Read from the runs dir alone (no broker, no database); read-only
    unless --allow-actions; on 127.0.0.1 unless --host says otherwise.
    """
    _check_extra()
    from gage_runs.runs_dir import check_runs_dir

    from ..project import current_namespace, runs_dir_for_reading
    from ..view.serve import serve

    resolved = check_runs_dir(runs_dir_for_reading(project_dir, runs_dir), writable=False)
    serve(resolved, host=host, port=port, allow_actions=allow_actions,
          namespace=current_namespace(project_dir))
    return 0


def _check_extra() -> None:
    """SubmitError (exit 2, one line) if the `view` extra is not installed."""
    missing = []
    for name in EXTRA_MODULES:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    if missing:
        from ..errors import SubmitError

        raise SubmitError(f"the web view needs {', '.join(missing)}: pip install 'gage-queue[view]'")
