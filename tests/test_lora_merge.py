"""add_weighted_adapter: each property pins a known PEFT merge bug; the new adapter is a normal adapter;
bad input is refused before anything changes; parity with PEFT's add_weighted_adapter.

Every check is on ΔW = s·B·A (get_delta_weights), in float64, so "exact" means equal to rounding (1e-12).
"""
import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tinylora import lora
from tinylora.gpt import GPT, GPTConfig
from tinylora.lora import LoraConfig, add_adapter, add_weighted_adapter, get_delta_weights
from tinylora.lora.merge import (
    COMBINATION_TYPES,
    DENSITY_TYPES,
    FACTOR_TYPES,
    combine_tensors,
    prune_at_random,
)
from tinylora.nn import Linear, Module

EXACT = dict(rtol=1e-12, atol=1e-12)
FEW = settings(max_examples=20, deadline=None)


class TwoLayers(Module):
    """q_proj (7 -> 6) and v_proj (7 -> 8) in float64: ranks up to 6 fit both."""

    def __init__(self):
        super().__init__()
        rng = np.random.default_rng(0)
        self.q_proj = Linear(7, 6, rng=rng, dtype=np.float64)
        self.v_proj = Linear(7, 8, rng=rng, dtype=np.float64)

    def forward(self, x):
        return self.q_proj(x) + self.v_proj(x)[..., :6]


def model_with(*specs):
    """A TwoLayers with one random adapter (A and B both random) per spec: (name, r, lora_alpha, rslora)."""
    model = TwoLayers()
    for seed, (name, r, alpha, rslora) in enumerate(specs):
        add_adapter(model, name, LoraConfig(r=r, lora_alpha=alpha, use_rslora=rslora, seed=seed,
                                            init_lora_weights=False))
    return model


def delta(model, name):
    return get_delta_weights(model, name)


def merged_delta(model, adapters, weights, kind, **kwargs):
    add_weighted_adapter(model, adapters, weights, "merged", combination_type=kind, **kwargs)
    return delta(model, "merged")


def assert_deltas_equal(got: dict, want: dict):
    assert got.keys() == want.keys()
    for name in want:
        np.testing.assert_allclose(got[name], want[name], **EXACT, err_msg=name)


def weighted_sum(model, adapters, weights):
    deltas = [delta(model, a) for a in adapters]
    return {n: sum(w * d[n] for w, d in zip(weights, deltas)) for n in deltas[0]}


ranks = st.integers(1, 3)
alphas = st.sampled_from([1.0, 3.0, 8.0])          # with r in 1..3, s = α/r is 1 only for (1, 1) and (3, 3)
weights = st.floats(-3.0, 3.0).filter(lambda w: abs(w) > 0.05)


# ---- 1. one adapter ------------------------------------------------------------------------------
@FEW
@given(kind=st.sampled_from(COMBINATION_TYPES), r=ranks, alpha=alphas, w=weights)
@example(kind="linear", r=2, alpha=8.0, w=1.0)
def test_one_adapter_at_weight_w_gives_w_times_its_update_for_every_type(kind, r, alpha, w):
    """peft#1155: B was not weighted, so one adapter did not reproduce itself. Here, for every type,
    one adapter at weight w gives w·ΔW (at w = 1: itself), the DARE/TIES types at density 1."""
    model = model_with(("a", r, alpha, False))
    extra = {"density": 1.0} if kind in DENSITY_TYPES else {}
    got = merged_delta(model, ["a"], [w], kind, **extra)
    assert_deltas_equal(got, {n: w * d for n, d in delta(model, "a").items()})


# ---- 2. the exact types: cat and svd ----------------------------------------------------------------
@FEW
@given(r1=ranks, r2=ranks, a1=alphas, a2=alphas, w1=weights, w2=weights)
def test_cat_of_two_adapters_equals_the_sum_of_their_weighted_updates(r1, r2, a1, a2, w1, w2):
    """peft#3013: merging factors instead of updates gave cross terms (A₁ − A₂)(B₁ + B₂). cat stacks the
    factors, so B·A = w₁·ΔW₁ + w₂·ΔW₂ exactly, for any ranks."""
    model = model_with(("a", r1, a1, False), ("b", r2, a2, False))
    got = merged_delta(model, ["a", "b"], [w1, w2], "cat")
    assert_deltas_equal(got, weighted_sum(model, ["a", "b"], [w1, w2]))
    assert model.q_proj.adapters["merged"].config.r == r1 + r2


