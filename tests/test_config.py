"""Reading and applying run config (run-format.md §4.3, design §2.2).

`read_project_config(dir, opdef)` gives the flat config values of the files
an op's `config` selects; `apply_config(run_dir, opdef, config)` patches
those files and returns the unified diff for `log/patched`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from gage_runs.config import apply_config, read_project_config
from gage_runs.errors import ConfigError
from gage_runs.types import OpDef

TRAIN_PY = """\
import os

lr = 0.1
epochs = 3
seed: int = 42
layers = [64, 32]
opt = {"name": "adam", "betas": {"b1": 0.9}}
"""


def write_files(root: Path, files: dict[str, str]) -> None:
    for path, text in files.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_bytes(text.encode())


def read(root: Path, path: str) -> str:
    return (root / path).read_bytes().decode()


def op(config: Any) -> OpDef:
    return OpDef("train", {"config": config})


def read_config(root: Path, config: Any) -> dict[str, Any]:
    return read_project_config(str(root), op(config))


def apply(root: Path, config: Any, values: dict[str, Any]) -> str:
    return apply_config(str(root), op(config), values)


# Key specs


def test_file_spec_selects_top_level_keys(tmp_path: Path) -> None:
    """A bare file spec means `FILE#*`: top-level simple keys only."""
    write_files(tmp_path, {"train.py": TRAIN_PY})
    expected = {"lr": 0.1, "epochs": 3, "seed": 42}
    assert read_config(tmp_path, "train.py") == expected
    assert read_config(tmp_path, "train.py#*") == expected


def test_key_glob_selects_keys(tmp_path: Path) -> None:
    """`FILE#KEY_GLOB` selects the matching keys; `?` is one character."""
    write_files(tmp_path, {"train.py": TRAIN_PY, "x.py": "a = 1\nab = 2\n"})
    assert read_config(tmp_path, "train.py#lr") == {"lr": 0.1}
    assert read_config(tmp_path, "train.py#*e*") == {"epochs": 3, "seed": 42}
    assert read_config(tmp_path, "x.py#a?") == {"a": 1, "ab": 2}


def test_key_globs_match_dotted_paths(tmp_path: Path) -> None:
    """`*` stays within one key part, `**.` spans parts, and `**` alone matches nothing."""
    write_files(tmp_path, {"train.py": TRAIN_PY})
    assert read_config(tmp_path, "train.py#layers.*") == {"layers.0": 64, "layers.1": 32}
    assert read_config(tmp_path, "train.py#opt.**.*") == {"opt.name": "adam", "opt.betas.b1": 0.9}
    assert read_config(tmp_path, "train.py#**.*") == {
        "lr": 0.1,
        "epochs": 3,
        "seed": 42,
        "layers.0": 64,
        "layers.1": 32,
        "opt.name": "adam",
        "opt.betas.b1": 0.9,
    }
    assert read_config(tmp_path, "train.py#**") == {}


def test_excluded_file(tmp_path: Path) -> None:
    """`-FILE` drops a file an earlier glob selected; the last matching spec wins."""
    write_files(tmp_path, {"train.py": "a = 1\n", "eval.py": "b = 2\n"})
    assert read_config(tmp_path, "*.py") == {"a": 1, "b": 2}
    assert read_config(tmp_path, ["*.py", "-eval.py"]) == {"a": 1}
    assert read_config(tmp_path, ["- eval.py", "eval.py"]) == {"b": 2}


def test_excluded_keys_keep_the_file(tmp_path: Path) -> None:
    """`-FILE#KEY` drops matching keys but keeps the file selected."""
    write_files(tmp_path, {"train.py": TRAIN_PY})
    assert read_config(tmp_path, ["train.py", "-train.py#seed"]) == {"lr": 0.1, "epochs": 3}


def test_key_spec_alone_selects_no_file(tmp_path: Path) -> None:
    """`#KEY` selects nothing by itself; it adds a key glob for the entry's files."""
    write_files(tmp_path, {"train.py": TRAIN_PY, "eval.py": "lr = 0.5\nsteps = 9\n"})
    assert read_config(tmp_path, "#lr") == {}
    assert read_config(tmp_path, ["train.py#epochs", "#seed"]) == {"epochs": 3, "seed": 42}


