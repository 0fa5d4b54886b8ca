"""The training loop, the shipped base model, and the command line."""
import subprocess
import sys
import time

import numpy as np
import pytest

from tinylora import load_base
from tinylora.data import get_batch, load_corpus, train_val_split
from tinylora.models import GPT, GPTConfig
from tinylora.optim import AdamW, WarmupCosine, clip_grad_norm_
from tinylora.tensor import Tensor, no_grad
from tinylora.train import estimate_loss, fit

NANO = GPTConfig.preset("nano")
IDS = np.tile(np.arange(20), 50)  # a repeating pattern a nano GPT learns quickly


def test_fit_lowers_the_training_loss_on_a_repeating_pattern():
    history = fit(GPT(NANO, seed=0), IDS, steps=60, batch_size=8, lr=1e-2, progress=False)
    assert np.mean(history["train_loss"][-5:]) < 0.5 * np.mean(history["train_loss"][:5])


def test_fit_evaluates_every_eval_every_steps_and_at_the_end():
    history = fit(GPT(NANO), IDS, IDS, steps=10, batch_size=4, eval_every=4, progress=False)
    assert history["val_step"] == [4, 8, 10]
    assert len(history["val_loss"]) == 3


def test_fit_never_changes_frozen_parameters():
    model = GPT(NANO, seed=0)
    model.wte.weight.requires_grad = False
    before = model.wte.weight.data.copy()
    fit(model, IDS, steps=5, batch_size=4, progress=False)
    np.testing.assert_array_equal(model.wte.weight.data, before)


def test_same_seed_gives_the_same_history():
    a = fit(GPT(NANO, seed=0), IDS, steps=5, batch_size=4, seed=3, progress=False)
    b = fit(GPT(NANO, seed=0), IDS, steps=5, batch_size=4, seed=3, progress=False)
    assert a["train_loss"] == b["train_loss"]


def test_estimate_loss_is_deterministic():
    model = GPT(NANO, seed=0)
    assert estimate_loss(model, IDS, batch_size=4) == estimate_loss(model, IDS, batch_size=4)


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(steps=0), ValueError, "steps must be a positive int, got 0"),
    (dict(batch_size=-1), ValueError, "batch_size must be a positive int, got -1"),
    (dict(steps=2.0), TypeError, r"steps must be an int, got 2.0 \(float\)"),
])
def test_fit_refuses_bad_sizes(kwargs, error, message):
    with pytest.raises(error, match=message):
        fit(GPT(NANO), IDS, progress=False, **{"steps": 1, **kwargs})


def test_fit_refuses_a_corpus_shorter_than_one_window():
    with pytest.raises(ValueError, match="train_ids has 10 tokens; it needs at least 33"):
        fit(GPT(NANO), IDS[:10], steps=1, progress=False)


def test_fit_refuses_a_loss_fn_that_returns_no_scalar():
    def logits(model, x, y):
        return model(x)[0]                                            # (B, T, V), not a loss
    with pytest.raises(TypeError, match=r"loss_fn must return a scalar Tensor .*shape \(4, 32, "):
        fit(GPT(NANO), IDS, steps=1, batch_size=4, loss_fn=logits, progress=False)


def test_fit_refuses_a_model_with_nothing_to_train():
    model = GPT(NANO).requires_grad_(False)
    with pytest.raises(ValueError, match="no parameter with requires_grad=True"):
        fit(model, IDS, steps=1, progress=False)


# ---- a custom sampler and loss: the planted task's loop -----------------------------------
def squared_logit_error(model, x, target):
    logits, _ = model(x)                                              # (B, T, V)
    return ((logits - Tensor(target)) ** 2).mean()


def teacher_pool(n_batches=6):
    teacher, rng = GPT(NANO, seed=1), np.random.default_rng(0)
    with no_grad():
        return [(x, teacher(x)[0].data) for x, _ in (get_batch(IDS, 4, 16, rng) for _ in range(n_batches))]