@FEW
@given(kind=st.sampled_from(["cat", "svd"]), r1=ranks, r2=ranks, w1=st.floats(0.1, 3), w2=st.floats(0.1, 3))
@example(kind="cat", r1=2, r2=2, w1=1.0, w2=1.0)
def test_negative_weights_create_no_cross_terms(kind, r1, r2, w1, w2):
    """peft#3013 again, for subtraction: a weight of −1 must give ΔW₁ − ΔW₂, not (B₁ + B₂)(A₁ − A₂).
    cat, and svd at full rank, are exact for weights of opposite signs."""
    model = model_with(("a", r1, 4.0, False), ("b", r2, 2.0, False))
    extra = {"svd_rank": r1 + r2} if kind == "svd" else {}
    got = merged_delta(model, ["a", "b"], [w1, -w2], kind, **extra)
    assert_deltas_equal(got, weighted_sum(model, ["a", "b"], [w1, -w2]))


def test_linear_merges_factors_so_its_update_has_the_cross_terms():
    """The documented algebra of "linear": with c = w·s, A = Σ sign(c)√|c| A_i, B = Σ √|c| B_i, so for
    w = (1, −1), s = (1, 1) the update is (B₁ + B₂)(A₁ − A₂), which differs from ΔW₁ − ΔW₂."""
    model = model_with(("a", 2, 2.0, False), ("b", 2, 2.0, False))
    got = merged_delta(model, ["a", "b"], [1.0, -1.0], "linear")
    layer = model.q_proj
    (A1, B1), (A2, B2) = ((layer.adapters[n].lora_A.data, layer.adapters[n].lora_B.data) for n in "ab")
    np.testing.assert_allclose(got["q_proj"], (B1 + B2) @ (A1 - A2), **EXACT)
    exact = B1 @ A1 - B2 @ A2
    assert np.abs(got["q_proj"] - exact).max() > 0.1 * np.abs(exact).max()


@FEW
@given(kind=st.sampled_from(["cat", "svd", "linear"]), r=st.integers(1, 3),
       alpha=st.sampled_from([0.5, 2.0, 16.0]), w=weights)
def test_each_adapters_scaling_is_applied_once(kind, r, alpha, w):
    """peft#3111: the scaling was applied twice (and a test hid it). With s = α/r ≠ 1, the merged
    update is w·s·B·A, not w·s²·B·A, and the new adapter's own scaling is 1."""
    model = model_with(("a", r, alpha, False))
    layer = model.q_proj
    s, A, B = layer.adapters["a"].scaling, layer.adapters["a"].lora_A.data, layer.adapters["a"].lora_B.data
    got = merged_delta(model, ["a"], [w], kind)
    np.testing.assert_allclose(got["q_proj"], w * s * (B @ A), **EXACT)
    assert layer.adapters["merged"].scaling == 1.0


@FEW
@given(kind=st.sampled_from(["cat", "svd", "linear"]), r=st.integers(2, 3), alpha=alphas, w=weights)
def test_rslora_scaling_survives_a_merge(kind, r, alpha, w):
    """peft#3449: a merge of rsLoRA adapters was overscaled by √r (the new adapter kept use_rslora with
    α = r, so its scaling was r/√r). Here the merged update is w·(α/√r)·B·A, and the new adapter has
    scaling 1 without rsLoRA."""
    model = model_with(("a", r, alpha, True))
    A, B = model.v_proj.adapters["a"].lora_A.data, model.v_proj.adapters["a"].lora_B.data
    got = merged_delta(model, ["a"], [w], kind)
    np.testing.assert_allclose(got["v_proj"], w * alpha / np.sqrt(r) * (B @ A), **EXACT)
    merged = model.v_proj.adapters["merged"]
    assert (merged.scaling, merged.config.use_rslora) == (1.0, False)


