"""What a fine-tuned weight update looks like: spectra, subspaces and amplification.

Pure NumPy on host arrays (call ``asnumpy`` first on anything that lives on a GPU). Every
function takes plain arrays or lists and returns floats or NumPy arrays, so the sweep runner can
store its results in JSON and the plots can recompute them from that JSON alone.

Shapes follow the LoRA paper (Hu et al., 2021, arXiv:2106.09685): W and ΔW are (out, in), an
adapter's A is (r, in), its B is (out, r).

- Spectrum of ΔW = W_ft − W0: ``singular_spectrum``, ``cumulative_energy``, ``effective_rank``,
  ``energy_rank``, and ``random_baseline_spectrum`` (a matrix with no low-rank structure).
- Do two adapters learn the same directions? ``subspace_similarity`` (LoRA paper, Section 7.2).
- Does ΔW amplify directions W already has? ``amplification_factor`` and, with all three columns of
  the paper's Table 7, ``amplification_table`` (LoRA paper, Section 7.3); how ΔW's top directions
  overlap W's, ``delta_weight_similarity`` (Fig. 8).
- Reading a sweep: ``knee_rank`` and ``recovered_fraction``.

>>> import numpy as np
>>> delta = np.outer([1.0, 2.0], [3.0, 0.0, 4.0])          # (2, 3), rank 1
>>> singular_spectrum(delta).round(6).tolist()
[11.18034, 0.0]
>>> energy_rank(singular_spectrum(delta))
1
"""
from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from .._validate import check_int, check_real

__all__ = [
    "singular_spectrum", "cumulative_energy", "effective_rank", "energy_rank",
    "random_baseline_spectrum", "subspace_similarity", "subspace_similarity_grid",
    "random_subspace_similarity", "Amplification", "amplification_factor", "AmplificationTable",
    "amplification_table", "delta_weight_similarity", "knee_rank", "recovered_fraction",
]


# --------------------------------------------------------------------------- input checks

def _as_float_array(x, name: str, ndim: int, what: str, axes: str) -> np.ndarray:
    """``x`` as a finite, non-empty float64 array with ``ndim`` dimensions, or a clear error."""
    if isinstance(x, (str, bytes)) or x is None:
        raise TypeError(f"{name} must be {what}, got {type(x).__name__}")
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be {what}, got {type(x).__name__}") from None
    if a.ndim != ndim:
        raise ValueError(f"{name} must be {ndim}-D {axes}, got shape {a.shape}")
    if a.size == 0:
        raise ValueError(f"{name} must be non-empty, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains NaN or inf")
    return a


def _as_matrix(x, name: str) -> np.ndarray:
    return _as_float_array(x, name, 2, "a 2-D array of numbers", "(rows, cols)")


def _as_spectrum(s, name: str = "s") -> np.ndarray:
    v = _as_float_array(s, name, 1, "a 1-D list of singular values", "(singular values)")
    if np.any(v < 0):
        raise ValueError(f"{name} must be non-negative (singular values), got min {v.min()}")
    return v


def _as_vector(x, name: str) -> np.ndarray:
    return _as_float_array(x, name, 1, "a list of numbers", "(a list)")


def _nonzero_total(v: np.ndarray, what: str) -> float:
    total = float(v.sum())
    if total == 0.0:
        raise ValueError(f"{what} is undefined when every singular value is zero (ΔW = 0)")
    return total


def _right_singular_vectors(A: np.ndarray) -> np.ndarray:
    """Rows are the right-singular vectors of A, strongest first: (min(r, in), in)."""
    return np.linalg.svd(A, full_matrices=False)[2]


