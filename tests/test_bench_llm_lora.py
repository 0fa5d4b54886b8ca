"""tinylora bench llm-lora on the tiny Llama preset: every section prints (no timing is checked), and the
PyTorch side trains the same model."""
from __future__ import annotations

import numpy as np
import pytest

from tinylora.bench import llm_lora

QUICK = ["--quick", "--skip-torch"]


@pytest.mark.slow
def test_bench_llm_lora_quick_prints_steps_memory_and_quality(capsys):
    assert llm_lora.main(QUICK) == 0
    out = capsys.readouterr().out
    assert "blas" in out.lower() and "OPENBLAS_CORETYPE" in out          # the environment report
    for row in ("full step", "lora step", "qlora step", "qlora-q4_1 step", "unmerged forward",
                "merged forward", "tinylora LoRA / full fine-tuning", "merged / unmerged forward",
                "LoRA on the Q4_1 base / LoRA", "PyTorch+PEFT column skipped", "peak RSS",
                "memory_report, qlora", "memory_report, qlora-q4_1",
                "frozen weights, quantized", "frozen-weight bytes, qlora / float32",
                "frozen-weight bytes, qlora-q4_1 / float32", "NF4 base:", "Q4_1 base:", "vs float32"):
        assert row in out


def test_bench_llm_lora_runs_through_the_cli_without_memory_or_quality(capsys):
    from tinylora import cli

    assert cli.main(["bench", "llm-lora", *QUICK, "--skip-memory", "--quality-steps", "0"]) == 0
    out = capsys.readouterr().out
    assert "lora step" in out and "peak RSS" not in out and "QLoRA quality" not in out


@pytest.mark.slow
def test_the_peft_model_gives_the_logits_of_the_tinylora_model_it_copies():
    torch = pytest.importorskip("torch")
    pytest.importorskip("peft")
    pytest.importorskip("transformers")
    model = llm_lora.build("lora", "tiny")
    x, _ = llm_lora.batch_of(model.config.vocab_size, 2, 8)
    theirs = llm_lora.peft_model(model, torch)(input_ids=torch.from_numpy(x)).logits.detach().numpy()
    np.testing.assert_allclose(theirs, model(x)[0].data, rtol=1e-4, atol=1e-5)


def test_the_rss_child_reports_the_peak_and_the_memory_report_of_one_run():
    child = llm_lora.rss_child("qlora", "tiny", llm_lora.SETTINGS["quick"])
    rows = dict(child["report"])
    assert child["peak"] > 0 and child["start"] > 0 and child["total"] == rows["total"] > 0
    assert rows["frozen weights, quantized (codes + scales)"] > 0 and rows["frozen weights, float"] < 2 ** 16
