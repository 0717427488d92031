"""The demo upstream of tests/demo, served in a thread, for a gateway app run in process to call."""

from __future__ import annotations

from tests.demo.conftest import demo_url

__all__ = ["demo_url"]
