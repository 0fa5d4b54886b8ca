"""tinylora: a read-along NumPy/CuPy implementation of autograd, a small GPT, and LoRA.

>>> from tinylora import Tensor
>>> x = Tensor([1.0, 2.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
array([2., 4.], dtype=float32)
"""
from .backend import asnumpy, get_array_module, is_cuda_available, scatter_add, to_device
from .gradcheck import gradcheck
from .tensor import Tensor, is_grad_enabled, no_grad

__version__ = "0.1.0"


def load_base(*args, **kwargs):
    """The shipped pretrained base GPT and its tokenizer (see ``tinylora.pretrained.load_base``)."""
    from .pretrained import load_base as _load_base
    return _load_base(*args, **kwargs)


def load_pretrained(*args, **kwargs):
    """A GGUF file, a Hugging Face folder or a known name -> (model, tokenizer) (see ``tinylora.hub``)."""
    from .hub import load_pretrained as _load_pretrained
    return _load_pretrained(*args, **kwargs)


__all__ = ["Tensor", "no_grad", "is_grad_enabled", "gradcheck", "get_array_module", "asnumpy",
           "to_device", "is_cuda_available", "scatter_add", "load_base", "load_pretrained", "__version__"]
