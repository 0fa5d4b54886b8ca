"""LoRA: a fresh adapter changes nothing, only A and B train, merging, adapters side by side, bad input."""
import re
from pathlib import Path

import numpy as np
import pytest

from tinylora import asnumpy, gradcheck, lora
from tinylora.gpt import GPT, GPTConfig
from tinylora.lora import LoraConfig, LoRALinear
from tinylora.nn import Linear
from tinylora.optim import AdamW
from tinylora.tensor import Tensor

TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)
DOCS = Path(__file__).resolve().parent.parent / "docs" / "lora.md"


def ids(shape, vocab=11, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, size=shape)


def counting_task(step):
    """Rows of 9 tokens counting by ``step`` mod 11 from every start: inputs (11, 8), targets (11, 8)."""
    rows = (np.arange(11)[:, None] + step * np.arange(9)[None, :]) % 11
    return rows[:, :8], rows[:, 1:]


def train(model, x, y, steps=5, lr=1e-2):
    optimizer = AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    for _ in range(steps):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return optimizer


def weights(model):
    return {name: p.numpy() for name, p in model.named_parameters()}


def lora_model(dtype=np.float32, **config):
    """A TINY GPT with a random-B adapter (init_lora_weights=False), so the adapter changes the output."""
    config = {"r": 2, "lora_alpha": 4, "init_lora_weights": False, **config}
    return lora.apply_lora(GPT(TINY, seed=0).to(dtype=dtype), LoraConfig(**config))


# ---- 1. a fresh adapter ------------------------------------------------------------------------
def test_fresh_adapter_leaves_the_output_exactly_unchanged():
    x = ids((2, 8))
    base, _ = GPT(TINY, seed=0)(x)
    adapted, _ = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=2))(x)
    np.testing.assert_array_equal(adapted.data, base.data)


def test_at_step_zero_a_gets_exactly_zero_gradient_and_b_does_not():
    """B = 0, so dL/dA = s·Bᵀ·(dL/dh)·xᵀ = 0, while dL/dB = s·(dL/dh)·(A·x)ᵀ is not."""
    model = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=2))
    model(ids((2, 8)), ids((2, 8), seed=1))[1].backward()
    for _, layer in lora.lora_layers(model):
        adapter = layer.adapters["default"]
        assert np.all(adapter.lora_A.grad == 0)
        assert np.any(adapter.lora_B.grad != 0)


# ---- 2. only the adapter trains ------------------------------------------------------------------
def test_training_leaves_every_base_weight_bit_identical():
    model = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=2))
    before = {n: w for n, w in weights(model).items() if ".adapters." not in n}
    train(model, ids((2, 8)), ids((2, 8), seed=1))
    after = weights(model)
    for name, w in before.items():
        np.testing.assert_array_equal(after[name], w, err_msg=name)


def test_only_lora_parameters_get_gradients_and_optimizer_state():
    model = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=2))
    optimizer = train(model, ids((2, 8)), ids((2, 8), seed=1))
    with_grad = {n for n, p in model.named_parameters() if p.grad is not None}
    lora_names = {n for n, _ in model.named_parameters() if n.endswith((".lora_A", ".lora_B"))}
    assert with_grad == lora_names and len(lora_names) == 8  # 2 layers x (q, v) x (A, B)
    assert {id(p) for p in optimizer.state} == {id(p) for n, p in model.named_parameters() if n in lora_names}


# ---- 3. counting parameters ----------------------------------------------------------------------
@pytest.mark.parametrize("targets, expected", [
    (("q_proj", "v_proj"), 2 * 2 * 3 * (8 + 8)),                           # 192
    ("all-linear", 2 * 3 * (4 * (8 + 8) + (8 + 32) + (32 + 8))),           # 864
])
def test_trainable_count_is_r_times_in_plus_out_summed_over_adapted_layers(targets, expected):
    model = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=3, target_modules=targets))
    layers = lora.lora_layers(model)
    assert sum(3 * (layer.in_features + layer.out_features) for _, layer in layers) == expected
    trainable, total = lora.count_parameters(model)
    assert trainable == expected
    assert total == GPT(TINY).num_parameters() + expected


