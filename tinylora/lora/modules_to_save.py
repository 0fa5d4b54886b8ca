"""``modules_to_save``: modules trained in full beside an adapter, one copy per adapter (PEFT's wrapper).

A low-rank update cannot serve every module: a new output head, or a norm whose scale must move, is
trained whole. ``LoraConfig(modules_to_save=["lm_head"])`` wraps each such module in a
``ModulesToSaveWrapper``: the original stays frozen as ``original_module``, and each adapter gets its own
trainable copy in ``modules_to_save[adapter_name]``. The copy computes while its adapter is active;
``set_adapter`` to an adapter without a copy, or ``disable_adapters()``, computes with the original again.

Which modules: PEFT's rule, a plain string suffix of the module's name (``name.endswith(key)``, not at a
dot), so ``"norm"`` selects ``model.norm`` and also every ``input_layernorm``. The adapter file holds the
copies' parameters under the module's own name, ``base_model.model.<module>.<param>`` (as PEFT writes
them; it strips ``modules_to_save.<adapter>``), and they count in the adapter's size: a copy is as large
as its module, which for an output head is more than the whole LoRA update, so adding one warns with
the numbers.

>>> from tinylora.nn import Linear
>>> wrapper = ModulesToSaveWrapper(Linear(4, 3))
>>> wrapper.add_copy("default")
>>> wrapper.active_adapter = "default"
>>> [n for n, p in wrapper.named_parameters() if p.requires_grad]
['modules_to_save.default.weight', 'modules_to_save.default.bias']
"""
from __future__ import annotations

import copy
import warnings

from ..nn import Module
from .layer import _AdapterDict


class ModulesToSaveWrapper(Module):
    """A frozen module and a trainable copy of it per adapter; the active adapter's copy computes."""

    def __init__(self, module: Module):
        super().__init__()
        if isinstance(module, ModulesToSaveWrapper):
            raise TypeError("this module is a ModulesToSaveWrapper already")
        self.original_module = module
        self.modules_to_save = _AdapterDict()
        self.active_adapter: str | None = None
        self.disabled = False
        module.requires_grad_(False)

    def extra_repr(self):
        return f"active={self.active_adapter!r}, copies={list(self.modules_to_save)}"

    def add_copy(self, adapter_name: str) -> None:
        """Give ``adapter_name`` a copy of the original module (its own arrays, on the same device)."""
        clone = copy.deepcopy(self.original_module)
        for p in clone.parameters():
            p.grad = None
        self.modules_to_save[adapter_name] = clone.requires_grad_(True)

    def module_in_use(self) -> Module:
        """The active adapter's copy, or the original (disabled, no adapter active, or it has no copy)."""
        if self.disabled or self.active_adapter not in self.modules_to_save:
            return self.original_module
        return self.modules_to_save[self.active_adapter]

    weight = property(lambda self: self.module_in_use().weight)  # models and tools read a layer's weight

    def forward(self, *args, **kwargs):
        return self.module_in_use()(*args, **kwargs)


def modules_to_save_layers(model: Module) -> list[tuple[str, ModulesToSaveWrapper]]:
    """(name, wrapper) for every ModulesToSaveWrapper of ``model``."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ModulesToSaveWrapper)]


def find_modules_to_save(model: Module, keys, lora_targets=()) -> list[str]:
    """The names of the modules ``keys`` select (PEFT's rule: ``name.endswith(key)``), outermost only.

    A key that selects nothing, or a module that holds a LoRA target, is a ValueError naming it."""
    if not isinstance(keys, (list, tuple)) or not all(isinstance(k, str) and k for k in keys):
        raise TypeError(f"modules_to_save must be a list of module names, got {keys!r}")
    inner = (".original_module", ".modules_to_save", ".adapters", ".base_layer")  # inside other wrappers
    names = [n for n, _ in model.named_modules() if n and not any(s in n + "." for s in inner)]
    found = []
    for key in keys:
        hits = [n for n in names if n.endswith(key)]
        if not hits:
            top = [n for n in names if "." not in n]
            raise ValueError(f"modules_to_save: {key!r} matches no module of this {type(model).__name__} "
                             f"(a module's name must end with it); top-level modules are {top}, and full "
                             f"names look like {names[len(names) // 2]!r}")
        found += [n for n in hits if n not in found]
    found = [n for n in found if not any(n.startswith(o + ".") for o in found)]
    for n in found:
        clash = [t for t in lora_targets if t == n or t.startswith(n + ".")]
        if clash:
            raise ValueError(f"modules_to_save: {n!r} holds the LoRA target {clash[0]!r}; a module is either "
                             "trained in full or adapted, not both: remove it from one of the two lists")
    return found


def add_modules_to_save(model: Module, adapter_name: str, names: list[str], adapter_size: int) -> None:
    """Wrap each module of ``names`` (once) and give ``adapter_name`` its trainable copy; warns with the
    size they add to an adapter of ``adapter_size`` LoRA parameters."""
    added, nbytes = 0, 0
    for n in names:
        wrapper = model.get_submodule(n)
        if not isinstance(wrapper, ModulesToSaveWrapper):
            wrapper = ModulesToSaveWrapper(wrapper)
            model.set_submodule(n, wrapper)
        wrapper.add_copy(adapter_name)
        params = list(wrapper.modules_to_save[adapter_name].parameters())
        added, nbytes = added + sum(p.size for p in params), nbytes + sum(p.data.nbytes for p in params)
    if names:
        warnings.warn(f"modules_to_save adds {added:,d} parameters ({nbytes / 1e6:.3g} MB) to an adapter of "
                      f"{adapter_size:,d}: {names}", stacklevel=3)


def set_modules_to_save_adapter(model: Module, adapter_name: str | None) -> None:
    """Make ``adapter_name``'s copies compute, and only they train (None: every wrapper uses its original)."""
    for _, wrapper in modules_to_save_layers(model):
        wrapper.active_adapter = adapter_name if adapter_name in wrapper.modules_to_save else None
        for name, clone in wrapper.modules_to_save._modules.items():
            clone.requires_grad_(name == wrapper.active_adapter)


def modules_to_save_tensors(model: Module, adapter_name: str) -> dict:
    """{``<module>.<param>``: Parameter} of ``adapter_name``'s copies, the names PEFT's file uses."""
    return {f"{n}.{p_name}": p for n, wrapper in modules_to_save_layers(model)
            if adapter_name in wrapper.modules_to_save
            for p_name, p in wrapper.modules_to_save[adapter_name].named_parameters()}


def delete_modules_to_save(model: Module, adapter_name: str) -> None:
    """Remove ``adapter_name``'s copies (wrappers left without a copy stay, computing with the original)."""
    for _, wrapper in modules_to_save_layers(model):
        if adapter_name in wrapper.modules_to_save:
            del wrapper.modules_to_save[adapter_name]
            if wrapper.active_adapter == adapter_name:
                wrapper.active_adapter = None


def unwrap_modules_to_save(model: Module, keep_active: bool) -> None:
    """Put a plain module back in place of each wrapper: the active copy (``keep_active``) or the original."""
    for n, wrapper in modules_to_save_layers(model):
        model.set_submodule(n, wrapper.module_in_use() if keep_active else wrapper.original_module)
