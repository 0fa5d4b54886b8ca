"""GGUF files (llama.cpp's format) -> a Hugging Face style config and float32 state dict.

A GGUF file is a header of typed key/value metadata (``llama.block_count``, the tokenizer's
vocabulary, ...) followed by tensor descriptions (name, ggml type, shape) and their raw bytes.
The ``gguf`` package parses the layout; ``tinylora.quant`` turns each tensor's bytes into floats.

Names differ from Hugging Face's: ``blk.3.attn_q.weight`` is ``model.layers.3.self_attn.q_proj.weight``.
Shapes are the same once reversed: ggml lists the fastest axis first, NumPy last. One real
difference: llama.cpp's converter *permutes the rows* of W_q and W_k. Hugging Face's RoPE rotates
the two halves of each head (dims i and i + hd/2 form a pair); llama.cpp rotates neighbours
(dims 2i and 2i + 1). The converter reorders each head's rows so the neighbour rotation computes
the same thing; ``unpermute_qk`` puts the rows back, so the weights work with the half rotation.

>>> w = np.arange(8.0)[:, None]              # one head of 8 rows in llama.cpp's order
>>> unpermute_qk(w, n_head=1)[:, 0]          # HF's: the even rows, then the odd rows
array([0., 2., 4., 6., 1., 3., 5., 7.])
"""
from __future__ import annotations

import os
import re

import numpy as np

from . import quant

__all__ = ["GGUFTensor", "read_gguf", "llama_config", "llama_state_dict", "hf_name", "unpermute_qk",
           "load_llama_gguf"]

_TENSOR_NAMES = {  # llama.cpp name -> Hugging Face LlamaForCausalLM name ({i}: the layer)
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
    "blk.{i}.attn_q.weight": "model.layers.{i}.self_attn.q_proj.weight",
    "blk.{i}.attn_k.weight": "model.layers.{i}.self_attn.k_proj.weight",
    "blk.{i}.attn_v.weight": "model.layers.{i}.self_attn.v_proj.weight",
    "blk.{i}.attn_output.weight": "model.layers.{i}.self_attn.o_proj.weight",
    "blk.{i}.ffn_gate.weight": "model.layers.{i}.mlp.gate_proj.weight",
    "blk.{i}.ffn_up.weight": "model.layers.{i}.mlp.up_proj.weight",
    "blk.{i}.ffn_down.weight": "model.layers.{i}.mlp.down_proj.weight",
    "blk.{i}.attn_norm.weight": "model.layers.{i}.input_layernorm.weight",
    "blk.{i}.ffn_norm.weight": "model.layers.{i}.post_attention_layernorm.weight",
}
_SKIPPED = re.compile(r"rope_freqs\.weight|blk\.\d+\.attn_rot_embd\.weight")  # recomputed, not weights


class GGUFTensor:
    """One GGUF tensor: ``name``, ggml ``type_name`` ("Q4_1"), NumPy-order ``shape``, raw bytes ``data``."""

    def __init__(self, name: str, type_name: str, shape: tuple, data: np.ndarray):
        self.name, self.type_name, self.shape, self.data = name, type_name, shape, data

    def __repr__(self) -> str:
        return f"GGUFTensor({self.name!r}, {self.type_name}, shape={self.shape})"

    def to_numpy(self) -> np.ndarray:
        """The values as float32, dequantized by hand (``tinylora.quant``)."""
        return quant.dequantize(self.data, self.type_name, self.shape, name=self.name)


def read_gguf(path) -> tuple[dict, list[GGUFTensor]]:
    """(metadata as plain Python values, tensors) of the GGUF file at ``path``; ValueError if it is damaged.

    The tensors' bytes stay in the file's memory map until ``to_numpy()`` reads them.
    """
    from gguf import GGUFReader  # the file layout parser; imported here so tinylora runs without it

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no GGUF file at {path!r}")
    try:
        reader = GGUFReader(path)
        metadata = {key: _plain(field.contents(), _is_float32(field)) for key, field in reader.fields.items()}
        tensors = [_tensor(t) for t in reader.tensors]
        short = [(t.name, int(t.n_bytes), t.data.nbytes) for t in reader.tensors
                 if t.data.nbytes != t.n_bytes]
    except (ValueError, IndexError, KeyError, OSError, TypeError) as err:
        raise ValueError(f"{path!r} is not a readable GGUF file (truncated or corrupt?): "
                         f"{type(err).__name__}: {err}") from None
    if short:
        name, expected, got = short[0]
        raise ValueError(f"{path!r} is truncated: tensor {name!r} needs {expected} bytes, "
                         f"the file holds {got}")
    return metadata, tensors


