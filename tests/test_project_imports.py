"""What may import what: the rules of tests/docs/project-imports.md, no import cycles, and a
`gage-submit` that loads no Celery."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.doc_tests import doc_tmp
from support.imports import format_cycle, import_cycles

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "tests" / "docs" / "project-imports.md"

NO_CELERY = (
    "import sys, gage_submit.cli; "
    "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu', 'billiard')); "
    "assert not loaded, loaded"
)


def test_project_imports_doc(tmp_path):
    (tmp_path / "pyproject.toml").write_text("[tool.groktest.python]\ninit = []\n")
    doc = tmp_path / DOC.name
    doc.write_text(DOC.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), str(REPO)])
    env["TMPDIR"] = str(doc_tmp(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "groktest", str(doc)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "tests passed" in output and "failed" not in output, output


def test_gage_submit_cli_loads_no_celery_kombu_or_billiard():
    """A fresh interpreter importing the submit CLI loads none of the worker's stack."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    proc = subprocess.run([sys.executable, "-c", NO_CELERY], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_no_import_cycles():
    """No project module imports itself through others (function-level imports count,
    `if TYPE_CHECKING:` ones do not)."""
    cycles = import_cycles()
    assert not cycles, "import cycles:\n" + "\n".join(format_cycle(c) for c in cycles)


def test_the_checks_find_what_they_look_for(tmp_path):
    """A cycle through a function-level, relative import is found; a TYPE_CHECKING one is not."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "a.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg import b\n")
    (package / "b.py").write_text("import os\n\n\ndef f():\n    from . import c\n")
    (package / "c.py").write_text("import pkg.b\nimport pkg.a\n")
    (cycle,) = import_cycles(tmp_path, ("pkg",))
    assert format_cycle(cycle).splitlines() == [
        "pkg.b -> pkg.c -> pkg.b",
        "  pkg/b.py:5: pkg.b imports pkg.c (in a function)",
        "  pkg/c.py:1: pkg.c imports pkg.b",
    ]
