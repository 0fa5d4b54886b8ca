"""Pieces of a real LLM: RoPE (19), one BPE merge step (20), 4-bit block quantization (22).

The expected answers come from tinylora's own ``llama_ops.rope``, ``tokenizers.bpe.merge_pair`` and
``quant.dequantize`` (quantizing has no library function: the checker's reference is ``_absmax_4bit``).
"""
from __future__ import annotations

import numpy as np

from ..llama_ops import rope
from ..quant import dequantize
from ..tensor import Tensor
from ..tokenizers.bpe import merge_pair
from .engine import Exercise, Mistake, Output, Part, check

__all__ = ["check_rope", "check_bpe_merge", "check_quantize_4bit"]


# ---- 19. RoPE (rotate-half) --------------------------------------------------------------------
def _rope_draw(rng, k):
    T = int(rng.integers(40, 81)) if k == 2 else int(rng.integers(2, 9))
    hd = 2 * int(rng.integers(1, 9))
    offset = [0, int(rng.integers(1, 20)), int(rng.integers(0, 5)), int(rng.integers(50, 200)), 3, 0][k]
    theta = [10000.0, 10000.0, 500000.0, 10000.0, 100.0, 10000.0][k]
    return {"x": rng.standard_normal((int(rng.integers(1, 3)), int(rng.integers(1, 4)), T, hd)),
            "offset": offset, "theta": theta}


