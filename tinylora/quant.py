"""Dequantization: the raw bytes of a GGUF tensor -> a float32 array, one block layout at a time.

A quantized tensor is cut, row by row, into blocks of 32 consecutive values. Each block stores a
float16 scale ``d`` (and, for the ``_1`` types, a float16 offset ``m``) and one small integer
``q`` per value; the value is rebuilt as ``d * q`` (symmetric types) or ``d * q + m`` (the
``_1`` types). All multi-byte numbers are little-endian.

====== ===== ===== ===================================== ================================
type   elems bytes block layout                          value of element j
====== ===== ===== ===================================== ================================
F32    1     4     float32                               x
F16    1     2     float16                               x
BF16   1     2     the upper 16 bits of a float32        x
Q8_0   32    34    d (f16), qs[32] (int8)                d * qs[j]
Q4_0   32    18    d (f16), qs[16] (two 4-bit q a byte)  d * (q[j] - 8)
Q4_1   32    20    d, m (f16), qs[16]                    d * q[j] + m
Q5_0   32    22    d (f16), qh (u32), qs[16]             d * (q[j] - 16), q = low4 | high << 4
Q5_1   32    24    d, m (f16), qh (u32), qs[16]          d * q[j] + m
====== ===== ===== ===================================== ================================

4-bit codes are packed two a byte, and not next to each other: byte ``i`` of ``qs`` holds
element ``i`` in its low nibble and element ``i + 16`` in its high nibble. The 5-bit types keep
the same low nibbles and put each element's fifth bit in ``qh``: bit ``j`` of the 32-bit word
belongs to element ``j``. Q4_0 stores ``q - 8`` around zero, so its codes 0..15 mean -8..7; Q4_1
stores ``q`` from the block's minimum ``m`` upward. A Q4_1 block costs 20 bytes for 32 weights,
5 bits a weight instead of float32's 32.

>>> import numpy as np
>>> block = np.array([2.0], dtype="<f2").tobytes() + bytes(range(0, 32, 2))  # d = 2, 16 bytes of qs
>>> dequantize(block, "Q4_0", (32,))[:4]  # low nibbles 0, 2, 4, 6 -> 2 * (q - 8)
array([-16., -12.,  -8.,  -4.], dtype=float32)
"""
from __future__ import annotations

import math

import numpy as np

__all__ = ["BLOCK_LAYOUTS", "SUPPORTED_TYPES", "block_size", "type_nbytes", "dequantize"]

# One structured dtype per quantized block type: the field names are ggml's (ggml-common.h).
BLOCK_LAYOUTS = {
    "Q8_0": np.dtype([("d", "<f2"), ("qs", "i1", (32,))]),
    "Q4_0": np.dtype([("d", "<f2"), ("qs", "u1", (16,))]),
    "Q4_1": np.dtype([("d", "<f2"), ("m", "<f2"), ("qs", "u1", (16,))]),
    "Q5_0": np.dtype([("d", "<f2"), ("qh", "<u4"), ("qs", "u1", (16,))]),
    "Q5_1": np.dtype([("d", "<f2"), ("m", "<f2"), ("qh", "<u4"), ("qs", "u1", (16,))]),
}
_PLAIN = {"F32": 4, "F16": 2, "BF16": 2}  # bytes per element of the unquantized types
SUPPORTED_TYPES = (*_PLAIN, *BLOCK_LAYOUTS)
QK = 32  # values per block of every quantized type here


def _check_type(type_name: str, name: str) -> None:
    if type_name not in SUPPORTED_TYPES:
        raise ValueError(f"tensor {name!r} has quantization type {type_name!r}, which tinylora cannot "
                         f"dequantize; supported types: {list(SUPPORTED_TYPES)}")


def block_size(type_name: str) -> int:
    """How many values one block of ``type_name`` holds (1 for F32, F16, BF16)."""
    _check_type(type_name, "?")
    return 1 if type_name in _PLAIN else QK


