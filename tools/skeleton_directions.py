"""Shape directions that place the bundled body's joints, with the mesh following.

The PCA directions of ``build_default_body.py`` span MakeHuman's phenotypes, whose
proportions (spine segments, hip and collar placement, neck and head) differ from
real mocap skeletons by several centimetres. Each direction built here moves one joint
(mirrored on both sides for a left/right pair; a second direction moves the two sides
apart) and everything below it in the tree by a step (``STEP_M``, less for short
bones) along one axis of the rest frame: it changes the bone from the joint's parent
and, for joints that share a parent, where they sit on it. The skin follows: a vertex
moves with the joints of the bones it is weighted to, and along a bone it moves by
the share of the way from the bone's head to its child (so a lengthened thigh stretches
over its whole length, and no vertex is left behind at a joint). The joint regressor
reads each joint off vertices that belong to several bones (the hips' off the pelvis's
skin as much as the thighs'), so a smooth local dent around each joint then moves the
regressed joints by exactly what the direction means: each direction changes one
placement and nothing else, and the prior on it is a prior on that placement.

numpy only, for the build venv (``make body``).
"""
from __future__ import annotations

import numpy as np

#: Size of one unit of a skeleton beta, m: the prior treats every beta as N(0, 1), so
#: this is the spread allowed for real skeletons beyond the phenotypes (3 sigma: 9 cm),
#: or less for a short bone: at most this share of the bone's length.
STEP_M = 0.03
_BONE_SHARE = 0.3
# The difference between a person's left and right sides, as a share of the step.
_ASYMMETRY_SHARE = 1.0 / 3.0
# Width of the blend between the children of a joint that has several (pelvis, chest), m.
_CHILD_BLEND_M = 0.04
# Radius of the smooth dent, about the vertices a joint is regressed from, that puts the
# regressed joint where a direction means it to be, m.
_DENT_RADIUS_M = 0.02

#: The keypoints a direction moves, by name: SMPL's joints but the root, then the leaves.
CENTRE = ["Spine1", "Spine2", "Spine3", "Neck", "Head", "Head_Top"]
PAIRED = ["Hip", "Knee", "Ankle", "Foot", "Collar", "Shoulder", "Elbow", "Wrist", "Hand",
          "Fingertip", "BigToe"]


def _descendants(parents: list[int], k: int) -> list[int]:
    """k and every keypoint below it (parents topologically ordered)."""
    inside = {k}
    for m in range(k + 1, len(parents)):
        if parents[m] in inside:
            inside.add(m)
    return sorted(inside)


def _follow_matrix(verts: np.ndarray, weights: np.ndarray, points: np.ndarray,
                   parents: list[int], num_joints: int) -> np.ndarray:
    """How each vertex moves with each keypoint: (V, K), rows sum to 1.

    A vertex weighted to joint j moves with j, blended towards j's children by how far
    along each child's bone it lies (clamped to [0, 1]); with several children, each
    child's share is weighted by the vertex's closeness to that child's bone. The root's
    own vertices stay with it: were they to follow its children, moving all of them
    would move the whole body, root joint included, and change no distance.

    Args:
        verts: (V, 3) rest vertices; weights: (V, J) skin weights;
        points: (K, 3) rest keypoints (J joints, then leaves); parents: (K,).
    """
    follow = np.zeros((len(verts), len(points)))
    follow[:, 0] = weights[:, 0]
    for j in range(1, num_joints):
        children = [c for c in range(len(points)) if parents[c] == j]
        share = np.zeros((len(verts), len(children)))
        closeness = np.zeros_like(share)
        for i, c in enumerate(children):
            bone = points[c] - points[j]
            t = np.clip((verts - points[j]) @ bone / (bone @ bone), 0.0, 1.0)
            nearest = points[j] + t[:, None] * bone
            share[:, i] = t
            closeness[:, i] = np.exp(-np.sum((verts - nearest) ** 2, axis=1) / _CHILD_BLEND_M ** 2)
        if len(children) > 1:
            # Normalised closeness; the tiny floor keeps far-away vertices' shares finite.
            share *= (closeness + 1e-12) / (closeness + 1e-12).sum(axis=1, keepdims=True)
        w = weights[:, j]
        follow[:, j] += w * (1.0 - share.sum(axis=1))
        for i, c in enumerate(children):
            follow[:, c] += w * share[:, i]
    return follow


