"""The LoRA paper's Table 7, Fig. 8 and Fig. 4 analyses: on matrices built to give known answers, then read
back from a small results file into tables, Markdown and figures."""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tinylora.experiments.analysis import (
    amplification_factor,
    amplification_table,
    delta_weight_similarity,
)
from tinylora.experiments.figures import plot_all
from tinylora.experiments.paper_figures import (
    delta_weight_grids,
    paper_analyses_markdown,
    seed_similarity,
    table7_rows,
)
from tinylora.experiments.results import read_results
from tinylora.experiments.summary import MissingData


def rotated(diagonal, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(W, U, V): W = U·diag·Vᵀ with random orthogonal U, V: W's singular vectors are U's and V's columns."""
    rng = np.random.default_rng(seed)
    n = len(diagonal)
    U, _ = np.linalg.qr(rng.standard_normal((n, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    return U @ np.diag(diagonal) @ V.T, U, V


# ---- Table 7's three columns ---------------------------------------------------------------------
def test_table7_columns_when_delta_points_along_ws_weakest_direction():
    W, U, V = rotated([10.0, 5.0, 1.0, 0.5], seed=0)
    delta = 2.0 * np.outer(U[:, 3], V[:, 3])     # ΔW = 2·u4·v4ᵀ: W has only 0.5 there
    row = amplification_table(delta, W, r=1)
    assert row.delta_directions == pytest.approx(0.5)          # u4ᵀ W v4 = 0.5
    assert row.weight_directions == pytest.approx(10.0)        # W's own top direction: σ1
    assert row.weight_norm == pytest.approx(math.sqrt(100 + 25 + 1 + 0.25))
    assert row.delta_norm == pytest.approx(2.0)
    assert row.amplification == pytest.approx(4.0)             # 2 / 0.5


def test_ws_own_top_r_column_is_the_root_of_its_top_r_squared_singular_values_the_most_any_subspace_holds():
    W, _, _ = rotated([6.0, 4.0, 3.0, 2.0, 1.0], seed=1)
    delta = np.random.default_rng(2).standard_normal((5, 5))
    row = amplification_table(delta, W, r=2, seed=3)
    assert row.weight_directions == pytest.approx(math.sqrt(36 + 16))
    assert row.delta_directions < row.weight_directions and row.random_directions < row.weight_directions


def test_delta_and_random_columns_are_the_projections_amplification_factor_divides_by():
    rng = np.random.default_rng(4)
    W, delta = rng.standard_normal((12, 9)), rng.standard_normal((12, 9))
    row, old = amplification_table(delta, W, r=3, seed=5), amplification_factor(delta, W, r=3, seed=5)
    assert row.delta_directions == old.projected_norm and row.amplification == old.factor
    assert row.random_directions == pytest.approx(old.delta_norm / old.random_factor, rel=1e-12)


def test_random_column_averages_to_norm_times_r_over_root_out_times_in():
    """E‖UᵀWV‖_F² = (r/out)·(r/in)·‖W‖_F² for independent uniformly random U (out, r) and V (in, r)."""
    W = np.random.default_rng(6).standard_normal((16, 8))
    delta = np.eye(16, 8)
    squares = [amplification_table(delta, W, r=2, seed=s).random_directions ** 2 for s in range(400)]
    assert np.mean(squares) == pytest.approx((2 / 16) * (2 / 8) * np.sum(W ** 2), rel=0.1)


# ---- Fig. 8: ΔW's output directions against W's --------------------------------------------------
def test_fig8_phi_is_one_where_deltas_directions_are_among_ws_top_j_and_zero_where_they_are_not():
    W = np.diag([4.0, 3.0, 2.0, 1.0])                  # W's output directions, strongest first: e1 .. e4
    delta = np.diag([1.0, 0.0, 5.0, 0.0])              # ΔW's: e3 (σ = 5), then e1 (σ = 1)
    grid = delta_weight_similarity(delta, W, r=2)
    assert grid.shape == (2, 4)
    np.testing.assert_allclose(grid[0], [0.0, 0.0, 1.0, 1.0], atol=1e-12)   # e3 enters at j = 3
    np.testing.assert_allclose(grid[1], [1.0, 0.5, 1.0, 1.0], atol=1e-12)   # {e3, e1} against e1; e1, e2; ...


# ---- a small results file ----------------------------------------------------------------------
Q, V_PROJ = "blocks.1.attn.q_proj", "blocks.1.attn.v_proj"


def lora_line(rank: int, seed: int, A_rows: np.ndarray, factor: float) -> dict:
    """A domain-task LoRA line with the analyses the sweep stores (Table 7 numbers chosen by hand)."""
    table7 = {"rank": rank, "delta_directions": 1.0, "weight_directions": 8.0, "random_directions": 0.5,
              "weight_norm": 10.0, "delta_norm": factor, "amplification": factor}
    phi = np.tile(np.linspace(0.1, 1.0, 16), (rank, 1)).round(6).tolist()
    return {"task": "domain", "method": "lora", "rank": rank, "seed": seed, "status": "ok",
            "metrics": {"val_loss": 1.0, "base_val_loss": 2.0},
            "analysis": {"adapter_A": {Q: A_rows.tolist(), V_PROJ: A_rows.tolist()},
                         "table7": {"blocks.0.attn.q_proj": {**table7, "amplification": 99.0}, Q: table7},
                         "delta_weight_similarity": {Q: phi}}}


def small_results() -> list[dict]:
    """Ranks 2 and 4, two seeds each. At rank 4, seed 1's A spans e1..e4 like seed 0's, mixed differently."""
    eye = np.eye(16)
    mix, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((4, 4)))
    return [lora_line(2, 0, eye[:2], 4.0), lora_line(2, 1, eye[2:4], 6.0),
            lora_line(4, 0, np.diag([4.0, 3.0, 2.0, 1.0]) @ eye[:4], 3.0),
            lora_line(4, 1, mix @ eye[:4], 3.0)]


def test_table7_rows_average_the_seeds_of_each_rank_for_the_deepest_q_proj():
    rows = table7_rows(small_results())
    assert [(r["rank"], r["n_seeds"], r["layer"]) for r in rows] == [(2, 2, Q), (4, 2, Q)]
    assert [r["amplification"] for r in rows] == [5.0, 3.0]    # (4 + 6) / 2 and 3; layer 0's 99 is not read


def test_seed_similarity_takes_the_largest_rank_with_two_seeds_and_finds_their_shared_span():
    found = seed_similarity(small_results())
    assert (found["rank"], found["seeds"], found["d"]) == (4, [0, 1], 16)
    assert found["grids"][Q][-1, -1] == pytest.approx(1.0)      # the same 4-dimensional span
    assert found["grids"][Q][0, 0] < 1.0                        # but not the same top direction


def test_the_markdown_table_gives_each_ranks_three_columns_and_factor():
    text = paper_analyses_markdown(small_results())
    assert "| 2 | 1.00 | 8.00 | 0.500 | 10.0 | 5.00 | 5.00 |" in text
    assert "- r = 4: ΔWq's own directions hold 1.00 of Wq, 8.00× less than Wq's top-4 and 2.00× " in text
    assert "r = 4, seeds 0 and 1: φ(1, 1) = " in text
    assert "φ(4, 4) = 1.00 (random: 0.062, 0.250, 0.250)" in text       # 1/16, 4/16, 4/16


def test_the_paper_figures_are_drawn_from_a_small_results_file(tmp_path):
    with open(tmp_path / "results.jsonl", "w") as f:
        f.writelines(json.dumps(line) + "\n" for line in small_results())
    said = []
    names = {p.rsplit("/", 1)[-1] for p in plot_all(tmp_path, formats=("png",), log=said.append)}
    assert {"table7_amplification.png", "delta_weight_similarity.png", "seed_similarity.png"} <= names
    assert any("skipped figure merge_lab" in line for line in said)


def test_a_sweep_without_the_analyses_says_what_is_missing():
    with pytest.raises(MissingData, match="analysis\\['table7'\\]"):
        table7_rows([{"task": "domain", "method": "lora", "rank": 4, "analysis": {"adapter_A": {}}}])


# ---- docs/results.md holds what the committed sweep gives -----------------------------------------
ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "docs" / "sweeps" / "paper-analyses"


def test_the_results_page_holds_exactly_what_the_committed_paper_analyses_give():
    text = (ROOT / "docs" / "results.md").read_text()
    begin, end = "<!-- paper_analyses_markdown: begin -->", "<!-- paper_analyses_markdown: end -->"
    assert text.count(begin) == 1 and text.count(end) == 1
    assert text.split(begin)[1].split(end)[0].strip() == paper_analyses_markdown(read_results(COMMITTED))


def test_the_committed_analyses_show_what_the_results_page_says():
    results = read_results(COMMITTED)
    rows = {r["rank"]: r for r in table7_rows(results)}
    assert sorted(rows) == [4, 32] and all(r["n_seeds"] == 2 for r in rows.values())
    for r in rows.values():   # less of Wq than Wq's own top-r; a little more than random (paper: 16x)
        assert r["delta_directions"] < r["weight_directions"]
        assert 1.0 < r["delta_directions"] / r["random_directions"] < 2.0
    assert rows[4]["amplification"] > 5 * rows[32]["amplification"]      # much larger at r = 4
    _, _, grids = delta_weight_grids(results)
    for r, grid in grids.items():                                       # Fig. 8: above chance, far from 1
        assert r / 128 < grid[r - 1, r - 1] < 0.6
    found = seed_similarity(results)
    for grid in found["grids"].values():                                # Fig. 4 at r = 32
        assert 10 / 128 < grid[0, 0] < 0.5 and abs(grid[-1, -1] - 32 / 128) < 0.15
