"""The environment a run (and its keeper) inherits: the worker's, less its secrets."""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

WORKER_ENV_PREFIXES = ("GAGE_", "CELERY_")
WORKER_ENV_NAMES = frozenset({"BROKER_URL", "FORKED_BY_MULTIPROCESSING"})


def run_env(
    broker_url: str | None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment a run inherits: the worker's, without its secrets.

    Drops the worker's own settings (`GAGE_*`, `CELERY_*`, `BROKER_URL`)
    and any variable that holds the broker's password (the keeper's slot
    part sets `CUDA_VISIBLE_DEVICES`).
    """
    environ = os.environ if environ is None else environ
    password = _password(broker_url)
    env = {
        name: value
        for name, value in environ.items()
        if not name.startswith(WORKER_ENV_PREFIXES)
        and name not in WORKER_ENV_NAMES
        and not (password and password in value)
    }
    return env


def _password(url: str | None) -> str | None:
    if not url:
        return None
    try:
        return urlsplit(url).password or None
    except ValueError:
        return None
