"""A tiny SMPL-layout body written by the tests, independent of the bundled one."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ikol_engine import skeleton
from ikol_engine.body.model_file import SMPLX_LANDMARKS

# Approximate rest joints of an adult in SMPL's T-pose (metres, y-up, left = +x).
REST_JOINTS = np.array([
    (0, -0.22, 0.03), (0.06, -0.31, 0.02), (-0.06, -0.31, 0.02), (0, -0.11, 0.0),
    (0.10, -0.69, 0.02), (-0.10, -0.69, 0.02), (0, 0.02, 0.01), (0.09, -1.09, -0.02),
    (-0.09, -1.09, -0.02), (0, 0.07, 0.04), (0.12, -1.15, 0.10), (-0.12, -1.15, 0.10),
    (0, 0.29, 0.01), (0.08, 0.20, 0.02), (-0.08, 0.20, 0.02), (0, 0.35, 0.06),
    (0.19, 0.23, 0.0), (-0.19, 0.23, 0.0), (0.45, 0.21, -0.02), (-0.45, 0.21, -0.02),
    (0.71, 0.22, -0.01), (-0.71, 0.22, -0.01), (0.79, 0.21, -0.02), (-0.79, 0.21, -0.02),
])
LEAVES = np.array([(0, 0.55, 0.02), (0.90, 0.20, -0.02), (-0.90, 0.20, -0.02),
                   (0.11, -1.17, 0.18), (-0.11, -1.17, 0.18)])


def synthetic_body_arrays(seed: int = 0, num_betas: int = 10) -> dict[str, np.ndarray]:
    """One vertex per keypoint (24 joints + 5 leaves), rigidly skinned, random shape space."""
    rng = np.random.default_rng(seed)
    vertices = np.concatenate([REST_JOINTS, LEAVES]).astype(np.float32)
    v, j = len(vertices), skeleton.NUM_JOINTS
    regressor = np.zeros((j, v), np.float32)
    regressor[np.arange(j), np.arange(j)] = 1
    weights = np.zeros((v, j), np.float32)
    weights[np.arange(v), list(range(j)) + list(skeleton.LEAF_PARENTS)] = 1
    names = list(skeleton.LEAF_LANDMARKS) + [n for n in SMPLX_LANDMARKS if n not in skeleton.LEAF_LANDMARKS]
    ids = list(range(j, v)) + [0] * (len(names) - len(skeleton.LEAF_LANDMARKS))
    kintree = np.stack([np.array((4294967295,) + skeleton.PARENTS[1:]), np.arange(j)]).astype(np.int64)
    return {
        "v_template": vertices,
        "f": np.array([[0, 1, 2], [0, 2, 3]], np.int32),
        "J_regressor": regressor,
        "weights": weights,
        "shapedirs": (0.02 * rng.standard_normal((v, 3, num_betas))).astype(np.float32),
        "posedirs": np.zeros((v, 3, 207), np.float32),
        "kintree_table": kintree,
        "landmark_names": np.array(names),
        "landmark_vertex_ids": np.array(ids, np.int64),
    }


def write_synthetic_body(path: Path, **arrays: np.ndarray) -> Path:
    """Writes the synthetic body, with any array replaced or added by keyword."""
    data = synthetic_body_arrays()
    data.update(arrays)
    np.savez(path, **data)
    return path
