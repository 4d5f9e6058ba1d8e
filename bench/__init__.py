"""Benchmarks: scripts that print numbers (``make bench`` / ``python -m bench.<name>``); results in docs/benchmarks.md."""