@FEW
@given(r1=ranks, r2=ranks, k=st.integers(1, 5), w1=weights, w2=weights)
def test_an_svd_merges_error_is_the_singular_values_it_drops(r1, r2, k, w1, w2):
    """Eckart–Young: the rank-k SVD merge is the best rank-k approximation of ΔW* = Σ w_i·ΔW_i, so
    ‖ΔW* − ΔW_svd‖_F = √(Σ_{j>k} σ_j²) and the spectral error is σ_{k+1}, σ the singular values of ΔW*."""
    model = model_with(("a", r1, 2.0, False), ("b", r2, 3.0, True))
    target = weighted_sum(model, ["a", "b"], [w1, w2])["v_proj"]
    got = merged_delta(model, ["a", "b"], [w1, w2], "svd", svd_rank=k)["v_proj"]
    sigma = np.linalg.svd(target, compute_uv=False)
    error = target - got
    tol = 1e-10 * sigma[0]
    assert abs(np.linalg.norm(error) - np.sqrt(np.sum(sigma[k:] ** 2))) <= tol
    assert abs(np.linalg.norm(error, 2) - (sigma[k] if k < len(sigma) else 0.0)) <= tol
    assert np.linalg.matrix_rank(got, tol=1e-9 * sigma[0]) <= k


# ---- 3. DARE: the expected update is unchanged ----------------------------------------------------------
@FEW
@given(density=st.floats(0.05, 1.0), seed=st.integers(0, 2**32 - 1),
       shape=st.tuples(st.integers(1, 6), st.integers(1, 6)))
def test_dare_keeps_each_entry_divided_by_the_density_or_drops_it_to_zero(density, seed, shape):
    """The rescale behind E[T̃] = T, for any density and seed: each entry of T̃ is T/p (kept, with
    probability p) or exactly 0, so its expectation is p · T/p = T. Without the rescale the kept
    entries would equal T and the first check would fail."""
    x = np.random.default_rng(seed).uniform(0.5, 2.0, size=shape) * np.random.default_rng(seed + 1).choice(
        [-1, 1], size=shape)                                                   # no zeros: dropped is visible
    out = prune_at_random(x, density, np.random.default_rng(seed))
    kept = out != 0
    np.testing.assert_allclose(out[kept], x[kept] / density, rtol=1e-12)
    assert np.all(out[~kept] == 0.0)
    assert np.array_equal(kept, np.random.default_rng(seed).random(shape) < density)   # P(keep) = density


def test_dare_rescales_so_the_expected_update_is_unchanged():
    """DARE keeps each entry with probability p and divides it by p, so E[ΔW] stays what the merge without
    dropping gives: "linear" for dare_linear (the masks on A and on B are independent, E[B̃Ã] = E[B̃]E[Ã])
    and ΔW* for dare_linear_svd at full rank (6 = min(out, in) of q_proj; a truncated SVD is not linear,
    so at a lower rank the expectation would not carry through). Over N = 400 seeds every entry's mean lies
    within 5 standard errors (its sample std / √N) of that: a chance miss is under 6e-7 per entry by the
    central limit theorem, under 1e-4 for the 2 × 42 entries (the seeds are fixed, so the test is
    deterministic). Without the 1/p rescale the mean would be p²·ΔW (factors) or p·ΔW (updates); the same
    criterion rejects those, so the test can fail."""
    model = TwoLayers()
    for seed, (name, alpha) in enumerate([("a", 4.0), ("b", 2.0)]):
        add_adapter(model, name, LoraConfig(r=2, lora_alpha=alpha, target_modules=["q_proj"], seed=seed,
                                            init_lora_weights=False))
    p, n_seeds = 0.5, 400
    cases = [("dare_linear", "linear", {}, 2), ("dare_linear_svd", "svd", {"svd_rank": 6}, 1)]
    for kind, reference, extra, power in cases:
        add_weighted_adapter(model, ["a", "b"], [1.0, -0.5], "expected", combination_type=reference, **extra)
        expected = delta(model, "expected")
        lora.delete_adapter(model, "expected")
        samples = []
        for seed in range(n_seeds):
            samples.append(merged_delta(model, ["a", "b"], [1.0, -0.5], kind, density=p, seed=seed, **extra))
            lora.delete_adapter(model, "merged")
        for name, want in expected.items():
            draws = np.stack([s[name] for s in samples])                          # (N, out, in)
            mean, se = draws.mean(axis=0), draws.std(axis=0, ddof=1) / np.sqrt(n_seeds)
            assert np.all(np.abs(mean - want) <= 5 * se + 1e-12), (kind, name)
            assert not np.all(np.abs(mean - p**power * want) <= 5 * se), (kind, name)  # no rescale: caught


def test_the_same_seed_gives_the_same_dare_adapter_and_another_seed_another():
    model = model_with(("a", 2, 4.0, False), ("b", 2, 2.0, False))
    runs = []
    for name, seed in [("one", 3), ("again", 3), ("other", 4)]:
        add_weighted_adapter(model, ["a", "b"], [1.0, 1.0], name, combination_type="dare_ties", density=0.5,
                             seed=seed)
        runs.append(delta(model, name)["q_proj"])
    np.testing.assert_array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], runs[2])


