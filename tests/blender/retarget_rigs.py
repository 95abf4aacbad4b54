"""Rigs for the retarget tests: an SMPL rig keyed with real mocap, and foreign armatures.

The foreign armatures are built like a character from another tool: Blender z-up, feet
on the floor, their own proportions, arms in an A pose and bone rolls all over the place,
so nothing about their rest frames matches the SMPL rig's.
"""
from __future__ import annotations

import dataclasses

import bpy
import addon_utils  # noqa: I001 (Blender's module, importable once bpy is)
import mathutils
import numpy as np
import roma

from conftest import make_clip
from ikol_engine.samples.deepmimic import load_deepmimic
from ikol_engine.motion import Motion


def mocap_motion(body, clip: str = "dance_a") -> Motion:
    """A DeepMimic clip as a motion file's content on a random SMPL body (a few frames unsolved)."""
    mocap = load_deepmimic(clip)
    frames = mocap.num_frames
    base = make_clip(body, seed=11, frames=frames).motion
    quaternions = roma.rotmat_to_unitquat(mocap.rotations.double())[..., [3, 0, 1, 2]].numpy()
    translation = mocap.translation.double().numpy() - base.rest_joints[0]
    return dataclasses.replace(base, fps=mocap.fps, rotations=quaternions.astype(np.float32),
                               translation=translation.astype(np.float32))


def rigify_rig(context) -> bpy.types.Object:
    """Rigify's generated rig from its human metarig (the metarig is removed)."""
    addon_utils.enable("rigify", default_set=True)
    bpy.ops.object.armature_human_metarig_add()
    metarig = context.active_object
    bpy.ops.pose.rigify_generate()
    rig = context.active_object
    bpy.data.objects.remove(metarig)
    return rig


# A standing character, z-up, facing -y, feet on the floor; left is +x. Heads of the
# bones named by their SMPL joint (the tail is the head of the child listed).
_HEADS = {
    "Pelvis": (0.0, 0.0, 1.02), "Spine1": (0.0, 0.01, 1.14), "Spine2": (0.0, 0.0, 1.27),
    "Spine3": (0.0, -0.01, 1.40), "Neck": (0.0, 0.0, 1.60), "Head": (0.0, -0.01, 1.70),
    "Hip": (0.10, 0.0, 0.98), "Knee": (0.11, -0.02, 0.53), "Ankle": (0.12, 0.03, 0.09), "Foot": (0.13, -0.11, 0.02),
    "Collar": (0.03, -0.02, 1.52), "Shoulder": (0.19, 0.0, 1.52),
}
# Arm bone lengths, metres; the arms hang ``arm_drop_deg`` below horizontal.
_ARM = {"Shoulder": 0.29, "Elbow": 0.26, "Wrist": 0.09}
# Fingers: where each starts along the hand (from the wrist) and across it (+y: the back
# of the body), and its three phalanx lengths, metres; the thumb leans forward.
_FINGERS = {"index": (0.09, -0.03), "middle": (0.09, -0.01), "ring": (0.09, 0.01), "pinky": (0.085, 0.03),
            "thumb": (0.02, -0.03)}
_PHALANGES = (0.045, 0.03, 0.022)
_THUMB_LEAN = np.array([0.0, -0.7, 0.0])


def humanoid(context, names: dict[str, str], name: str, seed: int, extra: dict[str, str] = {},
             arm_drop_deg: float = 45.0, size: float = 1.0, placement: np.ndarray = np.eye(4),
             fingers: bool = False) -> bpy.types.Object:
    """An A-posed armature with the given bone names and random rolls.

    Args:
        names: SMPL joint -> bone name, for the 22 body joints (no hands), and with
            ``fingers`` SMPL-H's 30 finger joints.
        arm_drop_deg: the arms' angle below horizontal at rest (45: an A pose).
        size: scale of the whole skeleton (1: 1.8 m tall).
        placement: (4, 4) the object's world matrix; the bones are stored so that the
            character still stands in the world as described (an FBX import from Mixamo
            has a 90 degree turn and 0.01 scale here, its bones in y-up centimetres).
        extra: unmapped bones to insert: new bone name -> SMPL joint it is put under,
            between that joint and its children (as UE5's spine_02, spine_04).
        fingers: give each hand five three-bone fingers, straight along the hand.
    """
    rng = np.random.default_rng(seed)
    heads, tails, parents = _layout(np.radians(arm_drop_deg))
    if fingers:
        for layout, more in zip((heads, tails, parents), _finger_layout(np.radians(arm_drop_deg), heads)):
            layout.update(more)
    to_data = np.linalg.inv(placement)
    heads = {joint: to_data[:3, :3] @ (size * head) + to_data[:3, 3] for joint, head in heads.items()}
    tails = {joint: to_data[:3, :3] @ (size * tail) + to_data[:3, 3] for joint, tail in tails.items()}
    data = bpy.data.armatures.new(name)
    obj = bpy.data.objects.new(name, data)
    obj.matrix_world = mathutils.Matrix(placement.tolist())
    context.scene.collection.objects.link(obj)
    context.view_layer.objects.active = obj
    bpy.ops.object.mode_set(mode="EDIT")
    bones = {}
    for joint in heads:
        bone = data.edit_bones.new(names[joint])
        bone.head, bone.tail = heads[joint], tails[joint]
        bone.roll = float(rng.uniform(-np.pi, np.pi))
        bones[joint] = bone
    for joint, parent in parents.items():
        if parent is not None:
            bones[joint].parent = bones[parent]
    for new_name, joint in extra.items():
        # Half-way up the joint's bone, the upper half becomes the extra bone.
        bone, middle = bones[joint], (np.array(bones[joint].head) + np.array(bones[joint].tail)) / 2
        inserted = data.edit_bones.new(new_name)
        inserted.head, inserted.tail = tuple(middle), bone.tail.copy()
        inserted.roll = float(rng.uniform(-np.pi, np.pi))
        inserted.parent = bone
        for child in list(bone.children):
            if child != inserted:
                child.parent = inserted
    bpy.ops.object.mode_set(mode="OBJECT")
    return obj