def type_nbytes(type_name: str, shape, name: str = "tensor") -> int:
    """The number of bytes a tensor of ``shape`` takes in ``type_name``; its size must fill whole blocks.

    >>> type_nbytes("Q4_1", (4, 64))
    160
    """
    _check_type(type_name, name)
    n = math.prod(shape)
    if type_name in _PLAIN:
        return n * _PLAIN[type_name]
    if shape and shape[-1] % QK:
        raise ValueError(f"tensor {name!r}: a {type_name} row of {shape[-1]} values is not a whole "
                         f"number of {QK}-value blocks")
    return n // QK * BLOCK_LAYOUTS[type_name].itemsize


def _nibbles(qs: np.ndarray) -> np.ndarray:
    """(n, 16) bytes -> (n, 32) 4-bit codes: low nibbles are elements 0..15, high nibbles 16..31."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=-1)


def _fifth_bits(qh: np.ndarray) -> np.ndarray:
    """(n,) uint32 -> (n, 32) codes 0 or 16: bit j of qh is the fifth bit of element j."""
    bits = (qh[:, None] >> np.arange(32, dtype=np.uint32)) & 1  # (n, 32)
    return (bits << 4).astype(np.uint8)


def _scale(blocks: np.ndarray, field: str) -> np.ndarray:
    return blocks[field].astype(np.float32)[:, None]  # (n, 1)


def _q8_0(b):
    return _scale(b, "d") * b["qs"].astype(np.float32)


def _q4_0(b):
    return _scale(b, "d") * (_nibbles(b["qs"]).astype(np.int8) - 8).astype(np.float32)


def _q4_1(b):
    return _scale(b, "d") * _nibbles(b["qs"]).astype(np.float32) + _scale(b, "m")


def _q5_0(b):
    q = _nibbles(b["qs"]) | _fifth_bits(b["qh"])  # (n, 32) codes 0..31
    return _scale(b, "d") * (q.astype(np.int8) - 16).astype(np.float32)


def _q5_1(b):
    q = _nibbles(b["qs"]) | _fifth_bits(b["qh"])  # (n, 32) codes 0..31
    return _scale(b, "d") * q.astype(np.float32) + _scale(b, "m")


_DECODERS = {"Q8_0": _q8_0, "Q4_0": _q4_0, "Q4_1": _q4_1, "Q5_0": _q5_0, "Q5_1": _q5_1}


def _plain(raw: np.ndarray, type_name: str) -> np.ndarray:
    if type_name == "F32":
        return raw.view("<f4").astype(np.float32)  # a copy, never a view of a file's memory map
    if type_name == "F16":
        return raw.view("<f2").astype(np.float32)
    return (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)  # BF16: the top half of a float32


def dequantize(data, type_name: str, shape, name: str = "tensor") -> np.ndarray:
    """Raw bytes (bytes or a uint8 array) of ``type_name`` -> a float32 array of ``shape`` (NumPy order).

    ``shape`` lists the slowest axis first; the last axis is the one ggml cuts into blocks.
    Raises ValueError naming the tensor when the byte count is wrong or the type unknown.

    >>> dequantize(np.array([1.5, -2.0], dtype="<f2").tobytes(), "F16", (2,))
    array([ 1.5, -2. ], dtype=float32)
    """
    shape = tuple(int(s) for s in shape)
    expected = type_nbytes(type_name, shape, name)
    raw = np.frombuffer(data, dtype=np.uint8) if isinstance(data, (bytes, bytearray, memoryview)) else data
    raw = np.ascontiguousarray(raw).reshape(-1).view(np.uint8)
    if raw.size != expected:
        raise ValueError(f"tensor {name!r}: {type_name} of shape {shape} needs {expected} bytes, "
                         f"got {raw.size}")
    if type_name in _PLAIN:
        return _plain(raw, type_name).reshape(shape)
    blocks = raw.view(BLOCK_LAYOUTS[type_name])  # (n_blocks,) structured records
    return _DECODERS[type_name](blocks).reshape(shape)
