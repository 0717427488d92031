"""Token counting benchmark: ``python -m bench.tokens`` (see __main__.py)."""
