"""Benchmarks: runnable as ``python -m bench.<name>``; timings live here, never in tests."""
