"""The bad-input catalogue: one table of wrong calls across the public API and the CLI.

Each row is (name, setup, call, error, match): ``setup()`` builds fresh objects, ``call(env)``
makes one bad call, which must raise ``error`` with ``match`` (the argument's name, or the
flag) in its message; then ``snapshot(env)``, taken before and after, must be unchanged: no
parameter, gradient, optimizer state or file was touched. CLI rows call ``tinylora.cli.main``
and expect exit code 2 (returned, or raised as SystemExit) and the flag named on stderr.
"""
import math
import os
import pickle
import zipfile

import numpy as np
import pytest

import tinylora.functional as F
from tinylora import Tensor, cli, lora
from tinylora.corpora import load_corpus
from tinylora.data import get_batch, train_val_split
from tinylora.experiments.sweep import SweepConfig
from tinylora.io import load_arrays, load_weights, save_arrays, save_model, save_safetensors
from tinylora.models import GPT, GPTConfig, load_model
from tinylora.models.generation import generate, sample_next
from tinylora.nn import Dropout, Embedding, LayerNorm, Linear, Parameter
from tinylora.optim import SGD, AdamW, WarmupCosine, clip_grad_norm_, warmup_cosine
from tinylora.tokenizers import CharTokenizer
from tinylora.train import estimate_loss, fit

NAN, INF = math.nan, math.inf
f32 = np.float32


# ---- environments: what a row starts from, and its snapshot -------------------------------------
def _tensors():
    return {"x": Tensor(np.arange(6, dtype=f32).reshape(2, 3), requires_grad=True),
            "i": Tensor(np.arange(6).reshape(2, 3)),
            "e": Tensor(np.zeros((0, 3), dtype=f32), requires_grad=True),
            "w": Tensor(np.ones((4, 3), dtype=f32), requires_grad=True),
            "q": Tensor(np.ones((1, 2, 3, 4), dtype=f32), requires_grad=True),
            "k2": Tensor(np.ones((1, 4, 3, 4), dtype=f32)),
            "empty_q": Tensor(np.ones((1, 2, 0, 4), dtype=f32)),
            "empty_k": Tensor(np.ones((1, 2, 0, 4), dtype=f32))}


def _linear():
    return {"m": Linear(3, 2, rng=np.random.default_rng(0))}


def _gpt():
    return {"m": GPT(GPTConfig.preset("nano"), seed=0)}


def _peft():
    return {"m": lora.apply_lora(GPT(GPTConfig.preset("nano"), seed=0),
                                 lora.LoraConfig(r=2, target_modules=["q_proj"]))}


def _adamw():
    p = Parameter(np.ones((2, 3), dtype=f32))
    opt = AdamW([p], lr=0.1)
    p.grad = np.ones((2, 3), dtype=f32)
    opt.step()
    return {"p": p, "opt": opt, "m": None}


def _files(tmp_path):
    model = GPT(GPTConfig.preset("nano"), seed=0)
    good = tmp_path / "good.npz"
    save_model(model, good)
    (tmp_path / "in").mkdir()  # bad input files are written here, outside the snapshot's folder
    return {"m": model, "dir": tmp_path, "good": good}


def _nothing():
    return {}


def snapshot(env):
    """Bytes of every tensor, parameter, gradient and optimizer state, and the files in the folder."""
    out = []
    for key in sorted(env):
        value = env[key]
        if isinstance(value, Tensor):
            out.append((key, value.numpy().tobytes(), None if value.grad is None else value.grad.tobytes()))
        elif hasattr(value, "state_dict") and hasattr(value, "named_parameters"):
            out.append((key, [(n, a.tobytes()) for n, a in value.state_dict().items()]))
        elif isinstance(value, (AdamW, SGD)):
            out.append((key, pickle.dumps(value.state_dict())))
        elif isinstance(value, os.PathLike) and os.path.isdir(value):
            out.append((key, sorted(os.listdir(value))))
    return out


def _with_array(tmp, name, array):
    """A checkpoint like ``good`` in which ``name`` is replaced by ``array``."""
    arrays, config, meta = load_arrays(tmp["good"])
    arrays[name] = array
    path = tmp["dir"] / "in" / f"bad_{name}.npz"
    np.savez(path, **arrays, __config_json__=np.frombuffer(
        __import__("json").dumps(config).encode(), dtype=np.uint8))
    return path


def _bad_zip(tmp):
    path = tmp["dir"] / "in" / "broken.npz"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("x.npy", b"not an array")
    return path


def _state(env, **changes):
    state = env["m"].state_dict()
    state.update(changes)
    return state


def _opt_state(env, **group):
    saved = env["opt"].state_dict()
    saved["param_groups"][0].update(group)
    return saved


def _adamw_bad_grad():
    env = _adamw()
    env["p"]._grad = np.ones(5, dtype=f32)  # bypasses the .grad check, as a buggy hook might
    return env


def _ids():
    return np.arange(400) % 7


V = GPTConfig.preset("nano").vocab_size
R = RuntimeError
T, VE, AE = TypeError, ValueError, AttributeError

