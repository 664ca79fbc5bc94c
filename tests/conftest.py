"""Shared pytest configuration: fixture modules under tests/support."""

pytest_plugins = [
    "support.real_gage",
]
