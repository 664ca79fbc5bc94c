"""What may import what: the rules of tests/docs/project-imports.md, no import cycles, and a
`gage-submit` that loads no Celery."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.doc_tests import run_doc_test
from support.imports import format_cycle, import_cycles

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "tests" / "docs" / "project-imports.md"

NO_CELERY = (
    "import sys, gage_submit.cli; "
    "loaded = sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu', 'billiard')); "
    "assert not loaded, loaded"
)


def test_project_imports_doc(tmp_path):
    run_doc_test(tmp_path, DOC.name, DOC.read_text())


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
