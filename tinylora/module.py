"""Parameter and Module: the containers every layer and model is built from.

A ``Module`` registers every ``Parameter`` and sub-``Module`` assigned to it as an attribute,
in assignment order, so ``named_parameters()`` can list them with dotted names such as
``blocks.0.attn.q_proj.weight``; ``ModuleList`` and ``Sequential`` hold numbered sub-modules.
The layers themselves (Linear, Embedding, ...) are in ``tinylora.nn``.

>>> import numpy as np
>>> class Scale(Module):
...     def __init__(self):
...         super().__init__()
...         self.weight = Parameter(np.ones(2, dtype=np.float32))
...     def forward(self, x):
...         return x * self.weight
>>> [name for name, _ in Sequential(Scale(), Scale()).named_parameters()]
['0.weight', '1.weight']
"""
from __future__ import annotations

from collections import OrderedDict, namedtuple

from ._validate import check_bool, check_float_dtype, check_loaded_array, is_int
from .backend import asnumpy, to_device
from .block_weight import BlockWeight
from .tensor import Tensor

__all__ = ["Parameter", "Module", "ModuleList", "Sequential"]


class Parameter(Tensor):
    """A leaf Tensor that a Module registers as one of its weights (requires grad by default).

    >>> import numpy as np
    >>> Parameter(np.zeros(2, dtype=np.float32))
    Parameter(array([0., 0.], dtype=float32), requires_grad=True)
    """

    def __init__(self, data, requires_grad: bool = True):
        super().__init__(data, requires_grad=requires_grad)

    def __repr__(self):
        return "Parameter" + super().__repr__()[len("Tensor"):]


_IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