def test_print_line_has_peft_format_with_separators_and_four_decimals(capsys):
    model = lora.apply_lora(GPT(GPTConfig.preset("nano")), LoraConfig(r=4, lora_alpha=8))
    lora.print_trainable_parameters(model)
    assert capsys.readouterr().out == "trainable params: 1,024 || all params: 33,664 || trainable%: 3.0418\n"


def test_worked_example_in_the_docs_prints_what_the_docs_say(capsys):
    """docs/lora.md: the base preset, r=8 on q_proj and v_proj; its printed line and its arithmetic."""
    text = DOCS.read_text()
    line = re.search(r"^trainable params: .*$", text, re.M).group(0)
    config = GPTConfig.preset("base")
    model = lora.apply_lora(GPT(config), LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "v_proj"]))
    lora.print_trainable_parameters(model)
    assert capsys.readouterr().out.strip() == line
    trainable, total, percent = re.fullmatch(r"trainable params: ([\d,]+) \|\| all params: ([\d,]+) \|\| "
                                             r"trainable%: ([\d.]+)", line).groups()
    assert int(trainable.replace(",", "")) == config.n_layer * 2 * 8 * (128 + 128) == 16_384
    assert int(total.replace(",", "")) == GPT(config).num_parameters() + 16_384 == 842_496
    assert percent == f"{100 * 16_384 / 842_496:.4f}"


# ---- 4. merging --------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_merged_output_equals_unmerged_output(dtype, tol):
    model, x = lora_model(dtype), ids((2, 8))
    unmerged, _ = model(x)
    lora.merge_lora(model)
    merged, _ = model(x)
    assert np.abs(merged.data - unmerged.data).max() <= tol


@pytest.mark.parametrize("dtype, tol", [(np.float32, 1e-6), (np.float64, 1e-12)])
def test_unmerge_after_merge_restores_the_base_weights(dtype, tol):
    model = lora_model(dtype)
    before = weights(model)
    lora.unmerge_lora(lora.merge_lora(model))
    for name, w in weights(model).items():
        assert np.abs(w - before[name]).max() <= tol, name


def test_merge_after_training_matches_the_trained_unmerged_output():
    model, x = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=2)), ids((2, 8))
    train(model, x, ids((2, 8), seed=1), lr=0.05)
    unmerged, _ = model(x)
    merged, _ = lora.merge_lora(model)(x)
    assert np.abs(merged.data - unmerged.data).max() <= 1e-6


def test_merge_and_unload_gives_a_plain_gpt_with_the_same_outputs():
    model, x = lora_model(), ids((2, 8))
    adapted, _ = model(x)
    plain = lora.merge_and_unload(model)
    assert type(plain) is GPT
    assert not any(isinstance(m, LoRALinear) for m in plain.modules())
    assert all(".adapters." not in n for n, _ in plain.named_parameters())
    assert np.abs(plain(x)[0].data - adapted.data).max() <= 1e-6


def test_train_and_eval_never_merge():
    model = lora_model()
    before = weights(model)
    model.eval()
    model.train()
    model.eval()
    assert not any(layer.merged for _, layer in lora.lora_layers(model))
    for name, w in weights(model).items():
        np.testing.assert_array_equal(w, before[name])


def test_unload_gives_back_the_base_model_exactly():
    x = ids((2, 8))
    base, _ = GPT(TINY, seed=0)(x)
    model = lora.unload(lora_model())
    assert not lora.lora_layers(model)
    np.testing.assert_array_equal(model(x)[0].data, base.data)


