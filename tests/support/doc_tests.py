"""Running markdown doc tests (groktest) from pytest."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent


def doc_tmp(tmp_path: Path) -> Path:
    """Where a doc test's temp dirs go (its TMPDIR): inside the pytest test's own, not /tmp."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path


def run_doc_test(tmp_path: Path, name: str, text: str, *, init: str = "",
                 umask: int | None = None) -> None:
    """Run `text` as the doc test `name` in `tmp_path` (groktest, `init` its Python
    init line) in a fresh interpreter without the queue's settings; assert it passed."""
    lines = f"{init!r}" if init else ""
    (tmp_path / "pyproject.toml").write_text(f"[tool.groktest.python]\ninit = [{lines}]\n")
    doc = tmp_path / name
    doc.write_text(text)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GAGE_", "CELERY_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "tests"), str(REPO)])
    env["TMPDIR"] = str(doc_tmp(tmp_path))  # the doc's make_temp_dir()s: pytest removes them
    proc = subprocess.run(
        [sys.executable, "-m", "groktest", str(doc)], cwd=tmp_path, env=env,
        capture_output=True, text=True, timeout=120,
        preexec_fn=None if umask is None else (lambda: os.umask(umask)),
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "tests passed" in output and "failed" not in output, output
