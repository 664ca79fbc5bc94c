"""gage_worker: run staged Gage runs on a pool of Celery workers.

`celery -A gage_worker worker|inspect|control` and Flower use `app`, which
is built from the environment (`gage_queue.settings`) on first access.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "app":
        from gage_worker.celery_app import env_app

        return env_app()
    raise AttributeError(f"module 'gage_worker' has no attribute {name!r}")