def _dents(verts: np.ndarray, j_regressor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Smooth vertex bumps about each joint's regressor vertices, and how they move the
    regressed joints.

    Args:
        verts: (V, 3); j_regressor: (J, V).
    Returns:
        (V, J) one bump per joint (1 at its regressor vertices, fading over
        ``_DENT_RADIUS_M``), and the inverse (J, J) of the regressed joints' response to
        them, so ``bumps @ inverse @ r`` moves joint j by ``r[j]``.
    """
    used = np.nonzero((j_regressor > 0).any(axis=0))[0]
    near = np.exp(-np.sum((verts[:, None] - verts[None, used]) ** 2, axis=-1) / (2 * _DENT_RADIUS_M ** 2))
    bumps = near @ j_regressor[:, used].T                                    # (V, J)
    bumps /= bumps.max(axis=0, keepdims=True)
    return bumps, np.linalg.inv(j_regressor @ bumps)


def skeleton_directions(verts: np.ndarray, weights: np.ndarray, j_regressor: np.ndarray,
                        leaf_vertices: np.ndarray, parents: list[int], names: list[str]
                        ) -> tuple[np.ndarray, list[str], np.ndarray]:
    """The joint-placement shape directions, their names and steps.

    Args:
        verts: (V, 3) rest vertices (y up, body left on +x); weights: (V, J) skin weights;
        j_regressor: (J, V); leaf_vertices: (L,) vertex of each leaf keypoint;
        parents: (J + L,) keypoint parents; names: (J + L,) keypoint names, sides as
            ``L_``/``R_`` prefixes (``ikol_engine.skeleton.KEYPOINT_NAMES``).
    Returns:
        (V, 3, D) vertex offsets per unit beta; (D,) names such as ``"Hip.x"`` or
        ``"Hip.x.asymmetry"``; (D,) how far one unit moves the named joint, m.
    """
    num_joints = j_regressor.shape[0]
    points = np.concatenate([j_regressor @ verts, verts[leaf_vertices]])
    follow = _follow_matrix(verts, weights, points, parents, num_joints)
    index = {n: k for k, n in enumerate(names)}

    def step(k: int) -> float:
        # A short bone (a toe, a finger) gets a step in proportion, not a whole 3 cm.
        return min(STEP_M, _BONE_SHARE * float(np.linalg.norm(points[k] - points[parents[k]])))

    # (label, [(keypoint, displacement of it and its subtree per unit beta along x, y, z)]).
    # Left and right move together mirrored (x flips), and apart by a third of that.
    moves: list[tuple[str, list[tuple[int, np.ndarray]]]] = []
    for part in CENTRE:
        for a in (1, 2):
            moves.append((f"{part}.{'xyz'[a]}", [(index[part], step(index[part]) * np.eye(3)[a])]))
    for part in PAIRED:
        left, right = index[f"L_{part}"], index[f"R_{part}"]
        size = step(left)
        for a in range(3):
            mirror = np.eye(3)[a] * (-1.0 if a == 0 else 1.0)
            moves.append((f"{part}.{'xyz'[a]}", [(left, size * np.eye(3)[a]), (right, size * mirror)]))
            moves.append((f"{part}.{'xyz'[a]}.asymmetry",
                          [(left, _ASYMMETRY_SHARE * size * np.eye(3)[a]),
                           (right, -_ASYMMETRY_SHARE * size * mirror)]))
    bumps, response = _dents(verts, j_regressor)
    dirs = []
    for _, displaced in moves:
        moved = np.zeros((len(points), 3))
        for k, offset in displaced:
            moved[_descendants(parents, k)] = offset
        offsets = follow @ moved
        offsets += bumps @ (response @ (moved[:num_joints] - j_regressor @ offsets))
        dirs.append(offsets)
    steps = np.array([float(np.abs(displaced[0][1]).max()) for _, displaced in moves])
    return np.stack(dirs, axis=-1), [label for label, _ in moves], steps
