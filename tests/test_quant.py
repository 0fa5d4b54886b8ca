"""Dequantization against the gguf package's reference (random blocks), round trips, and bad input."""
from __future__ import annotations

import numpy as np
import pytest

from tinylora import quant

gguf = pytest.importorskip("gguf", reason="the gguf package is the reference: pip install gguf")

QUANTIZED = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def random_blocks(type_name: str, n_blocks: int, rng) -> np.ndarray:
    """Random bytes for every field, with finite float16 scales (random bits could be inf or nan)."""
    layout = quant.BLOCK_LAYOUTS[type_name]
    raw = rng.integers(0, 256, size=n_blocks * layout.itemsize, dtype=np.uint8)
    blocks = raw.view(layout)
    blocks["d"] = rng.normal(0, 0.05, n_blocks).astype(np.float16)
    if "m" in layout.names:
        blocks["m"] = rng.normal(0, 0.1, n_blocks).astype(np.float16)
    return raw


@pytest.mark.parametrize("type_name", QUANTIZED)
def test_each_block_type_dequantizes_exactly_like_the_gguf_package(type_name):
    rng = np.random.default_rng(0)
    shape = (6, 128)
    raw = random_blocks(type_name, 6 * 128 // 32, rng)
    ours = quant.dequantize(raw.tobytes(), type_name, shape, name="w")
    reference = gguf.quants.dequantize(raw.reshape(6, -1), gguf.GGMLQuantizationType[type_name])
    assert ours.dtype == np.float32 and ours.shape == shape
    np.testing.assert_array_equal(ours, reference)


@pytest.mark.parametrize("type_name, dtype", [("F32", "<f4"), ("F16", "<f2")])
def test_plain_float_types_match_the_gguf_package(type_name, dtype):
    values = np.random.default_rng(1).normal(size=(3, 5)).astype(dtype)
    ours = quant.dequantize(values.tobytes(), type_name, (3, 5))
    reference = gguf.quants.dequantize(values.view(np.uint8), gguf.GGMLQuantizationType[type_name])
    np.testing.assert_array_equal(ours, np.asarray(reference, dtype=np.float32).reshape(3, 5))


def test_bf16_is_the_upper_half_of_a_float32_and_matches_the_gguf_package():
    x = np.random.default_rng(2).normal(size=(4, 32)).astype(np.float32)
    raw = gguf.quants.quantize(x, gguf.GGMLQuantizationType.BF16)
    ours = quant.dequantize(raw.tobytes(), "BF16", x.shape)
    np.testing.assert_array_equal(ours, gguf.quants.dequantize(raw, gguf.GGMLQuantizationType.BF16))
    assert np.abs(ours - x).max() <= np.abs(x).max() * 2.0 ** -8


# Worst error of quantize -> dequantize, as a fraction of the block's largest |x| (symmetric
# types: half a step of d = max|x| / levels) or of its range (the _1 types). Storing d in float16
# moves the largest code by up to 127 * 2**-11 of a step: the 10% slack.
ROUND_TRIP_BOUND = {"Q8_0": 0.5 / 127, "Q4_0": 1.0 / 8, "Q5_0": 1.0 / 16,
                    "Q4_1": 0.5 / 15, "Q5_1": 0.5 / 31}


@pytest.mark.parametrize("type_name", QUANTIZED)
def test_quantize_then_dequantize_stays_within_half_a_step(type_name):
    x = np.random.default_rng(3).normal(size=(8, 64)).astype(np.float32)
    raw = gguf.quants.quantize(x, gguf.GGMLQuantizationType[type_name])
    y = quant.dequantize(raw.tobytes(), type_name, x.shape)
    blocks, errors = x.reshape(-1, 32), np.abs(y - x).reshape(-1, 32)
    spread = (np.abs(blocks).max(axis=1) if type_name.endswith("_0")
              else blocks.max(axis=1) - blocks.min(axis=1))
    assert (errors.max(axis=1) <= spread * ROUND_TRIP_BOUND[type_name] * 1.1).all()


def test_each_block_layout_has_ggmls_size_in_bytes():
    sizes = {name: layout.itemsize for name, layout in quant.BLOCK_LAYOUTS.items()}
    assert sizes == {name: gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType[name]][1] for name in sizes}


BAD_INPUT = [
    (b"\x00" * 17, "Q4_0", (32,), "tensor 'blk.0.w': Q4_0 of shape (32,) needs 18 bytes, got 17"),
    (b"\x00" * 18, "Q4_0", (16,), "not a whole number of 32-value blocks"),
    (b"\x00" * 8, "F32", (3,), "needs 12 bytes, got 8"),
    (b"\x00" * 84, "Q2_K", (256,), "quantization type 'Q2_K'"),
]


@pytest.mark.parametrize("data, type_name, shape, message", BAD_INPUT)
def test_bad_input_raises_a_value_error_that_names_the_tensor_and_the_sizes(data, type_name, shape, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")) as info:
        quant.dequantize(data, type_name, shape, name="blk.0.w")
    assert "blk.0.w" in str(info.value)
