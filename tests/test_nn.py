"""Modules: registration and dotted names, state dicts, device and dtype moves, layers, modes, bad arguments.

Tests that touch arrays take the ``backend`` fixture, so they also run on the strict fake CuPy,
where any host (NumPy) call on device data in forward code fails.
"""
from __future__ import annotations

import numpy as np
import pytest

from tinylora import Tensor, gradcheck
from tinylora.backend import asnumpy
from tinylora.nn import GELU, Dropout, Embedding, LayerNorm, Linear, Module, ModuleList, Parameter, Sequential


def on_backend(module, backend):
    """The module with its parameters on the backend's device ("cuda" is fake or real CuPy)."""
    return module if backend == "numpy" else module.to("cuda")


class Pair(Module):
    """Two Linear layers, 3 -> 4 -> 2, with fixed seeds."""

    def __init__(self, seed=0):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.first = Linear(3, 4, rng=rng)
        self.second = Linear(4, 2, rng=rng)

    def forward(self, x):
        return self.second(self.first(x))


class Net(Module):
    """A scale Parameter, then a list of two Pairs: parameters at several depths."""

    def __init__(self, seed=0):
        super().__init__()
        self.scale = Parameter(np.ones(2, dtype=np.float32))
        self.blocks = ModuleList([Pair(seed), Pair(seed + 1)])


NET_NAMES = ["scale",
             "blocks.0.first.weight", "blocks.0.first.bias", "blocks.0.second.weight", "blocks.0.second.bias",
             "blocks.1.first.weight", "blocks.1.first.bias", "blocks.1.second.weight", "blocks.1.second.bias"]


# ---- registration and names ---------------------------------------------------------------------
def test_named_parameters_are_dotted_paths_in_assignment_order():
    assert [name for name, _ in Net().named_parameters()] == NET_NAMES


def test_parameters_yields_the_same_objects_as_named_parameters():
    net = Net()
    assert list(net.parameters()) == [p for _, p in net.named_parameters()]


def test_named_modules_starts_with_the_root_as_empty_name():
    names = [name for name, _ in Net().named_modules()]
    assert names == ["", "blocks", "blocks.0", "blocks.0.first", "blocks.0.second",
                     "blocks.1", "blocks.1.first", "blocks.1.second"]


def test_children_are_the_direct_submodules_only():
    net = Net()
    assert [name for name, _ in net.named_children()] == ["blocks"]
    assert list(net.children()) == [net.blocks]


def test_assigning_a_plain_value_removes_the_registration():
    pair = Pair()
    pair.first = None
    assert [name for name, _ in pair.named_parameters()] == ["second.weight", "second.bias"]


def test_reassigning_a_parameter_keeps_its_position():
    layer = Linear(2, 2, rng=np.random.default_rng(0))
    layer.weight = Parameter(np.zeros((2, 2), dtype=np.float32))
    assert [name for name, _ in layer.named_parameters()] == ["weight", "bias"]


def test_deleting_an_attribute_removes_the_registration():
    layer = Linear(2, 2, rng=np.random.default_rng(0))
    del layer.bias
    assert [name for name, _ in layer.named_parameters()] == ["weight"]


def test_a_parameter_shared_by_two_modules_is_listed_once_under_its_first_name():
    model = Sequential(Linear(2, 2), Linear(2, 2))
    model[1].weight = model[0].weight  # tied, as GPT-2 ties its embedding and output weights
    assert [name for name, _ in model.named_parameters()] == ["0.weight", "0.bias", "1.bias"]


def test_assigning_a_parameter_before_super_init_is_an_error():
    class Forgetful(Module):
        def __init__(self):
            self.w = Parameter(np.zeros(1, dtype=np.float32))

    with pytest.raises(AttributeError, match="super"):
        Forgetful()


def test_get_submodule_follows_a_dotted_path():
    net = Net()
    assert net.get_submodule("blocks.1.second") is net.blocks[1].second
    assert net.get_submodule("") is net


def test_get_submodule_error_lists_the_valid_children():
    with pytest.raises(AttributeError, match=r"'blocks.0.thrid'.*\['first', 'second'\]"):
        Net().get_submodule("blocks.0.thrid")


def test_set_submodule_replaces_a_nested_layer_and_its_parameters():
    net = Net()
    replacement = Linear(3, 4, bias=False, rng=np.random.default_rng(9))
    net.set_submodule("blocks.0.first", replacement)
    assert net.blocks[0].first is replacement
    assert "blocks.0.first.bias" not in dict(net.named_parameters())
    assert dict(net.named_parameters())["blocks.0.first.weight"] is replacement.weight


