"""Optimizers (SGD, AdamW), gradient clipping, and the warmup + cosine learning-rate schedule.

An optimizer holds ``param_groups``: a list of dicts, each with its ``"params"`` and its own
hyperparameters (LoRA+ gives the B matrices a larger ``lr`` this way). ``step()`` updates each
parameter's ``.data`` in place from its ``.grad``. Only parameters with ``requires_grad=True``
are updated or given state: a frozen weight costs the optimizer no memory, which is where
LoRA's savings come from.

>>> import numpy as np
>>> from tinylora.nn import Parameter
>>> w = Parameter(np.array([3.0, -2.0], dtype=np.float32))
>>> opt = SGD([w], lr=0.5)
>>> for _ in range(3):
...     opt.zero_grad()
...     (w * w).sum().backward()     # the minimum of w . w is at 0
...     opt.step()
>>> w.data
array([0., 0.], dtype=float32)
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from ._validate import check_bool, check_int, check_loaded_array, check_probability, check_real, is_real
from .backend import asnumpy, get_array_module, to_device
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "AdamW", "clip_grad_norm_", "warmup_cosine", "WarmupCosine"]


def _check_at_least(where: str, name: str, value, low: float, inclusive: bool = True) -> None:
    check_real(name, value, low=low, low_inclusive=inclusive, where=where)


def _state_dtype(p):
    """Optimizer state is float32 for a float16 parameter (eps = 1e-8 and g² underflow in float16)."""
    return np.float32 if p.dtype == np.float16 else p.dtype


class Optimizer:
    """Base class: parameter groups, per-parameter ``state``, ``zero_grad``, ``step``, checkpoints.

    ``params`` is an iterable of Parameters, or a list of dicts ``{"params": [...], "lr": ...}``
    where any key overrides the optimizer's default for that group. Subclasses set
    ``defaults``, ``_validate(group, where)`` and ``_update(p, state, group)``.
    """

    def __init__(self, params, defaults: dict):
        self.defaults = dict(defaults)
        self._validate(self.defaults, type(self).__name__)
        self.param_groups: list[dict] = []
        self.state: dict = {}  # Parameter -> dict of arrays; only for parameters that were updated
        if isinstance(params, Tensor) or hasattr(params, "named_parameters"):
            raise TypeError(f"{type(self).__name__}: params must be an iterable of Parameters or of dicts, "
                            f"got a {type(params).__name__}; pass model.parameters()")
        groups = list(params)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        for group in groups if isinstance(groups[0], dict) else [{"params": groups}]:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        """Add ``{"params": [...], **overrides}``; a parameter may belong to only one group."""
        where = f"{type(self).__name__} param group {len(self.param_groups)}"
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{where}: expected a dict with a 'params' key, got {group!r:.80}")
        params = [group["params"]] if isinstance(group["params"], Tensor) else list(group["params"])
        if not params:
            raise ValueError(f"{where} has no parameters")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{where}: params[{i}] must be a Parameter (Tensor), got {type(p).__name__}")
            if id(p) in seen:
                raise ValueError(f"{where}: params[{i}] (shape {p.shape}) "
                                 "appears twice in the optimizer's parameters")
            seen.add(id(p))
        merged = {**self.defaults, **{k: v for k, v in group.items() if k != "params"}}
        self._validate(merged, where)
        self.param_groups.append({"params": params, **merged})

    def _validate(self, group: dict, where: str) -> None:
        _check_at_least(where, "lr", group["lr"], 0.0)
        _check_at_least(where, "weight_decay", group["weight_decay"], 0.0)

    def zero_grad(self) -> None:
        """Set every parameter's ``.grad`` to None (the next backward() starts fresh)."""
        for group in self.param_groups:
            for p in group["params"]:
                p.grad = None

    def step(self) -> None:
        """Update, in place, every parameter that requires grad and has a gradient.

        Every gradient is checked (shape, dtype, device) before the first parameter changes.
        """
        todo = [(p, group) for group in self.param_groups for p in group["params"]
                if p.requires_grad and p.grad is not None]
        for i, (p, _) in enumerate(todo):
            g = p.grad
            if g.shape != p.shape or g.dtype != p.dtype or type(g) is not type(p._data):
                raise ValueError(f"{type(self).__name__}.step: the gradient of parameter {i} (shape "
                                 f"{p.shape}, {p.dtype}) has shape {g.shape} and dtype {g.dtype}; "
                                 "nothing was updated")
        for p, group in todo:
            self._update(p, self.state.setdefault(p, {}), group)

    def _update(self, p, state: dict, group: dict) -> None:
        raise NotImplementedError(f"{type(self).__name__} does not define _update()")

    # ---- checkpoints ------------------------------------------------------------------------
    def _all_params(self) -> list:
        return [p for group in self.param_groups for p in group["params"]]

    def state_dict(self) -> dict:
        """``{"state": {index: {name: host array or int}}, "param_groups": [{..., "params": [index, ...]}]}``.

        Parameters are numbered across groups in order, as in PyTorch.
        """
        index = {id(p): i for i, p in enumerate(self._all_params())}
        state = {index[id(p)]: {k: v if isinstance(v, numbers.Number) else np.array(asnumpy(v))
                                for k, v in s.items()}
                 for p, s in self.state.items()}
        groups, start = [], 0
        for group in self.param_groups:
            n = len(group["params"])
            groups.append({**{k: v for k, v in group.items() if k != "params"},
                           "params": list(range(start, start + n))})
            start += n
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore hyperparameters and state; arrays go onto each parameter's device and dtype.

        Everything is checked first; a ValueError lists every problem and nothing changes.
        """
        name = f"{type(self).__name__}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= set(state_dict):
            keys = sorted(state_dict) if isinstance(state_dict, dict) else type(state_dict).__name__
            raise ValueError(f"{name}: state_dict must be a dict with keys 'state' and 'param_groups' "
                             f"(from optimizer.state_dict()), got {keys}")
        groups, params = state_dict["param_groups"], self._all_params()
        if not isinstance(groups, list) or not all(isinstance(g, dict) and "params" in g for g in groups):
            raise ValueError(f"{name}: 'param_groups' must be a list of dicts with a 'params' key, "
                             f"got {groups!r:.80}")
        if not isinstance(state_dict["state"], dict):
            raise ValueError(f"{name}: 'state' must be a dict, got {type(state_dict['state']).__name__}")
        problems = []
        if len(groups) != len(self.param_groups):
            problems.append(f"the state dict has {len(groups)} param groups, "
                            f"the optimizer has {len(self.param_groups)}")
        for i, (saved, group) in enumerate(zip(groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                problems.append(f"param group {i} has {len(saved['params'])} parameters in the state dict, "
                                f"{len(group['params'])} in the optimizer")
            try:
                self._validate({**group, **saved}, f"param group {i}")
            except (TypeError, ValueError) as err:
                problems.append(str(err))
        new_state = {}
        for index, saved in state_dict["state"].items():
            if not (isinstance(index, numbers.Integral) and 0 <= index < len(params)):
                problems.append(f"state for parameter index {index!r}, "
                                f"but the optimizer has {len(params)} parameters")
                continue
            p, entry = params[index], {}
            for key, value in saved.items():
                if isinstance(value, numbers.Number) and not isinstance(value, bool):
                    entry[key] = value
                    continue
                host = np.asarray(asnumpy(value))  # host-ok: checkpoints are host arrays
                try:
                    check_loaded_array(f"state {key!r} of parameter {index}", host)
                except (TypeError, ValueError) as err:
                    problems.append(str(err))
                    continue
                if host.shape != p.shape:
                    problems.append(f"state {key!r} of parameter {index} "
                                    f"has shape {host.shape}, the parameter has {p.shape}")
                else:
                    entry[key] = to_device(host.astype(_state_dtype(p)), p.device)
            new_state[p] = entry
        if problems:
            raise ValueError(f"{name} failed; nothing was changed:\n  "
                             + "\n  ".join(problems))
        for saved, group in zip(groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = new_state

    def __repr__(self):
        groups = ", ".join("{" + ", ".join(f"{k}={v}" for k, v in g.items() if k != "params")
                           + f", params={len(g['params'])}" + "}" for g in self.param_groups)
        return f"{type(self).__name__}({groups})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay.

    With ``d = grad + weight_decay * w`` and ``buf`` starting as the first ``d``:
    ``buf = momentum * buf + d``; the step is ``w -= lr * d'`` where ``d' = buf``, or
    ``d' = d + momentum * buf`` with ``nesterov=True`` (PyTorch's formulas, no dampening).

    >>> from tinylora.nn import Parameter
    >>> w = Parameter(np.array([1.0], dtype=np.float32)); w.grad = np.array([2.0], dtype=np.float32)
    >>> SGD([w], lr=0.1).step(); w.data
    array([0.8], dtype=float32)
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                 nesterov: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, weight_decay=weight_decay, nesterov=nesterov))

    def _validate(self, group, where):
        super()._validate(group, where)
        _check_at_least(where, "momentum", group["momentum"], 0.0)
        check_bool("nesterov", group["nesterov"], where=where)
        if group["nesterov"] and group["momentum"] == 0:
            raise ValueError(f"{where}: nesterov=True needs momentum > 0, got momentum={group['momentum']!r}")

    def _update(self, p, state, group):
        lr, momentum = float(group["lr"]), float(group["momentum"])
        weight_decay = float(group["weight_decay"])
        d = p.grad
        if weight_decay:
            d = p._data * weight_decay  # a new array: .grad itself is left as backward() made it
            d += p.grad
        if momentum:
            buf = state.get("momentum_buffer")
            if buf is None:
                buf = state["momentum_buffer"] = d.copy()
            else:
                buf *= momentum
                buf += d
            d = d + momentum * buf if group["nesterov"] else buf
        p.add_(d, alpha=-lr)  # in place; bumps p's version, so a stale backward() would raise


class AdamW(Optimizer):
    """Adam with decoupled weight decay (Loshchilov & Hutter), step for step as ``torch.optim.AdamW``.

    At step t, with g the gradient::

        w <- w * (1 - lr * weight_decay)                 decay, not through the gradient
        m <- beta1 * m + (1 - beta1) * g                 first moment
        v <- beta2 * v + (1 - beta2) * g^2               second moment
        w <- w - lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    State per trainable parameter: ``step`` (int), ``exp_avg`` (m) and ``exp_avg_sq`` (v), with
    the parameter's shape, dtype and device; a float16 parameter keeps float32 state and computes
    its update in float32 (in float16, eps = 1e-8 rounds to 0 and a zero gradient gives 0/0 = NaN).
    One temporary array per parameter per step.

    >>> from tinylora.nn import Parameter
    >>> w = Parameter(np.array([1.0, -1.0], dtype=np.float32))
    >>> w.grad = np.array([0.5, 0.5], dtype=np.float32)
    >>> AdamW([w], lr=0.1, weight_decay=0.0).step()
    >>> w.data.round(4)   # the first step moves each weight by lr, against its gradient
    array([ 0.9, -1.1], dtype=float32)
    """

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.01):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    def _validate(self, group, where):
        super()._validate(group, where)
        betas = group["betas"]
        if not (isinstance(betas, (tuple, list)) and len(betas) == 2 and all(map(is_real, betas))):
            raise TypeError(f"{where}: betas must be a pair of numbers in [0, 1), got {betas!r}")
        if not all(0 <= b < 1 for b in betas):
            raise ValueError(f"{where}: betas must be two numbers in [0, 1), got {betas!r}")
        _check_at_least(where, "eps", group["eps"], 0.0, inclusive=False)

    def _update(self, p, state, group):
        lr, eps, weight_decay = float(group["lr"]), float(group["eps"]), float(group["weight_decay"])
        beta1, beta2 = float(group["betas"][0]), float(group["betas"][1])
        xp, g, dtype = p.xp, p.grad, _state_dtype(p)
        if not state:
            state.update(step=0, exp_avg=xp.zeros(p.shape, dtype), exp_avg_sq=xp.zeros(p.shape, dtype))
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        if weight_decay:
            p.mul_(1.0 - lr * weight_decay)
        g = g.astype(dtype, copy=False)  # float16 gradients meet float32 state
        tmp = g - m                      # the one temporary, reused below
        tmp *= 1.0 - beta1
        m += tmp                         # m + (1 - beta1)(g - m): PyTorch's lerp
        xp.multiply(g, g, out=tmp)
        tmp *= 1.0 - beta2
        v *= beta2
        v += tmp
        xp.sqrt(v, out=tmp)
        tmp /= math.sqrt(1.0 - beta2 ** t)
        tmp += eps                       # the denominator
        xp.divide(m, tmp, out=tmp)
        tmp *= -lr / (1.0 - beta1 ** t)
        p.add_(tmp)                      # in place (cast back to a float16 parameter's dtype)


def clip_grad_norm_(parameters, max_norm: float, error_if_nonfinite: bool = False) -> float:
    """Scale all gradients in place so their global L2 norm is at most ``max_norm``; return the norm before.

    ``total = sqrt(sum of every gradient element squared)``; when ``total > max_norm`` every
    gradient is multiplied by ``max_norm / (total + 1e-6)``, as in PyTorch. Parameters without a
    gradient are skipped. A non-finite ``total`` (an inf or NaN gradient) raises RuntimeError with
    ``error_if_nonfinite=True``; with False (the default, as in PyTorch) the gradients are scaled
    as PyTorch scales them (an inf norm turns them into 0 and NaN) and the returned norm is inf or
    NaN: check it, as ``fit`` does, before ``optimizer.step()``.

    >>> from tinylora.nn import Parameter
    >>> w = Parameter(np.zeros(2, dtype=np.float32)); w.grad = np.array([3.0, 4.0], dtype=np.float32)
    >>> clip_grad_norm_([w], max_norm=1.0), w.grad.round(4)
    (5.0, array([0.6, 0.8], dtype=float32))
    """
    check_real("max_norm", max_norm, low=0.0, low_inclusive=False, where="clip_grad_norm_")
    check_bool("error_if_nonfinite", error_if_nonfinite, where="clip_grad_norm_")
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    parameters = list(parameters)
    for i, p in enumerate(parameters):
        if not isinstance(p, Tensor):
            raise TypeError(f"clip_grad_norm_: parameters[{i}] must be a Tensor, got {type(p).__name__}")
    grads = [p.grad for p in parameters if p.grad is not None]
    sums = {}  # array module -> sum of squares on that device (one host sync per device)
    for g in grads:
        xp, flat = get_array_module(g), g.reshape(-1)
        sums[xp] = sums.get(xp, 0.0) + xp.vdot(flat, flat)
    total = math.sqrt(sum(float(s) for s in sums.values()))
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(f"clip_grad_norm_: the total gradient norm is {total}, so the gradients hold "
                           "inf or NaN; nothing was scaled (error_if_nonfinite=False scales anyway)")
    scale = float(max_norm) / (total + 1e-6) if math.isfinite(total) else (0.0 if total > 0 else math.nan)
    if not scale >= 1.0:  # NaN scales too, as in PyTorch
        for g in grads:
            g *= scale
    return total


def warmup_cosine(step: int, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1) -> float:
    """The learning-rate multiplier at ``step``: linear warmup from 0, then cosine down to ``min_lr_ratio``.

    ``step / warmup_steps`` while ``step < warmup_steps``; then, with
    ``progress = (step - warmup_steps) / (total_steps - warmup_steps)``,
    ``min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * progress)) / 2``; ``min_lr_ratio`` from
    ``total_steps`` on. (If ``warmup_steps >= total_steps`` the whole run is warmup.)

    >>> [round(warmup_cosine(s, 10, 110, 0.1), 3) for s in (0, 5, 10, 60, 110)]
    [0.0, 0.5, 1.0, 0.55, 0.1]
    """
    for name, value in (("step", step), ("warmup_steps", warmup_steps)):
        check_int(name, value, low=0, where="warmup_cosine")
    check_int("total_steps", total_steps, low=1, where="warmup_cosine")
    check_probability("min_lr_ratio", min_lr_ratio, allow_one=True, where="warmup_cosine")
    if step < warmup_steps:
        return step / warmup_steps
    if step >= total_steps:
        return float(min_lr_ratio)
    progress = (step - warmup_steps) / (total_steps - warmup_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


class WarmupCosine:
    """Sets each group's ``lr`` to ``base_lr * warmup_cosine(step, ...)``; call ``.step()`` after
    ``optimizer.step()``.

    The base lr of each group is its ``lr`` when the schedule is made. Construction applies
    step 0 (lr 0 when there is warmup), as PyTorch's schedulers do.

    >>> from tinylora.nn import Parameter
    >>> opt = SGD([Parameter(np.zeros(1, dtype=np.float32))], lr=1.0)
    >>> schedule = WarmupCosine(opt, warmup_steps=2, total_steps=4, min_lr_ratio=0.0)
    >>> lrs = [schedule.get_lr()[0]]
    >>> for _ in range(4):
    ...     schedule.step(); lrs.append(round(schedule.get_lr()[0], 3))
    >>> lrs
    [0.0, 0.5, 1.0, 0.5, 0.0]
    """

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int, min_lr_ratio: float = 0.1):
        warmup_cosine(0, warmup_steps, total_steps, min_lr_ratio)  # validates the arguments
        self.optimizer = optimizer
        self.warmup_steps, self.total_steps, self.min_lr_ratio = warmup_steps, total_steps, min_lr_ratio
        self.base_lrs = [group["lr"] for group in optimizer.param_groups]
        self.last_step = 0
        self._apply()

    def get_lr(self) -> list[float]:
        """The learning rate of each param group at the current step."""
        factor = warmup_cosine(self.last_step, self.warmup_steps, self.total_steps, self.min_lr_ratio)
        return [base * factor for base in self.base_lrs]

    def step(self) -> None:
        self.last_step += 1
        self._apply()

    def _apply(self) -> None:
        for group, lr in zip(self.optimizer.param_groups, self.get_lr()):
            group["lr"] = lr

    def state_dict(self) -> dict:
        return {"last_step": self.last_step, "base_lrs": list(self.base_lrs)}

    def load_state_dict(self, state: dict) -> None:
        self.last_step, self.base_lrs = int(state["last_step"]), list(state["base_lrs"])
        self._apply()
