"""Gage files: project discovery, loading and validation, ops, runs dir."""

from __future__ import annotations

import json
import os
from importlib import resources
from pathlib import Path

import jsonschema
import pytest

from gage_runs.errors import GageFileError, OpNotFound
from gage_runs.gagefile import (
    PROJECT_MARKERS,
    GageFile,
    find_gagefile,
    find_project_dir,
    get_opdef,
    load_gagefile,
    project_namespace,
    resolve_runs_dir,
)


def write(path: Path, text: str = "") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def load_text(tmp_path: Path, name: str, text: str) -> GageFile:
    return load_gagefile(str(write(tmp_path / name, text)))


def load_error(tmp_path: Path, name: str, text: str) -> str:
    """The message of the GageFileError that loading `text` raises."""
    with pytest.raises(GageFileError) as excinfo:
        load_text(tmp_path, name, text)
    msg = str(excinfo.value)
    assert "\n" not in msg
    return msg


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Run in tmp_path, so messages name files relative to it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def no_outer_project(tmp_path):
    if find_project_dir(str(tmp_path)) is not None:
        pytest.skip("an ancestor of tmp_path has a project marker")


# =================================================================
# Project dir
# =================================================================


def test_project_dir_from_nested_dir(tmp_path):
    """The project dir is the nearest ancestor with a marker."""
    write(tmp_path / "proj" / "gage.toml")
    nested = tmp_path / "proj" / "a" / "b"
    nested.mkdir(parents=True)
    assert find_project_dir(str(nested)) == str(tmp_path / "proj")
    assert find_project_dir(str(tmp_path / "proj")) == str(tmp_path / "proj")


def test_project_dir_from_relative_cwd(tmp_path, monkeypatch):
    """A relative start is taken from the cwd and the result is absolute."""
    write(tmp_path / "proj" / "pyproject.toml")
    (tmp_path / "proj" / "src").mkdir()
    monkeypatch.chdir(tmp_path / "proj" / "src")
    assert find_project_dir(".") == str(tmp_path / "proj")


@pytest.mark.parametrize("marker", PROJECT_MARKERS)
def test_each_marker_makes_a_project(tmp_path, marker, no_outer_project):
    """Any of gage's markers, file or dir, marks a project."""
    if marker.startswith(".") and marker != ".git":
        (tmp_path / "proj" / marker).mkdir(parents=True)
    else:
        write(tmp_path / "proj" / marker)
    (tmp_path / "proj" / "sub").mkdir(exist_ok=True)
    assert find_project_dir(str(tmp_path / "proj" / "sub")) == str(tmp_path / "proj")


def test_markers_are_gages():
    """The markers are gage 0.1.2's."""
    assert set(PROJECT_MARKERS) == {
        ".gage",
        "gage.json",
        "gage.toml",
        "gage.yaml",
        "gageconfig.json",
        "gageconfig.toml",
        "gageconfig.yaml",
        "pyproject.toml",
        ".vscode",
        ".git",
    }


def test_nearest_project_wins(tmp_path):
    """A nested project (a git checkout inside another project) wins."""
    write(tmp_path / "outer" / "gage.toml")
    (tmp_path / "outer" / "inner" / ".git").mkdir(parents=True)
    (tmp_path / "outer" / "inner" / "src").mkdir()
    assert find_project_dir(str(tmp_path / "outer" / "inner" / "src")) == str(
        tmp_path / "outer" / "inner"
    )


def test_no_project(tmp_path, no_outer_project):
    """Without a marker up to the root there is no project."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    assert find_project_dir(str(tmp_path / "a" / "b")) is None


def test_namespace_is_real_dir_name(tmp_path):
    """The op namespace is the real project dir's name, even through a symlink."""
    (tmp_path / "real-proj").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real-proj")
    assert project_namespace(str(tmp_path / "link")) == "real-proj"


def test_namespace_has_no_spaces(tmp_path):
    """Spaces can't go in an opref, so they become dashes."""
    (tmp_path / "my ml\tproject").mkdir()
    assert project_namespace(str(tmp_path / "my ml\tproject")) == "my-ml-project"


# =================================================================
# Gage file lookup
# =================================================================