def _is_float32(field) -> bool:
    return bool(field.types) and field.types[-1].name == "FLOAT32"


def _plain(value, float32: bool = False):
    """gguf's values -> Python ints, floats, bools, strings and lists of them."""
    if isinstance(value, list):
        return [_plain(v, float32) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if float32 and isinstance(value, float):
        return float(str(np.float32(value)))  # the shortest decimal of the float32: 1e-05, not 9.9999997e-06
    return value


def _tensor(t) -> GGUFTensor:
    type_name = t.tensor_type.name
    shape = tuple(int(n) for n in reversed(t.shape.tolist()))  # ggml: fastest axis first
    return GGUFTensor(t.name, type_name, shape, np.asarray(t.data).reshape(-1).view(np.uint8))


def hf_name(gguf_name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight``; KeyError for an unknown name."""
    match = re.fullmatch(r"blk\.(\d+)\.(.+)", gguf_name)
    key, layer = (f"blk.{{i}}.{match.group(2)}", match.group(1)) if match else (gguf_name, "")
    if key not in _TENSOR_NAMES:
        raise KeyError(f"no Hugging Face name for the GGUF tensor {gguf_name!r}")
    return _TENSOR_NAMES[key].format(i=layer)


def unpermute_qk(w: np.ndarray, n_head: int) -> np.ndarray:
    """Undo llama.cpp's row order of W_q or W_k (n_head * hd, C): per head, rows 0,2,4,.. then 1,3,5,..

    The converter's ``permute`` is ``w.reshape(n_head, 2, hd // 2, C).swapaxes(1, 2)``; this is its inverse
    (the same as transformers' ``_reverse_permute_weights``).
    """
    rows = w.shape[0]
    hd = rows // n_head
    return w.reshape(n_head, hd // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)  # (n_head * hd, C)


def llama_config(metadata: dict, tensor_names, path: str = "GGUF file") -> dict:
    """The llama metadata in Hugging Face ``LlamaConfig`` names (``hidden_size``, ``rope_theta``, ...)."""
    arch = metadata.get("general.architecture")
    if arch != "llama":
        raise ValueError(f"{path!r} holds a {arch!r} model; tinylora reads llama GGUF files only")

    def get(key, default=None):
        value = metadata.get(f"llama.{key}", default)
        if value is None:
            raise ValueError(f"{path!r} lacks the metadata key 'llama.{key}'")
        return value
    heads = get("attention.head_count")
    hidden = get("embedding_length")
    vocab = metadata.get("llama.vocab_size") or len(metadata.get("tokenizer.ggml.tokens") or []) or None
    if vocab is None:
        raise ValueError(f"{path!r} names no vocabulary size (llama.vocab_size or tokenizer.ggml.tokens)")
    return {
        "model_type": "llama",
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": get("feed_forward_length"),
        "num_hidden_layers": get("block_count"),
        "num_attention_heads": heads,
        "num_key_value_heads": get("attention.head_count_kv", heads),
        "head_dim": get("attention.key_length", hidden // heads),
        "rms_norm_eps": get("attention.layer_norm_rms_epsilon", 1e-5),
        "rope_theta": get("rope.freq_base", 10000.0),
        "max_position_embeddings": get("context_length"),
        "tie_word_embeddings": "output.weight" not in set(tensor_names),
    }


def llama_state_dict(tensors: list[GGUFTensor], config: dict) -> dict[str, np.ndarray]:
    """Hugging Face name -> float32 array, with W_q and W_k back in Hugging Face's row order."""
    unsupported = sorted(f"{t.name}: {t.type_name}" for t in tensors
                         if t.type_name not in quant.SUPPORTED_TYPES)
    if unsupported:
        raise ValueError(f"the GGUF file stores tensors in quantization types tinylora cannot dequantize "
                         f"({', '.join(unsupported[:4])}{', ...' if len(unsupported) > 4 else ''}); "
                         f"supported types: {list(quant.SUPPORTED_TYPES)}")
    state = {}
    for t in tensors:
        if _SKIPPED.fullmatch(t.name):
            continue
        w = t.to_numpy()
        if ".attn_q." in t.name:
            w = unpermute_qk(w, config["num_attention_heads"])
        elif ".attn_k." in t.name:
            w = unpermute_qk(w, config["num_key_value_heads"])
        state[hf_name(t.name)] = w
    return state


def load_llama_gguf(path) -> tuple[dict, dict[str, np.ndarray], dict]:
    """(config dict in HF names, float32 state dict in HF names, metadata) of the llama GGUF at ``path``."""
    metadata, tensors = read_gguf(path)
    config = llama_config(metadata, [t.name for t in tensors], os.fspath(path))
    return config, llama_state_dict(tensors, config), metadata
