"""DeepMimic motion-capture clips mapped onto SMPL local joint rotations.

Purpose: real human motion for testing the IK. Run SMPL forward kinematics with these
rotations on any body, then check that the solver recovers them.

Source and licence
------------------
The clips are the DeepMimic humanoid mocap clips (Peng et al., SIGGRAPH 2018) as shipped
in ``pybullet_data`` of ``pybullet==3.2.7`` (zlib licence). They are fetched on demand
by :func:`ikol_engine.samples.deepmimic_motion`; nothing is committed.

DeepMimic conventions (from the same wheel)
-------------------------------------------
* A clip is JSON ``{"Loop": ..., "Frames": [[44 floats], ...]}``. A frame is
  ``dt, root xyz, root quat, chest quat, neck quat, R hip quat, R knee angle,
  R ankle quat, R shoulder quat, R elbow angle, L hip quat, L knee angle, L ankle quat,
  L shoulder quat, L elbow angle``. Quaternions are stored **w, x, y, z**
  (``humanoid_pose_interpolator.py`` reorders ``[frameData[5], [6], [7], [4]]`` into
  Bullet's x, y, z, w). They are not always unit length (norms 0.58-1.12 occur), so they
  are normalised here. The last frame has ``dt = 0``.
* World: y-up, metres (``pybullet_deep_mimic_env.py`` sets gravity ``(0, -9.8, 0)``; the
  URDF is loaded with ``globalScaling=0.25`` in ``humanoid_stable_pd.py``, making the
  standing root height ~0.85-0.89 m as in the clips).
* Character (``pybullet_data/humanoid/humanoid.urdf``): every joint frame has
  ``rpy = 0``, so a joint's quaternion is directly the child link's rotation in its
  parent link's frame. The rest pose stands upright with **arms hanging down**
  (shoulder->elbow->wrist offsets along -y), legs straight down, and **faces +x** (the
  foot box is centred at +x of the ankle). The right hip/shoulder sit at **+z**, the left
  ones at -z: body left = -z.
* Knees and elbows are revolute about the joint's local **+z** (``<axis xyz="0 0 1">``),
  i.e. the body's left-right axis. Knee limits are [-pi, 0] (negative angle swings the
  shank backwards); elbow limits are [0, pi] (positive angle swings the forearm forwards).

Mapping onto SMPL
-----------------
SMPL's rest frame is y-up, facing +z, body left = +x, in a T-pose. DeepMimic vectors are
moved into SMPL's axes by the proper rotation ``C`` (:data:`DEEPMIMIC_TO_SMPL`, a -90 deg
turn about y): forward +x -> +z, up +y -> +y, right +z -> -x. Every DeepMimic rotation
``R`` becomes ``C R C^T`` (equivalently its rotation vector ``r`` becomes ``C r``); the
world is rotated by ``C`` too, so the translation is ``C p`` and a DeepMimic character
with identity root rotation maps to SMPL's identity (facing +z).

==================  =====================================================================
DeepMimic joint     SMPL joint(s)
==================  =====================================================================
root                Pelvis (global orientation), translation = root position
chest               Spine1, Spine2, Spine3, each ``rotvec / 3`` (same axis, so the product
                    is exactly the chest rotation: Spine3's global frame = chest link's)
neck                Neck, Head, each ``rotvec / 2`` (Head's global frame = neck link's)
hip (L/R)           L_Hip / R_Hip
knee angle (L/R)    L_Knee / R_Knee: ``angle`` about ``C e_z = -x`` (flexion = +x rotation)
ankle (L/R)         L_Ankle / R_Ankle
shoulder (L/R)      L_Shoulder / R_Shoulder, conjugated for the T-pose (below)
elbow angle (L/R)   L_Elbow / R_Elbow: ``angle`` about the elbow axis in the T-pose frame
(none)              L/R_Collar, L/R_Wrist, L/R_Hand, L/R_Foot: identity
==================  =====================================================================

Rest-pose correction (arms): SMPL's upper arm points along +x (left) / -x (right) at
rest, DeepMimic's along -y. With ``A_L = Rz(-90 deg)`` and ``A_R = Rz(+90 deg)`` (the
rotation about SMPL's forward axis that lowers each T-pose arm to hanging down, palms
facing the thighs) the shoulder becomes ``R_S = (C R_D C^T) A`` and the elbow
``A^T (C R_elbow C^T) A``. Then the world directions of the upper arm and forearm equal
DeepMimic's FK exactly (for a skeleton with the same rest directions), and the SMPL
elbow hinge is the vertical axis of the T-pose, as for real SMPL elbows. Legs, feet,
spine and neck share their rest directions (down / forward / up) and need no correction.

Limits: 13 DeepMimic joints drive 24 SMPL joints. Collars, wrists, hands and toes are
not observed and stay identity (DeepMimic's wrist is a fixed joint, its hand a sphere, so
forearm twist and hand pose are unknown); spine and neck curvature is an even split (the
distribution between Spine1-3 / Neck-Head is a choice, not data); knees and elbows stay
pure hinges. Because DeepMimic's neck link carries the whole head, the split turns the
SMPL Neck->Head bone by only half of DeepMimic's neck angle, while the Head's global
orientation is exact. Every other SMPL joint's global orientation equals its DeepMimic
link's (arms up to the constant ``A``), so on a skeleton with DeepMimic's bone geometry
SMPL FK reproduces DeepMimic's joint positions; on a real SMPL body the remaining
direction differences come only from the rest geometry (SMPL's leg splay, shank lean,
toe-out, arm droop, spine curve: about 3-6 deg per limb, ~13 deg for the feet).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import roma
import torch

from ikol_engine.samples import DEEPMIMIC_CLIPS, deepmimic_motion
from ikol_engine.skeleton import JOINT_NAMES

__all__ = [
    "DEEPMIMIC_TO_SMPL",
    "ReferenceMotion",
    "load_deepmimic",
]

_J = {name: i for i, name in enumerate(JOINT_NAMES)}

#: (3, 3) change of basis, DeepMimic axes -> SMPL axes: v_smpl = DEEPMIMIC_TO_SMPL @ v_dm.
#: DeepMimic forward +x -> SMPL +z, up +y -> +y, right +z -> -x (a -90 deg turn about y).
DEEPMIMIC_TO_SMPL = torch.tensor(
    [[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]], dtype=torch.float64
)

# Column layout of one 44-float DeepMimic frame (quaternions are w, x, y, z).
_FRAME_LEN = 44
_DT = 0
_ROOT_POS = slice(1, 4)
_ROOT_QUAT = slice(4, 8)
# Ball joints split over several SMPL joints (see load_deepmimic).
_CHEST_QUAT = slice(8, 12)
_NECK_QUAT = slice(12, 16)
_SPHERICAL = {  # quaternion columns -> SMPL joint taking the whole rotation
    "R_Hip": slice(16, 20),
    "R_Ankle": slice(21, 25),
    "L_Hip": slice(30, 34),
    "L_Ankle": slice(35, 39),
}
_SHOULDERS = {"R_Shoulder": slice(25, 29), "L_Shoulder": slice(39, 43)}
_KNEES = {"R_Knee": 20, "L_Knee": 34}
_ELBOWS = {"R_Elbow": 29, "L_Elbow": 43}

# Revolute axis of knees and elbows in DeepMimic's joint frame (URDF <axis xyz="0 0 1">).
_DM_HINGE_AXIS = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)

# Rest-pose correction A (rotation vector, SMPL frame): turns SMPL's T-pose upper arm
# onto DeepMimic's hanging arm, A @ (+-x) = -y, by rotating about the forward axis (+z).
_ARM_REST_ROTVEC = {
    "L_Shoulder": torch.tensor([0.0, 0.0, -math.pi / 2], dtype=torch.float64),
    "R_Shoulder": torch.tensor([0.0, 0.0, math.pi / 2], dtype=torch.float64),
}
_ELBOW_OF = {"L_Shoulder": "L_Elbow", "R_Shoulder": "R_Elbow"}
_SHOULDER_OF = {v: k for k, v in _ELBOW_OF.items()}


@dataclass(frozen=True, eq=False)
class ReferenceMotion:
    """A mocap clip as SMPL local rotations (eq=False: tensors do not compare to a bool).

    Attributes:
        name: clip name, e.g. ``"walk"``.
        fps: keyframe rate, ``1 / median(dt)`` over frames with ``dt > 0``.
        rotations: (T, 24, 3, 3) float32 local rotation matrices in SMPL joint order
            (:data:`ikol_engine.skeleton.JOINT_NAMES`); index 0 is the Pelvis' global orientation.
        translation: (T, 3) float32 world position of the Pelvis joint (DeepMimic's root),
            metres, SMPL axes (y-up). Note SMPL's own ``transl`` argument differs from this
            by the template's rest pelvis position.
    """

    name: str
    fps: float
    rotations: torch.Tensor
    translation: torch.Tensor

    def __post_init__(self) -> None:
        t = self.rotations.shape[0]
        if self.rotations.shape != (t, 24, 3, 3):
            raise ValueError(f"rotations must be (T, 24, 3, 3), got {tuple(self.rotations.shape)}")
        if self.translation.shape != (t, 3):
            raise ValueError(f"translation must be ({t}, 3), got {tuple(self.translation.shape)}")

    @property
    def num_frames(self) -> int:
        """Number of frames T."""
        return int(self.rotations.shape[0])


def _resolve(path_or_name: str | Path) -> tuple[Path, str]:
    """Map a clip name (``"walk"``) or a file path to (file, clip name)."""
    if isinstance(path_or_name, str) and path_or_name in DEEPMIMIC_CLIPS:
        return deepmimic_motion(path_or_name), path_or_name
    path = Path(path_or_name)
    if not path.is_file():
        if isinstance(path_or_name, str) and path.suffix == "" and len(path.parts) == 1:
            deepmimic_motion(path_or_name)  # raises ValueError listing the valid clips
        raise FileNotFoundError(f"no DeepMimic clip file at {path}")
    name = path.stem.removeprefix("humanoid3d_")
    return path, name


def _quat_wxyz_to_rotvec(q_wxyz: torch.Tensor) -> torch.Tensor:
    """(T, 4) DeepMimic quaternions (w, x, y, z; not necessarily unit) -> (T, 3) rotation
    vectors, shortest arc (angle <= pi, so fractions like rotvec / 3 are the small split)."""
    norms = q_wxyz.norm(dim=-1)
    if bool((norms < 1e-6).any()):
        raise ValueError("DeepMimic clip contains a zero quaternion")
    q_xyzw = roma.quat_normalize(roma.quat_wxyz_to_xyzw(q_wxyz))
    return roma.unitquat_to_rotvec(q_xyzw, shortest_arc=True)


def _to_smpl_axes(v: torch.Tensor) -> torch.Tensor:
    """(..., 3) vectors or rotation vectors, DeepMimic axes -> SMPL axes (``C v``).

    For a proper rotation C, the rotation vector of ``C R C^T`` is ``C r``."""
    return v @ DEEPMIMIC_TO_SMPL.T


def load_deepmimic(path_or_name: str | Path) -> ReferenceMotion:
    """Load a DeepMimic humanoid clip and map it onto SMPL local rotations.

    Args:
        path_or_name: a clip name from :data:`ikol_engine.samples.DEEPMIMIC_CLIPS`
            (fetched and cached on demand) or a path to a ``humanoid3d_*.txt`` file.

    Returns:
        :class:`ReferenceMotion` with ``rotations`` (T, 24, 3, 3) and ``translation``
        (T, 3), float32, T = number of keyframes in the file (no resampling).

    Raises:
        ValueError: unknown clip name, malformed frames, or zero quaternions.
        FileNotFoundError: a path that does not exist.
    """
    path, name = _resolve(path_or_name)
    frames, fps = _read_frames(path)
    return ReferenceMotion(
        name=name,
        fps=fps,
        rotations=_smpl_rotations(frames).to(torch.float32).contiguous(),
        translation=_to_smpl_axes(frames[:, _ROOT_POS]).to(torch.float32).contiguous(),
    )


def _read_frames(path: Path) -> tuple[torch.Tensor, float]:
    """A clip file's (T, 44) frames, float64, checked, and its frame rate."""
    data = json.loads(path.read_text())
    frames = torch.tensor(data["Frames"], dtype=torch.float64)  # (T, 44); float64 for the maths
    if frames.ndim != 2 or frames.shape[1] != _FRAME_LEN or frames.shape[0] == 0:
        raise ValueError(f"{path}: expected (T, {_FRAME_LEN}) frames, got {tuple(frames.shape)}")
    if not bool(torch.isfinite(frames).all()):
        raise ValueError(f"{path}: non-finite values in frames")

    dts = frames[:, _DT]
    positive = dts[dts > 0]
    if positive.numel() == 0:
        raise ValueError(f"{path}: no frame has dt > 0")
    # Median rather than the first dt: a few clips (roll) have one doubled keyframe gap and
    # the last frame always carries dt = 0.
    return frames, float(1.0 / positive.median())


def _smpl_rotations(frames: torch.Tensor) -> torch.Tensor:
    """(T, 44) DeepMimic frames -> (T, 24, 3, 3) SMPL local rotations, float64."""
    t = frames.shape[0]
    rotvecs = torch.zeros(t, 24, 3, dtype=torch.float64)  # identity for unobserved joints

    rotvecs[:, _J["Pelvis"]] = _to_smpl_axes(_quat_wxyz_to_rotvec(frames[:, _ROOT_QUAT]))

    # Chest: one ball joint in DeepMimic, three in SMPL. Equal thirds about the same axis
    # compose back exactly to the chest rotation, so Spine3's global frame is the chest's.
    chest = _to_smpl_axes(_quat_wxyz_to_rotvec(frames[:, _CHEST_QUAT]))
    for joint in ("Spine1", "Spine2", "Spine3"):
        rotvecs[:, _J[joint]] = chest / 3.0
    # Neck: likewise halves over Neck and Head, so Head's global frame is the neck link's.
    neck = _to_smpl_axes(_quat_wxyz_to_rotvec(frames[:, _NECK_QUAT]))
    rotvecs[:, _J["Neck"]] = neck / 2.0
    rotvecs[:, _J["Head"]] = neck / 2.0

    for joint, cols in _SPHERICAL.items():
        rotvecs[:, _J[joint]] = _to_smpl_axes(_quat_wxyz_to_rotvec(frames[:, cols]))

    # Knees: revolute about DeepMimic +z (body right) -> SMPL -x. Negative DeepMimic angles
    # (flexion) thus become positive rotations about SMPL's +x (body left).
    knee_axis = _to_smpl_axes(_DM_HINGE_AXIS)
    for joint, col in _KNEES.items():
        rotvecs[:, _J[joint]] = frames[:, col, None] * knee_axis

    # Elbows: the hinge axis expressed in the corrected (T-pose) upper-arm frame, A^T C e_z,
    # so that A^T (C R C^T) A is a rotation about it by the same angle.
    for joint, col in _ELBOWS.items():
        a = roma.rotvec_to_rotmat(_ARM_REST_ROTVEC[_SHOULDER_OF[joint]])
        elbow_axis = a.T @ knee_axis  # knee_axis == C e_z
        rotvecs[:, _J[joint]] = frames[:, col, None] * elbow_axis

    rotations = roma.rotvec_to_rotmat(rotvecs)  # (T, 24, 3, 3)

    # Shoulders: R_S = (C R_D C^T) A. A lowers the SMPL T-pose arm onto DeepMimic's rest
    # direction first, then DeepMimic's own shoulder rotation applies.
    for joint, cols in _SHOULDERS.items():
        r_dm = roma.rotvec_to_rotmat(_to_smpl_axes(_quat_wxyz_to_rotvec(frames[:, cols])))
        a = roma.rotvec_to_rotmat(_ARM_REST_ROTVEC[joint])
        rotations[:, _J[joint]] = r_dm @ a
    return rotations
