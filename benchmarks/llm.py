"""LLM inference benchmark (tinylora's Llama vs transformers on one GGUF file); the code lives in
tinylora/bench/llm.py.

    python benchmarks/llm.py [--quick] [--model FILE.gguf]
"""
import sys

from tinylora.bench.llm import main

if __name__ == "__main__":
    sys.exit(main())
