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
import re
import shlex
import shutil
import socket
import subprocess
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import click
import pytest
import redis
import yaml
from redis.backoff import NoBackoff
from redis.retry import Retry
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
    # No retries: redis-py retries a refused AUTH with backoff, seconds of waiting for the
    # same answer.
    once = Retry(NoBackoff(), 0)
    anonymous = redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, retry=once)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(host="127.0.0.1", port=port, password="wrong", socket_timeout=5,
                    retry=once).ping()
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


DEPLOY_README = DEPLOY / "README.md"


def install_steps() -> list[list[str]]:
    """The commands of deploy/README.md's install block, comments dropped."""
    text = DEPLOY_README.read_text().split("## Install (systemd)", 1)[1]
    block = re.search(r"```bash\n(.*?)```", text, re.S).group(1)
    lines = [line.split("  #")[0].strip() for line in block.splitlines()]
    return [shlex.split(line) for line in lines if line and not line.startswith("#")]


@dataclass
class Installed:
    """What the install steps made under `root` (every absolute path moved there)."""

    root: Path
    user: str = ""
    venv: str = ""
    enabled: list[str] = field(default_factory=list)

    def at(self, path: str) -> Path:
        assert path.startswith("/"), path
        return self.root / path.lstrip("/")


def follow_install_steps(root: Path) -> Installed:
    """Do deploy/README.md's install steps into `root`: files and dirs land under it,
    `useradd` and `systemctl` are recorded, and `pip install .` is stood in for by this
    checkout's `gage-worker` script (what pip puts into the venv's bin). A step this
    does not know fails the test: the doc must stay followable."""
    done = Installed(root)
    for argv in install_steps():
        step = " ".join(argv)
        if argv[0] == "useradd":
            done.user = argv[-1]
        elif argv[:3] == ["python3", "-m", "venv"]:
            done.venv = argv[3]
            done.at(done.venv).joinpath("bin").mkdir(parents=True)
        elif argv[0].endswith("/bin/pip") and argv[1:] == ["install", "."]:
            assert argv[0] == f"{done.venv}/bin/pip", step
            shutil.copy(SCRIPTS / "gage-worker", done.at(f"{done.venv}/bin/gage-worker"))
        elif argv[0] == "install":
            opts, paths = install_args(argv[1:])
            if "-d" in opts:
                for path in paths:
                    done.at(path).mkdir(parents=True, exist_ok=True)
                continue
            *sources, dest = paths
            assert opts.get("-o", done.user) == done.user, step
            for source in sources:
                target = done.at(dest)
                if dest.endswith("/"):
                    target.mkdir(parents=True, exist_ok=True)
                    target = target / Path(source).name
                shutil.copy(REPO / source, target)
                target.chmod(int(opts.get("-m", "0755"), 8))
        elif argv[:2] == ["systemctl", "daemon-reload"]:
            pass
        elif argv[:3] == ["systemctl", "enable", "--now"]:
            done.enabled.append(argv[3] if "." in argv[3] else f"{argv[3]}.service")
        else:
            raise AssertionError(f"an install step the test does not know: {step}")
    return done


def install_args(args: list[str]) -> tuple[dict[str, str], list[str]]:
    """`install`'s options (-d, -m MODE, -o USER, -g GROUP) and paths."""
    opts: dict[str, str] = {}
    paths = []
    it = iter(args)
    for arg in it:
        if arg == "-d":
            opts["-d"] = ""
        elif arg in ("-m", "-o", "-g"):
            opts[arg] = next(it)
        else:
            paths.append(arg)
    return opts, paths


def unit_file(installed: Installed, unit: str) -> configparser.ConfigParser:
    """An enabled unit's file as installed (`name@instance` reads `name@.service`)."""
    name = re.sub(r"@[^.]+\.", "@.", unit)
    parser = configparser.ConfigParser(interpolation=None, strict=False)
    path = installed.at(f"/etc/systemd/system/{name}")
    assert path.exists(), f"{unit}: no {path}"
    parser.read(path)
    return parser


