"""The analysis formulas on matrices small enough to check by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest

from tinylora.experiments.analysis import (
    amplification_factor,
    cumulative_energy,
    effective_rank,
    energy_rank,
    knee_rank,
    random_baseline_spectrum,
    random_subspace_similarity,
    recovered_fraction,
    singular_spectrum,
    subspace_similarity,
    subspace_similarity_grid,
)


def _orthonormal(n, k, seed):
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, k)))
    return q                                                         # (n, k)


def _rank3_matrix():
    """(8, 6) matrix = U diag(3, 2, 1) Vᵀ, so its singular values are exactly 3, 2, 1, 0, 0, 0."""
    return _orthonormal(8, 3, seed=0) @ np.diag([3.0, 2.0, 1.0]) @ _orthonormal(6, 3, seed=1).T


# --------------------------------------------------------------------------- spectra

def test_a_rank_3_matrix_has_exactly_3_nonzero_singular_values():
    s = singular_spectrum(_rank3_matrix())
    assert s.shape == (6,)
    np.testing.assert_allclose(s[:3], [3.0, 2.0, 1.0], atol=1e-12)
    assert np.sum(s > 1e-10) == 3


def test_a_rank_3_matrix_needs_all_3_directions_for_99_percent_of_its_energy():
    assert energy_rank(singular_spectrum(_rank3_matrix()), fraction=0.99) == 3


def test_energy_rank_counts_directions_until_the_fraction_is_reached():
    # energies 9, 4, 1 of 14: the top two hold 13/14 = 0.93 ≥ 0.9, the top one 9/14 = 0.64
    assert energy_rank([3.0, 2.0, 1.0], fraction=0.9) == 2
    assert energy_rank([3.0, 2.0, 1.0], fraction=0.6) == 1
    assert energy_rank([3.0, 2.0, 1.0], fraction=1.0) == 3


def test_cumulative_energy_rises_to_one():
    np.testing.assert_allclose(cumulative_energy([3.0, 2.0, 1.0]), [9 / 14, 13 / 14, 1.0])


@pytest.mark.parametrize("k", [1, 2, 5, 16])
def test_effective_rank_of_k_equal_singular_values_is_k(k):
    assert effective_rank([0.7] * k + [0.0] * 3) == pytest.approx(k)


def test_effective_rank_of_a_lopsided_spectrum_is_between_one_and_its_length():
    assert 1.0 < effective_rank([10.0, 1.0, 1.0]) < 2.0


def test_random_baseline_spectrum_has_the_requested_norm_and_size():
    s = random_baseline_spectrum((40, 24), frobenius_norm=3.0, seed=0)
    assert s.shape == (24,)
    assert np.sqrt(np.sum(s ** 2)) == pytest.approx(3.0)
    assert np.all(np.diff(s) <= 0)


def test_random_baseline_spectrum_is_spread_over_many_directions():
    # a 64x64 Gaussian matrix has no low-rank structure: 90 % of its energy needs many directions
    assert energy_rank(random_baseline_spectrum((64, 64), 1.0, seed=0), 0.9) > 30


def test_random_baseline_spectrum_repeats_with_the_same_seed():
    a = random_baseline_spectrum((8, 5), 2.0, seed=7)
    np.testing.assert_array_equal(a, random_baseline_spectrum((8, 5), 2.0, seed=7))


# --------------------------------------------------------------------------- subspaces

def test_subspace_similarity_of_a_matrix_with_itself_is_one_on_the_diagonal():
    A = np.random.default_rng(0).standard_normal((6, 20))           # (r, in)
    grid = subspace_similarity_grid(A, A)
    np.testing.assert_allclose(np.diag(grid), np.ones(6), atol=1e-12)


def test_subspace_similarity_of_orthogonal_subspaces_is_zero():
    A1, A2 = np.eye(10)[:3], np.eye(10)[3:7]                         # span e1..e3 and e4..e7
    assert subspace_similarity(A1, A2, 3, 4) == pytest.approx(0.0, abs=1e-12)


def test_subspace_similarity_is_one_when_one_subspace_contains_the_other():
    small, large = np.eye(10)[:2], np.eye(10)[:5]
    assert subspace_similarity(small, large, 2, 5) == pytest.approx(1.0)


def test_subspace_similarity_counts_the_shared_directions():
    # {e1, e2} and {e2, e3} share one of two directions
    assert subspace_similarity(np.eye(4)[:2], np.eye(4)[1:3], 2, 2) == pytest.approx(0.5)


def test_subspace_similarity_grid_matches_the_single_entry_function():
    rng = np.random.default_rng(1)
    A1, A2 = rng.standard_normal((4, 12)), rng.standard_normal((6, 12))
    grid = subspace_similarity_grid(A1, A2)
    assert grid.shape == (4, 6)
    for i in range(1, 5):
        for j in range(1, 7):
            assert grid[i - 1, j - 1] == pytest.approx(subspace_similarity(A1, A2, i, j))


def test_random_subspace_formula_matches_a_monte_carlo_average():
    # d = 32, i = 4, j = 8: the formula says max(4, 8) / 32 = 0.25
    rng = np.random.default_rng(0)
    trials = [subspace_similarity(rng.standard_normal((4, 32)), rng.standard_normal((8, 32)), 4, 8)
              for _ in range(400)]
    assert random_subspace_similarity(32, 4, 8) == 0.25
    assert np.mean(trials) == pytest.approx(0.25, abs=0.015)


# --------------------------------------------------------------------------- amplification

def test_amplification_is_small_along_w_top_direction_and_large_along_a_weak_one():
    W = np.diag([10.0, 5.0, 2.0, 1.0, 0.1, 0.01])
    along_top = np.zeros((6, 6))
    along_top[0, 0] = 0.5                                            # W is 10 there: 0.5 / 10
    along_weak = np.zeros((6, 6))
    along_weak[5, 5] = 0.5                                           # W is 0.01 there: 0.5 / 0.01
    assert amplification_factor(along_top, W, r=1).factor == pytest.approx(0.05)
    assert amplification_factor(along_weak, W, r=1).factor == pytest.approx(50.0)


def test_amplification_unpacks_into_the_norms_it_divides():
    W = np.diag([4.0, 3.0])
    delta = np.diag([0.0, 2.0])
    factor, random_factor, delta_norm, projected_norm = amplification_factor(delta, W, r=1)
    assert (delta_norm, projected_norm, factor) == pytest.approx((2.0, 3.0, 2.0 / 3.0))
    assert set(amplification_factor(delta, W, r=1)._asdict()) == {
        "factor", "random_factor", "delta_norm", "projected_norm"}


def test_amplification_random_baseline_sits_between_the_extremes():
    W = np.diag([10.0, 5.0, 2.0, 1.0, 0.1, 0.01])
    delta = np.zeros((6, 6))
    delta[5, 5] = 0.5
    random_factor = amplification_factor(delta, W, r=1, seed=3).random_factor
    assert 0.05 < random_factor < 50.0


def test_amplification_is_infinite_when_w_has_nothing_in_delta_s_subspace():
    W = np.diag([1.0, 0.0])
    assert amplification_factor(np.diag([0.0, 1.0]), W, r=1).factor == math.inf


# --------------------------------------------------------------------------- reading a sweep

def test_knee_rank_is_the_first_rank_within_twice_the_floor():
    ranks = [1, 2, 4, 8, 16]
    errors = [0.80, 0.40, 0.05, 0.04, 0.04]                         # plateau from r=4
    assert knee_rank(ranks, errors, floor=0.03) == 4                # 0.05 ≤ 2 × 0.03
    assert knee_rank(ranks, errors, floor=0.03, factor=1.5) == 8    # 0.04 ≤ 0.045


def test_knee_rank_defaults_the_floor_to_the_smallest_error():
    assert knee_rank([16, 1, 4], [0.1, 0.9, 0.15]) == 4             # sorted by rank, 0.15 ≤ 0.2


def test_knee_rank_is_none_when_no_rank_reaches_the_floor():
    assert knee_rank([1, 2, 4], [0.9, 0.8, 0.7], floor=0.1) is None


def test_recovered_fraction_of_a_lora_halfway_between_base_and_full_is_one_half():
    assert recovered_fraction(base_loss=3.0, lora_loss=2.5, full_loss=2.0) == pytest.approx(0.5)
    assert recovered_fraction(3.0, 2.0, 2.0) == pytest.approx(1.0)
    assert recovered_fraction(3.0, 3.0, 2.0) == pytest.approx(0.0)


# --------------------------------------------------------------------------- bad inputs

@pytest.mark.parametrize("call, error, match", [
    (lambda: singular_spectrum(np.ones(3)), ValueError, "2-D"),
    (lambda: singular_spectrum(np.ones((0, 3))), ValueError, "empty"),
    (lambda: singular_spectrum([[1.0, np.nan]]), ValueError, "NaN"),
    (lambda: singular_spectrum("abc"), TypeError, "2-D array"),
    (lambda: cumulative_energy([]), ValueError, "empty"),
    (lambda: cumulative_energy([[1.0]]), ValueError, "1-D"),
    (lambda: cumulative_energy([1.0, -0.5]), ValueError, "non-negative"),
    (lambda: cumulative_energy([0.0, 0.0]), ValueError, "zero"),
    (lambda: effective_rank([0.0]), ValueError, "zero"),
    (lambda: energy_rank([1.0], fraction=0.0), ValueError, "fraction"),
    (lambda: energy_rank([1.0], fraction=1.5), ValueError, "fraction"),
    (lambda: random_baseline_spectrum((4, 4), -1.0), ValueError, "frobenius_norm"),
    (lambda: random_baseline_spectrum((4,), 1.0), ValueError, "shape"),
    (lambda: random_baseline_spectrum((4, 0), 1.0), ValueError, "shape"),
    (lambda: subspace_similarity(np.ones((2, 5)), np.ones((2, 6)), 1, 1), ValueError, "input size"),
    (lambda: subspace_similarity(np.eye(5)[:2], np.eye(5)[:3], 3, 1), ValueError, "i must be"),
    (lambda: subspace_similarity(np.eye(5)[:2], np.eye(5)[:3], 1, 0), ValueError, "j must be"),
    (lambda: subspace_similarity(np.eye(5)[:2], np.eye(5)[:3], 1.0, 1), TypeError, "i must be an int"),
    (lambda: subspace_similarity_grid(np.ones(5), np.ones((2, 5))), ValueError, "2-D"),
    (lambda: random_subspace_similarity(8, 9, 1), ValueError, "i must be"),
    (lambda: amplification_factor(np.ones((3, 4)), np.ones((4, 3)), 1), ValueError, "same shape"),
    (lambda: amplification_factor(np.ones((3, 4)), np.ones((3, 4)), 4), ValueError, "r must be"),
    (lambda: knee_rank([], []), ValueError, "non-empty"),
    (lambda: knee_rank([1, 2], [0.5]), ValueError, "same length"),
    (lambda: knee_rank([2, 2], [0.5, 0.4]), ValueError, "distinct"),
    (lambda: knee_rank([1, 2], [0.5, 0.4], floor=-1.0), ValueError, "floor"),
    (lambda: knee_rank([1, 2], [0.5, 0.4], factor=0), ValueError, "factor"),
    (lambda: recovered_fraction(2.0, 1.5, 2.0), ValueError, "undefined"),
    (lambda: recovered_fraction(2.0, None, 1.0), TypeError, "lora_loss"),
    (lambda: recovered_fraction(2.0, math.nan, 1.0), ValueError, "finite"),
])
def test_bad_input_raises_a_clear_error(call, error, match):
    with pytest.raises(error, match=match):
        call()
