"""Shared pytest configuration: fixture modules under tests/support, and the `system` tier.

A test is `system` when it starts real worker or beat processes, a
redis-server, GlusterFS hosts in namespaces, or the real Gage CLI.
`pytest -m "not system"` runs the fast tier (under two minutes); `make
test` runs everything. Test files mark such tests themselves
(`@pytest.mark.system`, or a module-level `pytestmark`); as a safety net,
`pytest_collection_modifyitems` also marks any test that uses a fixture
starting such processes (`SYSTEM_FIXTURES`) or whose body or fixtures call
something that starts a worker (`SYSTEM_CALLS`), so a new test of that
kind never slips into the fast tier unmarked.
"""

import os
import types

import pytest

pytest_plugins = [
    "support.workers",
    "support.redis_server",
    "support.real_gage",
    "support.multihost",
    "support.submit_runs",
]

# Fixtures whose set-up starts a redis-server, GlusterFS hosts or the real Gage.
SYSTEM_FIXTURES = frozenset({
    "redis_server", "redis_unix_server", "redis_bed", "real_gage",
    "gluster_volume", "laptop_mount", "multihost_bed",
})
# Names whose use in a test or fixture function starts a real `gage-worker`
# (`Bed.start_worker`, `submit_cli.worker_pool`) or `gage-worker beat`.
SYSTEM_CALLS = frozenset({"start_worker", "worker_pool", "start_beat"})


def _names(code: types.CodeType) -> set[str]:
    """Every global and attribute name `code` (and the functions nested in it) uses."""
    names = set(code.co_names)
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= _names(const)
    return names


def _calls_system(func: object) -> bool:
    code = getattr(func, "__code__", None)
    return code is not None and not SYSTEM_CALLS.isdisjoint(_names(code))


def is_system(item: pytest.Item) -> bool:
    """Whether `item` starts system processes, judged from its fixtures and its code."""
    if not SYSTEM_FIXTURES.isdisjoint(getattr(item, "fixturenames", ())):
        return True
    if _calls_system(getattr(item, "function", None)):
        return True
    fixtureinfo = getattr(item, "_fixtureinfo", None)
    for defs in (fixtureinfo.name2fixturedefs.values() if fixtureinfo else ()):
        if any(_calls_system(fixturedef.func) for fixturedef in defs):
            return True
    return False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("system") is None and is_system(item):
            item.add_marker(pytest.mark.system)


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