class Module:
    """Base class of every layer and model: subclasses set attributes in ``__init__`` and define ``forward``.

    >>> import numpy as np
    >>> from tinylora.nn import Linear
    >>> class TwoLayer(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc1 = Linear(4, 8, rng=np.random.default_rng(0))
    ...         self.fc2 = Linear(8, 1, rng=np.random.default_rng(1))
    ...     def forward(self, x):
    ...         return self.fc2(self.fc1(x).relu())
    >>> [name for name, _ in TwoLayer().named_parameters()]
    ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']
    """

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        self.training = True

    # ---- registration ---------------------------------------------------------------------
    def __setattr__(self, name, value):
        registries = self.__dict__.get("_parameters"), self.__dict__.get("_modules")
        if None in registries:
            if isinstance(value, (Parameter, Module)):
                raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning "
                                     f"the {type(value).__name__} {name!r}")
            object.__setattr__(self, name, value)
            return
        params, modules = registries
        if isinstance(value, Parameter):
            modules.pop(name, None)
            params[name] = value  # reassigning keeps the original position
        elif isinstance(value, Module):
            params.pop(name, None)
            modules[name] = value
        else:
            params.pop(name, None)
            modules.pop(name, None)
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        self._parameters.pop(name, None)
        self._modules.pop(name, None)
        object.__delattr__(self, name)

    # ---- calling ----------------------------------------------------------------------------
    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # ---- walking the tree -------------------------------------------------------------------
    def named_children(self):
        """(name, module) for each direct sub-module, in registration order."""
        return iter(self._modules.items())

    def children(self):
        """Each direct sub-module."""
        return iter(self._modules.values())

    def named_modules(self, prefix: str = ""):
        """(dotted name, module) for self (named ``prefix``, "" by default) and every sub-module, depth first.

        A module reachable by two paths is listed once, under its first name.
        """
        seen, stack = set(), [(prefix, self)]
        while stack:
            name, module = stack.pop()
            if id(module) in seen:
                continue
            seen.add(id(module))
            yield name, module
            stack.extend((f"{name}.{child}" if name else child, sub)
                         for child, sub in reversed(module._modules.items()))

    def modules(self):
        """Self and every sub-module, depth first."""
        return (module for _, module in self.named_modules())

    def named_parameters(self, prefix: str = ""):
        """(dotted name, Parameter) for every parameter in the tree; a shared parameter is listed once."""
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self):
        """Every Parameter in the tree, in ``named_parameters()`` order (what an optimizer takes)."""
        return (p for _, p in self.named_parameters())

    def get_submodule(self, target: str) -> "Module":
        """The sub-module at a dotted path such as ``"blocks.0.attn"`` ("" is self)."""
        if not isinstance(target, str):
            raise TypeError(f"get_submodule: target must be a dotted name (str), got {target!r}")
        module = self
        if target == "":
            return module
        walked = []
        for part in target.split("."):
            if part not in module._modules:
                where = ".".join(walked) or "the root"
                raise AttributeError(f"{type(self).__name__} has no submodule {target!r}: {where} "
                                     f"({type(module).__name__}) has no child {part!r}; "
                                     f"its children are {list(module._modules)}")
            module = module._modules[part]
            walked.append(part)
        return module

    def set_submodule(self, target: str, module: "Module") -> None:
        """Replace the existing sub-module at a dotted path (how LoRA swaps a Linear for a LoRALinear)."""
        if not isinstance(module, Module):
            raise TypeError(f"set_submodule: {target!r} must be set to a Module, got {type(module).__name__}")
        if target == "":
            raise ValueError("set_submodule: target must name a sub-module, got '' (the module itself)")
        parent_name, _, name = target.rpartition(".")
        self.get_submodule(target)  # raises, listing valid names, when the path does not exist
        setattr(self.get_submodule(parent_name), name, module)

    def apply(self, fn) -> "Module":
        """Call ``fn(module)`` on every sub-module and then on self; returns self."""
        for module in reversed(list(self.modules())):
            fn(module)
        return self

    # ---- state ------------------------------------------------------------------------------
    def state_dict(self) -> OrderedDict:
        """An ordered dict: dotted parameter name -> a host NumPy copy of its values."""
        return OrderedDict((name, p.numpy()) for name, p in self.named_parameters())

    def load_state_dict(self, state, strict: bool = True):
        """Copy values from ``state`` (name -> array) into the parameters, on their device and dtype.

        Every problem is checked before anything changes, then reported in one ValueError:
        missing keys and unexpected keys (when ``strict``), shape mismatches, and values that are
        not finite real numbers (NaN, inf, complex, object or string arrays), named by key.
        Returns ``(missing_keys, unexpected_keys)``.
        """
        if not hasattr(state, "keys"):
            raise TypeError(f"load_state_dict expects a mapping of name -> array, got {type(state).__name__}")
        own = OrderedDict(self.named_parameters())
        missing = [name for name in own if name not in state]
        unexpected = [name for name in state if name not in own]
        problems, updates = [], []
        if strict and missing:
            problems.append(f"missing keys (in the model, not in the state dict): {missing}")
        if strict and unexpected:
            problems.append(f"unexpected keys (in the state dict, not in the model): {unexpected}")
        for name, p in own.items():
            if name not in state:
                continue
            value = state[name]
            host = asnumpy(value.data if isinstance(value, Tensor) else value)
            try:
                check_loaded_array(repr(name), host)
            except (TypeError, ValueError) as err:
                problems.append(str(err))
                continue
            if host.shape != p.shape:
                problems.append(f"shape mismatch for {name!r}: the model has {p.shape}, "
                                f"the state dict has {host.shape}")
            else:
                updates.append((p, to_device(host.astype(p.dtype, copy=False), p.device)))
        if problems:
            raise ValueError(f"load_state_dict into {type(self).__name__} failed; nothing was changed:\n  "
                             + "\n  ".join(problems))
        for p, value in updates:
            p.copy_(value)  # in place: a copy, never an alias of the caller's array; bumps the version
        return _IncompatibleKeys(missing, unexpected)

    # ---- modes and bulk changes -----------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        """Set ``.training`` on self and every sub-module (Dropout reads it); returns self."""
        if not isinstance(mode, bool):
            raise TypeError(f"train(mode) takes a bool, got {mode!r}")
        for module in self.modules():
            module.training = mode
        return self

    def eval(self) -> "Module":
        """``train(False)``: Dropout becomes the identity."""
        return self.train(False)

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to None."""
        for p in self.parameters():
            p.grad = None

    def requires_grad_(self, requires_grad: bool = True) -> "Module":
        """Freeze (False) or unfreeze (True) every parameter; returns self."""
        check_bool("requires_grad", requires_grad, where="requires_grad_")
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def to(self, device=None, dtype=None) -> "Module":
        """Move every parameter (and gradient) in place to ``device`` ("cpu"/"cuda") and/or cast to ``dtype``.

        ``model.to(np.float64)`` is short for ``model.to(dtype=np.float64)``. Returns self.
        Move the model before creating its optimizer: optimizer state stays where it was made.
        """
        if device is not None and not isinstance(device, str):
            device, dtype = None, device if dtype is None else dtype
        if dtype is not None:
            dtype = check_float_dtype("dtype", dtype, where=f"{type(self).__name__}.to")
        for name, weight in self.block_weights() if device is not None else ():
            if weight.device != device:  # 4-bit weights are not Parameters: refused before anything moves
                raise ValueError(f"{type(self).__name__}.to({device!r}): layer {name!r} holds a "
                                 f"{weight.label} weight on {weight.device!r}, which .to() does not move; "
                                 "move the float model first, then call tinylora.lora.quantize_base")
        for p in self.parameters():
            p.data = _moved(p.data, device, dtype)
            if p.grad is not None:
                p.grad = _moved(p.grad, device, dtype)
        return self

    def block_weights(self) -> list:
        """(layer name, weight) of each block-quantized weight (``quantize_base``); not Parameters."""
        return [(name, value) for name, m in self.named_modules() for value in vars(m).values()
                if isinstance(value, BlockWeight)]

    def num_parameters(self, trainable_only: bool = False) -> int:
        """The number of scalars in all (or only the trainable) parameters."""
        return sum(p.size for p in self.parameters() if p.requires_grad or not trainable_only)

    # ---- printing ---------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The text between the parentheses of this module's line in ``repr``; override it."""
        return ""

    def __repr__(self):
        children = [f"({name}): " + repr(module).replace("\n", "\n  ")
                    for name, module in self._modules.items()]
        if not children:
            return f"{type(self).__name__}({self.extra_repr()})"
        lines = ([self.extra_repr()] if self.extra_repr() else []) + children
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _moved(array, device, dtype):
    if device is not None:
        array = to_device(array, device)
    if dtype is not None and array.dtype != dtype:
        array = array.astype(dtype)
    return array


