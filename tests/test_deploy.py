"""The deploy kit as shipped: Redis starts from its config, and the compose
file's and systemd units' commands run a real run.

Redis is started from `deploy/redis/redis.conf` with the compose file's own
command line, only its port, dir and bind overridden (a free loopback port,
a tmp dir). The worker and beat commands are taken from `deploy/compose.yaml`
and the systemd units and run as they are, against that Redis, with the
compose file's broker URL pointed at it.
"""

from __future__ import annotations

import configparser
import os
import shutil
import socket
import subprocess
import sysconfig
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import redis
import yaml
from support.redis_server import REDIS_SERVER, free_port
from support.submit_cli import GageSubmit
from support.workers import Bed, wait_for

REPO = Path(__file__).resolve().parent.parent
DEPLOY = REPO / "deploy"
REDIS_CONF = DEPLOY / "redis" / "redis.conf"
COMPOSE = DEPLOY / "compose.yaml"
SYSTEMD = DEPLOY / "systemd"
SCRIPTS = Path(sysconfig.get_path("scripts"))
IMAGE_ROOT = "/opt/gage-queue"  # where deploy/Dockerfile puts the repo's files


def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def redis_conf() -> dict[str, str]:
    """redis.conf's directives (the last of a repeated one wins, as in Redis)."""
    directives = {}
    for line in REDIS_CONF.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.strip().partition(" ")
            directives[name] = value
    return directives


def compose_redis_argv(workdir: Path, port: int) -> list[str]:
    """The compose file's redis command on this host: its config file, our port/dir/bind."""
    service = compose()["services"]["redis"]
    mounts = dict(volume.split(":")[1::-1] for volume in service["volumes"])
    argv = [REDIS_SERVER if arg == "redis-server" else arg for arg in service["command"]]
    argv = [str(DEPLOY / mounts[arg]) if arg in mounts else arg for arg in argv]
    assert argv[1] == str(REDIS_CONF), argv
    if "--dir" in argv:  # Redis changes to the dir as it reads it: replace, don't append
        at = argv.index("--dir")
        del argv[at : at + 2]
    return [*argv, "--port", str(port), "--dir", str(workdir), "--bind", "127.0.0.1",
            "--logfile", str(workdir / "redis.log")]


@pytest.fixture
def deploy_redis(tmp_path):
    """redis-server from the deploy config; (port, password, data dir)."""
    if not os.access(REDIS_SERVER, os.X_OK):
        pytest.skip(f"no redis-server at {REDIS_SERVER}")
    workdir = tmp_path / "redis"
    workdir.mkdir()
    port = free_port()
    with open(workdir / "stderr", "wb") as stderr:
        proc = subprocess.Popen(
            compose_redis_argv(workdir, port), stdout=stderr, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    password = redis_conf()["requirepass"]
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=5)

    def up() -> bool:
        if proc.poll() is not None:
            logs = [path.read_text() for path in workdir.glob("*") if path.is_file()]
            raise AssertionError(f"redis-server exited: {' '.join(logs)}")
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(up, 10, "redis-server from deploy/redis/redis.conf")
        yield port, password, workdir
    finally:
        proc.kill()
        proc.wait(10)


@pytest.mark.system
def test_redis_conf_keeps_messages_never_evicts_and_requires_its_password(deploy_redis):
    port, password, workdir = deploy_redis
    anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, password="wrong", socket_timeout=5).ping()
    client = redis.Redis(host="127.0.0.1", port=port, password=password, socket_timeout=5)
    config = client.config_get("*")
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert int(config["maxmemory"]) == 1024**3
    client.set("gage-test", "kept")
    wait_for(lambda: any((workdir / "appendonlydir").glob("*.aof")), 5, "the AOF file")


def test_redis_conf_listens_beyond_loopback_so_other_containers_reach_it():
    """The config binds every interface; the password guards them (checked above)."""
    bind = redis_conf()["bind"].split()
    assert "*" in bind or "0.0.0.0" in bind, bind
    assert redis_conf()["protected-mode"] == "yes"


def test_compose_broker_url_names_the_redis_service_and_its_password():
    services = compose()["services"]
    url = urlsplit(services["worker"]["environment"]["GAGE_BROKER_URL"])
    assert url.hostname in services  # the compose network's name for the redis service
    assert url.hostname == "redis"
    assert url.port == int(redis_conf()["port"])
    assert url.password == redis_conf()["requirepass"]


