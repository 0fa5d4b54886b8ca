"""Modules: Parameter, Module (the container), and the layers a GPT needs.

A ``Module`` registers every ``Parameter`` and sub-``Module`` assigned to it as an attribute,
in assignment order, so ``named_parameters()`` can list them with dotted names such as
``blocks.0.attn.q_proj.weight``. Layers follow PyTorch's conventions: ``Linear.weight`` is
(out, in), and calling a module calls its ``forward``.

Parameters are initialised on the host with NumPy; ``module.to("cuda")`` moves them.

>>> import numpy as np
>>> layer = Linear(3, 2, rng=np.random.default_rng(0))
>>> [name for name, _ in layer.named_parameters()]
['weight', 'bias']
>>> layer(np.ones((5, 3), dtype=np.float32)).shape
(5, 2)
"""
from __future__ import annotations

import contextlib
import functools
import math

import numpy as np

from . import functional as F
from ._validate import check_bool, check_float_dtype, check_int, check_probability, check_real, is_int
from .module import Module, ModuleList, Parameter, Sequential
from .tensor import Tensor

__all__ = ["Parameter", "Module", "Linear", "Embedding", "LayerNorm", "Dropout", "GELU", "ModuleList",
           "Sequential", "no_init", "init_enabled"]


# ---- skipping the random init when weights are loaded next ---------------------------------
_init_enabled = True


@contextlib.contextmanager
def no_init():
    """Build layers with zero weights instead of random draws: for a model whose weights load next.

    Drawing 135M random numbers takes seconds; ``load_state_dict`` overwrites them anyway.

    >>> with no_init():
    ...     layer = Linear(4, 3)
    >>> float(abs(layer.weight.data).sum())
    0.0
    """
    global _init_enabled
    previous, _init_enabled = _init_enabled, False
    try:
        yield
    finally:
        _init_enabled = previous


def init_enabled() -> bool:
    """False inside ``no_init()``: models that re-initialise their weights check it too."""
    return _init_enabled


def _draw(draw, shape, dtype):
    """``draw(size=shape)`` as ``dtype``, or zeros inside ``no_init()``."""
    return draw(size=shape).astype(dtype) if _init_enabled else np.zeros(shape, dtype=dtype)


# ---- argument checks shared by the layers ---------------------------------------------------
def _check_size(owner: str, name: str, value) -> int:
    return check_int(name, value, low=1, where=owner)
def _check_rng(owner: str, rng) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng()
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{owner}: rng must be a numpy Generator such as np.random.default_rng(0), "
                        f"got {rng!r} ({type(rng).__name__})")
    return rng


def _check_float_dtype(owner: str, dtype) -> np.dtype:
    return check_float_dtype("dtype", dtype, where=owner)