class ModuleList(Module):
    """A list of sub-modules registered as "0", "1", ...: ``blocks[0]``, ``len(blocks)``, ``for b in blocks``.

    >>> from tinylora.nn import GELU
    >>> blocks = ModuleList([GELU(), GELU()])
    >>> _ = blocks.append(GELU())
    >>> len(blocks), [name for name, _ in blocks.named_children()]
    (3, ['0', '1', '2'])
    """

    def __init__(self, modules=()):
        super().__init__()
        self.extend(modules)

    def append(self, module: Module) -> "ModuleList":
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__}.append takes a Module, got {type(module).__name__}")
        setattr(self, str(len(self)), module)
        return self

    def extend(self, modules) -> "ModuleList":
        for module in modules:
            self.append(module)
        return self

    def _index(self, index: int) -> str:
        if not is_int(index):
            raise TypeError(f"{type(self).__name__} indices must be ints or slices, got {index!r}")
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for a {type(self).__name__} "
                             f"of length {len(self)}")
        return str(index % len(self))

    def __getitem__(self, index):
        if isinstance(index, slice):
            return type(self)(list(self._modules.values())[index])
        return self._modules[self._index(index)]

    def __setitem__(self, index, module: Module):
        if not isinstance(module, Module):
            raise TypeError(f"{type(self).__name__} items must be Modules, got {type(module).__name__}")
        setattr(self, self._index(index), module)

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Sequential(ModuleList):
    """Modules applied one after another: ``Sequential(a, b)(x) == b(a(x))``.

    >>> import numpy as np
    >>> from tinylora.nn import GELU, Linear
    >>> rng = np.random.default_rng(0)
    >>> mlp = Sequential(Linear(4, 8, rng=rng), GELU(), Linear(8, 2, rng=rng))
    >>> mlp(np.ones((3, 4), dtype=np.float32)).shape
    (3, 2)
    """

    def __init__(self, *modules):
        super().__init__(modules)

    def __getitem__(self, index):
        if isinstance(index, slice):
            return Sequential(*list(self._modules.values())[index])
        return super().__getitem__(index)

    def forward(self, x):
        for module in self:
            x = module(x)
        return x
