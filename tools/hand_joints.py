"""SMPL-H's 30 finger joints on the MakeHuman body: where they sit and the skin they move.

MakeHuman's rig has three bones per finger, ``finger{1..5}-{1..3}.{L,R}`` (1 = thumb):
a thumb's first bone is its metacarpal, so its head is the carpometacarpal joint, SMPL-H's
``thumb1``; the other fingers' first bone is the proximal phalanx, whose head is the
knuckle, SMPL-H's ``index1`` and so on. Each SMPL-H finger joint is the head of one bone.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from regression import convex_regression

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the engine's own tables, not copies
from ikol_engine.skeleton.hands import (  # noqa: E402
    FINGERS, HAND_JOINT_NAMES, JOINTS_PER_FINGER, NUM_FINGER_JOINTS, SMPLH_JOINT_NAMES, SMPLH_NUM_BODY_JOINTS,
)

MAKEHUMAN_FINGER = {"thumb": 1, "index": 2, "middle": 3, "ring": 4, "pinky": 5}
SIDE_SUFFIX = ("L", "R")
# Skin within a band about the plane through a finger joint across its bone, and
# this close to the joint, is the ring its regressor averages (phalanges are ~2 cm wide).
# A joint buried in the palm (the thumb's base) has little skin that near: its ring
# widens, band and radius, until it holds MIN_RING_VERTICES.
RING_SIZES_M: tuple[tuple[float, float], ...] = ((0.004, 0.02), (0.008, 0.03), (0.016, 0.04), (0.03, 0.05))
MIN_RING_VERTICES = 8


def finger_bone_names() -> list[str]:
    """The MakeHuman bone whose head is each SMPL-H finger joint, in SMPL-H's order (30,)."""
    return [f"finger{MAKEHUMAN_FINGER[finger]}-{k}.{side}" for side in SIDE_SUFFIX
            for finger in FINGERS for k in range(1, JOINTS_PER_FINGER + 1)]


def finger_joint_targets(bone_index: dict[str, int], heads: np.ndarray) -> np.ndarray:
    """SMPL-H finger joint positions (S, 30, 3) from posed MakeHuman bone heads (S, B, 3)."""
    return heads[:, [bone_index[name] for name in finger_bone_names()]]


def _bone_axes(targets: np.ndarray, tips: np.ndarray) -> np.ndarray:
    """Unit bone direction (30, 3) at each finger joint: towards the next joint, or the tip.

    targets (30, 3) mean joint positions; tips (10, 3) mean fingertips in SMPL-H's finger
    order, left hand then right.
    """
    axes = np.empty_like(targets)
    for j in range(len(targets)):
        finger, k = divmod(j, JOINTS_PER_FINGER)
        child = targets[j + 1] if k < JOINTS_PER_FINGER - 1 else tips[finger]
        axes[j] = child - targets[j]
    return axes / np.linalg.norm(axes, axis=1, keepdims=True)


def fit_finger_regressor(samples: np.ndarray, targets: np.ndarray, tips: np.ndarray, owner_bone: np.ndarray,
                         bone_index: dict[str, int], bone_parents: np.ndarray, mirror: np.ndarray,
                         ridge: float = 1e-5) -> np.ndarray:
    """Convex vertex regressor (30, V) of the finger joints, left solved, right mirrored.

    Each joint is regressed from the ring of skin around it, among the vertices that
    follow its own bone or the bone before it (so a knuckle never borrows the next
    finger's skin), like the body's joints.

    samples (S, V, 3) bodies, targets (S, 30, 3) joints, tips (10, 3) mean fingertip
    positions, owner_bone (V,) the bone each vertex follows most, bone_parents (B,),
    mirror (V,) each vertex's mirror image.
    """
    mean_verts, mean_targets = samples.mean(axis=0), targets.mean(axis=0)
    axes = _bone_axes(mean_targets, tips)
    regressor = np.zeros((2 * NUM_FINGER_JOINTS, samples.shape[1]))
    for j, bone in enumerate(finger_bone_names()[:NUM_FINGER_JOINTS]):
        own = bone_index[bone]
        allowed = np.flatnonzero(np.isin(owner_bone, [own, bone_parents[own]]))
        rel = mean_verts[allowed] - mean_targets[j]
        for band, radius in RING_SIZES_M:
            ring = allowed[(np.abs(rel @ axes[j]) < band) & (np.linalg.norm(rel, axis=1) < radius)]
            if len(ring) >= MIN_RING_VERTICES:
                break
        else:
            raise RuntimeError(f"only {len(ring)} skin vertices around {HAND_JOINT_NAMES[j]}")
        regressor[j, ring] = convex_regression(samples[:, ring], targets[:, j], ridge)
        regressor[j + NUM_FINGER_JOINTS] = regressor[j, mirror]
    return regressor


def smplh_skin_weights(weights: np.ndarray, bone_names: list[str], skin_indices: np.ndarray,
                       skin_weights: np.ndarray) -> np.ndarray:
    """SMPL-H skin weights (V, 52) that agree with the SMPL ones (V, 24) off the fingers.

    SMPL's hand joint moves every finger bone but the thumb's metacarpal, which moves
    with the wrist; here each finger bone's skin goes to its own joint. Each SMPL column
    is split in proportion to MakeHuman's weights of the bones it merged, so rows still
    sum to one and no other weight changes.

    weights (V, 24) SMPL skin weights; skin_indices, skin_weights (V, M) MakeHuman's.
    """
    bone_share = np.zeros((len(weights), len(bone_names)))
    np.add.at(bone_share, (np.arange(len(weights))[:, None], skin_indices), skin_weights)
    out = np.zeros((len(weights), len(SMPLH_JOINT_NAMES)))
    out[:, :SMPLH_NUM_BODY_JOINTS] = weights[:, :SMPLH_NUM_BODY_JOINTS]
    index = {name: b for b, name in enumerate(bone_names)}
    fingers = finger_bone_names()
    for s, suffix in enumerate(SIDE_SUFFIX):
        wrist, hand = 20 + s, 22 + s  # SMPL's L/R_Wrist and L/R_Hand
        columns = range(SMPLH_NUM_BODY_JOINTS + s * NUM_FINGER_JOINTS, SMPLH_NUM_BODY_JOINTS + (s + 1) * NUM_FINGER_JOINTS)
        bones = [index[fingers[c - SMPLH_NUM_BODY_JOINTS]] for c in columns]
        thumb_base = index[f"finger1-1.{suffix}"]
        # What SMPL's wrist column merged: the wrist, the metacarpals and the thumb's metacarpal.
        wrist_group = [b for b, name in enumerate(bone_names) if name.endswith(f".{suffix}")
                       and (name.startswith(("wrist", "metacarpal")) or b == thumb_base)]
        hand_group = [b for b in bones if b != thumb_base]
        wrist_total = bone_share[:, wrist_group].sum(axis=1)
        hand_total = bone_share[:, hand_group].sum(axis=1)
        for column, bone in zip(columns, bones):
            group_total, smpl = (wrist_total, wrist) if bone == thumb_base else (hand_total, hand)
            share = np.divide(bone_share[:, bone], group_total, out=np.zeros(len(weights)), where=group_total > 0)
            out[:, column] = weights[:, smpl] * share
        thumb_column = columns[bones.index(thumb_base)]
        out[:, wrist] = weights[:, wrist] - out[:, thumb_column]
    return out
