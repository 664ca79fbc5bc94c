"""tests/docs/queue-lifecycle.md: queued -> running -> finalizing -> completed / lost, as a doc test."""

from __future__ import annotations

from pathlib import Path

from support.doc_tests import run_doc_test

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "tests" / "docs" / "queue-lifecycle.md"


def test_queue_lifecycle(tmp_path):
    run_doc_test(tmp_path, DOC.name, DOC.read_text(), init="from support.gage_test import *")