# ---- layers ---------------------------------------------------------------------------------
class Linear(Module):
    """``y = x @ weight.T + bias``.

    Shapes: x (..., in_features) -> (..., out_features); weight (out, in), bias (out,).
    Both start as U(-1/sqrt(in), 1/sqrt(in)), drawn from ``rng`` on the host.

    >>> layer = Linear(4, 3, rng=np.random.default_rng(0))
    >>> layer.weight.shape, layer(np.zeros((2, 4), dtype=np.float32)).shape
    ((3, 4), (2, 3))
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True, rng=None, dtype=np.float32):
        super().__init__()
        self.in_features = _check_size("Linear", "in_features", in_features)
        self.out_features = _check_size("Linear", "out_features", out_features)
        check_bool("bias", bias, where="Linear")
        rng, dtype = _check_rng("Linear", rng), _check_float_dtype("Linear", dtype)
        bound = 1.0 / math.sqrt(in_features)
        uniform = functools.partial(rng.uniform, -bound, bound)
        self.weight = Parameter(_draw(uniform, (out_features, in_features), dtype))
        self.bias = Parameter(_draw(uniform, (out_features,), dtype)) if bias else None

    def forward(self, x):
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self):
        bias = self.bias is not None
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={bias}"


class Embedding(Module):
    """A lookup table: row ``i`` of ``weight`` (num_embeddings, embedding_dim) is token ``i``'s vector.

    Shapes: ids (...) integers -> (..., embedding_dim). Starts as N(0, 1); callers may re-initialise.

    >>> table = Embedding(10, 4, rng=np.random.default_rng(0))
    >>> table(np.array([[1, 2, 3]])).shape
    (1, 3, 4)
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, rng=None, dtype=np.float32):
        super().__init__()
        self.num_embeddings = _check_size("Embedding", "num_embeddings", num_embeddings)
        self.embedding_dim = _check_size("Embedding", "embedding_dim", embedding_dim)
        rng, dtype = _check_rng("Embedding", rng), _check_float_dtype("Embedding", dtype)
        self.weight = Parameter(_draw(rng.standard_normal, (num_embeddings, embedding_dim), dtype))

    def forward(self, ids):
        return F.embedding(ids, self.weight)

    def extra_repr(self):
        return f"{self.num_embeddings}, {self.embedding_dim}"


class LayerNorm(Module):
    """Normalise the last axis: ``(x - mean) / sqrt(var + eps) * weight + bias``.

    Shapes: x (..., normalized_shape) -> same; weight starts at ones, bias at zeros.

    >>> LayerNorm(4)(np.arange(8, dtype=np.float32).reshape(2, 4)).shape
    (2, 4)
    """

    def __init__(self, normalized_shape: int, eps: float = 1e-5, bias: bool = True, dtype=np.float32):
        super().__init__()
        self.normalized_shape = _check_size("LayerNorm", "normalized_shape", normalized_shape)
        check_real("eps", eps, low=0.0, where="LayerNorm")
        check_bool("bias", bias, where="LayerNorm")
        dtype = _check_float_dtype("LayerNorm", dtype)
        self.eps = float(eps)
        self.weight = Parameter(np.ones(normalized_shape, dtype=dtype))
        self.bias = Parameter(np.zeros(normalized_shape, dtype=dtype)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight, self.bias, eps=self.eps)

    def extra_repr(self):
        return f"{self.normalized_shape}, eps={self.eps}, bias={self.bias is not None}"


class Dropout(Module):
    """Zero each element with probability ``p`` in training, scaling the rest by 1/(1-p); identity in eval.

    ``seed`` makes the masks reproducible. The generator is created on first use with the array
    module of the input, so the masks are drawn on the input's device.

    >>> drop = Dropout(0.5, seed=0).eval()
    >>> drop(Tensor(np.ones(3, dtype=np.float32))).data
    array([1., 1., 1.], dtype=float32)
    """

    def __init__(self, p: float = 0.0, seed: int | None = None):
        super().__init__()
        check_probability("p", p, where="Dropout")
        if seed is not None and not is_int(seed):
            raise TypeError(f"Dropout: seed must be None or an int, got {seed!r}")
        if seed is not None:
            check_int("seed", seed, low=0, where="Dropout")
        self.p, self.seed = float(p), seed
        self._rng, self._rng_module = None, None

    def forward(self, x):
        if not self.training or self.p == 0:
            return x
        xp = x.xp if isinstance(x, Tensor) else Tensor(x).xp
        if self._rng_module is not xp:  # first call, or the input moved device
            self._rng, self._rng_module = xp.random.default_rng(self.seed), xp
        return F.dropout(x, self.p, self.training, rng=self._rng)

    def extra_repr(self):
        return f"p={self.p}"


class GELU(Module):
    """The GELU activation (GPT-2's tanh approximation). Shapes: any -> same.

    >>> GELU()(np.zeros(2, dtype=np.float32)).data
    array([0., 0.], dtype=float32)
    """

    def forward(self, x):
        return F.gelu(x)
