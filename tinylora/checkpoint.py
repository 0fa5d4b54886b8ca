"""Saving and loading models as host NumPy ``.npz`` files, always written atomically.

A checkpoint is one ``.npz`` holding every parameter (host NumPy, whatever device the
model is on) plus the model config as JSON text, so ``load_model(path)`` rebuilds the model.
Files are written to a temporary file in the same folder and renamed into place, so an
interrupted save never leaves a half-written checkpoint behind.

>>> import tempfile, os
>>> from tinylora.gpt import GPT, GPTConfig
>>> model = GPT(GPTConfig.preset("nano"))
>>> path = os.path.join(tempfile.mkdtemp(), "nano.npz")
>>> save_model(model, path)
>>> load_model(path).config == model.config
True
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np

from .gpt import GPT, GPTConfig

_CONFIG_KEY = "__config_json__"
_META_KEY = "__metadata_json__"


@contextlib.contextmanager
def atomic_writer(path, mode: str = "wb"):
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one rename."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600 files; give the usual permissions
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise


def _json_bytes(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj, sort_keys=True).encode("utf-8"), dtype=np.uint8)


def save_arrays(path, arrays: dict, config: dict, metadata: dict | None = None) -> None:
    """Write ``arrays`` (name -> host array) with JSON ``config`` and ``metadata`` to one .npz, atomically."""
    payload = {name: np.asarray(a) for name, a in arrays.items()}  # host-ok: already host copies
    payload[_CONFIG_KEY] = _json_bytes(config)
    payload[_META_KEY] = _json_bytes(metadata or {})
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    with atomic_writer(path) as f:
        f.write(buffer.getvalue())


def load_arrays(path) -> tuple[dict, dict, dict]:
    """Read a file written by ``save_arrays``: (arrays, config, metadata); clear errors for bad files."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as err:
        raise ValueError(f"checkpoint {path!r} is truncated or corrupt ({type(err).__name__}: {err})") from None
    if _CONFIG_KEY not in arrays:
        raise ValueError(f"{path!r} is not a tinylora checkpoint: it has no {_CONFIG_KEY!r} entry")
    config = json.loads(arrays.pop(_CONFIG_KEY).tobytes().decode("utf-8"))
    metadata = json.loads(arrays.pop(_META_KEY).tobytes().decode("utf-8")) if _META_KEY in arrays else {}
    return arrays, config, metadata


def save_model(model: GPT, path, metadata: dict | None = None) -> None:
    """Save a GPT's weights (host NumPy) and config to ``path`` (.npz), atomically."""
    if not isinstance(model, GPT):
        raise TypeError(f"save_model expects a GPT, got {type(model).__name__}")
    save_arrays(path, model.state_dict(), {"model": "GPT", **model.config.to_dict()}, metadata)


def load_model(path, device: str = "cpu", with_metadata: bool = False):
    """Rebuild the GPT saved at ``path``; optionally also return its metadata dict."""
    arrays, config, metadata = load_arrays(path)
    if config.pop("model", None) != "GPT":
        raise ValueError(f"{os.fspath(path)!r} does not hold a GPT checkpoint (config: {config})")
    model = GPT(GPTConfig(**config), seed=None)
    model.load_state_dict(arrays)
    if device != "cpu":
        model.to(device)
    return (model, metadata) if with_metadata else model


def load_weights(model: GPT, path) -> GPT:
    """Load the weights at ``path`` into an existing model; the architectures must match exactly."""
    arrays, config, _ = load_arrays(path)
    config.pop("model", None)
    if config != model.config.to_dict():
        diff = {k: (config.get(k), v) for k, v in model.config.to_dict().items() if config.get(k) != v}
        raise ValueError(f"checkpoint {os.fspath(path)!r} is for another architecture: (checkpoint, model) differ in {diff}")
    model.load_state_dict(arrays)
    return model


# ---- safetensors: the adapter file format ---------------------------------------------------
# Layout: 8-byte little-endian header length N, N bytes of JSON header
# {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
# raw little-endian bytes. A file is exactly (parameters x bytes per element) + a small header.
_ST_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I64": np.int64}
_ST_NAMES = {np.dtype(v): k for k, v in _ST_DTYPES.items()}


def save_safetensors(path, arrays: dict, metadata: dict | None = None) -> None:
    """Write host arrays to a .safetensors file, atomically; metadata values must be strings."""
    header, offset, blobs = {}, 0, []
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)  # host-ok: host arrays by contract
        if array.dtype not in _ST_NAMES:
            raise TypeError(f"save_safetensors: {name!r} has dtype {array.dtype}; supported: {sorted(_ST_DTYPES)}")
        blob = array.astype(array.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": _ST_NAMES[array.dtype], "shape": list(array.shape),
                        "data_offsets": [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    header_bytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)  # align the data to 8 bytes
    with atomic_writer(path) as f:
        f.write(len(header_bytes).to_bytes(8, "little"))
        f.write(header_bytes)
        for blob in blobs:
            f.write(blob)


def load_safetensors(path) -> tuple[dict, dict]:
    """Read a .safetensors file: (name -> host array, metadata); ValueError if truncated or corrupt."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        n = int.from_bytes(raw[:8], "little")
        if len(raw) < 8 or n > len(raw) - 8:
            raise ValueError("the header is longer than the file")
        header = json.loads(raw[8:8 + n].decode("utf-8"))
        data = raw[8 + n:]
        metadata = header.pop("__metadata__", {})
        arrays = {}
        for name, info in header.items():
            begin, end = info["data_offsets"]
            dtype = np.dtype(_ST_DTYPES[info["dtype"]]).newbyteorder("<")
            count = int(np.prod(info["shape"], dtype=np.int64))  # host-ok
            if end > len(data) or end - begin != count * dtype.itemsize:
                raise ValueError(f"tensor {name!r} needs bytes {begin}..{end} but the data holds {len(data)}")
            arrays[name] = np.frombuffer(data[begin:end], dtype=dtype).reshape(info["shape"]).astype(dtype.newbyteorder("="))
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path!r} is truncated or corrupt: {err}") from None
    return arrays, metadata