def test_lookup_order(tmp_path):
    """`.gage/gage.{toml,yaml,json}` come first, then `gage.{toml,yaml,json}`."""
    names = [
        ".gage/gage.toml",
        ".gage/gage.yaml",
        ".gage/gage.json",
        "gage.toml",
        "gage.yaml",
        "gage.json",
    ]
    paths = [write(tmp_path / name) for name in names]
    for path in paths:
        assert find_gagefile(str(tmp_path)) == str(path)
        path.unlink()
    assert find_gagefile(str(tmp_path)) is None


def test_lookup_ignores_other_names(tmp_path):
    """Only those six names are Gage files: not `gage.yml`, not `gageconfig.toml`."""
    write(tmp_path / "gage.yml")
    write(tmp_path / "gageconfig.toml")
    assert find_gagefile(str(tmp_path)) is None


# =================================================================
# Loading
# =================================================================


def test_load_toml(tmp_path):
    """A TOML file maps op names to op tables; `$runs-dir` must be quoted."""
    gf = load_text(
        tmp_path,
        "gage.toml",
        '"$runs-dir" = "myruns"\n\n'
        "[train]\n"
        'description = "Train a model"\n'
        'exec = "python train.py"\n'
        'config = "train.py#lr"\n\n'
        "[eval]\n"
        'exec = ["python", "eval.py"]\n',
    )
    assert gf.filename == str(tmp_path / "gage.toml")
    assert gf.get_runs_dir() == "myruns"
    ops = gf.get_operations()
    assert sorted(ops) == ["eval", "train"]
    assert ops["train"].get_description() == "Train a model"
    assert ops["train"].get_exec().get_run() == "python train.py"
    assert ops["eval"].get_exec().get_run() == ["python", "eval.py"]
    assert ops["train"].get_src() == gf.filename


def test_load_yaml(tmp_path):
    """A YAML file works the same; `$runs-dir` needs no quotes there."""
    gf = load_text(
        tmp_path,
        "gage.yaml",
        "$runs-dir: .runs\ntrain:\n  exec:\n    run: python train.py\n  default: true\n",
    )
    assert gf.get_runs_dir() == ".runs"
    assert list(gf.get_operations()) == ["train"]
    assert gf.as_json() == {
        "$runs-dir": ".runs",
        "train": {"exec": {"run": "python train.py"}, "default": True},
    }


def test_load_json_with_comment_lines(tmp_path):
    """JSON may have `//` comment lines, as gage allows."""
    gf = load_text(
        tmp_path,
        "gage.json",
        '// Operations\n{\n  // the main op\n  "train": {"exec": "python train.py"}\n}\n',
    )
    assert gf.as_json() == {"train": {"exec": "python train.py"}}


def test_empty_files_have_no_ops(tmp_path):
    """An empty TOML or YAML file is valid and has no operations."""
    assert load_text(tmp_path, "gage.toml", "").get_operations() == {}
    assert load_text(tmp_path, "gage.yaml", "").get_operations() == {}


def test_runs_dir_is_not_an_op(tmp_path):
    """Keys that start with `$` are settings, not operations."""
    gf = load_text(tmp_path, "gage.yaml", "$runs-dir: runs\n")
    assert gf.get_operations() == {}


def test_all_op_shapes_gage_reads_are_valid(tmp_path):
    """Every op shape gage 0.1.2 reads at run time passes validation."""
    data = {
        "full": {
            "description": "All sections",
            "default": True,
            "exec": {
                "stage-sourcecode": "true",
                "stage-runtime": ["python", "-m", "venv", ".venv"],
                "stage-dependencies": "echo deps",
                "run": "python train.py",
                "finalize": ["echo", "done"],
            },
            "progress": {"run": "tqdm"},
            "sourcecode": ["*.py", "-data/**"],
            "config": [{"keys": "train.py#lr", "description": "LR"}, "train.py#epochs"],
            "depends": [
                {"files": "data.csv", "link": True},
                {"type": "run-files", "run-select": "prepare", "files": ["*.bin"]},
                {"type": "runs-summary", "runs-select": "train"},
            ],
            "summary": {"filename": "results.json"},
        },
        "short": {"exec": "python x.py", "progress": "tqdm", "sourcecode": False, "config": []},
        "keys": {"config": ["a.py#x", "a.py#y"], "depends": {"files": "x"}},
        "table": {"config": {"keys": ["a.py"], "prefix": "p", "strip-prefix": "s"}},
    }
    gf = load_text(tmp_path, "gage.json", json.dumps(data))
    assert sorted(gf.get_operations()) == ["full", "keys", "short", "table"]