def _finger_layout(arm_drop: float, heads: dict) -> tuple[dict, dict, dict]:
    """Heads, tails and parents of the 30 finger bones by SMPL-H joint name, off the wrists in ``heads``."""
    finger_heads, finger_tails, parents = {}, {}, {}
    for side, wrist, sign in (("left", "L_Wrist", 1.0), ("right", "R_Wrist", -1.0)):
        along = np.array([sign * np.cos(arm_drop), 0.0, -np.sin(arm_drop)])
        for finger, (start, across) in _FINGERS.items():
            direction = along + (_THUMB_LEAN if finger == "thumb" else 0.0)
            direction = direction / np.linalg.norm(direction)
            head, parent = heads[wrist] + along * start + np.array([0.0, across, 0.0]), wrist
            for number, length in enumerate(_PHALANGES, start=1):
                joint = f"{side}_{finger}{number}"
                finger_heads[joint], finger_tails[joint], parents[joint] = head, head + direction * length, parent
                head, parent = finger_tails[joint], joint
    return finger_heads, finger_tails, parents


def _layout(arm_drop: float) -> tuple[dict, dict, dict]:
    """Heads, tails and parents of the 22 body bones by SMPL joint name; arms ``arm_drop`` radians down."""
    heads, parents = {}, {}
    for joint in ("Pelvis", "Spine1", "Spine2", "Spine3", "Neck", "Head"):
        heads[joint] = np.array(_HEADS[joint])
    chain = ["Pelvis", "Spine1", "Spine2", "Spine3", "Neck", "Head"]
    parents.update({joint: (chain[i - 1] if i else None) for i, joint in enumerate(chain)})
    for side, sign in (("L_", 1.0), ("R_", -1.0)):
        mirror = np.array([sign, 1.0, 1.0])
        for joint in ("Hip", "Knee", "Ankle", "Foot", "Collar", "Shoulder"):
            heads[side + joint] = np.array(_HEADS[joint]) * mirror
        down = np.array([sign * np.cos(arm_drop), 0.0, -np.sin(arm_drop)])
        heads[side + "Elbow"] = heads[side + "Shoulder"] + down * _ARM["Shoulder"]
        heads[side + "Wrist"] = heads[side + "Elbow"] + down * _ARM["Elbow"]
        parents.update({side + "Hip": "Pelvis", side + "Knee": side + "Hip", side + "Ankle": side + "Knee",
                        side + "Foot": side + "Ankle", side + "Collar": "Spine3", side + "Shoulder": side + "Collar",
                        side + "Elbow": side + "Shoulder", side + "Wrist": side + "Elbow"})
    children = {"Pelvis": "Spine1", "Spine1": "Spine2", "Spine2": "Spine3", "Spine3": "Neck", "Neck": "Head"}
    for side in ("L_", "R_"):
        children.update({side + a: side + b for a, b in (("Hip", "Knee"), ("Knee", "Ankle"), ("Ankle", "Foot"),
                                                          ("Collar", "Shoulder"), ("Shoulder", "Elbow"),
                                                          ("Elbow", "Wrist"))})
    tails = {}
    for joint, head in heads.items():
        if joint in children:
            tails[joint] = heads[children[joint]]
        elif joint == "Head":
            tails[joint] = head + np.array([0.0, 0.0, 0.2])
        elif joint.endswith("Foot"):
            tails[joint] = head + np.array([0.0, -0.07, 0.0])
        else:  # wrists
            sign = 1.0 if joint.startswith("L_") else -1.0
            tails[joint] = head + np.array([sign * np.cos(arm_drop), 0.0, -np.sin(arm_drop)]) * _ARM["Wrist"]
    return heads, tails, parents