def test_key_globs_apply_to_all_files_of_an_entry(tmp_path: Path) -> None:
    """Within one entry the keys are selected across files; later paths win."""
    write_files(tmp_path, {"a.py": "x = 1\ny = 2\n", "b.py": "x = 3\nz = 4\n"})
    assert read_config(tmp_path, ["a.py#y", "b.py#x"]) == {"x": 3, "y": 2}
    assert read_config(tmp_path, [{"keys": "a.py#y"}, {"keys": "b.py#x"}]) == {"y": 2, "x": 3}


def test_file_globs(tmp_path: Path) -> None:
    """`*` does not cross `/`, `**/` spans dirs, and `\\-` is a literal dash."""
    write_files(tmp_path, {"a.py": "a = 1\n", "-b.py": "b = 2\n", "sub/c.py": "c = 3\n"})
    assert read_config(tmp_path, "*.py") == {"a": 1, "b": 2}
    assert read_config(tmp_path, "?.py") == {"a": 1}
    assert read_config(tmp_path, "\\-b.py") == {"b": 2}
    assert read_config(tmp_path, "sub/**/*.py") == {"c": 3}


def test_top_level_dirs_pruned_unless_named(tmp_path: Path) -> None:
    """A top-level dir is searched only if an include glob starts with `<dir>/`."""
    write_files(tmp_path, {"train.py": "a = 1\n", "sub/model.py": "b = 2\n"})
    assert read_config(tmp_path, "**/*.py") == {"a": 1}
    assert read_config(tmp_path, "sub/model.py") == {"b": 2}
    assert read_config(tmp_path, ["**/*.py", "sub/*.py"]) == {"a": 1, "b": 2}
    assert read_config(tmp_path, ["**/*.py", "-sub/model.py"]) == {"a": 1}


def test_unused_top_level_dir_names_pruned_at_any_depth(tmp_path: Path) -> None:
    """As in Gage, a dir named like an unused top-level dir is pruned anywhere."""
    write_files(
        tmp_path, {"data/x.py": "x = 1\n", "src/data/y.py": "y = 2\n", "src/z.py": "z = 3\n"}
    )
    assert read_config(tmp_path, "src/**/*.py") == {"z": 3}


def test_no_config_reads_and_applies_nothing(tmp_path: Path) -> None:
    """An op without `config` has no config values and patches nothing."""
    write_files(tmp_path, {"train.py": TRAIN_PY})
    assert read_config(tmp_path, None) == {}
    assert apply(tmp_path, None, {"lr": 1.0}) == ""
    assert read(tmp_path, "train.py") == TRAIN_PY


def test_missing_run_dir_applies_nothing(tmp_path: Path) -> None:
    """With no source code copied the run dir may not exist: nothing to patch."""
    assert apply(tmp_path / "missing", "train.py", {"lr": 1.0}) == ""


def test_invalid_key_spec(tmp_path: Path) -> None:
    """An empty spec (or a lone dash) is an error, not a crash."""
    with pytest.raises(ConfigError, match="invalid config key spec '-'"):
        read_config(tmp_path, "-")


# Python files


def test_python_values(tmp_path: Path) -> None:
    """Top-level literal assignments are config; code and nested scopes are not."""
    source = """\
a = b = 7
c: float = 1.5
d: int
pair, other = 1, 2
neg = -2.5
pos = +2
inv = ~3
big = 1_000
on, off, none = True, False, None
t = True
f = False
z = None
name = 'fast'
path = "a\\\\b"
call = make()
total = 1 + 2
if t:
    hidden = 1
def fn():
    local = 2
"""
    write_files(tmp_path, {"train.py": source})
    assert read_config(tmp_path, "train.py") == {
        "a": 7,
        "b": 7,
        "c": 1.5,
        "neg": -2.5,
        "pos": 2,
        "inv": -4,
        "big": 1000,
        "t": True,
        "f": False,
        "z": None,
        "name": "fast",
        "path": "a\\\\b",
    }


def test_last_assignment_wins(tmp_path: Path) -> None:
    """A name assigned twice reads and patches its last assignment only."""
    write_files(tmp_path, {"train.py": "x = 1\nprint(x)\nx = 2\n"})
    assert read_config(tmp_path, "train.py") == {"x": 2}
    apply(tmp_path, "train.py", {"x": 3})
    assert read(tmp_path, "train.py") == "x = 1\nprint(x)\nx = 3\n"


def test_strings_keep_their_quotes(tmp_path: Path) -> None:
    """A new string keeps the literal's quote character, escaping only that."""
    write_files(tmp_path, {"train.py": "a = 'x'\nb = \"y\"\nc = r'z'\n"})
    apply(tmp_path, "train.py", {"a": "it's", "b": 'say "hi"', "c": "w"})
    assert read(tmp_path, "train.py") == "a = 'it\\'s'\nb = \"say \\\"hi\\\"\"\nc = r'w'\n"


