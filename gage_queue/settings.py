"""Worker and submitter settings, read from the environment.

| variable | meaning | default |
|---|---|---|
| `GAGE_BROKER_URL` | broker URL (`redis://`, `amqp://`, ...) | the embedded broker in the runs dir |
| `GAGE_BROKER_URL_FILE` | a file holding the broker URL, so its password is in no environment; not with `GAGE_BROKER_URL` | none |
| `GAGE_RUNS` (else `RUNS_DIR`) | the runs dir, as Gage resolves it | none |
| `GAGE_QUEUE` | the default exec queue | `gage` |
| `GAGE_FINALIZE_QUEUE` | the queue of finalize tasks; workers without GPUs consume it (`worker.worker_argv`) | `gage-finalize` |
| `GAGE_VISIBILITY_TIMEOUT` | seconds before Redis redelivers an unacked message | `86400` |
| `GAGE_RECONCILE_INTERVAL` | seconds between reconcile passes (one worker per interval does one) | `60` |
| `GAGE_RECONCILE_THRESHOLD` | seconds an owed finalize waits before reconcile re-sends it (after a failed attempt) | `300` |
| `GAGE_PLACEMENT_TIMEOUT` | seconds a run placed on a node may wait for its keeper before it is placed again (a lost message) | `30` |
| `GAGE_CANCEL_GRACE` | seconds between SIGTERM and SIGKILL on cancel or time limit | `10` |
| `GAGE_GPUS` | GPU slots of a worker, e.g. `0,1`: one run per GPU | none |
| `GAGE_NO_WORKER_NOTICE` | seconds a run waits on a queue no worker consumes before `--wait`, `wait` and `logs -f` say so | `5` |
| `GAGE_LIST_CACHE` | `on` or `off`: `list`'s per-user cache of ended runs' rows (also 1/0, yes/no, true/false) | `on` |

Every variable is checked when settings load, before anything is staged
or sent: a bad value is a one-line error (exit 2), never a default.

A broker URL is checked when settings load: a known scheme, a host and a
port in 1-65535 for Redis and AMQP, a Redis database number, a socket path
for `redis+socket://`. Errors name the problem with the password redacted.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from gage_queue.errors import SettingsError

BROKER_SCHEMES = ("redis", "rediss", "redis+socket", "amqp", "amqps", "pyamqp", "filesystem")
_NETWORK_SCHEMES = ("redis", "rediss", "amqp", "amqps", "pyamqp")
DEFAULT_QUEUE = "gage"
MAX_URL_FILE = 4096  # bytes
_GPU_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_:.-]*\Z")
_QUEUE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]*\Z")


@dataclass(frozen=True)
class Settings:
    """Everything a worker or a submitter needs to know about the queue."""

    runs_dir: str | None = None
    broker_url: str | None = field(default=None, repr=False)  # may hold a password
    queue: str = DEFAULT_QUEUE
    finalize_queue: str = "gage-finalize"
    visibility_timeout: float = 86400.0
    reconcile_interval: float = 60.0
    reconcile_threshold: float = 300.0
    placement_timeout: float = 30.0
    cancel_grace: float = 10.0
    gpus: tuple[str, ...] = ()
    no_worker_notice: float = 5.0
    list_cache: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from `env` (default: os.environ); SettingsError if bad."""
        env = os.environ if env is None else env
        default = cls()
        return cls(
            runs_dir=env.get("GAGE_RUNS") or env.get("RUNS_DIR") or None,
            broker_url=_broker_url_from(env),
            queue=env.get("GAGE_QUEUE") or default.queue,
            finalize_queue=env.get("GAGE_FINALIZE_QUEUE") or default.finalize_queue,
            visibility_timeout=_seconds(env, "GAGE_VISIBILITY_TIMEOUT", default.visibility_timeout),
            reconcile_interval=_seconds(env, "GAGE_RECONCILE_INTERVAL", default.reconcile_interval),
            reconcile_threshold=_seconds(
                env, "GAGE_RECONCILE_THRESHOLD", default.reconcile_threshold
            ),
            cancel_grace=_seconds(env, "GAGE_CANCEL_GRACE", default.cancel_grace),
            placement_timeout=_seconds(env, "GAGE_PLACEMENT_TIMEOUT", default.placement_timeout),
            gpus=parse_gpus(env.get("GAGE_GPUS") or ""),
            no_worker_notice=_seconds(env, "GAGE_NO_WORKER_NOTICE", default.no_worker_notice),
            list_cache=_switch(env, "GAGE_LIST_CACHE", default.list_cache),
        ).validated()

    def with_overrides(self, **changes: object) -> Settings:
        """A copy with the given non-None fields replaced, validated."""
        changes = {name: value for name, value in changes.items() if value is not None}
        return replace(self, **changes).validated()  # type: ignore[arg-type]

    def validated(self) -> Settings:
        """Self, or SettingsError naming the first bad value."""
        if self.broker_url is not None:
            check_broker_url(self.broker_url)
        for name in ("queue", "finalize_queue"):
            check_queue_name(getattr(self, name))
        if self.runs_dir is not None:
            return replace(self, runs_dir=os.path.abspath(os.path.expanduser(self.runs_dir)))
        return self

    def require_runs_dir(self) -> str:
        """The runs dir, or SettingsError if none is configured."""
        if not self.runs_dir:
            raise SettingsError("no runs dir: set GAGE_RUNS or pass --runs-dir")
        return self.runs_dir


