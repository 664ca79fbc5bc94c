"""Making runs and writing their meta files, byte for byte as Gage 0.1.2."""

from __future__ import annotations

import json
import os
import re
import stat

import pytest

from gage_runs import OpCmd, OpDef, OpRef, init_run_meta, make_run, run_status
from gage_runs.meta import decode_opref, encode_opref, make_run_timestamp, run_for_meta_dir
from gage_runs.names import is_run_id, make_run_id, run_name_for_id


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def read(path) -> str:
    with open(path) as f:
        return f.read()


def test_run_ids_are_lowercase_uuid4():
    """A run id is a random lowercase UUID4."""
    run_id = make_run_id()
    assert is_run_id(run_id)
    assert run_id[14] == "4"
    assert not is_run_id(run_id.upper())
    assert not is_run_id("../../etc")


def test_run_names_are_proquints_of_the_first_8_hex_digits():
    """Names come from the first 8 hex digits, as Gage's examples show."""
    assert run_name_for_id("60a825b1-0000") == "kafom-fikud"
    assert run_name_for_id("60a82") == "babak-bopaf"
    with pytest.raises(ValueError):
        run_name_for_id("gggggggg")
    with pytest.raises(ValueError):
        run_name_for_id("-1234567")


def test_ids_are_uuid4_strings_as_the_uuid_module_makes_them():
    import random
    import uuid

    from gage_runs.names import random_uuid4, uuid4_string

    rng = random.Random(3)
    for bits in [0, (1 << 128) - 1, *(rng.getrandbits(128) for _ in range(2000))]:
        assert uuid4_string(bits) == str(uuid.UUID(int=bits, version=4))
    assert uuid.UUID(random_uuid4()).version == 4
    assert len({random_uuid4() for _ in range(1000)}) == 1000


def test_run_names_are_the_proquint_packages():
    """The names are what the `proquint` package Gage uses makes of the same digits."""
    import random

    import proquint

    values = [0, 1, 0xFFFF, 0x10000, 0x7F000001, 0xFFFFFFFF]
    rng = random.Random(7)
    values += [rng.getrandbits(32) for _ in range(2000)]
    for value in values:
        assert run_name_for_id(f"{value:08x}-rest") == proquint.uint2quint(value)


def test_opref_round_trips_and_rejects_spaces():
    """opref is `1 <ns> <name>`; parts may not be empty or contain spaces."""
    assert encode_opref(OpRef("test", "test")) == "1 test test"
    opref = decode_opref("1 proj say\n")
    assert (opref.op_ns, opref.op_name) == ("proj", "say")
    with pytest.raises(ValueError):
        encode_opref(OpRef("my proj", "say"))
    with pytest.raises(ValueError):
        decode_opref("2 proj say")


def test_make_run_writes_only_opref(tmp_path):
    """make_run creates the meta dir (not the run dir) with a read-only opref."""
    runs_dir = tmp_path / "runs"
    run = make_run(OpRef("test", "say"), str(runs_dir))
    assert os.listdir(run.meta_dir) == ["opref"]
    assert read(os.path.join(run.meta_dir, "opref")) == "1 test say"
    assert mode(os.path.join(run.meta_dir, "opref")) == 0o444
    assert not os.path.exists(run.run_dir)
    assert run.meta_dir == run.run_dir + ".meta"
    assert run.name == run_name_for_id(run.id)
    assert run_status(run) == "unknown"


def test_make_run_refuses_an_existing_id(tmp_path):
    """Two runs can never share a meta dir."""
    run = make_run(OpRef("test", "say"), str(tmp_path))
    with pytest.raises(FileExistsError):
        make_run(OpRef("test", "say"), str(tmp_path), id=run.id)