# =================================================================
# Malformed files
# =================================================================


def test_toml_syntax_error_names_line(in_tmp):
    """A TOML syntax error gives the file and the line."""
    msg = load_error(in_tmp, "gage.toml", '[train]\nexec = "python\n')
    assert msg == "gage.toml: invalid TOML at line 2: Illegal character '\\n'"


def test_unquoted_runs_dir_in_toml(in_tmp):
    """`$runs-dir` unquoted is a TOML error, with a hint to quote it."""
    msg = load_error(in_tmp, "gage.toml", '$runs-dir = "runs"\n')
    assert msg.startswith("gage.toml: invalid TOML at line 1: Invalid statement")
    assert "quote keys that start with '$', as in \"$runs-dir\" = ..." in msg


def test_yaml_syntax_error_names_line(in_tmp):
    """A YAML syntax error gives the file and the line of the problem."""
    msg = load_error(in_tmp, "gage.yaml", "train:\n  exec: x\n bad: 1\n")
    assert msg.startswith("gage.yaml: invalid YAML at line 3: ")


def test_json_syntax_error_counts_comment_lines(in_tmp):
    """JSON error lines are the file's own lines, comment lines included."""
    msg = load_error(in_tmp, "gage.json", '// comment\n{\n  "train": {"exec": "x",}\n}\n')
    assert msg == (
        "gage.json: invalid JSON at line 3: Expecting property name enclosed in double quotes"
    )


@pytest.mark.parametrize(
    ("name", "text", "got"),
    [
        ("gage.yaml", "- train\n- eval\n", "a mapping of operations at the top level, got a list"),
        ("gage.json", "[]", "an object of operations at the top level, got an empty list"),
        ("gage.json", "3", "an object of operations at the top level, got a number"),
        ("gage.yaml", "just text\n", "a mapping of operations at the top level, got a string"),
    ],
)
def test_top_level_must_be_a_mapping(in_tmp, name, text, got):
    """The top level maps op names to ops."""
    assert load_error(in_tmp, name, text) == f"{name}: expected {got}"


def test_yaml_keys_must_be_strings(in_tmp):
    """YAML reads `yes:` as a boolean key; keys must be strings."""
    msg = load_error(in_tmp, "gage.yaml", "yes:\n  exec: x\n")
    assert msg == "gage.yaml: key True must be a string (quote it)"
    msg = load_error(in_tmp, "gage.yaml", "train:\n  exec:\n    1: x\n")
    assert msg == "gage.yaml: op 'train': key 1 in 'exec' must be a string (quote it)"


@pytest.mark.parametrize(
    ("toml", "msg"),
    [
        (
            "[train]\nexec = 1\n",
            "op 'train': 'exec' must be a string, a list of strings or a table, got a number",
        ),
        (
            '[train]\nexec = ["python", 1]\n',
            "op 'train': 'exec[1]' must be a non-empty string, got a number",
        ),
        (
            "[train]\nexec = {run = 3}\n",
            "op 'train': 'exec.run' must be a string or a list of strings, got a number",
        ),
        (
            '[train]\nexec = {rum = "x"}\n',
            "op 'train': unknown key 'rum' in 'exec' (did you mean 'run'?)",
        ),
        ('[train]\nexc = "x"\n', "op 'train': unknown key 'exc' (did you mean 'exec'?)"),
        ('train = "python train.py"\n', "op 'train' must be a table, got a string"),
        ('[train]\ndefault = "yes"\n', "op 'train': 'default' must be true or false, got a string"),
        (
            "[train]\nsourcecode = 1\n",
            "op 'train': 'sourcecode' must be a pattern, a list of patterns, true or false,"
            " got a number",
        ),
        (
            '[train]\nconfig = {keys = "x", desc = "y"}\n',
            "op 'train': unknown key 'desc' in 'config'",
        ),
        (
            '[train]\nconfig = [{keys = "x"}, {}]\n',
            "op 'train': 'config[1]' is missing required key 'keys'",
        ),
        (
            "[train]\nconfig = {keys = []}\n",
            "op 'train': 'config.keys' must be a key pattern or a non-empty list of key"
            " patterns, got an empty list",
        ),
        (
            "[train]\ndepends = {files = 1}\n",
            "op 'train': 'depends.files' must be a pattern or a list of patterns, got a number",
        ),
        (
            '[train]\ndepends = [{type = "runs-summary"}]\n',
            "op 'train': 'depends[0]' is missing required key 'runs-select'",
        ),
        (
            "[train]\nprogress = {run = 1}\n",
            "op 'train': 'progress.run' must be a progress name such as 'tqdm', got a number",
        ),
        ('"$runs-dir" = 1\n', "'$runs-dir' must be a string, got a number"),
        ('"$runs" = "x"\n', "unknown key '$runs' (did you mean '$runs-dir'?)"),
    ],
)
def test_schema_violation_names_op_and_key(in_tmp, toml, msg):
    """Each schema violation is one specific line naming the file, op and key."""
    assert load_error(in_tmp, "gage.toml", toml) == f"gage.toml: {msg}"


