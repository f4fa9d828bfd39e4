"""Benchmarks: figures measured side by side in one run, written to docs/performance.md."""