# ---- 4. the rules by hand -----------------------------------------------------------------------------
def test_ties_averages_the_entries_that_agree_with_the_elected_sign():
    """T₁ = [1, −2, 0.5], T₂ = [3, 1, −1] at density 1: Σ = [4, −1, −0.5] elects [+, −, −]; entry 0 averages
    1 and 3, entry 1 keeps only −2, entry 2 keeps only −1."""
    got = combine_tensors([np.array([1.0, -2.0, 0.5]), np.array([3.0, 1.0, -1.0])], [1.0, 1.0], "ties",
                          density=1.0)
    np.testing.assert_array_equal(got, [2.0, -2.0, -1.0])


def test_magnitude_prune_keeps_the_largest_entries_of_each_tensor():
    """density 0.5 keeps int(0.5·4) = 2 entries of each: [4, −3] of T₁ and [−5, 2] of T₂, then sums them."""
    got = combine_tensors([np.array([1.0, 4.0, -3.0, 0.5]), np.array([2.0, 0.1, 0.2, -5.0])], [1.0, 1.0],
                          "magnitude_prune", density=0.5)
    np.testing.assert_array_equal(got, [2.0, 4.0, -3.0, -5.0])


def test_ties_frequency_counts_signs_instead_of_adding_values():
    """T = [5], [−1], [−1]: the total 3 elects +, so only 5 is kept; two of three signs elect −."""
    tensors, ones = [np.array([5.0]), np.array([-1.0]), np.array([-1.0])], [1.0, 1.0, 1.0]
    assert combine_tensors(tensors, ones, "ties", density=1.0, majority_sign_method="total")[0] == 5.0
    assert combine_tensors(tensors, ones, "ties", density=1.0, majority_sign_method="frequency")[0] == -1.0


@pytest.mark.parametrize("kwargs, message", [
    ({"method": "average"}, r"combine_tensors: method must be one of \['linear', 'ties'"),
    ({"method": "ties", "density": 0.0}, r"combine_tensors: density must be a number in \(0, 1\], got 0"),
    ({"method": "linear", "weights": [1.0, 2.0]}, r"1 tensors need as many weights, got 2"),
])
def test_combine_tensors_names_a_bad_rule_density_or_weights(kwargs, message):
    with pytest.raises(ValueError, match=message):
        combine_tensors([np.ones(3)], **{"weights": [1.0], **kwargs})


# ---- 5. the new adapter is a normal adapter -------------------------------------------------------------
TINY = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=8)


def gpt_with_merged_adapter():
    model = GPT(TINY, seed=0).to(np.float64)
    for seed, name in enumerate(["a", "b"]):
        add_adapter(model, name, LoraConfig(r=2, lora_alpha=4, init_lora_weights=False, seed=seed))
    add_weighted_adapter(model, ["a", "b"], [0.7, 0.3], "mix", combination_type="svd", svd_rank=3)
    return model


IDS = np.random.default_rng(0).integers(0, 11, size=(2, 8))


def test_a_merged_adapter_is_not_made_active_and_only_the_active_one_trains():
    model = gpt_with_merged_adapter()
    assert lora.active_adapter(model) == "a"
    lora.set_adapter(model, "mix")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapters.mix." in n for n in trainable)


def test_a_merged_adapter_saves_and_loads_with_the_same_update(tmp_path):
    model = gpt_with_merged_adapter()
    lora.save_adapter(model, tmp_path, adapter_name="mix")
    fresh = GPT(TINY, seed=0).to(np.float64)
    lora.load_adapter(fresh, tmp_path, adapter_name="mix")
    assert_deltas_equal(delta(fresh, "mix"), delta(model, "mix"))
    np.testing.assert_allclose(fresh(IDS)[0].data, (lora.set_adapter(model, "mix"), model(IDS)[0].data)[1],
                               **EXACT)


