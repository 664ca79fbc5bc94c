"""Shared pytest configuration: fixture modules under tests/support."""

import os

import pytest

pytest_plugins = [
    "support.workers",
    "support.redis_server",
    "support.real_gage",
    "support.multihost",
]


@pytest.fixture(autouse=True, scope="session")
def _private_user_cache(tmp_path_factory):
    """`list`'s row cache (`gage_submit.row_cache`) goes to a temp dir, never the real home."""
    saved = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("xdg-cache"))
    yield
    if saved is None:
        os.environ.pop("XDG_CACHE_HOME", None)
    else:
        os.environ["XDG_CACHE_HOME"] = saved
