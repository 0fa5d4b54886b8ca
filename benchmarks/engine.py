"""Engine benchmark (per-op overhead, matmul throughput); the code lives in tinylora/bench/engine.py.

    python benchmarks/engine.py [--quick]
"""
import sys

from tinylora.bench.engine import main

if __name__ == "__main__":
    sys.exit(main())