def test_set_submodule_refuses_a_path_that_does_not_exist():
    with pytest.raises(AttributeError, match="no child 'third'"):
        Net().set_submodule("blocks.0.third", GELU())


def test_set_submodule_refuses_a_non_module():
    with pytest.raises(TypeError, match="must be set to a Module"):
        Net().set_submodule("blocks.0.first", np.zeros(3))


def test_calling_a_module_without_forward_says_so():
    with pytest.raises(NotImplementedError, match="Net does not define forward"):
        Net()(np.zeros(3))


# ---- state dicts ------------------------------------------------------------------------------
def test_state_dict_holds_host_numpy_copies(backend):
    net = on_backend(Net(), backend)
    state = net.state_dict()
    assert list(state) == NET_NAMES
    assert all(type(value) is np.ndarray for value in state.values())
    state["scale"][:] = 7.0  # editing the copy leaves the model alone
    assert asnumpy(net.scale.data).tolist() == [1.0, 1.0]


def test_state_dict_round_trip_is_exact(backend):
    source, target = on_backend(Net(seed=0), backend), on_backend(Net(seed=5), backend)
    target.load_state_dict(source.state_dict())
    for (name, a), (_, b) in zip(source.state_dict().items(), target.state_dict().items()):
        assert np.array_equal(a, b), name
    assert target.blocks[0].first.weight.device == ("cpu" if backend == "numpy" else "cuda")


def test_load_state_dict_keeps_each_parameters_dtype_and_does_not_alias():
    layer = Linear(2, 2, rng=np.random.default_rng(0))
    state = {"weight": np.full((2, 2), 0.5), "bias": np.array([1.0, 2.0])}  # float64 values
    layer.load_state_dict(state)
    assert layer.weight.dtype == np.float32 and layer.weight.data.tolist() == [[0.5, 0.5], [0.5, 0.5]]
    state["bias"][0] = 100.0
    assert layer.bias.data.tolist() == [1.0, 2.0]


def test_load_state_dict_lists_every_problem_in_one_error_and_changes_nothing():
    layer = Linear(3, 2, rng=np.random.default_rng(0))
    before = layer.state_dict()
    # transposed weight, no bias
    bad = {"weight": np.zeros((3, 2)), "extra": np.zeros(1), "also_extra": np.zeros(1)}
    with pytest.raises(ValueError) as info:
        layer.load_state_dict(bad)
    message = str(info.value)
    assert "missing keys" in message and "['bias']" in message
    assert "unexpected keys" in message and "['extra', 'also_extra']" in message
    assert "'weight': the model has (2, 3), the state dict has (3, 2)" in message
    assert all(np.array_equal(before[name], after) for name, after in layer.state_dict().items())


def test_load_state_dict_changes_nothing_when_only_a_later_key_is_wrong():
    pair = Pair()
    before = pair.state_dict()
    state = {name: np.zeros_like(value) for name, value in before.items()}
    state["second.bias"] = np.zeros(5)  # the last key has the wrong shape
    with pytest.raises(ValueError, match=r"'second.bias': the model has \(2,\), the state dict has \(5,\)"):
        pair.load_state_dict(state)
    assert np.array_equal(pair.first.weight.data, before["first.weight"])


def test_load_state_dict_not_strict_loads_what_matches_and_reports_the_rest():
    layer = Linear(2, 2, rng=np.random.default_rng(0))
    missing, unexpected = layer.load_state_dict({"bias": np.array([3.0, 4.0]), "lora_A": np.zeros(1)},
                                                strict=False)
    assert (missing, unexpected) == (["weight"], ["lora_A"])
    assert layer.bias.data.tolist() == [3.0, 4.0]


def test_load_state_dict_not_strict_still_refuses_a_shape_mismatch():
    with pytest.raises(ValueError, match="shape mismatch"):
        Linear(2, 2).load_state_dict({"bias": np.zeros(3)}, strict=False)


# ---- devices and dtypes -------------------------------------------------------------------------
def test_to_float64_casts_every_parameter_in_place():
    net = Net()
    params = list(net.parameters())
    assert net.to(dtype=np.float64) is net
    assert all(p.dtype == np.float64 for p in net.parameters())
    assert list(net.parameters()) == params  # the same Parameter objects (optimizers keep working)


def test_to_accepts_a_dtype_as_its_first_argument():
    assert Linear(2, 2).to(np.float64).weight.dtype == np.float64


def test_to_moves_parameters_and_gradients_to_the_device(backend):
    layer = Linear(2, 3, rng=np.random.default_rng(0))
    layer.weight.grad = np.ones((3, 2), dtype=np.float32)
    on_backend(layer, backend)
    expected = "cpu" if backend == "numpy" else "cuda"
    assert layer.weight.device == layer.bias.device == expected
    assert Tensor(layer.weight.grad).device == expected


