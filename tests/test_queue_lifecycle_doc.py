"""tests/docs/queue-lifecycle.md: queued -> running -> finalizing -> completed / lost, as a doc test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from support.doc_tests import doc_tmp

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "tests" / "docs" / "queue-lifecycle.md"


def test_queue_lifecycle(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.groktest.python]\ninit = ["from support.gage_test import *"]\n'
    )
    doc = tmp_path / DOC.name
    doc.write_text(DOC.read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), str(REPO)])
    env["TMPDIR"] = str(doc_tmp(tmp_path))  # the doc's make_temp_dir()s: pytest removes them
    proc = subprocess.run(
        [sys.executable, "-m", "groktest", str(doc)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "tests passed" in output and "failed" not in output, output
