"""Soak: hours-in-minutes of mixed load through a real gateway, watching for leaks and drift."""
