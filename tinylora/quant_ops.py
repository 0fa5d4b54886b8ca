"""Ops on a block-quantized frozen weight (a ``BlockWeight``: NF4, Q4_1 or Q8_0): a Linear and a LoRA Linear
that dequantize a chunk of rows at a time.

A float32 copy of W0 (out, in) would cost 8x its NF4 codes (6.4x Q4_1's blocks), so these ops never
hold one. Forward walks the output features ``chunk_rows`` at a time: it decodes those rows of W0
(c, in), adds the adapter's rows ``s · B[rows] · A`` (c, in) on the fly, and writes ``x · W_cᵀ`` into
columns ``rows`` of the output. Backward walks the same chunks to build x's gradient,
``g · W = Σ_c g[:, rows] · W_c``, decoding each chunk again instead of keeping it. W0 gets no
gradient (it is not a Parameter); A and B get theirs from the low-rank path alone, as in ``F.lora_linear``.

The plain formula, for reading next to the loop: ``h = x · dequantize(W0)ᵀ + b + s · (x · Aᵀ) · Bᵀ``.

>>> import numpy as np
>>> from tinylora.nf4 import quantize_nf4
>>> W0 = quantize_nf4(np.eye(4, dtype=np.float32), block_size=2)    # the identity is exact in NF4
>>> linear_4bit(np.ones((1, 4), np.float32), W0).data
array([[1., 1., 1., 1.]], dtype=float32)
"""
from __future__ import annotations

from ._op_checks import same_device, tensor_arg
from ._validate import check_int
from .block_weight import BlockWeight
from .tensor import Tensor, _result

__all__ = ["CHUNK_ROWS", "linear_4bit", "lora_linear_4bit"]

CHUNK_ROWS = 256  # output rows decoded at a time: a (256, in) float32 chunk, 576 KiB for in = 576


def linear_4bit(x, weight: BlockWeight, bias=None, chunk_rows: int = CHUNK_ROWS) -> Tensor:
    """``x · Wᵀ + bias`` with W held in blocks (NF4, Q4_1, Q8_0).

    Shapes: x (..., in), weight (out, in), bias (out,) -> (..., out).

    Only x (and a trainable bias) get gradients.
    """
    return _chunked("linear_4bit", x, weight, bias, None, None, 0.0, chunk_rows)


def lora_linear_4bit(x, weight: BlockWeight, bias, lora_A, lora_B, scaling: float,
                     chunk_rows: int = CHUNK_ROWS) -> Tensor:
    """A LoRA layer on a 4-bit base in one op (QLoRA): ``x · W0ᵀ + bias + scaling · (x · Aᵀ) · Bᵀ``.

    Shapes: x (..., in), weight W0 (out, in) in blocks, bias (out,) or None, lora_A (r, in), lora_B (out, r)
    -> (..., out). Computes in x's dtype (float32; float64 in gradchecks).
    """
    A, B = tensor_arg(lora_A, "lora_A", "lora_linear_4bit"), tensor_arg(lora_B, "lora_B", "lora_linear_4bit")
    return _chunked("lora_linear_4bit", x, weight, bias, A, B, float(scaling), chunk_rows)


def _chunked(where, x, weight, bias, A, B, scaling, chunk_rows) -> Tensor:
    x = tensor_arg(x, "x", where)
    bias = None if bias is None else tensor_arg(bias, "bias", where)
    if not isinstance(weight, BlockWeight):
        raise TypeError(f"{where}: weight must be a BlockWeight (tinylora.nf4.quantize_nf4, "
                        f"tinylora.gguf_blocks.quantize_q4_1), got {type(weight).__name__}")
    same_device(where, x=x, bias=bias, lora_A=A, lora_B=B)
    if weight.device != x.device:
        raise ValueError(f"{where}: the 4-bit weight is on {weight.device!r} but x is on "
                         f"{x.device!r}; call quantize_base after model.to(device), not before")
    chunk_rows = check_int("chunk_rows", chunk_rows, low=1, where=where)
    n_out, n_in = weight.shape
    lora = A is not None
    if x.shape[-1] != n_in or (lora and (A.shape[1:] != (n_in,) or B.shape != (n_out, A.shape[0]))):
        raise ValueError(f"{where}: shapes do not fit: x {x.shape}, weight (out, in) {weight.shape}"
                         + (f", lora_A (r, in) {A.shape}, lora_B (out, r) {B.shape}" if lora else ""))
    xp, dtype = x.xp, x.dtype
    starts = range(0, n_out, chunk_rows)

    def rows_of_W(start):  # W[start:start + chunk_rows] = dequantized W0 rows + s · B rows · A, (c, in)
        rows = slice(start, start + chunk_rows)
        W = weight.dequantize(rows, dtype)                             # (c, in)
        if lora:
            W += scaling * (B.data[rows] @ A.data)                     # (c, r) @ (r, in)
        return W

    x2d = x.data.reshape(-1, n_in)                                     # (rows, in)
    out = xp.empty((x2d.shape[0], n_out), dtype=dtype)                 # (rows, out)
    for start in starts:
        out[:, start:start + chunk_rows] = x2d @ rows_of_W(start).T    # (rows, c)
    if bias is not None:
        out += bias.data

    def backward(g):  # g: (..., out)
        g2d = g.reshape(-1, n_out)                                     # (rows, out)
        gx = None
        if x.requires_grad:
            gx = xp.zeros_like(x2d)                                    # (rows, in)
            for start in starts:
                gx += g2d[:, start:start + chunk_rows] @ rows_of_W(start)
            gx = gx.reshape(x.shape)                                   # (..., in)
        grads = [gx]
        if bias is not None:
            grads.append(g2d.sum(axis=0) if bias.requires_grad else None)  # (out,)
        if lora:
            gA = ((g2d @ B.data) * scaling).T @ x2d if A.requires_grad else None    # (r, in)
            gB = g2d.T @ (x2d @ A.data.T) * scaling if B.requires_grad else None    # (out, r)
            grads += [gA, gB]
        return tuple(grads)
    parents = [x] + ([bias] if bias is not None else []) + ([A, B] if lora else [])
    return _result(out.reshape(x.shape[:-1] + (n_out,)), tuple(parents), backward)
