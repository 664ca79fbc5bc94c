"""`schema_check.SchemaCheck` says what jsonschema says of Gage files, without jsonschema.

Valid Gage files and thousands of mutations of them (wrong types, empty
values, unknown and missing keys, each dependency type) are checked with
both on the shipped schema; a schema with a keyword the check does not
know is refused; loading a valid Gage file imports no jsonschema.
"""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from importlib import resources
from typing import Any

import jsonschema
import pytest

from gage_runs.schema_check import SchemaCheck

SCHEMA = json.loads(resources.files("gage_runs").joinpath("gagefile.schema.json").read_text())

VALID = {
    "$runs-dir": "runs",
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
            {"type": "project-files", "files": ["a", "b"]},
            {"type": "run-files", "run-select": "prepare", "files": ["*.bin"]},
            {"type": "runs-summary", "runs-select": "train", "summary-filename": "s.json"},
        ],
        "summary": {"filename": "results.json"},
    },
    "short": {"exec": "python x.py", "progress": "tqdm", "sourcecode": False, "config": []},
    "keys": {"config": ["a.py#x", "a.py#y"], "depends": {"files": "x"}},
    "table": {"config": {"keys": ["a.py"], "prefix": "p", "strip-prefix": "s", "rename": "r"}},
    "empty": {},
}

REPLACEMENTS: list[Any] = [
    None, True, False, 0, 1.5, "", "x", "tqdm", "project-files", "run-files", "runs-summary",
    [], [""], ["x"], ["x", 1], [{}], [{"keys": "x"}], [{"files": "x"}], {}, {"keys": "x"},
    {"keys": []}, {"files": "x"}, {"type": "runs-summary"}, {"run-select": "p"},
    {"type": "run-files", "run-select": "p"}, {"run": "x"}, {"run": 1}, {"filename": 2},
]
NEW_KEYS = ["exec", "run", "keys", "files", "type", "link", "desc", "$x", "x", "filename"]


def _places(data: Any, path: tuple = ()) -> list[tuple]:
    """Paths to every value in `data`."""
    places = [path]
    if isinstance(data, dict):
        for key, value in data.items():
            places += _places(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            places += _places(value, (*path, i))
    return places


def _mutated(rng: random.Random, data: Any) -> Any:
    data = copy.deepcopy(data)
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_places(data))
        if not path:
            continue
        parent = data
        for part in path[:-1]:
            parent = parent[part]
        action = rng.random()
        if action < 0.6:
            parent[path[-1]] = copy.deepcopy(rng.choice(REPLACEMENTS))
        elif action < 0.8:
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[rng.choice(NEW_KEYS)] = copy.deepcopy(rng.choice(REPLACEMENTS))
    return data


def test_it_agrees_with_jsonschema_on_gage_files():
    check, reference = SchemaCheck(SCHEMA), jsonschema.Draft202012Validator(SCHEMA)
    rng = random.Random(11)
    verdicts = {True: 0, False: 0}
    samples = [VALID, {}, {"op": {}}] + [_mutated(rng, VALID) for _ in range(3000)]
    for data in samples:
        expected = reference.is_valid(data)
        assert check.is_valid(data) == expected, json.dumps(data)
        verdicts[expected] += 1
    assert verdicts[True] > 300 and verdicts[False] > 1500  # both kinds, many of each


@pytest.mark.parametrize(
    "schema",
    [
        {"type": "string", "maxLength": 3},
        {"properties": {"a": {"enum": [1]}}},
        {"anyOf": [{"type": "number"}]},
        {"type": ["string", "null"]},
        {"const": 1},
        {"$ref": "other.json#/x"},
        {"items": [{"type": "string"}]},
    ],
)
def test_a_keyword_it_does_not_know_is_refused(schema):
    with pytest.raises(ValueError):
        SchemaCheck(schema)


def test_loading_a_valid_gage_file_imports_no_jsonschema(tmp_path):
    (tmp_path / "gage.json").write_text(json.dumps(VALID))
    code = (
        "import sys\n"
        "from gage_runs.gagefile import load_gagefile\n"
        "assert 'full' in load_gagefile('gage.json').get_operations()\n"
        "assert 'jsonschema' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True, timeout=60)
