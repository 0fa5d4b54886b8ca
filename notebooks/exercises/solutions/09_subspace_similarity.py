"""Solution to exercise 9: the subspace similarity of two adapters (LoRA paper, Section 7.2)."""
import numpy as np


def subspace_similarity(A1, A2, i, j):
    """φ = ‖U_iᵀ V_j‖_F² / min(i, j) for A1 (r1, in), A2 (r2, in)."""
    U = np.linalg.svd(A1, full_matrices=False)[2][:i]      # (i, in): top-i right-singular vectors of A1
    V = np.linalg.svd(A2, full_matrices=False)[2][:j]      # (j, in)
    return float(np.sum((U @ V.T) ** 2) / min(i, j))