# ---- 5. several adapters -----------------------------------------------------------------------
def test_two_adapters_each_do_best_on_their_own_task():
    """'up' learns next = token + 1, 'down' next = token - 1 (mod 11), on one frozen base."""
    up, down = counting_task(+1), counting_task(-1)
    targets = ["q_proj", "v_proj", "fc_out", "lm_head"]  # lm_head too: a random frozen head caps the logits
    model = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=4, lora_alpha=8, target_modules=targets), "up")
    train(model, *up, steps=60, lr=0.05)
    lora.add_adapter(model, "down", LoraConfig(r=4, lora_alpha=8, target_modules=targets, seed=1))
    lora.set_adapter(model, "down")
    train(model, *down, steps=60, lr=0.05)
    losses = {}
    for name in ("up", "down"):
        lora.set_adapter(model, name)
        losses[name] = {task: model(*data)[1].item() for task, data in (("up", up), ("down", down))}
    assert losses["up"]["up"] < 0.5 < losses["down"]["up"]
    assert losses["down"]["down"] < 0.5 < losses["up"]["down"]


def test_disable_adapters_gives_the_base_output_exactly():
    x = ids((2, 8))
    base, _ = GPT(TINY, seed=0)(x)
    model = lora_model()
    assert not np.allclose(model(x)[0].data, base.data)
    with lora.disable_adapters(model):
        np.testing.assert_array_equal(model(x)[0].data, base.data)
    assert not np.allclose(model(x)[0].data, base.data)


def test_adding_a_second_adapter_keeps_the_first_active_and_the_only_one_training():
    model = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=2), "first")
    lora.add_adapter(model, "second", LoraConfig(r=2))
    assert lora.active_adapter(model) == "first"
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapters.first." in n for n in trainable)


def test_set_adapter_moves_training_to_the_chosen_adapter():
    model = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=2), "first")
    lora.add_adapter(model, "second", LoraConfig(r=2))
    lora.set_adapter(model, "second")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert len(trainable) == 8 and all(".adapters.second." in n for n in trainable)


def test_delete_adapter_removes_its_parameters():
    model = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=2), "first")
    lora.add_adapter(model, "second", LoraConfig(r=2))
    lora.delete_adapter(model, "second")
    assert lora.adapter_names(model) == ["first"]
    assert not any(".second." in n for n, _ in model.named_parameters())


def test_lora_dropout_is_active_in_train_mode_and_off_in_eval_mode():
    model, x = lora_model(lora_dropout=0.5), ids((2, 8))
    model.train()
    a, b = model(x)[0].data, model(x)[0].data
    assert not np.array_equal(a, b)
    model.eval()
    np.testing.assert_array_equal(model(x)[0].data, model(x)[0].data)


# ---- gradients ------------------------------------------------------------------------------------
def test_lora_linear_passes_gradcheck_in_float64_for_x_a_and_b():
    layer = LoRALinear(Linear(5, 4, rng=np.random.default_rng(0), dtype=np.float64))
    layer.add_adapter("default", LoraConfig(r=2, init_lora_weights=False), np.random.default_rng(1))
    layer.active_adapter = "default"
    adapter = layer.adapters["default"]
    x = Tensor(np.random.default_rng(2).standard_normal((3, 5)), requires_grad=True)
    assert gradcheck(lambda x, *_: layer(x), x, adapter.lora_A, adapter.lora_B)


# ---- devices and work not done ----------------------------------------------------------------------
def trained_lora_gpt(device, x, lora_dropout=0.0):
    model = lora.apply_lora(GPT(TINY, seed=0).to(device), LoraConfig(r=2, lora_dropout=lora_dropout))
    train(model, x, ids((2, 8), seed=1), steps=2)
    return model.eval()


def test_lora_trains_on_every_backend_as_it_does_on_the_cpu(backend):
    device, x = ("cpu" if backend == "numpy" else "cuda"), ids((2, 8))
    model = trained_lora_gpt(device, x)
    assert {p.device for p in model.parameters()} == {device}  # the adapter was made on W0's device
    np.testing.assert_allclose(asnumpy(model(x)[0].data), trained_lora_gpt("cpu", x)(x)[0].data, atol=1e-5)