def hand_written_loop(model, pool, steps, lr, seed):
    """The loop the planted task had before it used ``fit`` (kept here as the reference)."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = AdamW(params, lr=lr, weight_decay=0.0)
    schedule = WarmupCosine(optimizer, warmup_steps=max(1, steps // 10), total_steps=steps, min_lr_ratio=0.01)
    rng, losses = np.random.default_rng(seed), []
    for _ in range(steps):
        x, target = pool[int(rng.integers(len(pool)))]
        loss = squared_logit_error(model, x, target)
        optimizer.zero_grad()
        loss.backward()
        clip_grad_norm_(params, 1.0)
        optimizer.step()
        schedule.step()
        losses.append(loss.item())
    return losses


def test_fit_with_a_sampler_and_a_loss_fn_is_bit_identical_to_the_hand_written_loop():
    pool, steps = teacher_pool(), 12
    reference = hand_written_loop(GPT(NANO, seed=0), pool, steps, lr=1e-2, seed=5)

    def sample(rng):
        return pool[int(rng.integers(len(pool)))]
    history = fit(GPT(NANO, seed=0), sample, steps=steps, lr=1e-2, warmup_steps=max(1, steps // 10),
                  min_lr_ratio=0.01, seed=5, loss_fn=squared_logit_error, progress=False)
    assert history["train_loss"] == reference
    assert reference[-1] < reference[0]


# ---- the shipped base model --------------------------------------------------------------
def test_base_model_loads_in_under_a_second():
    load_base()  # warm the import and file cache
    start = time.perf_counter()
    model, tokenizer = load_base()
    assert time.perf_counter() - start < 1.0
    assert model.config == GPTConfig.preset("base") and tokenizer.vocab_size == 96


def test_base_model_generates_text_recognisably_from_its_fables():
    model, tokenizer = load_base()
    prompt = tokenizer.encode("Once upon a time")[None, :]
    text = tokenizer.decode(model.generate(prompt, 300, temperature=0.8, seed=0)[0])
    words = sum(text.count(w) for w in (" the ", " and ", " was ", " said "))
    assert words >= 5, text


def test_base_model_knows_recipes_in_the_cookbook_layout_far_better_than_as_cards():
    """The same recipes (one seed), two layouts: the base model read only the cookbook's."""
    model, tokenizer = load_base()
    cookbook = tokenizer.encode(load_corpus("cookbook", n_chars=8_000, seed=7))
    cards = tokenizer.encode(load_corpus("recipes", n_chars=8_000, seed=7))
    assert estimate_loss(model, cookbook) + 0.5 < estimate_loss(model, cards)


def test_fine_tuning_the_base_model_on_recipes_lowers_the_recipe_loss():
    model, tokenizer = load_base()
    train, val = train_val_split(tokenizer.encode(load_corpus("recipes", n_chars=20_000)))
    before = estimate_loss(model, val)
    fit(model, train, steps=15, lr=2e-3, progress=False)
    assert estimate_loss(model, val) < before - 0.05


# ---- the command line ----------------------------------------------------------------------
def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "tinylora.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_cli_help_lists_every_command():
    out = run_cli("--help").stdout
    for command in ("sweep", "plot", "report", "pretrain", "generate", "bench", "demo"):
        assert command in out


def test_cli_generate_prints_the_prompt_and_its_continuation():
    out = run_cli("generate", "--prompt", "The fox", "--max-new-tokens", "20").stdout
    assert out.startswith("The fox") and len(out.strip()) == len("The fox") + 20


def test_cli_generate_refuses_characters_outside_the_vocabulary():
    result = run_cli("generate", "--prompt", "caf\u00e9")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "tinylora generate: error:" in result.stderr
    assert "outside the vocabulary: '\u00e9'" in result.stderr


def test_cli_bench_gpt_quick_runs_and_prints_a_ratio():
    result = run_cli("bench", "gpt", "--quick")
    assert result.returncode == 0, result.stderr
    assert "ms" in result.stdout


def test_cli_report_on_a_folder_without_results_says_so():
    result = run_cli("report", "/nonexistent-folder")
    assert result.returncode == 2 and "tinylora report: error" in result.stderr