def test_compose_installs_at_build_time_and_mounts_no_source():
    """No service installs at start or mounts the repo: the image has gage-queue built in."""
    services = compose()["services"]
    for name, service in services.items():
        assert "pip" not in " ".join(service["command"]), name
        sources = [volume.split(":")[0] for volume in service.get("volumes", [])]
        assert not {"..", "../", "../."} & set(sources), (name, sources)
        assert not any(volume.endswith(":ro") for volume in service.get("volumes", [])
                       if volume.split(":")[1] == "/runs"), name
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert "pip install" in dockerfile
    assert f"WORKDIR {IMAGE_ROOT}" in dockerfile


def test_compose_file_is_valid_for_docker_compose(tmp_path):
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    proc = subprocess.run(
        [tool, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == "", proc.stderr


def in_image(argv: list[str]) -> list[str]:
    """A container command on this host: the image's paths are the repo's."""
    return [arg.replace(IMAGE_ROOT, str(REPO)) for arg in argv]


@pytest.mark.system
def test_compose_worker_and_beat_run_a_scheduled_run(deploy_redis, tmp_path):
    """The compose worker and beat commands, as written, run the schedule's first run."""
    port, password, _ = deploy_redis
    services = compose()["services"]
    url = services["worker"]["environment"]["GAGE_BROKER_URL"].replace(
        "@redis:6379", f"@127.0.0.1:{port}"
    )
    bed = Bed(tmp_path / "bed", broker_url=url)
    try:
        worker_argv = in_image(services["worker"]["command"])
        bed.start_worker(command=[str(SCRIPTS / worker_argv[0]), *worker_argv[1:]])
        beat_argv = in_image(services["beat"]["command"])
        log_path = tmp_path / "beat.log"
        with open(log_path, "wb") as log:
            beat = subprocess.Popen(
                [str(SCRIPTS / beat_argv[0]), *beat_argv[1:]], env=bed.worker_env(),
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            gage_submit = GageSubmit(REPO, bed.worker_env())

            def scheduled_run_completed() -> bool:
                listed = gage_submit("list", "--schedule", "smoke-train", "--json").json()
                return bool(listed) and listed[0]["status"] == "completed"

            wait_for(scheduled_run_completed, 30, "the smoke-train run to complete", 0.3)
        finally:
            beat.terminate()
            beat.wait(15)
        assert "smoke-train: submitted" in log_path.read_text(), log_path.read_text()
    finally:
        bed.close()


def systemd_exec_start(unit: str, instance: str = "") -> list[str]:
    """A unit's ExecStart with %i and %H filled in and /opt/gage-queue/bin as this venv's."""
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    parser.read(SYSTEMD / unit)
    command = parser["Service"]["ExecStart"]
    command = command.replace("%i", instance).replace("%H", socket.gethostname())
    return [arg.replace(f"{IMAGE_ROOT}/bin", str(SCRIPTS)) for arg in command.split()]


@pytest.mark.system
def test_systemd_worker_unit_starts_a_worker_that_runs_a_run(deploy_redis, tmp_path):
    port, password, _ = deploy_redis
    bed = Bed(tmp_path / "bed", broker_url=f"redis://:{password}@127.0.0.1:{port}/0")
    try:
        argv = systemd_exec_start("gage-worker@.service", "gpu")
        assert argv[1:] == ["worker", "-Q", "gpu", "--hostname", f"gpu@{socket.gethostname()}"]
        worker = bed.start_worker(command=argv)
        assert "gpu" in worker.log()
        run = bed.submit(bed.stage(), queue="gpu")
        assert bed.wait_status([run]) == {run.id: "completed"}
    finally:
        bed.close()


def test_systemd_units_verify(tmp_path):
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed")
    exec_path = f"{IMAGE_ROOT}/bin/gage-worker"
    units = []
    for source, name in (("gage-beat.service", "gage-beat.service"),
                         ("gage-worker@.service", "gage-worker@gage.service")):
        text = (SYSTEMD / source).read_text()
        assert exec_path in text
        # The one difference from an installed unit: the venv's gage-worker.
        (tmp_path / name).write_text(text.replace(exec_path, str(SCRIPTS / "gage-worker")))
        units.append(str(tmp_path / name))
    proc = subprocess.run([tool, "verify", *units], capture_output=True, text=True, timeout=60)
    ours = [line for line in proc.stderr.splitlines() if str(tmp_path) in line or "gage-" in line]
    assert proc.returncode == 0 and not ours, proc.stderr
