"""The session's demo upstream (one process, from the end-to-end fixtures) for the crash tests."""

from tests.e2e.conftest import demo_upstream  # noqa: F401  (a fixture, found by its name)