@pytest.mark.parametrize("kind", ["cat", "linear"])
def test_merging_adapters_with_a_rank_pattern_keeps_each_layers_rank_through_a_save_and_load(kind, tmp_path):
    """Block 0's q_proj has r = 4 by a rank_pattern, the other layers r = 2: "cat" gives 8 there and 4
    elsewhere, "linear" 4 and 2, and the merged adapter's config says so, so its file loads back."""
    model = GPT(TINY, seed=0).to(np.float64)
    for seed, name in enumerate(["a", "b"]):
        add_adapter(model, name, LoraConfig(r=2, lora_alpha=4, rank_pattern={"blocks.0.attn.q_proj": 4},
                                            init_lora_weights=False, seed=seed))
    add_weighted_adapter(model, ["a", "b"], [0.7, 0.3], "mix", combination_type=kind)
    ranks = {n: layer.adapters["mix"].config.r for n, layer in lora.lora_layers(model)}
    double = 2 if kind == "cat" else 1
    assert ranks == {"blocks.0.attn.q_proj": 4 * double, "blocks.0.attn.v_proj": 2 * double,
                     "blocks.1.attn.q_proj": 2 * double, "blocks.1.attn.v_proj": 2 * double}
    lora.save_adapter(model, tmp_path, adapter_name="mix")
    fresh = GPT(TINY, seed=0).to(np.float64)
    lora.load_adapter(fresh, tmp_path, adapter_name="mix")
    assert_deltas_equal(delta(fresh, "mix"), delta(model, "mix"))


def test_a_merged_adapter_merges_into_w0_and_unmerges_back():
    model = gpt_with_merged_adapter()
    lora.set_adapter(model, "mix")
    unmerged = model(IDS)[0].data
    lora.merge_lora(model)
    np.testing.assert_allclose(model(IDS)[0].data, unmerged, rtol=1e-10, atol=1e-10)
    lora.unmerge_lora(model)
    np.testing.assert_allclose(model(IDS)[0].data, unmerged, **EXACT)


def test_switching_to_and_from_a_merged_adapter_gives_each_adapters_output():
    model = gpt_with_merged_adapter()
    outputs = {}
    for name in ["a", "mix", "b", "mix"]:
        lora.set_adapter(model, name)
        outputs.setdefault(name, []).append(model(IDS)[0].data)
    assert not np.allclose(outputs["mix"][0], outputs["a"][0])
    assert not np.allclose(outputs["mix"][0], outputs["b"][0])
    np.testing.assert_array_equal(outputs["mix"][0], outputs["mix"][1])


def test_a_merged_adapter_in_float32_stays_float32():
    model = GPT(TINY, seed=0)
    for seed, name in enumerate(["a", "b"]):
        add_adapter(model, name, LoraConfig(r=2, init_lora_weights=False, seed=seed))
    add_weighted_adapter(model, ["a", "b"], [1.0, 1.0], "mix", combination_type="ties", density=0.5)
    adapter = model.blocks[0].attn.q_proj.adapters["mix"]
    assert (adapter.lora_A.dtype, adapter.lora_B.dtype) == (np.float32, np.float32)


def test_a_merged_adapter_lives_on_the_models_device_and_gives_the_same_update(backend):
    """The merge runs on the host; the new factors go back to the device the adapters are on."""
    device = "cpu" if backend == "numpy" else "cuda"
    on_host = gpt_with_merged_adapter()
    model = GPT(TINY, seed=0).to(np.float64).to(device)
    for seed, name in enumerate(["a", "b"]):
        add_adapter(model, name, LoraConfig(r=2, lora_alpha=4, init_lora_weights=False, seed=seed))
    add_weighted_adapter(model, ["a", "b"], [0.7, 0.3], "mix", combination_type="svd", svd_rank=3)
    adapter = model.blocks[0].attn.q_proj.adapters["mix"]
    assert adapter.lora_A.device == adapter.lora_B.device == device
    assert_deltas_equal(delta(model, "mix"), delta(on_host, "mix"))


def test_cat_covers_the_union_of_the_targets_with_zero_where_an_adapter_is_absent():
    model = GPT(TINY, seed=0).to(np.float64)
    add_adapter(model, "q", LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False, seed=0))
    add_adapter(model, "v", LoraConfig(r=1, target_modules=["v_proj"], init_lora_weights=False, seed=1))
    got = merged_delta(model, ["q", "v"], [1.0, 2.0], "cat")
    want = {**delta(model, "q"), **{n: 2.0 * d for n, d in delta(model, "v").items()}}
    assert_deltas_equal(got, want)


# ---- 6. bad input, refused before anything changes ------------------------------------------------------
def snapshot(model):
    return lora.adapter_names(model), {n: p.numpy() for n, p in model.named_parameters()}