def check_broker_url(url: str) -> str:
    """`url`, or SettingsError naming what is wrong with it (password redacted)."""
    scheme, sep, _ = url.partition("://")
    if not sep or scheme not in BROKER_SCHEMES:
        _bad_url(url, "expected one of " + ", ".join(f"{s}://" for s in BROKER_SCHEMES))
    if any(char.isspace() or not char.isprintable() for char in url):
        _bad_url(url, "it contains spaces or control characters")
    from urllib.parse import urlsplit  # with ipaddress, 4 ms a submit on the embedded broker skips

    parts = urlsplit(url)
    if scheme == "redis+socket" and parts.path.strip("/") == "":
        _bad_url(url, "no socket path (redis+socket:///path/to/redis.sock)")
    if scheme not in _NETWORK_SCHEMES:
        return url
    if not parts.hostname:
        _bad_url(url, "no host")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        _bad_url(url, "the port must be a number in 1-65535")
    database = parts.path.strip("/")
    if scheme.startswith("redis") and database and not database.isdigit():
        _bad_url(url, f"the database must be a number like /0, not {database!r}")
    return url


def _bad_url(url: str, problem: str) -> None:
    raise SettingsError(f"invalid broker URL {redact_url(url)!r}: {problem}")


def _broker_url_from(env: Mapping[str, str]) -> str | None:
    """GAGE_BROKER_URL, or the content of GAGE_BROKER_URL_FILE."""
    url, path = env.get("GAGE_BROKER_URL"), env.get("GAGE_BROKER_URL_FILE")
    if not path:
        return url or None
    if url:
        raise SettingsError("set GAGE_BROKER_URL or GAGE_BROKER_URL_FILE, not both")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_URL_FILE + 1)
    except OSError as e:
        raise SettingsError(f"cannot read GAGE_BROKER_URL_FILE {path}: {e.strerror}") from None
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        text = ""
    if not text or len(data) > MAX_URL_FILE or "\n" in text:
        raise SettingsError(f"GAGE_BROKER_URL_FILE {path} must hold one broker URL")
    return text


def check_queue_name(name: str) -> str:
    if not _QUEUE_NAME.match(name):
        raise SettingsError(
            f"invalid queue name {name!r}: use letters, digits and _ . : - only"
        )
    return name


def parse_gpus(text: str) -> tuple[str, ...]:
    """GPU slots from `0,1` (device ids or UUIDs as CUDA_VISIBLE_DEVICES takes them)."""
    if not text.strip():
        return ()
    gpus = tuple(part.strip() for part in text.split(","))
    if not all(_GPU_ID.match(gpu) for gpu in gpus) or len(set(gpus)) != len(gpus):
        raise SettingsError(f"invalid GPU list {text!r}: expected distinct ids like 0,1")
    return gpus


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name} must be a positive number of seconds, not {text!r}")
    return value


_SWITCH = {"on": True, "1": True, "yes": True, "true": True,
           "off": False, "0": False, "no": False, "false": False}


def _switch(env: Mapping[str, str], name: str, default: bool) -> bool:
    text = env.get(name)
    if not text:
        return default
    try:
        return _SWITCH[text.strip().lower()]
    except KeyError:
        raise SettingsError(f"{name} must be on or off, not {text!r}") from None


def redact_url(url: str) -> str:
    """The URL without its password, for messages (all up to the last `@` is user info)."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, location = rest.rpartition("@")
    if not (sep and at and ":" in userinfo):
        return url
    return f"{scheme}://{userinfo.partition(':')[0]}:***@{location}"
