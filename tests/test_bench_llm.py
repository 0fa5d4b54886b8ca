"""tinylora bench llm end to end on a tiny GGUF file: the report runs and prints its rows (no timing is
checked)."""
from __future__ import annotations

import numpy as np
import pytest

from tinylora.bench import llm

from .test_gguf_file import write_gguf

pytest.importorskip("gguf", reason="the tiny model is written as a GGUF file with the gguf package")

ROWS = ["load s, cold", "load s, cached", "prefill tok/s", "decode tok/s (8 new, KV cache)",
        "decode tok/s (4 new, no cache)", "cache speed-up", "peak RSS MiB, cached load",
        "peak RSS MiB, cold load"]
TINY = ["--quick", "--prompt-tokens", "8", "--new-tokens", "8", "--uncached-tokens", "4"]


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory):
    path = tmp_path_factory.mktemp("bench-llm") / "tiny.gguf"
    write_gguf(path, tokenizer=True)
    return str(path)


def test_bench_llm_quick_prints_every_row_for_tinylora(tiny_gguf, capsys):
    assert llm.main([*TINY, "--model", tiny_gguf, "--skip-transformers"]) == 0
    out = capsys.readouterr().out
    assert "blas" in out.lower() and "OPENBLAS_CORETYPE" in out  # the environment report
    for row in ROWS:
        assert row in out
    assert "transformers column skipped: --skip-transformers" in out
    assert "<= 30 s" in out and "<= 3 s" in out and ">= 1.0x transformers" in out


def test_bench_llm_through_the_cli(tiny_gguf, capsys):
    from tinylora import cli

    assert cli.main(["bench", "llm", *TINY, "--model", tiny_gguf, "--skip-transformers"]) == 0
    assert "decode tok/s" in capsys.readouterr().out


@pytest.mark.slow
def test_bench_llm_runs_transformers_on_the_same_file(tiny_gguf, capsys):
    pytest.importorskip("transformers")
    assert llm.main([*TINY, "--model", tiny_gguf]) == 0
    out = capsys.readouterr().out
    decode = next(line for line in out.splitlines() if line.startswith("decode tok/s (8 new"))
    assert decode.split()[-1] in ("ok", "MISSED") and "x" in decode  # a ratio and a verdict
    assert "greedy tokens equal to transformers': the first 8 of 8" in out


def test_rates_take_the_prefill_off_the_decode():
    rates = llm.rates({"prefill": 0.5, "decode": 2.5, "cached": 1.0, "uncached": 4.0}, 128, 256)
    assert rates["prefill tok/s"] == 256 and rates["decode tok/s"] == 128 and rates["cache speed-up"] == 4


def test_prompt_ids_repeat_the_text_to_length_and_fall_back_to_counting():
    class Ids:
        def encode(self, text):
            return np.array([3, 4, 5])
    assert llm.prompt_ids(Ids(), 7, 10).tolist() == [[3, 4, 5, 3, 4, 5, 3]]
    assert llm.prompt_ids(None, 4, 3).tolist() == [[1, 2, 0, 1]]
