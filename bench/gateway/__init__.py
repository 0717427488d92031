"""Gateway overhead benchmark (issue 6): ``python -m bench.gateway``; see ``__main__``."""
