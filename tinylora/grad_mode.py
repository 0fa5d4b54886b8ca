"""Grad mode: whether ops record the graph (``no_grad`` turns it off), as ``torch.autograd.grad_mode``.

``tinylora.tensor`` and the package root re-export both names.
"""
from __future__ import annotations

__all__ = ["no_grad", "is_grad_enabled"]

_enabled = True


def is_grad_enabled() -> bool:
    """False inside a ``no_grad()`` block."""
    return _enabled


class no_grad:
    """Context manager (or decorator) in which ops record no graph.

    >>> from tinylora import Tensor
    >>> with no_grad():
    ...     y = Tensor([1.0], requires_grad=True) * 2
    >>> y.requires_grad
    False
    """

    def __enter__(self):
        global _enabled
        self._previous, _enabled = _enabled, False

    def __exit__(self, *exc):
        global _enabled
        _enabled = self._previous

    def __call__(self, fn):
        def wrapper(*args, **kwargs):
            with no_grad():
                return fn(*args, **kwargs)
        wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
        return wrapper
