"""Running markdown doc tests (groktest) from pytest."""

from __future__ import annotations

from pathlib import Path


def doc_tmp(tmp_path: Path) -> Path:
    """Where a doc test's temp dirs go (its TMPDIR): inside the pytest test's own, not /tmp."""
    path = tmp_path / "tmp"
    path.mkdir()
    return path
