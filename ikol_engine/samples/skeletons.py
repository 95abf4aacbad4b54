"""Real human skeletons no one here made, in SMPL's tree, for testing the shape fit.

A :class:`Skeleton` is a rest pose of SMPL's 29 keypoints (T-pose, SMPL's axes: y up,
facing +z, body left on +x) and which of them the source defines. Posed with real mocap
(:func:`pose_skeleton`), it gives the keypoints a person of that build would show.

Sources
-------
* SMPL-X (:func:`smplx_skeleton`): the neutral body's rest joints and their 10 shape
  directions as baked by ``mannequin-x`` (Apache-2.0) from the SMPL-X model. SMPL-X's
  first 22 joints are SMPL's, in SMPL's order; its hands have fingers instead of SMPL's
  one hand joint and no head-top, fingertip or toe points, so those are not defined.
* DeepMimic's humanoid (:func:`deepmimic_skeleton`): the joint origins of
  ``pybullet_data/humanoid/humanoid.urdf`` at the ``globalScaling=0.25`` its clips are
  played with, moved into SMPL's axes as :mod:`.deepmimic` moves the clips. Its one chest
  joint sits where this puts Spine1, Spine2 and Spine3 (so that the clips' even split of
  the chest over the three composes back to DeepMimic's chest), its collars where its
  shoulders are, and its head where its neck is: then SMPL's forward kinematics with
  :func:`~.deepmimic.load_deepmimic`'s rotations is DeepMimic's own. It defines the
  pelvis, hips, knees, ankles, neck, shoulders, elbows and wrists.
"""
from __future__ import annotations

import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass

import numpy as np
import torch

from .. import skeleton
from ..skeleton.kinematics import forward_kinematics, rest_offsets
from ..skeleton.tree import SMPL_TREE
from .deepmimic import DEEPMIMIC_TO_SMPL, ReferenceMotion
from .downloads import deepmimic_character, smplx_skeleton_calibration

_K = {name: k for k, name in enumerate(skeleton.KEYPOINT_NAMES)}
# Globally scales DeepMimic's URDF when its clips are played (humanoid_stable_pd.py).
_DEEPMIMIC_SCALE = 0.25
_SMPLX_BODY_JOINTS = 22


@dataclass(frozen=True, eq=False)
class Skeleton:
    """A rest skeleton in SMPL's keypoint layout (eq=False: tensors do not compare to a bool).

    Attributes:
        name: where it comes from, e.g. ``"smplx mean"``;
        rest: (29, 3) rest keypoints, metres, T-pose; undefined ones are placeholders
            along their parent bone and must not be compared;
        defined: (29,) bool, the keypoints the source places.
    """

    name: str
    rest: torch.Tensor
    defined: torch.Tensor


def _with_placeholders(rest: np.ndarray, placed: np.ndarray) -> torch.Tensor:
    """(29, 3): keypoints the source does not place put 5 cm above their parent (they
    only need to exist for the forward kinematics)."""
    out = rest.copy()
    for k, parent in enumerate(skeleton.KEYPOINT_PARENTS):
        if not placed[k] and parent >= 0:
            out[k] = out[parent] + np.array([0.0, 0.05, 0.0])
    return torch.tensor(out, dtype=torch.float32)


def smplx_skeleton(betas: np.ndarray | None = None) -> Skeleton:
    """SMPL-X's skeleton for shape ``betas`` (10,), mean shape when ``None``."""
    with np.load(smplx_skeleton_calibration(), allow_pickle=False) as calibration:
        joints = calibration["joint_rest"][:_SMPLX_BODY_JOINTS].astype(np.float64)
        dirs = calibration["joint_dirs"][:_SMPLX_BODY_JOINTS].astype(np.float64)
    shape = np.zeros(dirs.shape[-1]) if betas is None else np.asarray(betas, dtype=np.float64)
    rest = np.zeros((skeleton.NUM_KEYPOINTS, 3))
    rest[:_SMPLX_BODY_JOINTS] = joints + dirs @ shape
    defined = np.zeros(skeleton.NUM_KEYPOINTS, dtype=bool)
    defined[:_SMPLX_BODY_JOINTS] = True
    label = "smplx mean" if betas is None else "smplx " + " ".join(f"{b:+.1f}" for b in shape[:2])
    return Skeleton(label, _with_placeholders(rest, defined), torch.tensor(defined))