def _random_orthonormal(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    """(n, k) with orthonormal columns spanning a uniformly random k-dimensional subspace."""
    q, r = np.linalg.qr(rng.standard_normal((n, k)))
    return q * np.sign(np.diag(r))  # sign fix makes the distribution exactly uniform


# --------------------------------------------------------------------------- spectra

def singular_spectrum(delta) -> np.ndarray:
    """Singular values of ``delta`` (out, in), largest first: (min(out, in),) float64.

    ΔW = Σ_k s_k u_k v_kᵀ; a weight update of rank k has exactly k non-zero s_k.

    >>> singular_spectrum(np.diag([1.0, 3.0, 2.0])).tolist()
    [3.0, 2.0, 1.0]
    """
    return np.linalg.svd(_as_matrix(delta, "delta"), compute_uv=False)


def cumulative_energy(s) -> np.ndarray:
    """Fraction of ‖ΔW‖_F² held by the top k directions: E_k = Σ_{i≤k} s_i² / Σ_i s_i².

    ``s``: (n,) non-negative, descending. Returns (n,), rising to 1.

    >>> cumulative_energy([3.0, 2.0, 1.0]).round(3).tolist()     # 9/14, 13/14, 14/14
    [0.643, 0.929, 1.0]
    """
    v = _as_spectrum(s)
    energy = v ** 2
    return np.cumsum(energy) / _nonzero_total(energy, "cumulative energy")


def effective_rank(s) -> float:
    """exp(H(p)) with p_i = s_i / Σ_j s_j and H(p) = −Σ p_i log p_i (0·log 0 = 0).

    Roy & Vetterli, "The effective rank: a measure of effective dimensionality", EUSIPCO 2007.
    k equal non-zero singular values give exactly k; a spread-out spectrum gives a value between
    the number of dominant directions and the number of non-zero ones.

    >>> round(effective_rank([2.0, 2.0, 2.0, 0.0]), 6)
    3.0
    """
    v = _as_spectrum(s)
    p = v / _nonzero_total(v, "effective rank")
    p = p[p > 0]
    return float(np.exp(-np.sum(p * np.log(p))))


def energy_rank(s, fraction: float = 0.9) -> int:
    """The smallest k with cumulative energy E_k ≥ ``fraction`` (0 < fraction ≤ 1).

    "How many directions hold 90 % of ‖ΔW‖_F²?"

    >>> energy_rank([3.0, 2.0, 1.0], fraction=0.9)               # 13/14 = 0.93 ≥ 0.9
    2
    """
    fraction = check_real("fraction", fraction, low=0.0, high=1.0, low_inclusive=False)
    energy = cumulative_energy(s)
    # a tiny tolerance so fraction=1.0 is reached despite rounding in the cumulative sum
    return int(np.argmax(energy >= fraction - 1e-12)) + 1


def random_baseline_spectrum(shape, frobenius_norm: float, seed: int = 0) -> np.ndarray:
    """Singular values of a Gaussian matrix of ``shape`` rescaled to ‖G‖_F = ``frobenius_norm``.

    The "no low-rank structure" baseline: same size and same total energy as ΔW, but the
    energy is spread over all min(out, in) directions (Marchenko–Pastur shape).

    >>> s = random_baseline_spectrum((64, 32), frobenius_norm=5.0, seed=0)
    >>> s.shape, round(float(np.sqrt(np.sum(s ** 2))), 6)
    ((32,), 5.0)
    """
    if not isinstance(shape, (tuple, list)) or len(shape) != 2:
        raise ValueError(f"shape must be a pair (out, in), got {shape!r}")
    rows = check_int("shape[0]", shape[0], low=1, high=1 << 20)
    cols = check_int("shape[1]", shape[1], low=1, high=1 << 20)
    frobenius_norm = check_real("frobenius_norm", frobenius_norm, low=0.0)
    g = np.random.default_rng(seed).standard_normal((rows, cols))
    g *= frobenius_norm / np.linalg.norm(g)
    return np.linalg.svd(g, compute_uv=False)


# --------------------------------------------------------------------------- subspaces

def _check_pair(A1, A2) -> tuple[np.ndarray, np.ndarray]:
    a1, a2 = _as_matrix(A1, "A1"), _as_matrix(A2, "A2")
    if a1.shape[1] != a2.shape[1]:
        raise ValueError(f"A1 and A2 must have the same input size (columns): got {a1.shape} and {a2.shape}")
    return a1, a2


def subspace_similarity(A1, A2, i: int, j: int) -> float:
    """φ(A1, A2, i, j) = ‖U_iᵀ V_j‖_F² / min(i, j), a number in [0, 1].

    LoRA paper (Hu et al., 2021), Section 7.2 and Fig. 3. A1 (r1, in) and A2 (r2, in) are the
    A matrices of two adapters for the same layer; U_i (in, i) holds the top-i right-singular
    vectors of A1 and V_j (in, j) the top-j of A2. φ = 1 when one subspace contains the other,
    0 when they are orthogonal; random subspaces give max(i, j)/in
    (``random_subspace_similarity``). Singular vectors of zero singular values are arbitrary,
    so i and j are only meaningful up to the rank of each A.

    >>> A = np.eye(4)[:2]                      # spans e1, e2 of R^4
    >>> subspace_similarity(A, np.eye(4)[1:3], 2, 2)        # shares e2 only: 1/2
    0.5
    """
    a1, a2 = _check_pair(A1, A2)
    v1, v2 = _right_singular_vectors(a1), _right_singular_vectors(a2)
    i = check_int("i", i, low=1, high=v1.shape[0])
    j = check_int("j", j, low=1, high=v2.shape[0])
    overlap = v1[:i] @ v2[:j].T                                     # (i, j) = U_iᵀ V_j
    return float(np.sum(overlap ** 2) / min(i, j))


def subspace_similarity_grid(A1, A2) -> np.ndarray:
    """φ(A1, A2, i, j) for every i ≤ r1 and j ≤ r2: (r1, r2), entry [i−1, j−1].

    Same formula as ``subspace_similarity`` computed from one SVD of each matrix, using
    ‖U_iᵀV_j‖_F² = Σ_{a≤i, b≤j} (u_a·v_b)². (If r > in, the grid is capped at in.)

    >>> subspace_similarity_grid(np.eye(3)[:2], np.eye(3)[:1]).tolist()
    [[1.0], [1.0]]
    """
    a1, a2 = _check_pair(A1, A2)
    v1, v2 = _right_singular_vectors(a1), _right_singular_vectors(a2)
    squared = (v1 @ v2.T) ** 2                                      # (r1, r2)
    cumulative = squared.cumsum(axis=0).cumsum(axis=1)
    i = np.arange(1, squared.shape[0] + 1)[:, None]
    j = np.arange(1, squared.shape[1] + 1)[None, :]
    return cumulative / np.minimum(i, j)


def random_subspace_similarity(d: int, i: int, j: int) -> float:
    """Expected φ for an i- and a j-dimensional subspace of R^d drawn independently at random.

    For a unit vector v uniform on the sphere and a projector P of rank i, E‖Pv‖² = trace(P)/d = i/d.
    V_j has j such columns, so E‖U_iᵀV_j‖_F² = i·j/d and E φ = i·j/(d·min(i, j)) = max(i, j)/d.
    This is the floor a learned subspace must beat to count as "shared".

    >>> random_subspace_similarity(64, 8, 16)
    0.25
    """
    d = check_int("d", d, low=1, high=1 << 30)
    i = check_int("i", i, low=1, high=d)
    j = check_int("j", j, low=1, high=d)
    return max(i, j) / d


# --------------------------------------------------------------------------- amplification

def _check_delta_and_w(delta, W, r):
    d, w = _as_matrix(delta, "delta"), _as_matrix(W, "W")
    if d.shape != w.shape:
        raise ValueError(f"delta and W must have the same shape (out, in): got {d.shape} and {w.shape}")
    return d, w, check_int("r", r, low=1, high=min(d.shape))


def _projection(w: np.ndarray, u: np.ndarray, v: np.ndarray) -> float:
    """‖Uᵀ W V‖_F for U (out, r) and V (in, r) with orthonormal columns: W seen through that subspace."""
    return float(np.linalg.norm(u.T @ w @ v))                       # (r, r) -> a number


def _projected_norms(d: np.ndarray, w: np.ndarray, r: int, seed: int) -> tuple[float, float]:
    """(‖U_rᵀ W V_r‖_F with ΔW's top-r singular vectors, the same with random orthonormal U, V)."""
    u, _, vh = np.linalg.svd(d, full_matrices=False)
    rng = np.random.default_rng(seed)
    u_rand, v_rand = _random_orthonormal(d.shape[0], r, rng), _random_orthonormal(d.shape[1], r, rng)
    return _projection(w, u[:, :r], vh[:r].T), _projection(w, u_rand, v_rand)

class Amplification(NamedTuple):
    """Result of ``amplification_factor``; unpacks as a 4-tuple, ``._asdict()`` gives the JSON form."""

    factor: float            # ‖ΔW‖_F / ‖U_rᵀ W V_r‖_F
    random_factor: float     # the same with random orthonormal U, V
    delta_norm: float        # ‖ΔW‖_F
    projected_norm: float    # ‖U_rᵀ W V_r‖_F


def amplification_factor(delta, W, r: int, seed: int = 0) -> Amplification:
    """How much ΔW amplifies directions that W already has: ‖ΔW‖_F / ‖U_rᵀ W V_r‖_F.

    LoRA paper (Hu et al., 2021), Section 7.3: U_r (out, r) and V_r (in, r) are the top-r left
    and right singular vectors of ΔW (out, in); U_rᵀ W V_r (r, r) is W seen through ΔW's
    subspace. A large factor means ΔW boosts directions that are weak in W (the paper reports
    about 21.5 = 6.91/0.32 for r = 4 on GPT-3). The same ratio with random orthonormal U, V
    is the baseline (``random_factor``).

    Returns an ``Amplification`` (factor, random_factor, delta_norm, projected_norm), all floats;
    a factor is inf when its projection is exactly zero. r must be ≤ min(out, in).

    >>> W = np.diag([10.0, 1.0])
    >>> amplification_factor(np.diag([0.0, 0.5]), W, r=1).factor     # 0.5 / 1
    0.5
    """
    d, w, r = _check_delta_and_w(delta, W, r)
    delta_norm = float(np.linalg.norm(d))
    projected, random_projected = _projected_norms(d, w, r, seed)
    return Amplification(
        factor=delta_norm / projected if projected > 0 else math.inf,
        random_factor=delta_norm / random_projected if random_projected > 0 else math.inf,
        delta_norm=delta_norm,
        projected_norm=projected,
    )


class AmplificationTable(NamedTuple):
    """One rank's column block of Table 7 (``amplification_table``); ``._asdict()`` gives the JSON form."""

    rank: int
    delta_directions: float   # ‖UᵀWV‖_F with U, V the top-r singular vectors of ΔW
    weight_directions: float  # the same with W's own top-r: √(σ_1² + … + σ_r²) of W
    random_directions: float  # the same with random orthonormal U, V (seeded)
    weight_norm: float        # ‖W‖_F
    delta_norm: float         # ‖ΔW‖_F
    amplification: float      # delta_norm / delta_directions, the factor of ``amplification_factor``


def amplification_table(delta, W, r: int, seed: int = 0) -> AmplificationTable:
    """Table 7 of the LoRA paper (Hu et al., 2021, Section 7.3) for one rank r: ‖UᵀWV‖_F three ways.

    ``delta`` and ``W`` are (out, in). U (out, r) and V (in, r) are orthonormal; ‖UᵀWV‖_F (r, r) is how
    much of W lies in the subspace they span. The three columns take U, V from

    - ΔW's own top-r singular vectors: small when ΔW points where W is weak;
    - W's own top-r: the most W can have in any r-dimensional subspace, √(σ_1² + … + σ_r²);
    - a random pair of subspaces (the same draw as ``amplification_factor``'s ``random_factor``):
      about ‖W‖_F·r/√(out·in) for a W without structure.

    ΔW "amplifies" a direction when ‖ΔW‖_F is large against W's own size there: the factor
    ‖ΔW‖_F / ‖UᵀWV‖_F with ΔW's directions. The paper reports, for GPT-3's Wq at r = 4, 0.32 (ΔWq),
    21.67 (Wq) and 0.02 (random), ‖Wq‖_F = 61.95, ‖ΔWq‖_F = 6.91, so a factor of 6.91 / 0.32 ≈ 21.5.

    >>> W = np.diag([10.0, 5.0, 1.0, 0.5])          # W is strong along e1, weak along e4
    >>> row = amplification_table(np.diag([0.0, 0.0, 0.0, 2.0]), W, r=1)   # ΔW = 2·e4·e4ᵀ
    >>> row.delta_directions, row.weight_directions, row.delta_norm, row.amplification   # 0.5, 10, 2, 2/0.5
    (0.5, 10.0, 2.0, 4.0)
    >>> round(row.weight_norm, 4)                    # √(100 + 25 + 1 + 0.25)
    11.2361
    """
    d, w, r = _check_delta_and_w(delta, W, r)
    delta_norm = float(np.linalg.norm(d))
    projected, random_projected = _projected_norms(d, w, r, seed)
    u_w, _, vh_w = np.linalg.svd(w, full_matrices=False)
    return AmplificationTable(
        rank=r, delta_directions=projected, weight_directions=_projection(w, u_w[:, :r], vh_w[:r].T),
        random_directions=random_projected, weight_norm=float(np.linalg.norm(w)), delta_norm=delta_norm,
        amplification=delta_norm / projected if projected > 0 else math.inf)


def delta_weight_similarity(delta, W, r: int, j_max: int | None = None) -> np.ndarray:
    """φ(ΔW, W, i, j) for i ≤ r and j ≤ ``j_max``: (r, j_max), entry [i−1, j−1] (LoRA paper, Fig. 8).

    φ = ‖U_iᵀ V_j‖_F² / min(i, j), with U_i (out, i) the top-i left singular vectors of ΔW and V_j
    (out, j) the top-j left singular vectors of W: the formula of ``subspace_similarity`` on the
    output directions. Row i = 1 asks whether ΔW's strongest direction is among W's top j. Random
    subspaces give max(i, j)/out; a row that stays near that floor for small j means ΔW works in
    directions W does not emphasise. ``r`` ≤ the rank of ΔW (beyond it the singular vectors are
    arbitrary); ``j_max`` defaults to min(out, in).

    >>> W = np.diag([3.0, 2.0, 1.0])                 # W's output directions in order: e1, e2, e3
    >>> delta_weight_similarity(np.diag([0.0, 0.0, 5.0]), W, r=1).round(6).tolist()   # ΔW along e3
    [[0.0, 0.0, 1.0]]
    """
    d, w, r = _check_delta_and_w(delta, W, r)
    j_max = min(d.shape) if j_max is None else check_int("j_max", j_max, low=1, high=min(d.shape))
    return subspace_similarity_grid(d.T, w.T)[:r, :j_max]  # right singular vectors of ΔWᵀ = left of ΔW


# --------------------------------------------------------------------------- reading a sweep

def knee_rank(ranks, errors, floor: float | None = None, factor: float = 2.0):
    """The smallest rank whose error ≤ ``factor`` × ``floor``; None if no rank gets there.

    ``floor``: the error to compare with, e.g. full fine-tuning's; defaults to min(errors).
    Ranks must be distinct (average seeds first).

    >>> knee_rank([1, 2, 4, 8], [0.9, 0.5, 0.05, 0.04], floor=0.03)     # 0.05 ≤ 2 × 0.03
    4
    """
    r = _as_vector(ranks, "ranks")
    e = _as_vector(errors, "errors")
    if r.shape != e.shape:
        raise ValueError(f"ranks and errors must have the same length, got {r.size} and {e.size}")
    if len(set(r.tolist())) != r.size:
        raise ValueError(f"ranks must be distinct (average the seeds of a rank first), got {r.tolist()}")
    if floor is None:
        floor = float(e.min())
    floor = check_real("floor", floor, low=0.0)
    factor = check_real("factor", factor, low=0.0, low_inclusive=False)
    order = np.argsort(r)
    for rank, error in zip(r[order], e[order]):
        if error <= factor * floor:
            return int(rank)
    return None


def recovered_fraction(base_loss: float, lora_loss: float, full_loss: float) -> float:
    """(base − lora) / (base − full): the share of full fine-tuning's improvement LoRA gets.

    1 means LoRA matches full fine-tuning, 0 means no better than the frozen base model; values
    above 1 (LoRA beats full fine-tuning) or below 0 (LoRA made it worse) are returned as they are.

    >>> recovered_fraction(base_loss=3.0, lora_loss=2.25, full_loss=2.0)
    0.75
    """
    base_loss = check_real("base_loss", base_loss)
    lora_loss = check_real("lora_loss", lora_loss)
    full_loss = check_real("full_loss", full_loss)
    if base_loss == full_loss:
        raise ValueError("recovered fraction is undefined: full fine-tuning did not change the loss "
                         f"(base_loss == full_loss == {base_loss})")
    return float((base_loss - lora_loss) / (base_loss - full_loss))
