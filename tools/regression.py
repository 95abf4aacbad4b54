"""The convex vertex regression both the body's and the fingers' joint regressors use."""
from __future__ import annotations

import numpy as np
from scipy.optimize import nnls


def convex_regression(points: np.ndarray, target: np.ndarray, ridge: float) -> np.ndarray:
    """Non-negative weights (C,) summing to one that best give ``target`` from ``points``.

    min_w sum_s |P_s w - t_s|^2 + ridge |w|^2, w >= 0, sum w = 1 (the sum as a heavily
    weighted extra row).  points (S, C, 3), target (S, 3).
    """
    count = points.shape[1]
    a = points.transpose(0, 2, 1).reshape(-1, count)  # (3S, C)
    b = target.reshape(-1)
    scale = 1e3  # makes sum(w) = 1 hold to ~1e-6 before the final renormalisation
    a_full = np.vstack([a, np.sqrt(ridge * len(b)) * np.eye(count), scale * np.ones((1, count))])
    b_full = np.concatenate([b, np.zeros(count), [scale]])
    w, _ = nnls(a_full, b_full, maxiter=50 * count)
    return w / w.sum()
