"""Files, always written atomically: .npz checkpoints and safetensors weight files.

``atomic_writer`` writes to a temporary file in the same folder and renames it into place,
so an interrupted save never leaves a half-written file behind. A checkpoint is one ``.npz``
holding every parameter (host NumPy, whatever device the model is on) plus the model's config
as JSON text; ``tinylora.models.load_model(path)`` rebuilds the model from it. Adapters are
safetensors files, read and written with the ``safetensors`` package's NumPy API.

>>> import tempfile, os
>>> path = os.path.join(tempfile.mkdtemp(), "weights.safetensors")
>>> save_safetensors(path, {"w": np.ones((2, 3), dtype=np.float32)}, {"note": "hi"})
>>> arrays, metadata = load_safetensors(path)
>>> arrays["w"].shape, metadata
((2, 3), {'note': 'hi'})
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import zipfile

import numpy as np
from safetensors import SafetensorError
from safetensors.numpy import load as _st_load
from safetensors.numpy import save as _st_save

from ._validate import check_loaded_array

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
    for name, array in payload.items():  # an object array would be pickled; a string one is not weights
        if array.dtype.kind not in "biuf":
            raise TypeError(f"save_arrays: {name!r} has dtype {array.dtype}; only bool, int and float "
                            "arrays can be saved")
    payload[_CONFIG_KEY] = _json_bytes(config)
    payload[_META_KEY] = _json_bytes(metadata or {})
    buffer = io.BytesIO()
    np.savez(buffer, **payload)
    with atomic_writer(path) as f:
        f.write(buffer.getvalue())


def load_arrays(path) -> tuple[dict, dict, dict]:
    """Read a file written by ``save_arrays``: (arrays, config, metadata); clear errors for bad files.

    Every array must hold finite real numbers: NaN, inf, complex and object arrays raise, naming
    the tensor, before the caller changes anything.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint file at {path!r}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as err:
        raise ValueError(f"checkpoint {path!r} is truncated or corrupt "
                         f"({type(err).__name__}: {err})") from None
    if _CONFIG_KEY not in arrays:
        raise ValueError(f"{path!r} is not a tinylora checkpoint: it has no {_CONFIG_KEY!r} entry")
    config = json.loads(arrays.pop(_CONFIG_KEY).tobytes().decode("utf-8"))
    metadata = json.loads(arrays.pop(_META_KEY).tobytes().decode("utf-8")) if _META_KEY in arrays else {}
    for name, array in arrays.items():  # NaN, inf, complex or object arrays are refused by name
        check_loaded_array(name, array, where=f"checkpoint {path!r}")
    return arrays, config, metadata


def save_model(model, path, metadata: dict | None = None) -> None:
    """Save a model's weights (host NumPy) and config to ``path`` (.npz), atomically.

    Any Module with a ``config`` dataclass that has ``to_dict()`` works; the class name is stored
    so ``tinylora.models.load_model`` knows what to rebuild.
    """
    config = getattr(model, "config", None)
    if not hasattr(model, "state_dict") or not hasattr(config, "to_dict"):
        raise TypeError("save_model expects a model with a .config (such as a GPT), "
                        f"got {type(model).__name__}")
    held = model.block_weights() if hasattr(model, "block_weights") else []
    if held:
        name, weight = held[0]
        raise ValueError(f"save_model: layer {name!r} holds a {weight.label} weight, which a checkpoint "
                         "of Parameters does not hold; save the adapters (tinylora.lora.save_adapter) and "
                         "rebuild the base from its source, or call tinylora.lora.dequantize_base(model) "
                         "first")
    save_arrays(path, model.state_dict(), {"model": type(model).__name__, **config.to_dict()}, metadata)


def load_weights(model, path):
    """Load the weights at ``path`` into an existing model; the architectures must match exactly."""
    arrays, config, _ = load_arrays(path)
    stored = config.pop("model", None)
    if stored is not None and stored != type(model).__name__:
        raise ValueError(f"checkpoint {os.fspath(path)!r} holds a {stored}, not a {type(model).__name__}")
    if config != model.config.to_dict():
        diff = {k: (config.get(k), v) for k, v in model.config.to_dict().items() if config.get(k) != v}
        raise ValueError(f"checkpoint {os.fspath(path)!r} is for another architecture: "
                         f"(checkpoint, model) differ in {diff}")
    model.load_state_dict(arrays)
    return model


# ---- safetensors: the adapter file format ---------------------------------------------------
# Layout: 8-byte little-endian header length N, N bytes of JSON header
# {name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {str: str}}, then the
# raw little-endian bytes. A file is exactly (parameters x bytes per element) + a small header.
_ST_DTYPES = (np.float16, np.float32, np.float64, np.int64)


def save_safetensors(path, arrays: dict, metadata: dict | None = None) -> None:
    """Write host arrays to a .safetensors file, atomically; metadata values become strings."""
    payload = {}
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)  # host-ok: host arrays by contract
        if array.dtype not in _ST_DTYPES:
            raise TypeError(f"save_safetensors: {name!r} has dtype {array.dtype}; "
                            f"supported: {[np.dtype(d).name for d in _ST_DTYPES]}")
        payload[name] = array
    meta = {str(k): str(v) for k, v in metadata.items()} if metadata else None
    data = _st_save(payload, metadata=meta)
    with atomic_writer(path) as f:
        f.write(data)


def load_safetensors(path) -> tuple[dict, dict]:
    """Read a .safetensors file: (name -> host array, metadata); ValueError if truncated or corrupt."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        raw = f.read()
    try:
        arrays = _st_load(raw)
        metadata = _st_metadata(raw)
    except (SafetensorError, ValueError, UnicodeDecodeError) as err:
        raise ValueError(f"{path!r} is truncated or corrupt: {err}") from None
    return arrays, metadata


def _st_metadata(raw: bytes) -> dict:
    """The ``__metadata__`` of a safetensors file's JSON header (the library checked the layout)."""
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8:8 + n].decode("utf-8")).get("__metadata__", {}) or {}
