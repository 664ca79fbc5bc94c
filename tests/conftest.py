"""Shared pytest configuration: fixture modules under tests/support."""

pytest_plugins = [
    "support.workers",
    "support.redis_server",
    "support.real_gage",
    "support.multihost",
]
