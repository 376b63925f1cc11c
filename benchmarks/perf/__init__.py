"""The performance harness (``python -m benchmarks.perf``); see ``__main__``."""
