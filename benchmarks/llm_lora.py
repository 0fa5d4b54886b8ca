"""LoRA fine-tuning benchmark on SmolLM2-135M (tinylora vs PyTorch + PEFT, a 4-bit base, peak memory); the
code lives in tinylora/bench/llm_lora.py.

    python benchmarks/llm_lora.py [--quick] [--model NAME]
"""
import sys

from tinylora.bench.llm_lora import main

if __name__ == "__main__":
    sys.exit(main())