BAD = [
    (dict(adapters=["a", "nope"]), ValueError, r"no adapter named 'nope'; the model has \['a', 'b', 'c'\]"),
    (dict(weights=[1.0]), ValueError, r"weights must be a list with one number per adapter \(2\), got \[1"),
    (dict(weights=[1.0, float("nan")]), ValueError, r"weights\[1\] must be a finite number, got nan"),
    (dict(adapter_name="a"), ValueError, r"already has an adapter named 'a'"),
    (dict(adapter_name="not valid"), ValueError, r"adapter_name must be a Python identifier"),
    (dict(combination_type="average"), ValueError, r"combination_type must be one of \['cat', 'linear'"),
    (dict(combination_type="svd", svd_rank=0), ValueError, r"svd_rank must be a positive int, got 0"),
    (dict(combination_type="svd", svd_rank=7), ValueError, r"'svd' would give rank 7, larger than min\(out, "
                                                           r"in\) = 6 of layer 'q_proj'"),
    (dict(combination_type="cat", svd_rank=2), ValueError, r"svd_rank is used only by"),
    (dict(combination_type="ties"), ValueError, r"'ties' needs a density in \(0, 1\]"),
    (dict(combination_type="ties", density=0.0), ValueError, r"density must be a number in \(0, 1\], got 0"),
    (dict(combination_type="dare_linear", density=1.5), ValueError, r"density must be a number in \(0, 1\]"),
    (dict(combination_type="linear", density=0.5), ValueError, r"density is used only by"),
    (dict(combination_type="linear", adapters=["a", "c"]), ValueError,
     r"adds the factors slot by slot, so all ranks must be equal; got ranks \{'a': 2, 'c': 3\}"),
    (dict(combination_type="cat", adapters=["a", "b", "c"], weights=[1, 1, 1]), ValueError,
     r"'cat' would give rank 7, larger than min\(out, in\) = 6 of layer 'q_proj'. Use 'svd'"),
    (dict(majority_sign_method="mode"), ValueError, r"majority_sign_method must be one of \['total'"),
    (dict(adapters="a"), TypeError, r"adapters must be a non-empty list of adapter names"),
]


@pytest.mark.parametrize("change, error, message", BAD, ids=[m[:40] for *_, m in BAD])
def test_bad_arguments_are_refused_before_anything_changes(change, error, message):
    model = model_with(("a", 2, 4.0, False), ("b", 2, 2.0, False), ("c", 3, 2.0, False))
    before = snapshot(model)
    call = {"adapters": ["a", "b"], "weights": [1.0, 1.0], "adapter_name": "new", "combination_type": "cat",
            **change}
    with pytest.raises(error, match=message):
        add_weighted_adapter(model, **call)
    names, params = snapshot(model)
    assert names == before[0] and params.keys() == before[1].keys()
    for n, p in params.items():
        np.testing.assert_array_equal(p, before[1][n])


def test_factor_types_refuse_adapters_on_different_layers():
    model = TwoLayers()
    add_adapter(model, "q", LoraConfig(r=2, target_modules=["q_proj"], init_lora_weights=False))
    add_adapter(model, "v", LoraConfig(r=2, target_modules=["v_proj"], init_lora_weights=False))
    for kind in FACTOR_TYPES:
        extra = {"density": 0.5} if kind in DENSITY_TYPES else {}
        with pytest.raises(ValueError, match=r"needs every adapter on the same layers, but 'v' does not "
                                             r"adapt 'q_proj'"):
            add_weighted_adapter(model, ["q", "v"], [1.0, 1.0], "new", combination_type=kind, **extra)
    assert lora.adapter_names(model) == ["q", "v"]


def test_a_merged_model_and_a_dora_adapter_are_refused():
    model = model_with(("a", 2, 4.0, False), ("b", 2, 2.0, False))
    lora.merge_lora(model)
    with pytest.raises(ValueError, match=r"layer 'q_proj' is merged; call unmerge_lora\(model\) first"):
        add_weighted_adapter(model, ["a", "b"], [1.0, 1.0], "new", combination_type="cat")
    lora.unmerge_lora(model)
    add_adapter(model, "d", LoraConfig(r=2, use_dora=True))
    with pytest.raises(ValueError, match=r"adapter 'd' is DoRA, whose update is not s·B·A"):
        add_weighted_adapter(model, ["a", "d"], [1.0, 1.0], "new", combination_type="cat")
    assert lora.adapter_names(model) == ["a", "b", "d"]


