"""The e2e fixtures (a demo upstream and a real gateway per backend) for the key tests."""

from __future__ import annotations

from tests.e2e.conftest import _close_sdk_clients, demo_upstream, gateway

__all__ = ["_close_sdk_clients", "demo_upstream", "gateway"]
