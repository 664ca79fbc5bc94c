"""What a keeper is asked to do, and what it answers.

The exec task hands the keeper a `KeeperJob` as JSON on its command line
(no secrets: the broker is never the keeper's business) and reads one
JSON `Outcome` line from a pipe when the keeper is done with the lock.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass


class Verdict(str, enum.Enum):
    """What happened to the run, as far as the exec task must know."""

    FINALIZE = "finalize"  # an exit is recorded: send finalize
    BUSY = "busy"  # another keeper or finalize holds the lock: nothing to do
    NOTHING = "nothing"  # finalized, not the queue's, not staged, ...: nothing to do
    DELETED = "deleted"  # the run was deleted (`gage delete`) while it ran
    CANNOT_START = "cannot-start"  # this host cannot start runs; the run stays queued


@dataclass(frozen=True)
class KeeperJob:
    runs_dir: str
    run_id: str
    node: str | None = None  # the Celery worker node, for `show`
    slots: int | None = None  # run slots of the node; None: unlimited
    gpus: tuple[str, ...] = ()  # one run per GPU of the host
    grace: float = 10.0
    shared_mode: str | None = None
    result_fd: int | None = None

    def encode(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def decode(cls, text: str) -> KeeperJob:
        """The job in `text`; ValueError for anything that is not one."""
        try:
            data = json.loads(text)
            data["gpus"] = tuple(data.get("gpus") or ())
            job = cls(**data)
        except (TypeError, AttributeError, KeyError) as e:
            raise ValueError(f"not a keeper job: {e}") from None
        if not (isinstance(job.runs_dir, str) and isinstance(job.run_id, str)):
            raise ValueError("not a keeper job: runs_dir and run_id must be strings")
        return job


@dataclass(frozen=True)
class Outcome:
    verdict: Verdict
    message: str = ""
    exit_code: int | None = None

    def encode(self) -> bytes:
        data = {"verdict": self.verdict.value, "message": self.message,
                "exit_code": self.exit_code}
        return (json.dumps(data) + "\n").encode()

    @classmethod
    def decode(cls, data: bytes) -> Outcome | None:
        try:
            raw = json.loads(data.decode())
            return cls(Verdict(raw.pop("verdict")), raw.pop("message", ""),
                       raw.pop("exit_code", None))
        except (ValueError, KeyError, TypeError, AttributeError):
            return None
