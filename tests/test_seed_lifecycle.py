"""The user's spec, seed-run-lifecycle.md, run as a doc test against gage_runs.

It runs unchanged except its two import lines, under several umasks: the
modes it expects must not depend on the umask (design §2.1).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from support.doc_tests import run_doc_test

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "tests" / "docs" / "seed-run-lifecycle.md"
SHARED_DOC = REPO.parent / "shared" / "spec" / "seed-run-lifecycle.md"
GAGE_IMPORTS = (
    "    >>> from gage._internal.run_util import *\n"
    "    >>> from gage._internal.types import *\n"
)
OUR_IMPORTS = "    >>> from gage_runs import *\n    >>> from gage_runs import *\n"


def test_copy_matches_the_shared_spec():
    """The repo's copy of the spec is the user's document, byte for byte."""
    if not SHARED_DOC.exists():
        pytest.skip("shared/spec is not beside this checkout")
    assert DOC.read_bytes() == SHARED_DOC.read_bytes()


def _doc_with_our_imports() -> str:
    text = DOC.read_text()
    assert GAGE_IMPORTS in text
    return text.replace(GAGE_IMPORTS, OUR_IMPORTS)


@pytest.mark.parametrize("umask", [0o022, 0o002, 0o000, 0o077])
def test_seed_run_lifecycle(tmp_path, umask):
    """Every expected file, mode and output of the spec holds under this umask."""
    run_doc_test(tmp_path, DOC.name, _doc_with_our_imports(),
                 init="from support.gage_test import *", umask=umask)
