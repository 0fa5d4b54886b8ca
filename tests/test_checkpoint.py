"""Checkpoints: exact round trips, atomic writes, and clear errors for bad files."""
import os

import numpy as np
import pytest

from tinylora.checkpoint import (
    atomic_writer,
    load_model,
    load_safetensors,
    load_weights,
    save_model,
    save_safetensors,
)
from tinylora.gpt import GPT, GPTConfig

TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def test_saved_model_loads_back_with_identical_config_weights_and_outputs(tmp_path):
    model = GPT(TINY, seed=3)
    save_model(model, tmp_path / "m.npz", metadata={"steps": 7})
    loaded, metadata = load_model(tmp_path / "m.npz", with_metadata=True)
    x = np.arange(8)[None, :] % 11
    assert loaded.config == TINY and metadata == {"steps": 7}
    np.testing.assert_array_equal(loaded(x)[0].data, model(x)[0].data)


def test_checkpoints_are_host_numpy_even_for_a_device_model(tmp_path, backend):
    model = GPT(TINY, seed=0)
    if backend != "numpy":
        model.to("cuda")
    save_model(model, tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz") as npz:
        assert all(isinstance(npz[k], np.ndarray) for k in npz.files)


def test_saving_leaves_no_temporary_file_behind(tmp_path):
    save_model(GPT(TINY), tmp_path / "m.npz")
    assert os.listdir(tmp_path) == ["m.npz"]


def test_a_failed_write_keeps_the_previous_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_writer(path, "w") as f:
            f.write("half of the new")
            raise RuntimeError("interrupted")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["note.txt"]


def test_truncated_checkpoint_is_refused_naming_the_file(tmp_path):
    save_model(GPT(TINY), tmp_path / "m.npz")
    data = (tmp_path / "m.npz").read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="cut.npz' is truncated or corrupt"):
        load_model(tmp_path / "cut.npz")


def test_missing_checkpoint_raises_file_not_found_naming_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        load_model(tmp_path / "nothing.npz")


def test_loading_weights_of_another_architecture_names_the_differing_fields(tmp_path):
    save_model(GPT(TINY), tmp_path / "m.npz")
    wider = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match=r"another architecture.*'n_embd': \(8, 16\)"):
        load_weights(wider, tmp_path / "m.npz")


def test_safetensors_file_is_parameters_times_four_bytes_plus_its_header(tmp_path):
    arrays = {"a": np.ones((3, 5), np.float32), "b": np.zeros(7, np.float32)}
    save_safetensors(tmp_path / "x.safetensors", arrays)
    raw = (tmp_path / "x.safetensors").read_bytes()
    header_length = int.from_bytes(raw[:8], "little")
    assert len(raw) == 8 + header_length + (15 + 7) * 4
    loaded, _ = load_safetensors(tmp_path / "x.safetensors")
    np.testing.assert_array_equal(loaded["a"], arrays["a"])


def test_truncated_safetensors_file_is_refused(tmp_path):
    save_safetensors(tmp_path / "x.safetensors", {"a": np.ones(100, np.float32)})
    raw = (tmp_path / "x.safetensors").read_bytes()
    (tmp_path / "x.safetensors").write_bytes(raw[:-10])
    with pytest.raises(ValueError, match="truncated or corrupt"):
        load_safetensors(tmp_path / "x.safetensors")