def test_lora_dropout_masks_are_made_on_the_device_and_repeat_with_the_seed(backend):
    """A GPU draws its masks from its own generator, so only the same device repeats them exactly."""
    device, x = ("cpu" if backend == "numpy" else "cuda"), ids((2, 8))
    first = trained_lora_gpt(device, x, lora_dropout=0.5)
    second = trained_lora_gpt(device, x, lora_dropout=0.5)
    assert {p.device for p in first.parameters()} == {device}
    np.testing.assert_array_equal(asnumpy(first(x)[0].data), asnumpy(second(x)[0].data))
    without_dropout = trained_lora_gpt(device, x)
    assert not np.allclose(asnumpy(first(x)[0].data), asnumpy(without_dropout(x)[0].data))


@pytest.mark.parametrize("backend", ["fakecupy"], indirect=True)
def test_freezing_w0_saves_exactly_one_matmul_in_backward(backend):
    """The frozen W0's gradient (out x in) is never computed: one matmul fewer than with W0 trainable."""
    from tests.fake_cupy import calls

    def backward_matmuls(train_w0):
        layer = LoRALinear(Linear(64, 64, rng=np.random.default_rng(0)))
        layer.add_adapter("default", LoraConfig(r=4), np.random.default_rng(0))
        layer.active_adapter = "default"
        layer.to("cuda")
        layer.base_layer.weight.requires_grad = train_w0
        x = Tensor(np.ones((32, 64), np.float32)).to("cuda")
        x.requires_grad = True
        out = layer(x).sum()
        calls.clear()
        out.backward()
        return calls["matmul"], layer.base_layer.weight.grad

    frozen, frozen_grad = backward_matmuls(False)
    trained, trained_grad = backward_matmuls(True)
    assert frozen == trained - 1 == 5  # dx through W0; through B: dx, dB; through A: dx, dA
    assert frozen_grad is None and trained_grad is not None


@pytest.mark.parametrize("backend", ["fakecupy"], indirect=True)
def test_lora_backward_does_fewer_multiply_adds_than_full_fine_tuning(backend, monkeypatch):
    """Backward of a 64x64 layer on 32 rows: full fine-tuning 2·(32·64·64) multiply-adds (dx, dW);
    LoRA r=4: 32·64·64 (dx through W0) + 4·(32·64·4) (the four thin products) = 163,840 < 262,144."""
    from tests.fake_cupy import FakeCupyArray

    work = []
    matmul = FakeCupyArray.__matmul__

    def counting_matmul(a, b):
        work.append(a.shape[-2] * a.shape[-1] * b.shape[-1])
        return matmul(a, b)
    monkeypatch.setattr(FakeCupyArray, "__matmul__", counting_matmul)

    def backward_work(layer):
        layer.to("cuda")
        x = Tensor(np.ones((32, 64), np.float32)).to("cuda")
        x.requires_grad = True
        out = layer(x).sum()
        work.clear()
        out.backward()
        return sum(work)

    lora_layer = LoRALinear(Linear(64, 64, rng=np.random.default_rng(0)))
    lora_layer.add_adapter("default", LoraConfig(r=4), np.random.default_rng(0))
    lora_layer.active_adapter = "default"
    assert backward_work(Linear(64, 64, rng=np.random.default_rng(0))) == 262_144
    assert backward_work(lora_layer) == 163_840


