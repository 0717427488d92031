"""Fixtures of the rate-limit tests: the demo upstream process is shared with tests/e2e."""

from __future__ import annotations

from tests.e2e.conftest import _close_sdk_clients, demo_upstream

__all__ = ["_close_sdk_clients", "demo_upstream"]