def test_string_over_number_and_number_over_string(tmp_path: Path) -> None:
    """A value of another type is written as its repr (Gage crashes on the second)."""
    write_files(tmp_path, {"train.py": "mode = 1\nname = 'adam'\nflag = \"on\"\n"})
    apply(tmp_path, "train.py", {"mode": "fast", "name": 0.5, "flag": None})
    assert read(tmp_path, "train.py") == "mode = 'fast'\nname = 0.5\nflag = None\n"


def test_lists_and_dicts_flattened_and_patched(tmp_path: Path) -> None:
    """List items and string-keyed dict values are patched in place."""
    write_files(tmp_path, {"train.py": TRAIN_PY})
    config = {"layers.1": 16, "opt.name": "sgd", "opt.betas.b1": 0.95}
    apply(tmp_path, "train.py#**.*", config)
    assert read(tmp_path, "train.py") == TRAIN_PY.replace("32]", "16]").replace(
        '"adam", "betas": {"b1": 0.9}', '"sgd", "betas": {"b1": 0.95}'
    )


def test_python_formatting_preserved(tmp_path: Path) -> None:
    """Comments, parentheses, spacing and CRLF line ends survive a patch."""
    source = "# Settings\r\nlr  =  (0.1)   # rate\r\nx = [1,2]\r\n"
    write_files(tmp_path, {"train.py": source})
    apply(tmp_path, "train.py#**.*", {"lr": 0.2, "x.0": 3})
    assert read(tmp_path, "train.py") == "# Settings\r\nlr  =  (0.2)   # rate\r\nx = [3,2]\r\n"


def test_only_selected_known_keys_applied(tmp_path: Path) -> None:
    """Keys the spec excludes, or the file lacks, are left alone."""
    write_files(tmp_path, {"train.py": TRAIN_PY})
    apply(tmp_path, ["train.py", "-train.py#seed"], {"seed": 1, "lr": 0.5, "other": 9})
    assert read(tmp_path, "train.py") == TRAIN_PY.replace("lr = 0.1", "lr = 0.5")


def test_unchanged_values_leave_file_untouched(tmp_path: Path) -> None:
    """Applying a file's own values rewrites nothing, even unusual literals."""
    source = "lr = 1e-3\nn = 0x10\ns = 'it\\'s'\n"
    write_files(tmp_path, {"train.py": source})
    os.utime(tmp_path / "train.py", (0, 0))
    assert apply(tmp_path, "train.py", read_config(tmp_path, "train.py")) == ""
    assert read(tmp_path, "train.py") == source
    assert (tmp_path / "train.py").stat().st_mtime == 0


def test_changed_type_is_a_change(tmp_path: Path) -> None:
    """`1`, `1.0` and `True` are equal in Python but different config values."""
    write_files(tmp_path, {"train.py": "a = 1\nb = 1\n"})
    apply(tmp_path, "train.py", {"a": 1.0, "b": True})
    assert read(tmp_path, "train.py") == "a = 1.0\nb = True\n"


# The diff for log/patched


def test_diff_text(tmp_path: Path) -> None:
    """The result is `difflib.unified_diff` with the relative path as both names."""
    write_files(tmp_path, {"train.py": 'x = 1\nprint(f"loss = {x - 1}")\n'})
    assert apply(tmp_path, "train.py", {"x": 2}) == (
        '--- train.py\n+++ train.py\n@@ -1,2 +1,2 @@\n-x = 1\n+x = 2\n print(f"loss = {x - 1}")\n'
    )


def test_diffs_sorted_by_path_and_unchanged_files_omitted(tmp_path: Path) -> None:
    """Changed files are diffed in path order; untouched files stay byte-identical."""
    write_files(
        tmp_path,
        {"sub/b.py": "b = 1\n", "a.py": "a = 1\n", "c.py": "c = 1\n", "d.py": "d = 1"},
    )
    config = [{"keys": "sub/b.py"}, {"keys": ["a.py", "c.py", "d.py"]}]
    diff = apply(tmp_path, config, {"a": 2, "b": 2, "c": 1, "d": 2})
    assert diff == (
        "--- a.py\n+++ a.py\n@@ -1 +1 @@\n-a = 1\n+a = 2\n"
        "--- d.py\n+++ d.py\n@@ -1 +1 @@\n-d = 1+d = 2"
        "--- sub/b.py\n+++ sub/b.py\n@@ -1 +1 @@\n-b = 1\n+b = 2\n"
    )
    assert read(tmp_path, "c.py") == "c = 1\n"


