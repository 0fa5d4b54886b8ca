"""Reference tests: the whole GPT against the same architecture written in plain PyTorch.

Skipped when torch is not installed. The PyTorch model below is built from torch.nn parts
(nothing from tinylora), with the same parameter names, so tinylora's state_dict loads into it
strictly. Both models then see the same tokens: logits, loss and every parameter gradient
must agree, to 1e-5 in float32 and to rounding error in float64.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from tinylora.gpt import GPT, GPTConfig

torch = pytest.importorskip("torch")
nn, TF = torch.nn, torch.nn.functional

CONFIG = GPTConfig(vocab_size=23, block_size=8, n_layer=2, n_head=2, n_embd=16)
TOLERANCE = {np.float32: dict(rtol=1e-5, atol=1e-5), np.float64: dict(rtol=1e-10, atol=1e-12)}
DTYPES = pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])


# ---- the reference model -----------------------------------------------------------------------
class TorchAttention(nn.Module):
    def __init__(self, C: int, n_head: int):
        super().__init__()
        self.n_head = n_head
        self.q_proj, self.k_proj, self.v_proj, self.o_proj = (nn.Linear(C, C) for _ in range(4))

    def forward(self, x):
        B, T, C = x.shape
        H, hd = self.n_head, C // self.n_head
        q, k, v = (proj(x).view(B, T, H, hd).transpose(1, 2)
                   for proj in (self.q_proj, self.k_proj, self.v_proj))
        scores = q @ k.transpose(-1, -2) / math.sqrt(hd)                      # (B, H, T, T)
        future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)          # key s > query t
        y = scores.masked_fill(future, float("-inf")).softmax(dim=-1) @ v     # (B, H, T, hd)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, C))


class TorchMLP(nn.Module):
    def __init__(self, C: int):
        super().__init__()
        self.fc_in, self.fc_out = nn.Linear(C, 4 * C), nn.Linear(4 * C, C)

    def forward(self, x):
        return self.fc_out(TF.gelu(self.fc_in(x), approximate="tanh"))


class TorchBlock(nn.Module):
    def __init__(self, C: int, n_head: int):
        super().__init__()
        self.ln_1, self.attn = nn.LayerNorm(C), TorchAttention(C, n_head)
        self.ln_2, self.mlp = nn.LayerNorm(C), TorchMLP(C)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class TorchGPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        C = config.n_embd
        self.wte, self.wpe = nn.Embedding(config.vocab_size, C), nn.Embedding(config.block_size, C)
        self.blocks = nn.ModuleList(TorchBlock(C, config.n_head) for _ in range(config.n_layer))
        self.ln_f, self.lm_head = nn.LayerNorm(C), nn.Linear(C, config.vocab_size, bias=False)

    def forward(self, idx, targets):
        x = self.wte(idx) + self.wpe(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))                                   # (B, T, V)
        return logits, TF.cross_entropy(logits.flatten(0, 1), targets.flatten())


# ---- running both ------------------------------------------------------------------------------
def random_state(model: GPT, seed: int = 0) -> dict:
    """Weights far from the GPT-2 init (non-zero biases, LayerNorm gains away from 1, sharp attention),
    so that every term of the forward pass and every gradient is exercised."""
    rng = np.random.default_rng(seed)
    state = {}
    for name, value in model.state_dict().items():
        noise = rng.normal(0.0, 0.3, size=value.shape)
        is_gain = "ln_" in name and name.endswith(".weight")  # LayerNorm weights: around 1
        state[name] = 1.0 + noise if is_gain else noise
    return state


def run_both(dtype, T: int = 7):
    """(tinylora model, logits, loss) and (torch model, logits, loss), after backward on each."""
    ours = GPT(CONFIG, seed=0).to(dtype=dtype)
    state = random_state(ours)
    ours.load_state_dict(state)  # after the cast, so float64 weights keep every digit
    theirs = TorchGPT(CONFIG).to(dtype=torch.float64 if dtype == np.float64 else torch.float32)
    theirs.load_state_dict({name: torch.tensor(value) for name, value in state.items()})

    rng = np.random.default_rng(1)
    idx, targets = (rng.integers(0, CONFIG.vocab_size, size=(3, T)) for _ in range(2))
    logits, loss = ours(idx, targets)
    loss.backward()
    ref_logits, ref_loss = theirs(torch.tensor(idx), torch.tensor(targets))
    ref_loss.backward()
    return (ours, logits, loss), (theirs, ref_logits, ref_loss)


# ---- the tests ---------------------------------------------------------------------------------
def test_tinylora_state_dict_loads_strictly_into_the_torch_model_with_equal_shapes():
    ours, theirs = GPT(CONFIG), TorchGPT(CONFIG)
    reference = theirs.state_dict()
    assert list(ours.state_dict()) == list(reference)
    assert all(value.shape == tuple(reference[name].shape) for name, value in ours.state_dict().items())


@DTYPES
def test_logits_match_pytorch(dtype):
    (_, logits, _), (_, ref_logits, _) = run_both(dtype)
    assert logits.dtype == dtype
    np.testing.assert_allclose(logits.data, ref_logits.detach().numpy(), **TOLERANCE[dtype])


@DTYPES
def test_loss_matches_pytorch(dtype):
    (_, _, loss), (_, _, ref_loss) = run_both(dtype)
    np.testing.assert_allclose(loss.item(), ref_loss.item(), **TOLERANCE[dtype])


@DTYPES
def test_every_parameter_gradient_matches_pytorch(dtype):
    (ours, _, _), (theirs, _, _) = run_both(dtype)
    reference = dict(theirs.named_parameters())
    for name, p in ours.named_parameters():
        assert p.grad.dtype == dtype, name
        np.testing.assert_allclose(p.grad, reference[name].grad.numpy(), **TOLERANCE[dtype], err_msg=name)


def test_full_block_size_sequence_matches_pytorch():
    (ours, logits, _), (theirs, ref_logits, _) = run_both(np.float64, T=CONFIG.block_size)
    np.testing.assert_allclose(logits.data, ref_logits.detach().numpy(), **TOLERANCE[np.float64])
    np.testing.assert_allclose(ours.wpe.weight.grad, theirs.wpe.weight.grad.numpy(), **TOLERANCE[np.float64])