def test_schema_messages_use_the_formats_word(in_tmp):
    """Mappings are tables in TOML, mappings in YAML, objects in JSON."""
    assert load_error(in_tmp, "gage.yaml", "train: x\n") == (
        "gage.yaml: op 'train' must be a mapping, got a string"
    )
    assert load_error(in_tmp, "gage.json", '{"train": 1}') == (
        "gage.json: op 'train' must be an object, got a number"
    )


def test_message_names_nested_gagefile(in_tmp):
    """A file under `.gage` is named by its path from the cwd."""
    msg = load_error(in_tmp, os.path.join(".gage", "gage.toml"), "train = 1\n")
    assert msg == os.path.join(".gage", "gage.toml") + ": op 'train' must be a table, got a number"


def test_message_names_file_outside_cwd(tmp_path, monkeypatch):
    """A file outside the cwd is named by the path given."""
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    path = str(tmp_path / "proj" / "gage.toml")
    assert load_error(tmp_path, "proj/gage.toml", "train = 1\n").startswith(f"{path}: ")


@pytest.mark.parametrize(
    ("name", "setup", "msg"),
    [
        ("gage.toml", None, "gage.toml: file does not exist"),
        ("gage.ini", "", "gage.ini: unsupported file type (expected .toml, .yaml or .json)"),
        ("gage.toml", b"x = '\xff'\n", "gage.toml: not UTF-8 text (byte 5)"),
    ],
)
def test_unreadable_files(in_tmp, name, setup, msg):
    """Missing, unsupported and undecodable files are GageFileErrors too."""
    if isinstance(setup, bytes):
        (in_tmp / name).write_bytes(setup)
    elif setup is not None:
        (in_tmp / name).write_text(setup)
    with pytest.raises(GageFileError) as excinfo:
        load_gagefile(name)
    assert str(excinfo.value) == msg


def test_schema_is_valid_package_data():
    """The op schema ships with the package and is a valid 2020-12 schema."""
    text = resources.files("gage_runs").joinpath("gagefile.schema.json").read_text()
    jsonschema.Draft202012Validator.check_schema(json.loads(text))


# =================================================================
# Operations
# =================================================================


def gagefile(data: dict) -> GageFile:
    return GageFile("gage.toml", data)


def test_only_op_is_the_default():
    """With one op, it is the default, `default` or not."""
    assert get_opdef(gagefile({"train": {}}), None).name == "train"


def test_default_flag_picks_the_default():
    """With several ops, the one with `default = true` is the default."""
    gf = gagefile({"prepare": {}, "train": {"default": True}, "eval": {"default": False}})
    assert get_opdef(gf, None).name == "train"


def test_first_default_by_name_wins():
    """With several defaults, the first by name wins, as in gage."""
    gf = gagefile({"zeta": {"default": True}, "alpha": {"default": True}})
    assert get_opdef(gf, None).name == "alpha"


def test_no_default_lists_ops():
    """Without a default, the error says which ops exist."""
    gf = gagefile({"train": {}, "prepare": {}, "$runs-dir": "runs"})
    with pytest.raises(OpNotFound) as excinfo:
        get_opdef(gf, None)
    assert str(excinfo.value) == (
        "gage.toml has no default operation: specify one of prepare, train"
        " (or set 'default = true' on one)"
    )


def test_named_op():
    """A name picks that op, default or not."""
    gf = gagefile({"train": {"default": True}, "eval": {}})
    opdef = get_opdef(gf, "eval")
    assert opdef.name == "eval"
    assert opdef.get_src() == "gage.toml"