def test_file_in_two_entries_gives_one_diff(tmp_path: Path) -> None:
    """A file patched by two config entries shows one diff, original to final."""
    write_files(tmp_path, {"train.py": "a = 1\nb = 1\n"})
    diff = apply(tmp_path, ["train.py#a", {"keys": "train.py#b"}], {"a": 2, "b": 2})
    assert diff == "--- train.py\n+++ train.py\n@@ -1,2 +1,2 @@\n-a = 1\n-b = 1\n+a = 2\n+b = 2\n"


# JSON, YAML and TOML (design §2.2)


def test_json_read_and_patch(tmp_path: Path) -> None:
    """JSON keys flatten like Python's; a patch keeps the file's indent."""
    source = '{\n    "lr": 0.01,\n    "layers": [64, 32],\n    "opt": {"name": "adam"}\n}\n'
    write_files(tmp_path, {"config.json": source})
    assert read_config(tmp_path, "config.json#**.*") == {
        "lr": 0.01,
        "layers.0": 64,
        "layers.1": 32,
        "opt.name": "adam",
    }
    apply(tmp_path, "config.json#**.*", {"lr": 0.1, "layers.1": 16, "opt.name": 3})
    assert read(tmp_path, "config.json") == (
        '{\n    "lr": 0.1,\n    "layers": [\n        64,\n        16\n    ],\n'
        '    "opt": {\n        "name": 3\n    }\n}\n'
    )


YAML_SOURCE = """\
# Training settings
model:
  layers:   # hidden sizes
    - 64
    - 32
  act: 'relu'  # activation
opt:
  lr: 0.001
  name: "adam"
resume: null
"""


def test_yaml_read_and_patch_keep_comments(tmp_path: Path) -> None:
    """YAML is patched by a round trip that keeps comments, quotes and indents."""
    write_files(tmp_path, {"conf/train.yaml": YAML_SOURCE})
    spec = "conf/train.yaml#**.*"
    assert read_config(tmp_path, spec) == {
        "model.layers.0": 64,
        "model.layers.1": 32,
        "model.act": "relu",
        "opt.lr": 0.001,
        "opt.name": "adam",
        "resume": None,
    }
    apply(tmp_path, spec, {"model.layers.1": 16, "model.act": "tanh", "opt.lr": 0.1})
    assert read(tmp_path, "conf/train.yaml") == (
        YAML_SOURCE.replace("- 32", "- 16").replace("'relu'", "'tanh'").replace("0.001", "0.1")
    )


def test_yaml_keeps_value_types(tmp_path: Path) -> None:
    """A string that looks like a number stays a string, and `.yml` works too."""
    write_files(tmp_path, {"train.yml": "a: 1\nb: x\n"})
    apply(tmp_path, "train.yml", {"a": "2", "b": 0.5})
    assert read(tmp_path, "train.yml") == "a: '2'\nb: 0.5\n"
    assert read_config(tmp_path, "train.yml") == {"a": "2", "b": 0.5}


TOML_SOURCE = """\
# Training settings
title = 'demo'  # literal string

[opt]
lr = 1e-3  # learning rate
layers = [64, 32]

[[stage]]
epochs = 3
"""


def test_yaml_indentation_kept(tmp_path: Path) -> None:
    """Four-space mappings and unindented dashes stay as they were."""
    source = "opt:\n    lr: 0.1\n    layers:\n    - 1\n    - 2\n"
    write_files(tmp_path, {"train.yaml": source})
    apply(tmp_path, "train.yaml#**.*", {"opt.lr": 0.2})
    assert read(tmp_path, "train.yaml") == source.replace("0.1", "0.2")


def test_toml_read_and_patch_keep_comments(tmp_path: Path) -> None:
    """TOML tables, arrays and arrays of tables flatten; tomlkit keeps comments."""
    write_files(tmp_path, {"train.toml": TOML_SOURCE})
    spec = "train.toml#**.*"
    assert read_config(tmp_path, spec) == {
        "title": "demo",
        "opt.lr": 0.001,
        "opt.layers.0": 64,
        "opt.layers.1": 32,
        "stage.0.epochs": 3,
    }
    apply(tmp_path, spec, {"title": "new", "opt.lr": 0.1, "opt.layers.1": 16, "stage.0.epochs": 5})
    assert read(tmp_path, "train.toml") == (
        TOML_SOURCE.replace("'demo'", "'new'")
        .replace("1e-3", "0.1")
        .replace("32]", "16]")
        .replace("= 3", "= 5")
    )


