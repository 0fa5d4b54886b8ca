"""GPT training-step benchmark (tinylora vs PyTorch); the code lives in tinylora/bench/gpt.py.

    python benchmarks/gpt_step.py [--quick]
"""
import sys

from tinylora.bench.gpt import main

if __name__ == "__main__":
    sys.exit(main())