# ---- 9. bad input ----------------------------------------------------------------------------------
@pytest.mark.parametrize("field, value, error, message", [
    ("r", 0, ValueError, "LoraConfig.r must be a positive int, got 0"),
    ("r", -2, ValueError, "LoraConfig.r must be a positive int, got -2"),
    ("r", 2.5, TypeError, r"LoraConfig.r must be an int, got 2.5 \(float\)"),
    ("lora_alpha", 0, ValueError, "LoraConfig.lora_alpha must be a number > 0, got 0"),
    ("lora_dropout", 1.0, ValueError, r"LoraConfig.lora_dropout must be a number in \[0, 1\), got 1.0"),
    ("lora_dropout", -0.1, ValueError, r"LoraConfig.lora_dropout must be a number in \[0, 1\), got -0.1"),
    ("init_lora_weights", "zeros", ValueError, "init_lora_weights must be one of"),
    ("bias", "some", ValueError, "LoraConfig.bias must be one of"),
])
def test_bad_config_value_is_refused_with_its_name_and_value(field, value, error, message):
    with pytest.raises(error, match=message):
        LoraConfig(**{field: value})


def assert_unchanged(model, before):
    assert not lora.lora_layers(model)
    assert weights(model).keys() == before.keys()
    for name, w in weights(model).items():
        np.testing.assert_array_equal(w, before[name])
    assert all(p.requires_grad for p in model.parameters())


def test_rank_above_a_layers_smaller_side_names_the_layer_and_changes_nothing():
    model = GPT(TINY, seed=0)
    before = weights(model)
    too_large = r"r=9 is larger than min\(in, out\) = 8 of layer 'blocks.0.attn.q_proj'"
    with pytest.raises(ValueError, match=too_large):
        lora.apply_lora(model, LoraConfig(r=9))
    assert_unchanged(model, before)


def test_target_modules_matching_nothing_lists_the_valid_names_and_changes_nothing():
    model = GPT(TINY, seed=0)
    before = weights(model)
    valid = r"\['fc_in', 'fc_out', 'k_proj', 'lm_head', 'o_proj', 'q_proj', 'v_proj'\]"
    with pytest.raises(ValueError, match=valid):
        lora.apply_lora(model, LoraConfig(target_modules=["query", "value"]))
    assert_unchanged(model, before)


def test_applying_the_same_adapter_name_twice_is_refused_and_changes_nothing():
    model = lora.apply_lora(GPT(TINY, seed=0), LoraConfig(r=2))
    before = weights(model)
    twice = "layer 'blocks.0.attn.q_proj' already has an adapter named 'default'"
    with pytest.raises(ValueError, match=twice):
        lora.apply_lora(model, LoraConfig(r=4))
    assert weights(model).keys() == before.keys()
    assert lora.adapter_names(model) == ["default"]


def test_adapter_name_must_be_an_identifier():
    with pytest.raises(ValueError, match="adapter_name must be a Python identifier .* got 'my adapter'"):
        lora.apply_lora(GPT(TINY), LoraConfig(r=2), "my adapter")


def test_switching_to_an_unknown_adapter_lists_the_known_ones():
    model = lora.apply_lora(GPT(TINY), LoraConfig(r=2))
    with pytest.raises(ValueError, match=r"no adapter named 'other'; the model has \['default'\]"):
        lora.set_adapter(model, "other")


def test_merging_twice_is_refused():
    model = lora.merge_lora(lora_model())
    with pytest.raises(ValueError, match="already merged"):
        lora.merge_lora(model)


def test_disabling_a_merged_model_is_refused():
    model = lora.merge_lora(lora_model())
    with pytest.raises(ValueError, match="needs an unmerged model"):
        with lora.disable_adapters(model):
            pass


# ---- the benchmark ---------------------------------------------------------------------------------
def test_lora_benchmark_quick_run_prints_every_ratio_next_to_its_target(capsys):
    from tinylora.bench.lora import main

    assert main(["--quick"]) == 0
    out = capsys.readouterr().out
    for row in ("train step ms", "merged inference ms", "unmerged inference ms", "training bytes MiB",
                "peak RSS MiB", "file KiB"):
        assert row in out
    assert out.count("<= ") == 3
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    assert "PyTorch, same model and batch" in out  # the reference ratio, measured in the same loop
