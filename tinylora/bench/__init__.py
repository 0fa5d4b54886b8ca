"""Benchmarks: ``tinylora bench engine`` (or ``python benchmarks/engine.py``); helpers in ``common``."""
