"""tinylora: a read-along NumPy/CuPy implementation of autograd, a GPT, and LoRA."""
from .backend import asnumpy, get_array_module, is_cuda_available, scatter_add, to_device
from .gradcheck import gradcheck
from .tensor import Tensor, is_grad_enabled, no_grad

__version__ = "0.1.0"
__all__ = ["Tensor", "no_grad", "is_grad_enabled", "gradcheck", "get_array_module", "asnumpy",
           "to_device", "is_cuda_available", "scatter_add", "__version__"]
