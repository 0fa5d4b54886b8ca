"""LoRA benchmark (LoRA vs full fine-tuning); the code lives in tinylora/bench/lora.py.

    python benchmarks/lora.py [--quick]
"""
import sys

from tinylora.bench.lora import main

if __name__ == "__main__":
    sys.exit(main())