def _urdf_origins() -> dict[str, np.ndarray]:
    """Joint name -> origin (3,) in its parent link's frame, DeepMimic axes, metres."""
    text = deepmimic_character().read_bytes().rstrip(b"\0")  # the shipped file ends in a NUL
    origins = {}
    for joint in ElementTree.fromstring(text).iter("joint"):
        xyz = joint.find("origin").get("xyz").split()
        origins[joint.get("name")] = np.array([float(v) for v in xyz]) * _DEEPMIMIC_SCALE
    return origins


def deepmimic_skeleton() -> Skeleton:
    """DeepMimic's humanoid in SMPL's tree (see the module notes)."""
    o = _urdf_origins()
    c = DEEPMIMIC_TO_SMPL.numpy()
    rest = np.zeros((skeleton.NUM_KEYPOINTS, 3))
    chest = c @ o["chest"]
    for name in ("Spine1", "Spine2", "Spine3"):
        rest[_K[name]] = chest
    rest[_K["Neck"]] = rest[_K["Head"]] = chest + c @ o["neck"]
    for side, dm in (("L", "left"), ("R", "right")):
        outward = 1.0 if side == "L" else -1.0  # SMPL's T-pose arm: along +x on the left
        rest[_K[f"{side}_Hip"]] = c @ o[f"{dm}_hip"]
        rest[_K[f"{side}_Knee"]] = rest[_K[f"{side}_Hip"]] + c @ o[f"{dm}_knee"]
        rest[_K[f"{side}_Ankle"]] = rest[_K[f"{side}_Knee"]] + c @ o[f"{dm}_ankle"]
        rest[_K[f"{side}_Collar"]] = rest[_K[f"{side}_Shoulder"]] = chest + c @ o[f"{dm}_shoulder"]
        elbow, wrist = np.linalg.norm(o[f"{dm}_elbow"]), np.linalg.norm(o[f"{dm}_wrist"])
        rest[_K[f"{side}_Elbow"]] = rest[_K[f"{side}_Shoulder"]] + [outward * elbow, 0.0, 0.0]
        rest[_K[f"{side}_Wrist"]] = rest[_K[f"{side}_Elbow"]] + [outward * wrist, 0.0, 0.0]
    placed = np.zeros(skeleton.NUM_KEYPOINTS, dtype=bool)
    placed[[_K[n] for n in ("Spine1", "Spine2", "Spine3", "Head")]] = True
    defined = np.zeros(skeleton.NUM_KEYPOINTS, dtype=bool)
    defined[[_K[n] for n in ("Pelvis", "Neck")]] = True
    for part in ("Hip", "Knee", "Ankle", "Shoulder", "Elbow", "Wrist"):
        defined[[_K[f"L_{part}"], _K[f"R_{part}"]]] = True
    placed |= defined
    placed[[_K["L_Collar"], _K["R_Collar"]]] = True
    return Skeleton("deepmimic humanoid", _with_placeholders(rest, placed), torch.tensor(defined))


def pose_skeleton(bones: Skeleton, motion: ReferenceMotion) -> torch.Tensor:
    """The keypoints (T, 29, 3) of ``bones`` moving as ``motion`` does (SMPL's FK)."""
    frames = motion.num_frames
    offsets = rest_offsets(bones.rest[None].expand(frames, -1, -1), SMPL_TREE)
    _, keypoints = forward_kinematics(motion.rotations, offsets, motion.translation, SMPL_TREE)
    return keypoints