def test_install_steps_make_everything_the_units_name(tmp_path):
    """Followed into a scratch root, the steps leave the user, the program, the env file
    and the schedule that the units they enable name."""
    installed = follow_install_steps(tmp_path / "root")
    assert installed.enabled == ["gage-worker@gage.service", "gage-beat.service"]
    assert installed.user and installed.venv == IMAGE_ROOT
    env = dict(line.split("=", 1) for line in installed.at("/etc/gage-queue/env").read_text()
               .splitlines() if line and not line.startswith("#"))
    for unit in installed.enabled:
        service = unit_file(installed, unit)["Service"]
        unit_section = unit_file(installed, unit)["Unit"]
        assert service["User"] == installed.user, unit
        assert installed.at(service["EnvironmentFile"]).is_file(), unit
        assert unit_section["RequiresMountsFor"] == env["GAGE_RUNS"], unit
        argv = service["ExecStart"].split()
        assert argv[0] == f"{installed.venv}/bin/gage-worker", unit
        assert os.access(installed.at(argv[0]), os.X_OK), unit
        if "--schedule" in argv:
            assert installed.at(argv[argv.index("--schedule") + 1]).is_file(), unit


def test_every_exec_start_parses_with_gage_workers_options():
    """Each unit's ExecStart is a gage-worker command line its options accept."""
    from gage_worker.cli import main

    for unit in ("gage-worker@.service", "gage-beat.service"):
        argv = systemd_exec_start(unit, "gpu")
        name, *args = argv[1:]
        command = main.get_command(click.Context(main), name)
        assert command is not None, unit
        command.make_context(name, list(args))  # raises on an unknown option or a bad value


def test_systemd_units_verify_after_the_install_steps(tmp_path):
    """`systemd-analyze verify --root` finds nothing to say about the units the install
    steps enable, in the root they made (the host's own units added for dependencies:
    network-online.target, multi-user.target, ...)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip("systemd-analyze is not installed (Debian: apt-get install systemd)")
    host_units = Path("/usr/lib/systemd/system")
    if not (host_units / "multi-user.target").exists():
        pytest.skip(f"no systemd units in {host_units} for the units' dependencies")
    installed = follow_install_steps(tmp_path / "root")
    shutil.copytree(host_units, installed.at(str(host_units)), symlinks=True)
    proc = subprocess.run([tool, "verify", f"--root={installed.root}", *installed.enabled],
                          capture_output=True, text=True, timeout=60)
    ours = [line for line in proc.stderr.splitlines() if "gage-" in line]
    assert proc.returncode == 0 and not ours, proc.stderr


def test_the_image_gets_every_package_the_project_installs():
    """deploy/Dockerfile copies each package pyproject.toml includes (a package left out
    builds an image whose commands fail at the first import)."""
    import tomllib

    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"]["find"]["include"]
    packages = {pattern.rstrip("*") for pattern in include}
    copied = set(re.findall(r"^COPY (\S+) \1$", (DEPLOY / "Dockerfile").read_text(), re.M))
    assert packages <= copied, packages - copied


def test_compose_config_resolves_the_readmes_command_without_an_engine(tmp_path):
    """`docker-compose config` (no engine needed) with the README's GAGE_UID/GAGE_GID: the
    containers run as that user and mount the checkout's ./runs (`mkdir -p runs`)."""
    tool = shutil.which("docker-compose")
    if tool is None:
        pytest.skip("docker-compose is not installed (Debian: apt-get install docker-compose)")
    readme = (REPO / "README.md").read_text()
    assert "mkdir -p runs && GAGE_UID=$(id -u) GAGE_GID=$(id -g) docker compose -f" \
           " deploy/compose.yaml up" in readme
    proc = subprocess.run(
        [tool, "-f", str(COMPOSE), "config"], capture_output=True, text=True, timeout=60,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path), "GAGE_UID": "1234",
             "GAGE_GID": "5678"},
    )
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)["services"]
    for name in ("worker", "beat", "flower"):
        service = resolved[name]
        assert service["user"] == "1234:5678", name
        [runs] = [volume.split(":")[0] for volume in service["volumes"]
                  if volume.split(":")[1] == "/runs"]  # v1 prints SOURCE:TARGET:MODE
        assert Path(runs) == REPO / "runs", name
        assert service["build"]["context"] == str(REPO), name