ROWS = [
    # ---- tensor ---------------------------------------------------------------------------------
    ("Tensor(str)", _nothing, lambda e: Tensor("abc"), T, "string"),
    ("Tensor(ragged)", _nothing, lambda e: Tensor([1.0, [2.0, 3.0]]), VE, "rectangular"),
    ("Tensor(complex)", _nothing, lambda e: Tensor([1 + 2j]), T, "numeric"),
    ("Tensor(str array)", _nothing, lambda e: Tensor(np.array(["a"])), T, "numeric"),
    ("Tensor(int, requires_grad)", _nothing, lambda e: Tensor([1, 2], requires_grad=True), T,
     "requires_grad"),
    ("Tensor(requires_grad='yes')", _nothing, lambda e: Tensor([1.0], requires_grad="yes"), T,
     "requires_grad"),
    ("sum(axis=1.0)", _tensors, lambda e: e["x"].sum(axis=1.0), T, "axis"),
    ("sum(axis=5)", _tensors, lambda e: e["x"].sum(axis=5), VE, "axis 5"),
    ("mean(axis='0')", _tensors, lambda e: e["x"].mean(axis="0"), T, "axis"),
    ("mean of (0, 3)", _tensors, lambda e: e["e"].mean(), VE, "empty axis"),
    ("mean(axis=0) of (0, 3)", _tensors, lambda e: e["e"].mean(axis=0), VE, "empty axis"),
    ("max(axis=0) of (0, 3)", _tensors, lambda e: e["e"].max(axis=0), VE, "empty axis"),
    ("max(axis=(0, 7))", _tensors, lambda e: e["x"].max(axis=(0, 7)), VE, "axis 7"),
    ("reshape to 16 elements", _tensors, lambda e: e["x"].reshape(4, 4), VE, "reshape"),
    ("transpose(0, 0)", _tensors, lambda e: e["x"].transpose(0, 0), VE, "axes"),
    ("matmul shapes", _tensors, lambda e: e["x"] @ e["x"], VE, "matmul"),
    ("matmul of a vector", _tensors, lambda e: e["x"] @ Tensor([1.0, 2.0, 3.0]), VE, "matmul"),
    ("x ** tensor", _tensors, lambda e: e["x"] ** e["x"], T, "exponent"),
    ("x + str", _tensors, lambda e: e["x"] + "a", T, "string"),
    ("backward() of 6 elements", _tensors, lambda e: (e["x"] * 2).backward(), VE, "one-element"),
    ("backward(grad wrong shape)", _tensors, lambda e: (e["x"] * 2).backward(np.ones(3, f32)), VE, "grad"),
    ("backward() without grad", _tensors, lambda e: e["i"].sum().backward(), VE, "require grad"),
    ("to('gpu')", _tensors, lambda e: e["x"].to("gpu"), VE, "device"),
    (".data = list", _tensors, lambda e: setattr(e["x"], "data", [1.0]), T, "Tensor.data"),
    (".grad float64", _tensors, lambda e: setattr(e["x"], "grad", np.ones((2, 3))), T, "dtype"),
    (".grad wrong shape", _tensors, lambda e: setattr(e["x"], "grad", np.ones(3, f32)), VE, "shape"),
    (".grad = str", _tensors, lambda e: setattr(e["x"], "grad", "abc"), T, "grad"),
    (".grad = Tensor", _tensors, lambda e: setattr(e["x"], "grad", e["w"]), T, "grad"),
    ("from_op parents", _tensors, lambda e: Tensor.from_op(np.ones(2), [1.0], lambda g: (g,)), T, "parents"),
    ("from_op backward", _tensors, lambda e: Tensor.from_op(np.ones(2), [e["x"]], 5), T, "backward"),
    ("add_(str)", _tensors, lambda e: e["i"].add_("a"), T, "string"),
    ("stale backward", _tensors, lambda e: [(y := (e["w"] * 2).sum()), e["w"].add_(0.0), y.backward()],
     R, "changed in place"),
    ("raw write while saved", _tensors, lambda e: [e["w"] * 2, e["w"].data.__setitem__(0, 5.0)],
     VE, "read-only"),
    # ---- functional -----------------------------------------------------------------------------
    ("linear(int x)", _tensors, lambda e: F.linear(e["i"], e["w"]), T, "x must be a floating"),
    ("linear(int weight)", _tensors, lambda e: F.linear(e["x"], e["i"]), T, "weight"),
    ("linear(x, weight (4, 3) vs 2)", _tensors, lambda e: F.linear(e["x"], Tensor(np.ones((4, 2), f32))),
     VE, "weight"),
    ("linear(bias shape)", _tensors, lambda e: F.linear(e["x"], e["w"], Tensor(np.ones(3, f32))), VE, "bias"),
    ("linear(None)", _tensors, lambda e: F.linear(None, e["w"]), T, "x"),
    ("lora_linear shapes", _tensors, lambda e: F.lora_linear(e["x"], e["w"], None, Tensor(np.ones((2, 4),
     f32)),
                                                             Tensor(np.ones((4, 2), f32)), 1.0), VE,
     "lora_A"),
    ("lora_linear scaling str", _tensors,
     lambda e: F.lora_linear(e["x"], e["w"], None, Tensor(np.ones((2, 3), f32)), Tensor(np.ones((4, 2), f32)),
                             "2"), T, "scaling"),
    ("lora_linear scaling nan", _tensors,
     lambda e: F.lora_linear(e["x"], e["w"], None, Tensor(np.ones((2, 3), f32)), Tensor(np.ones((4, 2), f32)),
                             NAN), VE, "scaling"),
    ("softmax(int)", _tensors, lambda e: F.softmax(e["i"]), T, "x"),
    ("softmax over T = 0", _tensors, lambda e: F.softmax(e["e"], axis=0), VE, "length 0"),
    ("softmax(axis=3)", _tensors, lambda e: F.softmax(e["x"], axis=3), VE, "axis"),
    ("softmax(axis=1.0)", _tensors, lambda e: F.softmax(e["x"], axis=1.0), VE, "axis"),
    ("log_softmax over T = 0", _tensors, lambda e: F.log_softmax(e["e"], axis=0), VE, "length 0"),
    ("log_softmax(int)", _tensors, lambda e: F.log_softmax(e["i"]), T, "x"),
    ("cross_entropy float targets", _tensors, lambda e: F.cross_entropy(e["x"], np.zeros(2)), T, "targets"),
    ("cross_entropy target 3 of 3", _tensors, lambda e: F.cross_entropy(e["x"], np.array([0, 3])), VE,
     "target 3"),
    ("cross_entropy target -1", _tensors, lambda e: F.cross_entropy(e["x"], np.array([0, -1])), VE,
     "target -1"),
    ("cross_entropy targets shape", _tensors, lambda e: F.cross_entropy(e["x"], np.array([0, 1, 2])), VE,
     "targets shape"),
    ("cross_entropy of (0, 3)", _tensors, lambda e: F.cross_entropy(e["e"], np.zeros(0, int)), VE, "logits"),
    ("cross_entropy int logits", _tensors, lambda e: F.cross_entropy(e["i"], np.array([0, 1])), T, "logits"),
    ("cross_entropy all ignored", _tensors,
     lambda e: F.cross_entropy(e["x"], np.array([-100, -100]), ignore_index=-100), VE, "ignore_index"),
    ("cross_entropy scalar", _tensors, lambda e: F.cross_entropy(Tensor(1.0), np.array(0)), VE, "class axis"),
    ("layer_norm weight shape", _tensors, lambda e: F.layer_norm(e["x"], Tensor(np.ones(2, f32))), VE,
     "weight"),
    ("layer_norm eps str", _tensors, lambda e: F.layer_norm(e["x"], eps="1e-5"), T, "eps"),
    ("layer_norm eps < 0", _tensors, lambda e: F.layer_norm(e["x"], eps=-1.0), VE, "eps"),
    ("layer_norm(int)", _tensors, lambda e: F.layer_norm(e["i"]), T, "x"),
    ("layer_norm D = 0", _tensors, lambda e: F.layer_norm(Tensor(np.ones((2, 0), f32))), VE, "D >= 1"),
    ("gelu(int)", _tensors, lambda e: F.gelu(e["i"]), T, "x"),
    ("silu(int)", _tensors, lambda e: F.silu(e["i"]), T, "x"),
    ("swiglu shapes", _tensors, lambda e: F.swiglu(e["x"], e["w"]), VE, "gate"),
    ("rms_norm(int)", _tensors, lambda e: F.rms_norm(e["i"]), VE, "x"),
    ("rms_norm eps str", _tensors, lambda e: F.rms_norm(e["x"], eps="a"), T, "eps"),
    ("rope odd head_dim", _tensors, lambda e: F.rope(Tensor(np.ones((1, 1, 2, 3), f32))), VE, "head_dim"),
    ("rope offset -1", _tensors, lambda e: F.rope(e["q"], offset=-1), VE, "offset"),
    ("rope theta 0", _tensors, lambda e: F.rope(e["q"], theta=0.0), VE, "theta"),
    ("dropout p = 1.5", _tensors, lambda e: F.dropout(e["x"], 1.5, True), VE, "p must be in"),
    ("dropout p str", _tensors, lambda e: F.dropout(e["x"], "0.1", True), T, "p"),
    ("dropout p nan", _tensors, lambda e: F.dropout(e["x"], NAN, True), VE, "p"),
    ("dropout(rng=42)", _tensors, lambda e: F.dropout(e["x"], 0.1, True, rng=42), T, "rng"),
    ("dropout training str", _tensors, lambda e: F.dropout(e["x"], 0.1, "yes"), T, "training"),
    ("embedding float ids", _tensors, lambda e: F.embedding(np.zeros(2), e["w"]), T, "ids"),
    ("embedding id 4 of 4", _tensors, lambda e: F.embedding(np.array([4]), e["w"]), VE, "id 4"),
    ("embedding 1-D weight", _tensors, lambda e: F.embedding(np.array([0]), Tensor(np.ones(3, f32))), VE,
     "weight"),
    ("attention T = 0", _tensors, lambda e: F.scaled_dot_product_attention(e["empty_q"], e["q"], e["q"]), VE,
     "at least one query"),
    ("attention S = 0", _tensors,
     lambda e: F.scaled_dot_product_attention(e["q"], e["empty_k"], e["empty_k"], causal=False), VE, "key"),
    ("attention head counts", _tensors, lambda e: F.scaled_dot_product_attention(e["q"], e["k2"],
     e["k2"]), VE,
     "heads"),
    ("attention head_dim", _tensors,
     lambda e: F.scaled_dot_product_attention(e["q"], Tensor(np.ones((1, 2, 3, 5), f32)), e["q"]), VE, "hd"),
    ("attention T > S causal", _tensors,
     lambda e: F.scaled_dot_product_attention(e["q"], e["q"][:, :, :2], e["q"][:, :, :2]), VE, "T <= S"),
    ("attention int q", _tensors,
     lambda e: F.scaled_dot_product_attention(Tensor(np.ones((1, 1, 2, 2), int)), e["q"], e["q"]), T, "q"),
    ("attention causal str", _tensors, lambda e: F.scaled_dot_product_attention(e["q"], e["q"], e["q"], "no"),
     T, "causal"),
    ("where int cond", _tensors, lambda e: F.where(np.array([1, 0, 1]), e["x"], 0.0), T, "cond"),
    ("where two scalars", _tensors, lambda e: F.where(np.array([True]), 1.0, 2.0), T, "at least one"),
    ("where shapes", _tensors, lambda e: F.where(np.array([True, False]), e["x"], 0.0), VE, "broadcast"),
    ("concat([])", _tensors, lambda e: F.concat([]), VE, "at least one"),
    ("concat(a Tensor)", _tensors, lambda e: F.concat(e["x"]), T, "tensors"),
    ("concat shapes", _tensors, lambda e: F.concat([e["x"], e["w"]], axis=1), VE, "tensors[1]"),
    ("concat axis 2", _tensors, lambda e: F.concat([e["x"], e["x"]], axis=2), VE, "axis"),
    ("stack shapes", _tensors, lambda e: F.stack([e["x"], e["w"]]), VE, "tensors[1]"),
    ("stack axis 5", _tensors, lambda e: F.stack([e["x"], e["x"]], axis=5), VE, "axis"),
    # ---- nn -------------------------------------------------------------------------------------
    ("Linear(0, 2)", _nothing, lambda e: Linear(0, 2), VE, "in_features"),
    ("Linear(2, '3')", _nothing, lambda e: Linear(2, "3"), T, "out_features"),
    ("Linear(bias='yes')", _nothing, lambda e: Linear(2, 3, bias="yes"), T, "bias"),
    ("Linear(rng=42)", _nothing, lambda e: Linear(2, 3, rng=42), T, "rng"),
    ("Linear(dtype=int32)", _nothing, lambda e: Linear(2, 3, dtype=np.int32), T, "dtype"),
    ("Embedding(0, 4)", _nothing, lambda e: Embedding(0, 4), VE, "num_embeddings"),
    ("LayerNorm(eps=-1)", _nothing, lambda e: LayerNorm(4, eps=-1.0), VE, "eps"),
    ("Dropout(1.0)", _nothing, lambda e: Dropout(1.0), VE, "p"),
    ("Dropout(seed=-1)", _nothing, lambda e: Dropout(0.1, seed=-1), VE, "seed"),
    ("Dropout(seed=1.5)", _nothing, lambda e: Dropout(0.1, seed=1.5), T, "seed"),
    ("Linear forward shape", _linear, lambda e: e["m"](np.ones((2, 4), f32)), VE, "linear"),
    ("load_state_dict NaN", _linear, lambda e: e["m"].load_state_dict(_state(e, weight=np.full((2, 3), NAN))),
     VE, "'weight'"),
    ("load_state_dict inf", _linear, lambda e: e["m"].load_state_dict(_state(e, bias=np.array([INF, 0.0]))),
     VE, "'bias'"),
    ("load_state_dict complex", _linear,
     lambda e: e["m"].load_state_dict(_state(e, weight=np.ones((2, 3), complex))), VE, "'weight'"),
    ("load_state_dict object", _linear,
     lambda e: e["m"].load_state_dict(_state(e, bias=np.array([None, 1.0], dtype=object))), VE, "'bias'"),
    ("load_state_dict string", _linear, lambda e: e["m"].load_state_dict(_state(e, bias="zeros")), VE,
     "'bias'"),
    ("load_state_dict shape", _linear, lambda e: e["m"].load_state_dict(_state(e, bias=np.ones(3))), VE,
     "'bias'"),
    ("load_state_dict missing", _linear, lambda e: e["m"].load_state_dict({"weight": np.ones((2, 3))}), VE,
     "missing"),
    ("load_state_dict unexpected", _linear, lambda e: e["m"].load_state_dict(_state(e, extra=np.ones(1))), VE,
     "extra"),
    ("load_state_dict(list)", _linear, lambda e: e["m"].load_state_dict([1, 2]), T, "mapping"),
    ("train('yes')", _linear, lambda e: e["m"].train("yes"), T, "train"),
    ("to(dtype=int32)", _linear, lambda e: e["m"].to(dtype=np.int32), T, "dtype"),
    ("to('tpu')", _linear, lambda e: e["m"].to("tpu"), VE, "device"),
    ("requires_grad_('no')", _linear, lambda e: e["m"].requires_grad_("no"), T, "requires_grad"),
    ("get_submodule('nope')", _linear, lambda e: e["m"].get_submodule("nope"), AE, "nope"),
    ("get_submodule(3)", _linear, lambda e: e["m"].get_submodule(3), T, "target"),
    ("set_submodule to 5", _gpt, lambda e: e["m"].set_submodule("lm_head", 5), T, "lm_head"),
    # ---- optim ----------------------------------------------------------------------------------
    ("AdamW(lr=inf)", _adamw, lambda e: AdamW([e["p"]], lr=INF), VE, "lr"),
    ("AdamW(lr=nan)", _adamw, lambda e: AdamW([e["p"]], lr=NAN), VE, "lr"),
    ("AdamW(lr=-1)", _adamw, lambda e: AdamW([e["p"]], lr=-1.0), VE, "lr"),
    ("AdamW(lr='0.1')", _adamw, lambda e: AdamW([e["p"]], lr="0.1"), T, "lr"),
    ("AdamW(betas=(0.9, 1.0))", _adamw, lambda e: AdamW([e["p"]], betas=(0.9, 1.0)), VE, "betas"),
    ("AdamW(betas=('a', 0.9))", _adamw, lambda e: AdamW([e["p"]], betas=("a", 0.9)), T, "betas"),
    ("AdamW(betas=0.9)", _adamw, lambda e: AdamW([e["p"]], betas=0.9), T, "betas"),
    ("AdamW(eps=0)", _adamw, lambda e: AdamW([e["p"]], eps=0.0), VE, "eps"),
    ("AdamW(weight_decay=-1)", _adamw, lambda e: AdamW([e["p"]], weight_decay=-1.0), VE, "weight_decay"),
    ("AdamW(weight_decay=inf)", _adamw, lambda e: AdamW([e["p"]], weight_decay=INF), VE, "weight_decay"),
    ("AdamW([])", _adamw, lambda e: AdamW([]), VE, "empty"),
    ("AdamW(model)", _gpt, lambda e: AdamW(e["m"]), T, "params"),
    ("AdamW([p, p])", _adamw, lambda e: AdamW([e["p"], e["p"]]), VE, "twice"),
    ("AdamW([1.0])", _adamw, lambda e: AdamW([1.0]), T, "params[0]"),
    ("SGD(momentum=-1)", _adamw, lambda e: SGD([e["p"]], lr=0.1, momentum=-1.0), VE, "momentum"),
    ("SGD(nesterov, no momentum)", _adamw, lambda e: SGD([e["p"]], lr=0.1, nesterov=True), VE, "nesterov"),
    ("SGD(nesterov='yes')", _adamw, lambda e: SGD([e["p"]], lr=0.1, nesterov="yes"), T, "nesterov"),
    ("load_state_dict({})", _adamw, lambda e: e["opt"].load_state_dict({}), VE, "state"),
    ("load_state_dict lr=-5", _adamw, lambda e: e["opt"].load_state_dict(_opt_state(e, lr=-5)), VE, "lr"),
    ("load_state_dict lr='x'", _adamw, lambda e: e["opt"].load_state_dict(_opt_state(e, lr="x")), VE, "lr"),
    ("load_state_dict betas", _adamw, lambda e: e["opt"].load_state_dict(_opt_state(e, betas=(1.5, 0.9))), VE,
     "betas"),
    ("load_state_dict NaN moment", _adamw,
     lambda e: e["opt"].load_state_dict({**_opt_state(e), "state": {0: {"step": 1, "exp_avg": np.full((2,
     3), NAN),
                                                                         "exp_avg_sq": np.ones((2, 3))}}}),
     VE, "exp_avg"),
    ("load_state_dict moment shape", _adamw,
     lambda e: e["opt"].load_state_dict({**_opt_state(e), "state": {0: {"step": 1, "exp_avg": np.ones(3),
                                                                         "exp_avg_sq": np.ones((2, 3))}}}),
     VE, "exp_avg"),
    ("load_state_dict index 7", _adamw,
     lambda e: e["opt"].load_state_dict({**_opt_state(e), "state": {7: {}}}), VE, "index 7"),
    ("step with a (5,) gradient", _adamw_bad_grad, lambda e: e["opt"].step(), VE, "gradient of parameter 0"),
    ("clip_grad_norm_ max_norm 0", _adamw, lambda e: clip_grad_norm_([e["p"]], 0.0), VE, "max_norm"),
    ("clip_grad_norm_ max_norm str", _adamw, lambda e: clip_grad_norm_([e["p"]], "1"), T, "max_norm"),
    ("clip_grad_norm_ flag str", _adamw, lambda e: clip_grad_norm_([e["p"]], 1.0, error_if_nonfinite="y"), T,
     "error_if_nonfinite"),
    ("clip_grad_norm_ inf, flag", _adamw,
     lambda e: [setattr(e["p"], "grad", np.full((2, 3), INF, f32)), clip_grad_norm_([e["p"]], 1.0, True)],
     R, "norm is inf"),
    ("clip_grad_norm_([1, 2])", _adamw, lambda e: clip_grad_norm_([1, 2], 1.0), T, "parameters[0]"),
    ("warmup_cosine step -1", _nothing, lambda e: warmup_cosine(-1, 0, 10), VE, "step"),
    ("warmup_cosine total 0", _nothing, lambda e: warmup_cosine(0, 0, 0), VE, "total_steps"),
    ("warmup_cosine ratio 2", _nothing, lambda e: warmup_cosine(0, 0, 10, 2.0), VE, "min_lr_ratio"),
    ("WarmupCosine warmup -1", _adamw, lambda e: WarmupCosine(e["opt"], -1, 10), VE, "warmup_steps"),
    # ---- train ----------------------------------------------------------------------------------
    ("fit steps=0", _gpt, lambda e: fit(e["m"], _ids(), steps=0, progress=False), VE, "steps"),
    ("fit steps=-1", _gpt, lambda e: fit(e["m"], _ids(), steps=-1, progress=False), VE, "steps"),
    ("fit steps=2.5", _gpt, lambda e: fit(e["m"], _ids(), steps=2.5, progress=False), T, "steps"),
    ("fit batch_size='4'", _gpt, lambda e: fit(e["m"], _ids(), batch_size="4", progress=False), T,
     "batch_size"),
    ("fit lr=inf", _gpt, lambda e: fit(e["m"], _ids(), lr=INF, progress=False), VE, "lr"),
    ("fit lr='x'", _gpt, lambda e: fit(e["m"], _ids(), lr="x", progress=False), T, "lr"),
    ("fit weight_decay=-1", _gpt, lambda e: fit(e["m"], _ids(), weight_decay=-1.0, progress=False), VE,
     "weight_decay"),
    ("fit grad_clip=0", _gpt, lambda e: fit(e["m"], _ids(), grad_clip=0.0, progress=False), VE, "grad_clip"),
    ("fit seed=-1", _gpt, lambda e: fit(e["m"], _ids(), seed=-1, progress=False), VE, "seed"),
    ("fit eval_every=0", _gpt, lambda e: fit(e["m"], _ids(), eval_every=0, progress=False), VE, "eval_every"),
    ("fit eval_batches=0", _gpt, lambda e: fit(e["m"], _ids(), eval_batches=0, progress=False), VE,
     "eval_batches"),
    ("fit progress='yes'", _gpt, lambda e: fit(e["m"], _ids(), progress="yes"), T, "progress"),
    ("fit loss_fn=5", _gpt, lambda e: fit(e["m"], _ids(), loss_fn=5, progress=False), T, "loss_fn"),
    ("fit optimizer='adam'", _gpt, lambda e: fit(e["m"], _ids(), optimizer="adam", progress=False), T,
     "optimizer"),
    ("fit block_size=0", _gpt, lambda e: fit(e["m"], _ids(), block_size=0, progress=False), VE, "block_size"),
    ("fit warmup_steps=-1", _gpt, lambda e: fit(e["m"], _ids(), warmup_steps=-1, progress=False), VE,
     "warmup_steps"),
    ("fit float ids", _gpt, lambda e: fit(e["m"], np.ones(400), progress=False), VE, "train_ids"),
    ("fit 10 ids", _gpt, lambda e: fit(e["m"], np.arange(10), progress=False), VE, "train_ids"),
    ("fit 2-D val_ids", _gpt, lambda e: fit(e["m"], _ids(), np.ones((2, 40), int), progress=False), VE,
     "val_ids"),
    ("fit loss_fn returns a float", _gpt,
     lambda e: fit(e["m"], _ids(), loss_fn=lambda m, x, y: 1.0, steps=1, progress=False), T, "loss_fn"),
    ("estimate_loss 5 ids", _gpt, lambda e: estimate_loss(e["m"], np.arange(5)), VE, "ids"),
    # ---- models ---------------------------------------------------------------------------------
    ("GPTConfig(n_layer=0)", _nothing, lambda e: GPTConfig(n_layer=0), VE, "n_layer"),
    ("GPTConfig(dropout=1.5)", _nothing, lambda e: GPTConfig(dropout=1.5), VE, "dropout"),
    ("GPTConfig(bias=1)", _nothing, lambda e: GPTConfig(bias=1), T, "bias"),
    ("GPTConfig.preset('huge')", _nothing, lambda e: GPTConfig.preset("huge"), VE, "name"),
    ("GPT float ids", _gpt, lambda e: e["m"](np.ones((1, 4))), T, "idx"),
    ("GPT id out of vocab", _gpt, lambda e: e["m"](np.array([[V]])), VE, "idx"),
    ("GPT too long", _gpt, lambda e: e["m"](np.zeros((1, 33), int)), VE, "block_size"),
    ("GPT targets shape", _gpt, lambda e: e["m"](np.zeros((1, 4), int), np.zeros((1, 3), int)), VE,
     "targets"),
    # ---- generation -----------------------------------------------------------------------------
    ("generate temperature nan", _gpt, lambda e: generate(e["m"], np.array([[1]]), 2, temperature=NAN), VE,
     "temperature"),
    ("generate temperature inf", _gpt, lambda e: generate(e["m"], np.array([[1]]), 2, temperature=INF), VE,
     "temperature"),
    ("generate temperature -1", _gpt, lambda e: generate(e["m"], np.array([[1]]), 2, temperature=-1.0), VE,
     "temperature"),
    ("generate temperature str", _gpt, lambda e: generate(e["m"], np.array([[1]]), 2, temperature="hot"), T,
     "temperature"),
    ("generate empty prompt", _gpt, lambda e: generate(e["m"], np.zeros((1, 0), int), 2), VE, "ids"),
    ("generate float prompt", _gpt, lambda e: generate(e["m"], np.ones((1, 2)), 2), T, "ids"),
    ("generate max_new_tokens -1", _gpt, lambda e: generate(e["m"], np.array([[1]]), -1), VE,
     "max_new_tokens"),
    ("generate top_k 0", _gpt, lambda e: generate(e["m"], np.array([[1]]), 2, top_k=0), VE, "top_k"),
    ("generate top_p 0", _gpt, lambda e: generate(e["m"], np.array([[1]]), 2, top_p=0.0), VE, "top_p"),
    ("generate seed -1", _gpt, lambda e: generate(e["m"], np.array([[1]]), 2, seed=-1), VE, "seed"),
    ("generate eos out of vocab", _gpt, lambda e: generate(e["m"], np.array([[1]]), 2,
     eos_token_id=10**6), VE,
     "eos_token_id"),
    ("generate use_cache str", _gpt, lambda e: generate(e["m"], np.array([[1]]), 2, use_cache="yes"), T,
     "use_cache"),
    ("generate prompt + tokens too long", _gpt, lambda e: generate(e["m"], np.zeros((1, 30), int), 10), VE,
     "max_new_tokens"),
    ("GPT.generate temperature nan", _gpt, lambda e: e["m"].generate(np.array([[1]]), 2, temperature=NAN), VE,
     "temperature"),
    ("sample_next temperature nan", _nothing, lambda e: sample_next(np.zeros((1, 3), f32), NAN), VE,
     "temperature"),
    ("sample_next 1-D logits", _nothing, lambda e: sample_next(np.zeros(3, f32), 0.0), VE, "logits"),
    ("sample_next rng=None", _nothing, lambda e: sample_next(np.zeros((1, 3), f32), 1.0), T, "rng"),
    # ---- lora -----------------------------------------------------------------------------------
    ("LoraConfig(r=0)", _nothing, lambda e: lora.LoraConfig(r=0), VE, "r"),
    ("LoraConfig(r=2.0)", _nothing, lambda e: lora.LoraConfig(r=2.0), T, "r"),
    ("LoraConfig(lora_alpha=-1)", _nothing, lambda e: lora.LoraConfig(lora_alpha=-1), VE, "lora_alpha"),
    ("LoraConfig(lora_alpha=nan)", _nothing, lambda e: lora.LoraConfig(lora_alpha=NAN), VE, "lora_alpha"),
    ("LoraConfig(lora_alpha=inf)", _nothing, lambda e: lora.LoraConfig(lora_alpha=INF), VE, "lora_alpha"),
    ("get_delta_weights('ghost')", _peft, lambda e: lora.get_delta_weights(e["m"], "ghost"), VE, "ghost"),
    ("set_adapter('ghost')", _peft, lambda e: lora.set_adapter(e["m"], "ghost"), VE, "ghost"),
    ("LoraConfig(lora_dropout=1.5)", _nothing, lambda e: lora.LoraConfig(lora_dropout=1.5), VE,
     "lora_dropout"),
    ("LoraConfig(init_lora_weights='x')", _nothing, lambda e: lora.LoraConfig(init_lora_weights="x"), VE,
     "init_lora_weights"),
    ("apply_lora unknown target", _gpt,
     lambda e: lora.apply_lora(e["m"], lora.LoraConfig(target_modules=["nope"])), VE, "nope"),
    ("apply_lora(config str)", _gpt, lambda e: lora.apply_lora(e["m"], "r=8"), T, "config"),
    # ---- tokenizers and data --------------------------------------------------------------------
    ("CharTokenizer('')", _nothing, lambda e: CharTokenizer(""), VE, "chars"),
    ("CharTokenizer(5)", _nothing, lambda e: CharTokenizer(5), T, "chars"),
    ("CharTokenizer('aa')", _nothing, lambda e: CharTokenizer("aa"), VE, "repeat"),
    ("encode(bytes)", _nothing, lambda e: CharTokenizer("ab").encode(b"ab"), T, "encode"),
    ("encode unknown char", _nothing, lambda e: CharTokenizer("ab").encode("abc"), VE, "c"),
    ("decode 2-D", _nothing, lambda e: CharTokenizer("ab").decode(np.zeros((2, 2), int)), VE, "decode"),
    ("train_val_split fraction 1.5", _nothing, lambda e: train_val_split(np.arange(100), 1.5), VE,
     "val_fraction"),
    ("train_val_split float ids", _nothing, lambda e: train_val_split(np.ones(100)), VE, "ids"),
    ("get_batch batch 0", _nothing, lambda e: get_batch(np.arange(100), 0, 8, np.random.default_rng(0)), VE,
     "batch_size"),
    ("get_batch block too long", _nothing, lambda e: get_batch(np.arange(5), 2, 8, np.random.default_rng(0)),
     VE, "block_size"),
    ("load_corpus('nope')", _nothing, lambda e: load_corpus("nope"), VE, "nope"),
    # ---- experiments configs --------------------------------------------------------------------
    ("SweepConfig(ranks=(0,))", _nothing, lambda e: SweepConfig(ranks=(0,)), VE, "rank"),
    ("SweepConfig(seeds=(-1,))", _nothing, lambda e: SweepConfig(seeds=(-1,)), VE, "seed"),
    ("SweepConfig(alpha=inf)", _nothing, lambda e: SweepConfig(alpha=INF), VE, "alpha"),
    ("SweepConfig(tasks=('nope',))", _nothing, lambda e: SweepConfig(tasks=("nope",)), VE, "nope"),
    ("SweepConfig(k_star=0)", _nothing, lambda e: SweepConfig(k_star=0), VE, "k_star"),
    # ---- io and checkpoint ----------------------------------------------------------------------
    ("save_safetensors complex", _files,
     lambda e: save_safetensors(e["dir"] / "a.safetensors", {"w": np.ones(2, complex)}), T, "'w'"),
    ("load_arrays missing file", _files, lambda e: load_arrays(e["dir"] / "absent.npz"), FileNotFoundError,
     "absent.npz"),
    ("load_arrays not a zip", _files,
     lambda e: [(e["dir"] / "in" / "junk.npz").write_bytes(b"junk"),
     load_arrays(e["dir"] / "in" / "junk.npz")],
     VE, "junk.npz"),
    ("load_arrays broken zip", _files, lambda e: load_arrays(_bad_zip(e)), VE, "broken.npz"),
    ("load_weights NaN", _files,
     lambda e: load_weights(e["m"], _with_array(e, "lm_head.weight", np.full((V, 32), NAN, f32))), VE,
     "lm_head.weight"),
    ("load_weights inf", _files,
     lambda e: load_weights(e["m"], _with_array(e, "ln_f.bias", np.full(32, INF, f32))), VE, "ln_f.bias"),
    ("load_weights complex", _files,
     lambda e: load_weights(e["m"], _with_array(e, "ln_f.weight", np.ones(32, complex))), T, "ln_f.weight"),
    ("load_model NaN", _files, lambda e: load_model(_with_array(e, "ln_f.weight", np.full(32, NAN, f32))), VE,
     "ln_f.weight"),
    ("load_weights architecture", _files,
     lambda e: load_weights(GPT(GPTConfig.preset("nano", n_layer=1)), e["good"]), VE, "architecture"),
    ("save_model(Linear)", _files, lambda e: save_model(Linear(2, 2), e["dir"] / "x.npz"), T, "config"),
    ("save_arrays object", _files,
     lambda e: save_arrays(e["dir"] / "o.npz", {"w": np.array([None], dtype=object)}, {}), T, "'w'"),
]