def test_toml_has_no_null(tmp_path: Path) -> None:
    """Setting a TOML key to None is a ConfigError naming the file and key."""
    write_files(tmp_path, {"train.toml": "lr = 0.1\n"})
    with pytest.raises(ConfigError) as e:
        apply(tmp_path, "train.toml", {"lr": None})
    assert str(e.value) == "config file train.toml: cannot set lr to null: TOML has no null value"


def test_all_formats_apply_own_values_as_no_change(tmp_path: Path) -> None:
    """Applying every format's own values changes no file and gives no diff."""
    files = {
        "train.py": TRAIN_PY,
        "c.json": '{"lr": 0.1, "xs": [1, 2]}',
        "c.yaml": YAML_SOURCE,
        "c.toml": TOML_SOURCE,
    }
    write_files(tmp_path, files)
    spec = ["*.py#**.*", "c.*#**.*"]
    assert apply(tmp_path, spec, read_config(tmp_path, spec)) == ""
    assert {path: read(tmp_path, path) for path in files} == files


def test_compact_json_stays_compact(tmp_path: Path) -> None:
    """A one-line JSON file is rewritten on one line, without a newline added."""
    write_files(tmp_path, {"c.json": '{"lr": 0.1, "tags": ["a", "b"]}'})
    apply(tmp_path, "c.json#**.*", {"lr": 0.5, "tags.1": "c"})
    assert read(tmp_path, "c.json") == '{"lr": 0.5, "tags": ["a", "c"]}'


# Errors


@pytest.mark.parametrize(
    "path, text, message",
    [
        ("train.py", "x = 1\n\ny = (\n", "invalid Python syntax at line 3"),
        ("c.json", '{"lr": 0.1,\n "x": }\n', "invalid JSON at line 2: Expecting value"),
        (
            "c.yaml",
            "opt:\n  lr: 0.1\n x: 1\n",
            "invalid YAML at line 3: while parsing a block mapping,"
            " expected <block end>, but found '<block mapping start>'",
        ),
        ("c.toml", "x = 1\ny = \n", "invalid TOML at line 2: Unexpected character: '\\n'"),
        (
            "README.md",
            "# hi\n",
            "unsupported file type '.md' (expected .py, .json, .yaml, .yml or .toml)",
        ),
        (
            "Makefile",
            "all:\n",
            "unsupported file type (no extension) (expected .py, .json, .yaml, .yml or .toml)",
        ),
    ],
)
def test_unreadable_files_raise_config_error(
    tmp_path: Path, path: str, text: str, message: str
) -> None:
    """A file that cannot be parsed, or a named file of no supported type,
    names itself."""
    write_files(tmp_path, {f"conf/{path}": text})
    expected = f"config file conf/{path}: {message}"
    with pytest.raises(ConfigError) as e:
        read_config(tmp_path, f"conf/{path}")
    assert str(e.value) == expected
    with pytest.raises(ConfigError) as e:
        apply(tmp_path, f"conf/{path}", {})
    assert str(e.value) == expected


def test_wildcards_skip_files_of_unsupported_types(tmp_path: Path) -> None:
    """`conf/*` reads the config files it can and skips README.md, as Gage
    skips files it cannot read as config."""
    write_files(tmp_path, {"conf/README.md": "# hi\n", "conf/c.json": '{"lr": 0.1}\n'})
    assert read_config(tmp_path, "conf/*") == {"lr": 0.1}


def test_non_utf8_file_raises_config_error(tmp_path: Path) -> None:
    """A config file must be UTF-8 text."""
    (tmp_path / "train.py").write_bytes(b"x = '\xff'\n")
    with pytest.raises(ConfigError, match="^config file train.py: not UTF-8 text$"):
        read_config(tmp_path, "train.py")


def test_read_only_file_raises_config_error(tmp_path: Path) -> None:
    """A config file that cannot be rewritten is a ConfigError, not an OSError."""
    write_files(tmp_path, {"train.py": "x = 1\n"})
    (tmp_path / "train.py").chmod(0o444)
    if os.access(tmp_path / "train.py", os.W_OK):
        pytest.skip("running as a user who can write read-only files")
    with pytest.raises(
        ConfigError, match="^config file train.py: cannot write: Permission denied$"
    ):
        apply(tmp_path, "train.py", {"x": 2})