def _rope(x, offset, theta, interleaved=False, sign=1.0, start=0, exponent=2.0):
    T, hd = x.shape[-2:]
    inv_freq = theta ** (-exponent * np.arange(hd // 2) / hd)              # (hd/2,)
    angle = (np.arange(T) + offset + start)[:, None] * inv_freq * sign    # (T, hd/2)
    cos, sin = np.cos(angle), np.sin(angle)
    if interleaved:       # pairs (2i, 2i+1), the GPT-J layout
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2], out[..., 1::2] = a * cos - b * sin, a * sin + b * cos
        return out
    a, b = x[..., :hd // 2], x[..., hd // 2:]
    return np.concatenate([a * cos - b * sin, a * sin + b * cos], axis=-1)


ROPE = Exercise(
    19, "rope", "rotary position embedding", (Part("rope", (Output("out", shape_of="x"),), _rope_draw,
        lambda x, offset, theta: rope(Tensor(x), offset, theta).data, (
        Mistake("interleaved", lambda x, o, t: _rope(x, o, t, interleaved=True),
                "tinylora and Hugging Face's Llama pair channel i with channel i + hd/2 (rotate-half), not "
                "neighbouring channels 2i and 2i+1."),
        Mistake("wrong_direction", lambda x, o, t: _rope(x, o, t, sign=-1.0),
                "rotate_half(x) = concat(−x2, x1): out = x·cos + rotate_half(x)·sin turns by +angle."),
        Mistake("offset_ignored", lambda x, o, t: _rope(x, o, t) if o == 0 else _rope(x, 0, t),
                "token t sits at position offset + t (offset = tokens already in the cache)."),
        Mistake("positions_from_1", lambda x, o, t: _rope(x, o, t, start=1),
                "positions start at 0 (plus the offset): the first token is not rotated when offset = 0."),
        Mistake("exponent", lambda x, o, t: _rope(x, o, t, exponent=1.0),
                "the frequency of pair i is theta^(−2i/hd), not theta^(−i/hd)."),
    )),),
    hint="each position turns pairs of channels by an angle that grows with the position and shrinks with "
         "the channel index; find which channels form a pair and in which direction they turn.",
    formula="angle[t, i] = (offset + t)·theta^(−2i/hd) for i < hd/2, repeated for i + hd/2; "
            "out = x·cos + rotate_half(x)·sin with rotate_half(x) = concat(−x[..., hd/2:], x[..., :hd/2]).",
    points=2, minutes=20, checker="check_rope", rtol=1e-4, atol=1e-4,   # the library's tables are float32
    error_hint="x is (B, H, T, hd) with hd even; the angles are (T, hd/2) and broadcast over B and H.")


def check_rope(rope, *, seed=None, hint=False) -> bool:
    """Exercise 19: ``rope(x, offset, theta)`` for x (B, H, T, hd), Hugging Face's rotate-half layout."""
    __tracebackhide__ = True
    return check(ROPE, [rope], seed, hint)


# ---- 20. one BPE merge step --------------------------------------------------------------------
def _bpe_draw(rng, k):
    letters = list("abcd")
    if k == 0:      # a run: the merges must not overlap, and go left to right
        c = str(rng.choice(letters))
        return {"parts": [c] * int(2 * rng.integers(2, 8) + 1), "pair": (c, c)}
    if k == 2:      # "ab" followed by "c" is not the pair ("b", "c")
        tail = [str(rng.choice(letters)) for _ in range(int(rng.integers(0, 6)))]
        parts = ["ab", "c", "b", "c", "d"] + tail
        return {"parts": parts, "pair": ("b", "c")}
    if k == 3:      # the pair's reverse is not the pair
        return {"parts": ["a", "b", "b", "a", "d", "a", "b"], "pair": ("b", "a")}
    n = int(rng.integers(20, 61)) if k in (1, 5) else int(rng.integers(3, 9))
    pool = letters + ["ab", "cd", "aa"] if k == 5 else letters[:2]
    parts = [str(rng.choice(pool)) for _ in range(n)]
    i = int(rng.integers(0, n - 1))
    pair = (parts[i], parts[i + 1]) if k != 4 else ("x", "y")
    return {"parts": parts, "pair": pair}


def _merge_scan(parts, pair, first_only=False, skip=True, either=False):
    out, i, done = [], 0, False
    while i < len(parts):
        here = tuple(parts[i:i + 2])
        if len(here) == 2 and (here == pair or (either and here == pair[::-1])) and not done:
            out.append(here[0] + here[1])
            i, done = i + (2 if skip else 1), first_only
        else:
            out.append(parts[i])
            i += 1
    return out


def _merge_from_right(parts, pair):
    out, i = [], len(parts) - 1
    while i >= 0:
        if i >= 1 and (parts[i - 1], parts[i]) == pair:
            out.append(parts[i - 1] + parts[i])
            i -= 2
        else:
            out.append(parts[i])
            i -= 1
    return out[::-1]


BPE_MERGE = Exercise(
    20, "bpe_merge", "one BPE merge step", (Part("merge_pair", (Output("parts", kind="list"),), _bpe_draw,
                                                 merge_pair, (
        Mistake("first_only", lambda p, q: _merge_scan(p, q, first_only=True),
                "merge *every* occurrence of the pair, not only the first."),
        Mistake("right_to_left", lambda p, q: _merge_from_right(p, q),
                "scan left to right: in a a a with the pair (a, a), the first two merge."),
        Mistake("overlapping", lambda p, q: _merge_scan(p, q, skip=False),
                "after a merge, skip both pieces: the second one is used up and cannot start the next pair."),
        Mistake("string_replace", lambda p, q: " ".join(p).replace(" ".join(q), "".join(q)).split(" "),
                "joining the pieces into a string loses their boundaries: ab c contains 'b c' but not the "
                "pieces (b, c). Compare whole pieces."),
        Mistake("either_order", lambda p, q: _merge_scan(p, q, either=True),
                "a merge rule is ordered: (b, a) does not merge a followed by b."),
    )),),
    hint="walk the list once, left to right, comparing each piece and the next one with the pair.",
    formula="i = 0; while i < len(parts): if (parts[i], parts[i+1]) == pair: append the joined pair and "
            "i += 2; else append parts[i] and i += 1.",
    points=1, minutes=15, checker="check_bpe_merge")


def check_bpe_merge(merge_pair, *, seed=None, hint=False) -> bool:
    """Exercise 20: ``merge_pair(parts, pair) -> list``: each occurrence joined, left to right."""
    __tracebackhide__ = True
    return check(BPE_MERGE, [merge_pair], seed, hint)


# ---- 22. 4-bit block quantization --------------------------------------------------------------
QK = 32   # values per block, as in GGUF


def _absmax_4bit(w, divisor=7.0, per_tensor=False, truncate=False, strided=False):
    """The checker's reference (and its mistakes): scale = absmax/7 per block of 32, codes in −7..7."""
    rows, nb = w.shape[0], w.shape[1] // QK
    blocks = w.reshape(rows, QK, nb).swapaxes(1, 2) if strided else w.reshape(rows, nb, QK)
    absmax = np.abs(blocks).max(axis=-1)                                 # (rows, nb)
    if per_tensor:
        absmax = np.full_like(absmax, np.abs(w).max())
    scales = absmax / divisor
    safe = np.where(scales == 0, 1.0, scales)[..., None]
    q = blocks / safe
    codes = (np.trunc(q) if truncate else np.rint(q)).astype(np.int8)
    if strided:
        codes = codes.swapaxes(1, 2)
    return codes.reshape(w.shape), scales


def _quantize_draw(rng, k):
    rows, nb = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    w = rng.standard_normal((rows, nb * QK)) * rng.uniform(0.01, 3.0, size=(rows, 1))
    if k == 1:
        w[0, :QK] = 0.0          # an all-zero block: scale 0, codes 0, no division by zero
    if k == 2:
        w[:, ::5] *= 40.0        # outliers: each block's scale follows its own largest value
    return {"w": w}


def _q4_0_dequantize(codes, scales):
    """The library's GGUF Q4_0 dequantization of these codes (stored as code + 8) and float16 scales."""
    rows, n = codes.shape
    q = (codes.reshape(rows, n // QK, QK) + 8).astype(np.uint8)         # (rows, nb, 32) in 0..15
    packed = q[..., :16] | (q[..., 16:] << 4)                             # byte i: elements i, i + 16
    blocks = np.zeros(rows * (n // QK), dtype=np.dtype([("d", "<f2"), ("qs", "u1", (16,))]))
    blocks["d"], blocks["qs"] = scales.reshape(-1), packed.reshape(-1, 16)
    return dequantize(blocks.tobytes(), "Q4_0", (rows, n)).astype(np.float64)


def _dequantize_draw(rng, k):
    rows, nb = int(rng.integers(1, 5)), int(rng.integers(1, 5))
    codes = rng.integers(-7, 8, size=(rows, nb * QK)).astype(np.int8)
    scales = rng.uniform(0.001, 2.0, size=(rows, nb)).astype(np.float16).astype(np.float64)
    return {"codes": codes, "scales": scales}


QUANTIZE = Exercise(
    22, "quantize_4bit", "4-bit block quantization", (
        Part("quantize_4bit", (Output("codes", kind="int_array", shape_of="w"),
                               Output("scales", shape_of="(rows, cols // 32)")),
             _quantize_draw, _absmax_4bit, (
            Mistake("divide_by_8", lambda w: _absmax_4bit(w, divisor=8.0),
                    "the codes run from −7 to 7, so a block's largest |w| must map to 7: scale = absmax/7."),
            Mistake("divide_by_15", lambda w: _absmax_4bit(w, divisor=15.0),
                    "15 is the unsigned range; these codes are signed, −7..7, so scale = absmax/7."),
            Mistake("truncate", lambda w: _absmax_4bit(w, truncate=True),
                    "round to the nearest code (np.rint), don't truncate toward zero."),
            Mistake("per_tensor", lambda w: _absmax_4bit(w, per_tensor=True),
                    "each block of 32 gets its own scale, from its own largest |w|."),
            Mistake("strided_blocks", lambda w: _absmax_4bit(w, strided=True),
                    "a block is 32 *consecutive* values of a row: w.reshape(rows, cols // 32, 32)."),
        )),
        Part("dequantize_4bit", (Output("w"),), _dequantize_draw, _q4_0_dequantize, (
            Mistake("no_scale", lambda c, s: c.astype(np.float64),
                    "multiply each code by its block's scale."),
            Mistake("tiled_scales", lambda c, s: c * np.tile(s, QK),
                    "np.tile repeats the whole row of scales; each scale must cover 32 consecutive codes: "
                    "np.repeat(scales, 32, axis=1)."),
            Mistake("offset_8", lambda c, s: (c - 8) * np.repeat(s, QK, axis=1),
                    "these codes are already signed (−7..7); the − 8 belongs to GGUF's stored nibbles."),
        ))),
    hint="cut each row into blocks of 32 consecutive values; each block keeps one scale and 32 small "
         "integers.",
    formula="per block: scale = max|w|/7 (0 for an all-zero block), codes = rint(w/scale) as int8 in −7..7; "
            "dequantize: w ≈ codes · scale, each scale repeated over its 32 codes.",
    points=3, minutes=25, checker="check_quantize_4bit",
    error_hint="w is (rows, cols) with cols a multiple of 32; codes have w's shape and scales are "
               "(rows, cols // 32).",
    nan_hint="an all-zero block has scale 0: give it codes 0 instead of dividing by zero.")


def check_quantize_4bit(quantize_4bit, dequantize_4bit, *, seed=None, hint=False) -> bool:
    """Exercise 22: ``quantize_4bit(w) -> (codes, scales)`` and ``dequantize_4bit(codes, scales) -> w``."""
    __tracebackhide__ = True
    return check(QUANTIZE, [quantize_4bit, dequantize_4bit], seed, hint)