CLI_ROWS = [
    (["demo", "--steps", "-1"], "--steps"),
    (["demo", "--steps", "0"], "--steps"),
    (["demo", "--steps", "ten"], "--steps"),
    (["demo", "--seed", "x"], "--seed"),
    (["pretrain", "--steps", "0", "--out", "{tmp}/m.npz"], "--steps"),
    (["pretrain", "--corpus-chars", "-5", "--out", "{tmp}/m.npz"], "--corpus-chars"),
    (["pretrain", "--out", ""], "--out"),
    (["generate", "--temperature", "-1"], "--temperature"),
    (["generate", "--temperature", "nan"], "--temperature"),
    (["generate", "--top-p", "2"], "--top-p"),
    (["generate", "--top-k", "0"], "--top-k"),
    (["generate", "--max-new-tokens", "0"], "--max-new-tokens"),
    (["generate", "--prompt", ""], "--prompt"),
    (["sweep", "--ranks", "0", "--out", "{tmp}/s"], "--ranks"),
    (["sweep", "--ranks", "a,b", "--out", "{tmp}/s"], "--ranks"),
    (["sweep", "--seeds", "-1", "--out", "{tmp}/s"], "--seeds"),
    (["sweep", "--steps", "0", "--out", "{tmp}/s"], "--steps"),
    (["sweep", "--lr", "-1", "--out", "{tmp}/s"], "--lr"),
    (["sweep", "--lr", "inf", "--out", "{tmp}/s"], "--lr"),
    (["sweep", "--workers", "0", "--out", "{tmp}/s"], "--workers"),
    (["sweep", "--k-star", "0", "--out", "{tmp}/s"], "--k-star"),
    (["bench", "nope"], "which"),
]


@pytest.mark.parametrize("name, setup, call, error, match", ROWS, ids=[r[0] for r in ROWS])
def test_a_bad_call_raises_a_clear_error_and_changes_nothing(name, setup, call, error, match, tmp_path):
    env = setup(tmp_path) if setup is _files else setup()
    before = snapshot(env)
    with pytest.raises(error) as info:
        call(env)
    assert match in str(info.value), f"{name}: {info.value}"
    if name not in ("stale backward", "raw write while saved",
     "clip_grad_norm_ inf, flag"):  # they set up state
        assert snapshot(env) == before


@pytest.mark.parametrize("argv, flag", CLI_ROWS, ids=[" ".join(r[0]) for r in CLI_ROWS])
def test_a_bad_cli_flag_exits_2_naming_it_and_writes_nothing(argv, flag, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    try:
        code = cli.main(argv)  # main returns the exit code; argparse itself raises SystemExit
    except SystemExit as exit:
        code = exit.code
    assert code == 2
    assert flag in capsys.readouterr().err
    assert os.listdir(tmp_path) == []


def test_the_catalogue_holds_at_least_150_bad_inputs():
    assert len(ROWS) + len(CLI_ROWS) >= 150