def test_to_refuses_an_integer_dtype():
    with pytest.raises(TypeError, match="floating dtype"):
        Linear(2, 2).to(dtype=np.int32)


def test_to_refuses_an_unknown_device():
    with pytest.raises(ValueError, match="'cpu' or 'cuda'"):
        Linear(2, 2).to("tpu")


# ---- layers -------------------------------------------------------------------------------------
def test_linear_weight_is_out_by_in_and_starts_within_one_over_sqrt_in():
    layer = Linear(16, 3, rng=np.random.default_rng(0))
    assert layer.weight.shape == (3, 16) and layer.bias.shape == (3,)
    assert layer.weight.dtype == np.float32
    assert np.abs(layer.weight.data).max() <= 1 / 4  # 1 / sqrt(16)


def test_linear_with_the_same_rng_seed_is_reproducible():
    a, b = Linear(4, 3, rng=np.random.default_rng(7)), Linear(4, 3, rng=np.random.default_rng(7))
    assert np.array_equal(a.weight.data, b.weight.data)


def test_linear_without_bias_has_only_a_weight():
    layer = Linear(3, 2, bias=False)
    assert layer.bias is None and [name for name, _ in layer.named_parameters()] == ["weight"]


def test_linear_computes_x_times_weight_transposed_plus_bias(backend, make):
    layer = on_backend(Linear(2, 3), backend)
    layer.load_state_dict({"weight": np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]),
                           "bias": np.array([0.0, 0.0, 10.0])})
    out = layer(make([[2.0, 3.0]], dtype=np.float32))
    assert asnumpy(out.data).tolist() == [[2.0, 3.0, 15.0]]


def test_embedding_returns_the_rows_of_its_ids(backend, make):
    table = on_backend(Embedding(4, 2, rng=np.random.default_rng(0)), backend)
    table.load_state_dict({"weight": np.arange(8.0).reshape(4, 2)})
    ids = make([[3, 0]], dtype=np.int64)
    assert asnumpy(table(ids).data).tolist() == [[[6.0, 7.0], [0.0, 1.0]]]


def test_layer_norm_starts_as_a_plain_normalisation(backend, make):
    norm = on_backend(LayerNorm(2, eps=0.0), backend)
    assert asnumpy(norm(make([[1.0, 3.0]], dtype=np.float32)).data).tolist() == [[-1.0, 1.0]]


def test_layer_norm_without_bias_has_only_a_weight():
    assert [name for name, _ in LayerNorm(4, bias=False).named_parameters()] == ["weight"]


def test_linear_gradients_pass_gradcheck_in_float64(backend, make, rng):
    layer = on_backend(Linear(3, 2, rng=rng).to(dtype=np.float64), backend)
    x = make(rng.normal(size=(4, 3)), requires_grad=True)
    assert gradcheck(lambda x, w, b: layer(x), x, layer.weight, layer.bias)


def test_layer_norm_gradients_pass_gradcheck_in_float64(backend, make, rng):
    norm = on_backend(LayerNorm(3).to(dtype=np.float64), backend)
    norm.load_state_dict({"weight": np.array([0.5, 1.0, 2.0]), "bias": np.array([0.1, 0.0, -0.3])})
    x = make(rng.normal(size=(2, 3)), requires_grad=True)
    assert gradcheck(lambda x, w, b: norm(x), x, norm.weight, norm.bias)


def test_embedding_gradients_pass_gradcheck_in_float64_with_a_repeated_id(backend, make, rng):
    table = on_backend(Embedding(5, 3, rng=rng).to(dtype=np.float64), backend)
    ids = make([[1, 4, 1]], dtype=np.int64)
    assert gradcheck(lambda w: table(ids), table.weight)


def test_sequential_applies_its_modules_in_order(backend, make):
    double, shift = Linear(1, 1, bias=False), Linear(1, 1)
    model = on_backend(Sequential(double, shift), backend)
    double.load_state_dict({"weight": np.array([[2.0]])})
    shift.load_state_dict({"weight": np.array([[1.0]]), "bias": np.array([5.0])})
    assert asnumpy(model(make([[3.0]], dtype=np.float32)).data).tolist() == [[11.0]]  # 3 * 2 + 5


def test_module_list_indexes_iterates_and_appends():
    blocks = ModuleList([GELU(), GELU()])
    extra = GELU()
    blocks.append(extra)
    assert len(blocks) == 3 and blocks[-1] is extra and list(blocks)[2] is extra
    assert [name for name, _ in blocks.named_children()] == ["0", "1", "2"]
    assert len(blocks[1:]) == 2