# ---- 7. parity with PEFT -------------------------------------------------------------------------------
PEFT_CASES = [
    ("linear", {}), ("cat", {}), ("svd", {}), ("svd", {"svd_rank": 3}),
    ("ties", {"density": 0.5}), ("magnitude_prune", {"density": 0.6}), ("ties_svd", {"density": 0.5}),
    ("dare_linear", {"density": 0.5}), ("dare_ties", {"density": 0.7}), ("dare_linear_svd", {"density": 0.5}),
    ("ties", {"density": 0.5, "majority_sign_method": "frequency"}),
]


@pytest.fixture(scope="module")
def peft_pair():
    """transformers' tiny Llama with PEFT adapters x (r=4, α=8) and y (r=4, α=4), and a tinylora Llama of
    the same shapes holding the same factors (the base weights do not enter ΔW), both in float64."""
    torch = pytest.importorskip("torch")
    peft = pytest.importorskip("peft")
    transformers = pytest.importorskip("transformers")
    from tinylora.models import Llama, LlamaConfig

    sizes = dict(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                 num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    reference = transformers.LlamaForCausalLM(transformers.LlamaConfig(**sizes)).double()
    reference = peft.get_peft_model(reference, peft.LoraConfig(r=4, lora_alpha=8, init_lora_weights=False,
                                                               target_modules=["q_proj", "v_proj"]), "x")
    reference.add_adapter("y", peft.LoraConfig(r=4, lora_alpha=4, init_lora_weights=False,
                                               target_modules=["q_proj", "v_proj"]))
    ours = Llama(LlamaConfig(**sizes), seed=0).to(np.float64)
    for name, alpha in [("x", 8), ("y", 4)]:
        add_adapter(ours, name, LoraConfig(r=4, lora_alpha=alpha, target_modules=["q_proj", "v_proj"]))
    for layer_name, layer in lora.lora_layers(ours):
        theirs = reference.base_model.model.get_submodule(layer_name)
        for name in "xy":
            layer.adapters[name].lora_A.data = theirs.lora_A[name].weight.detach().numpy().copy()
            layer.adapters[name].lora_B.data = theirs.lora_B[name].weight.detach().numpy().copy()
    return torch, reference, ours


def numpy_bernoulli(torch, seed):
    """torch.bernoulli drawing from NumPy's generator in tinylora's order, so both libraries drop the same."""
    rng = np.random.default_rng(seed)
    return lambda p, *_, **__: torch.from_numpy((rng.random(tuple(p.shape)) < p.numpy()).astype(np.float64))


@pytest.mark.slow  # importing torch, transformers and peft
@pytest.mark.parametrize("kind, extra", PEFT_CASES, ids=[f"{k}-{'-'.join(map(str, e.values()))}"
                                                         for k, e in PEFT_CASES])
def test_each_combination_type_matches_peft_on_a_small_llama(peft_pair, kind, extra, monkeypatch):
    """ΔW of every adapted layer equals PEFT's get_delta_weight for the merged adapter, to float64 rounding;
    DARE's masks are shared through the seed. PEFT turns the merge weights into a float32 tensor
    (torch.tensor of Python floats), which rounds most weights by up to 6e-8 relative; the weights 2 and
    −0.25 (a sign flip, unequal sizes) with s = 2 and 1 give w·s = 4 and −0.25, whose square roots 2 and
    0.5 are exact in float32, so nothing is rounded and the two libraries agree to 1e-10."""
    torch, reference, ours = peft_pair
    name = f"{kind}_{len(extra)}_{extra.get('majority_sign_method', '')}"
    monkeypatch.setattr(torch, "bernoulli", numpy_bernoulli(torch, seed=5))
    reference.add_weighted_adapter(["x", "y"], [2.0, -0.25], name, combination_type=kind, **extra)
    add_weighted_adapter(ours, ["x", "y"], [2.0, -0.25], name, combination_type=kind, seed=5, **extra)
    worst = 0.0
    for layer_name, got in delta(ours, name).items():
        want = reference.base_model.model.get_submodule(layer_name).get_delta_weight(name).detach().numpy()
        worst = max(worst, float(np.abs(got - want).max() / np.abs(want).max()))
    print(f"{kind} {extra}: worst |ΔW - ΔW_peft| / max|ΔW_peft| = {worst:.1e}")
    assert worst < 1e-10