def test_init_run_meta_files_and_contents(tmp_path):
    """init_run_meta writes each file exactly: no trailing newline, indent 2, sorted."""
    run = make_run(OpRef("test", "say"), str(tmp_path))
    opdef = OpDef("say", {"exec": "python say.py", "config": "say.py"})
    init_run_meta(
        run, opdef, {"y": 1.23, "x": 123}, OpCmd("python say.py", {"B": "2", "A": "1"}),
        {"platform": "test 123"},
    )
    meta = run.meta_dir
    assert read(f"{meta}/__schema__") == "1"
    assert read(f"{meta}/id") == run.id
    assert read(f"{meta}/opdef.json") == '{\n  "config": "say.py",\n  "exec": "python say.py"\n}'
    assert read(f"{meta}/config.json") == '{\n  "x": 123,\n  "y": 1.23\n}'
    assert read(f"{meta}/proc/cmd.json") == '"python say.py"'
    assert read(f"{meta}/proc/env.json") == '{\n  "A": "1",\n  "B": "2"\n}'
    assert read(f"{meta}/sys/platform.json") == '"test 123"'
    assert re.fullmatch(r"1[6-9]\d{14}", read(f"{meta}/initialized"))
    for name in ("__schema__", "id", "opdef.json", "config.json", "proc/cmd.json",
                 "proc/env.json", "sys/platform.json", "initialized"):
        assert mode(f"{meta}/{name}") == 0o444, name
    assert mode(f"{meta}/log/runner") == 0o666
    assert run_status(run) == "pending"


def test_list_command_and_empty_env(tmp_path):
    """A list command is stored as a JSON list; an empty env as `{}`."""
    run = make_run(OpRef("test", "say"), str(tmp_path))
    init_run_meta(run, OpDef("say", {}), {}, OpCmd(["echo", "hello"], {}))
    assert read(f"{run.meta_dir}/proc/cmd.json") == '[\n  "echo",\n  "hello"\n]'
    assert read(f"{run.meta_dir}/proc/env.json") == "{}"
    assert read(f"{run.meta_dir}/opdef.json") == "{}"
    assert not os.path.exists(f"{run.meta_dir}/sys")


def test_runner_log_lines(tmp_path):
    """log/runner: local ISO time with offset, a space, the message."""
    run = make_run(OpRef("test", "say"), str(tmp_path))
    init_run_meta(run, OpDef("say", {}), {}, OpCmd("true", {}), {"platform": "x"})
    lines = read(f"{run.meta_dir}/log/runner").splitlines()
    stamp = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} "
    assert all(re.match(stamp, line) for line in lines)
    assert [line.split(" ", 1)[1] for line in lines] == [
        "Writing meta id",
        "Writing meta opdef",
        "Writing meta config",
        "Writing meta proc cmd",
        "Writing meta proc env",
        "Writing meta sys/platform",
        "Writing meta initialized",
    ]


def test_timestamps_strictly_increase():
    """Timestamps are epoch microseconds, strictly increasing in a process."""
    stamps = [make_run_timestamp() for _ in range(1000)]
    assert stamps == sorted(set(stamps))


def test_run_for_meta_dir(tmp_path):
    """A meta dir gives back its run: id from `id`, run dir without `.meta`."""
    run = make_run(OpRef("test", "say"), str(tmp_path))
    init_run_meta(run, OpDef("say", {}), {}, OpCmd("true", {}))
    again = run_for_meta_dir(run.meta_dir)
    assert (again.id, again.run_dir, again.name) == (run.id, run.run_dir, run.name)
    assert again.opref == OpRef("test", "say")
    assert json.loads(read(f"{run.meta_dir}/config.json")) == {}


def test_shared_group_mode(tmp_path, monkeypatch):
    """GAGE_SHARED_MODE=group: writable meta files 0o660, dirs setgid and sticky 0o3770."""
    monkeypatch.setenv("GAGE_SHARED_MODE", "group")
    run = make_run(OpRef("test", "say"), str(tmp_path / "runs"))
    init_run_meta(run, OpDef("say", {}), {}, OpCmd("true", {}))
    assert mode(f"{run.meta_dir}/log/runner") == 0o660
    assert mode(f"{run.meta_dir}/proc") == 0o3770
    assert mode(run.meta_dir) == 0o3770