def test_module_list_index_out_of_range_is_an_index_error():
    with pytest.raises(IndexError, match="index 2 is out of range for a ModuleList of length 2"):
        ModuleList([GELU(), GELU()])[2]


def test_module_list_refuses_a_non_module():
    with pytest.raises(TypeError, match="takes a Module, got int"):
        ModuleList([GELU(), 3])


# ---- modes --------------------------------------------------------------------------------------
def test_train_and_eval_reach_every_submodule():
    net = Net()
    assert net.eval() is net
    assert not any(module.training for module in net.modules())
    net.train()
    assert all(module.training for module in net.modules())


def test_dropout_is_the_identity_in_eval(backend, make):
    drop = Dropout(0.5, seed=0).eval()
    x = make(np.arange(6.0).reshape(2, 3), dtype=np.float32)
    assert drop(x) is x


def test_dropout_in_training_zeroes_or_doubles_each_value_at_p_one_half(backend, make):
    x = make(np.ones(1000), dtype=np.float32)
    out = asnumpy(Dropout(0.5, seed=0)(x).data)
    assert set(np.unique(out).tolist()) == {0.0, 2.0}
    assert 400 < (out == 0).sum() < 600


def test_dropout_with_the_same_seed_draws_the_same_masks(backend, make):
    x = make(np.ones(50), dtype=np.float32)
    first, second = Dropout(0.3, seed=4), Dropout(0.3, seed=4)
    for _ in range(2):
        assert np.array_equal(asnumpy(first(x).data), asnumpy(second(x).data))


def test_zero_grad_sets_every_gradient_to_none():
    layer = Linear(2, 2)
    layer.weight.grad, layer.bias.grad = np.ones((2, 2), np.float32), np.ones(2, np.float32)
    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None


def test_num_parameters_counts_all_or_only_trainable_scalars():
    layer = Linear(3, 2)  # weight 2 * 3 = 6, bias 2
    assert layer.num_parameters() == 8
    layer.weight.requires_grad = False
    assert layer.num_parameters(trainable_only=True) == 2


def test_requires_grad_false_freezes_every_parameter():
    net = Net().requires_grad_(False)
    assert net.num_parameters(trainable_only=True) == 0


def test_repr_is_a_tree_of_modules():
    text = repr(Sequential(Linear(3, 2), GELU(), Dropout(0.1)))
    assert text == ("Sequential(\n"
                    "  (0): Linear(in_features=3, out_features=2, bias=True)\n"
                    "  (1): GELU()\n"
                    "  (2): Dropout(p=0.1)\n"
                    ")")


# ---- bad constructor arguments ----------------------------------------------------------------
@pytest.mark.parametrize("build, error, words", [
    (lambda: Linear(0, 2), ValueError, "in_features must be a positive int, got 0"),
    (lambda: Linear(3, -1), ValueError, "out_features must be a positive int, got -1"),
    (lambda: Linear(2.0, 3), TypeError, "in_features must be an int, got 2.0"),
    (lambda: Linear(True, 3), TypeError, "in_features must be an int, got True"),
    (lambda: Linear(2, 3, rng=42), TypeError, "rng must be a numpy Generator"),
    (lambda: Linear(2, 3, dtype=np.int64), TypeError, "floating dtype"),
    (lambda: Embedding(10, 0), ValueError, "embedding_dim must be a positive int, got 0"),
    (lambda: Embedding("10", 4), TypeError, "num_embeddings must be an int, got '10'"),
    (lambda: LayerNorm(0), ValueError, "normalized_shape must be a positive int, got 0"),
    (lambda: LayerNorm(4, eps=-1e-5), ValueError, "eps must be a number >= 0, got -1e-05"),
    (lambda: Dropout(1.0), ValueError, r"p must be a number in \[0, 1\), got 1.0"),
    (lambda: Dropout(-0.1), ValueError, r"p must be a number in \[0, 1\), got -0.1"),
    (lambda: Dropout(0.1, seed=1.5), TypeError, "seed must be None or an int, got 1.5"),
])
def test_bad_constructor_arguments_name_the_argument_and_value(build, error, words):
    with pytest.raises(error, match=words):
        build()


def test_no_init_builds_zero_weights_and_restores_random_init_afterwards():
    from tinylora.nn import init_enabled, no_init

    with no_init():
        inside = Linear(4, 3, rng=np.random.default_rng(0))
        assert not init_enabled()
    after = Linear(4, 3, rng=np.random.default_rng(0))
    assert float(np.abs(inside.weight.data).sum()) == 0.0 and init_enabled()
    assert float(np.abs(after.weight.data).sum()) > 0.0