def test_unknown_op_lists_ops():
    """An unknown name is an error listing the available ops."""
    gf = gagefile({"train": {}, "prepare": {}})
    with pytest.raises(OpNotFound) as excinfo:
        get_opdef(gf, "trian")
    assert str(excinfo.value) == (
        "gage.toml has no operation 'trian' (did you mean 'train'?) (available: prepare, train)"
    )


def test_settings_are_not_ops():
    """`$runs-dir` can't be run as an op."""
    with pytest.raises(OpNotFound, match="has no operation '\\$runs-dir'"):
        get_opdef(gagefile({"train": {}, "$runs-dir": "runs"}), "$runs-dir")


def test_no_ops():
    """A file without ops says so."""
    with pytest.raises(OpNotFound, match="^gage.toml defines no operations$"):
        get_opdef(gagefile({}), None)
    with pytest.raises(OpNotFound, match="defines no operations \\(looking for 'train'\\)"):
        get_opdef(gagefile({"$runs-dir": "runs"}), "train")


# =================================================================
# Runs dir
# =================================================================


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def test_runs_dir_order(tmp_path, home):
    """`--runs-dir`, then GAGE_RUNS, RUNS_DIR, `$runs-dir`, the project, home."""
    proj = str(tmp_path / "proj")
    gf = gagefile({"$runs-dir": "myruns"})
    env = {"GAGE_RUNS": "/g", "RUNS_DIR": "/r"}
    assert resolve_runs_dir(proj, gf, "/o", env=env) == "/o"
    assert resolve_runs_dir(proj, gf, env=env) == "/g"
    assert resolve_runs_dir(proj, gf, env={"RUNS_DIR": "/r"}) == "/r"
    assert resolve_runs_dir(proj, gf, env={}) == os.path.join(proj, "myruns")
    assert resolve_runs_dir(proj, gagefile({}), env={}) == os.path.join(proj, ".gage", "runs")
    assert resolve_runs_dir(None, None, env={}) == str(home / ".gage" / "runs")


def test_runs_dir_without_gagefile(tmp_path):
    """A missing or broken Gage file (None) means the project default."""
    proj = str(tmp_path / "proj")
    assert resolve_runs_dir(proj, None, env={}) == os.path.join(proj, ".gage", "runs")


def test_empty_settings_are_skipped(tmp_path):
    """Empty env vars and an empty `$runs-dir` count as unset, as in gage."""
    proj = str(tmp_path / "proj")
    env = {"GAGE_RUNS": "", "RUNS_DIR": ""}
    gf = gagefile({"$runs-dir": ""})
    assert resolve_runs_dir(proj, gf, "", env=env) == os.path.join(proj, ".gage", "runs")


def test_runs_dir_expands_home(home):
    """A leading `~` is the user's home, wherever the path comes from."""
    assert resolve_runs_dir(None, None, "~/o", env={}) == str(home / "o")
    assert resolve_runs_dir(None, None, env={"GAGE_RUNS": "~/g"}) == str(home / "g")
    assert resolve_runs_dir(None, None, env={"RUNS_DIR": "~/r"}) == str(home / "r")


def test_relative_paths_are_from_cwd(tmp_path, monkeypatch):
    """Relative `--runs-dir` and env paths are relative to the cwd."""
    monkeypatch.chdir(tmp_path)
    proj = str(tmp_path / "proj")
    assert resolve_runs_dir(proj, None, "o", env={}) == str(tmp_path / "o")
    assert resolve_runs_dir(proj, None, env={"GAGE_RUNS": "g"}) == str(tmp_path / "g")
    assert resolve_runs_dir(proj, None, env={"RUNS_DIR": "../r"}) == str(tmp_path.parent / "r")


def test_runs_dir_setting_is_from_project(tmp_path, monkeypatch):
    """`$runs-dir` is relative to the project dir, not the cwd; absolute stays."""
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "proj" / "gage.toml", '"$runs-dir" = "myruns"\n[train]\n')
    gf = load_gagefile(find_gagefile("proj"))
    assert resolve_runs_dir("proj", gf, env={}) == str(tmp_path / "proj" / "myruns")
    assert resolve_runs_dir("proj", gagefile({"$runs-dir": "/abs"}), env={}) == "/abs"


def test_runs_dir_defaults_to_process_env(tmp_path, monkeypatch):
    """Without `env`, the process environment is used."""
    monkeypatch.setenv("GAGE_RUNS", str(tmp_path / "g"))
    assert resolve_runs_dir(None, None) == str(tmp_path / "g")
