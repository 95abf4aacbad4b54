"""Mapping detection and files, and the rotation maths of retargeting (numpy, no Blender scene)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import roma
import torch

from ikol_blender.scene.retarget import channels, mapping, transfer

RIGIFY_METARIG_NAMES = ["spine", "spine.001", "spine.002", "spine.003", "spine.004", "spine.005", "spine.006",
                        "pelvis.L", "pelvis.R"] + [f"{bone}.{side}" for side in "LR" for bone in
                                                   ("shoulder", "upper_arm", "forearm", "hand", "thigh", "shin",
                                                    "foot", "toe", "heel.02")]
# Rigify's generated rig: the metarig's bones come back only as ORG-/DEF- copies.
RIGIFY_NAMES = (["root", "torso", "hips", "chest", "neck", "head", "spine_fk", "spine_fk.001", "spine_fk.002",
                 "spine_fk.003", "tweak_spine"] + [f"{prefix}-{name}" for prefix in ("ORG", "DEF")
                                                   for name in RIGIFY_METARIG_NAMES]
                + [f"{bone}.{side}" for side in "LR" for bone in
                   ("shoulder", "upper_arm_fk", "forearm_fk", "hand_fk", "thigh_fk", "shin_fk", "foot_fk", "toe_fk",
                    "upper_arm_ik", "thigh_ik", "foot_ik")])
MIXAMO_NAMES = [f"mixamorig1:{name}" for name in
                ["Hips", "Spine", "Spine1", "Spine2", "Neck", "Head", "HeadTop_End"]
                + [f"{side}{bone}" for side in ("Left", "Right") for bone in
                   ("Shoulder", "Arm", "ForeArm", "Hand", "UpLeg", "Leg", "Foot", "ToeBase", "HandIndex1")]]
UE5_NAMES = (["root", "pelvis", "spine_01", "spine_02", "spine_03", "spine_04", "spine_05", "neck_01", "neck_02",
              "head"] + [f"{bone}_{side}" for side in "lr" for bone in
                         ("clavicle", "upperarm", "lowerarm", "hand", "thigh", "calf", "foot", "ball",
                          "upperarm_twist_01", "index_01")])


@pytest.mark.parametrize("names, expected", [(RIGIFY_NAMES, "rigify"), (RIGIFY_METARIG_NAMES, "rigify_metarig"),
                                             (MIXAMO_NAMES, "mixamo"), (UE5_NAMES, "ue5"),
                                             (list(mapping.SMPL_JOINT_NAMES) + ["root"], "smplx")])
def test_detect_mapping_picks_the_rig_family(names, expected):
    name, chosen = mapping.detect_mapping(names)
    assert name == expected
    assert mapping.coverage(chosen, names) == 1.0 or expected == "rigify_metarig"
    assert set(chosen.values()) <= set(names) or expected == "rigify_metarig"
    if expected == "mixamo":
        assert chosen["Pelvis"] == "mixamorig1:Hips" and chosen["L_Hip"] == "mixamorig1:LeftUpLeg"
    # Of the fingers, only those the rig has bones for (the Mixamo and UE5 lists hold one each).
    fingers = [joint for joint in chosen if joint in mapping.FINGER_JOINT_NAMES]
    assert len(fingers) == {"mixamo": 2, "ue5": 2, "smplx": 0}.get(expected, 0) or expected == "rigify_metarig"


def test_detect_mapping_refuses_an_unknown_rig():
    with pytest.raises(mapping.MappingError, match="no built-in mapping fits"):
        mapping.detect_mapping(["Bone", "Bone.001", "pelvis", "head"])


def test_validate_names_the_bad_entry():
    with pytest.raises(mapping.MappingError, match="unknown SMPL joint 'Tail'"):
        mapping.validate({"Tail": "tail_01"})
    with pytest.raises(mapping.MappingError, match="no bone 'hand_l' \\(mapped from L_Wrist\\)"):
        mapping.validate({"L_Wrist": "hand_l"}, ["pelvis"])
    with pytest.raises(mapping.MappingError, match="'pelvis' is mapped from both Pelvis and Spine1"):
        mapping.validate({"Pelvis": "pelvis", "Spine1": "pelvis"})
    with pytest.raises(mapping.MappingError, match="empty"):
        mapping.validate({})


def test_mapping_file_round_trip_and_bad_files(tmp_path):
    path = mapping.save_mapping(tmp_path / "ue5.json", mapping.UE5)
    with_fingers = UE5_NAMES + [mapping.UE5[joint] for joint in mapping.FINGER_JOINT_NAMES]
    assert mapping.load_mapping(path, with_fingers) == mapping.UE5
    # A file names its bones: a rig without the fingers it maps is refused, as for any bone.
    with pytest.raises(mapping.MappingError, match="ue5.json: the armature has no bone 'index_02_l'"):
        mapping.load_mapping(path, UE5_NAMES)
    assert not list(tmp_path.glob(".*partial*"))
    (tmp_path / "other.json").write_text(json.dumps({"bones": {"Pelvis": "pelvis"}}))
    with pytest.raises(mapping.MappingError, match="other.json: not an IKOL mapping file"):
        mapping.load_mapping(tmp_path / "other.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(mapping.MappingError, match="broken.json: cannot read a mapping"):
        mapping.load_mapping(tmp_path / "broken.json")
    with pytest.raises(mapping.MappingError, match="ue5.json: the armature has no bone 'spine_05'"):
        mapping.load_mapping(path, [name for name in with_fingers if name != "spine_05"])


def random_rotations(generator: torch.Generator, *shape: int) -> np.ndarray:
    return roma.random_rotmat(int(np.prod(shape)), generator=generator, dtype=torch.float64).numpy().reshape(
        *shape, 3, 3)


def evaluate(rig: transfer.TargetRig, local: np.ndarray) -> np.ndarray:
    """(T, B, 3, 3) world orientations by Blender's rule, written out bone by bone, with copies.

    local: (T, B, 3, 3) pose rotations (identity for unposed bones).
    """
    rest = transfer.rotation_part(rig.rest)
    world = np.empty_like(local)
    for bone, parent in enumerate(rig.parents):
        above = rest[bone] if parent < 0 else world[:, parent] @ rest[parent].T @ rest[bone]
        world[:, bone] = above @ local[:, bone]
        for copy in rig.copies:
            if copy.bone == bone:
                # Blend world rotations by a quaternion slerp along the shortest path.
                a = roma.rotmat_to_unitquat(torch.from_numpy(world[:, bone]))
                b = roma.rotmat_to_unitquat(torch.from_numpy(world[:, copy.subtarget]))
                b = torch.where((a * b).sum(-1, keepdim=True) < 0, -b, b)
                world[:, bone] = roma.unitquat_to_rotmat(roma.utils.unitquat_slerp(a, b, torch.tensor(
                    [copy.influence], dtype=torch.float64), shortest_arc=True)[0]).numpy()
    return world


def angles_deg(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    cos = (np.trace(np.swapaxes(a, -1, -2) @ b, axis1=-2, axis2=-1) - 1.0) / 2.0
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def test_transfer_repeats_world_deltas_whatever_the_rest_frames(generator):
    frames = 30
    # Source: a 4-bone chain; its posed world orientations come from its own FK.
    source_rest = random_rotations(generator, 4)
    source_local = random_rotations(generator, frames, 4)
    source_posed = transfer.pose_orientations(source_rest, [-1, 0, 1, 1], np.stack(
        [roma.rotmat_to_unitquat(torch.from_numpy(source_local))[..., [3, 0, 1, 2]].numpy()], 0)[0])
    deltas = transfer.world_deltas(source_rest, source_posed)
    # Target: 7 bones in other rest frames, an unmapped bone (2) between mapped ones, a bone
    # (5) that does not inherit rotation, and an unmapped bone 4 copying bone 1's rotation
    # half-way, under which bone 6 is mapped.
    rest = np.tile(np.eye(4), (7, 1, 1))
    rest[:, :3, :3] = random_rotations(generator, 7)
    rest[:, :3, 3] = np.random.default_rng(0).normal(size=(7, 3))
    parents = np.array([-1, 0, 1, 2, 0, -1, 4])
    rig = transfer.TargetRig(rest, parents, (transfer.RotationCopy(4, 1, 0.5),))
    pairs = [(0, 0), (1, 1), (2, 3), (3, 5), (3, 6)]
    quaternions = transfer.transfer_rotations(deltas, rig, pairs)
    assert quaternions.shape == (frames, 5, 4)
    assert np.all(np.sum(quaternions[1:] * quaternions[:-1], axis=-1) >= 0.0)
    local = np.broadcast_to(np.eye(3), (frames, 7, 3, 3)).copy()
    for column, (_, bone) in enumerate(pairs):
        local[:, bone] = roma.unitquat_to_rotmat(torch.from_numpy(quaternions[:, column][..., [1, 2, 3, 0]])).numpy()
    world = evaluate(rig, local)
    target_rest = transfer.rotation_part(rest)
    for source, bone in pairs:
        assert angles_deg(world[:, bone] @ target_rest[bone].T, deltas[:, source]).max() < 1e-4
    # The unmapped bone 2 keeps its rest pose on its parent.
    relative = np.swapaxes(world[:, 1] @ target_rest[1].T @ target_rest[2], -1, -2) @ world[:, 2]
    assert angles_deg(relative, np.eye(3)).max() < 1e-4


def test_a_bone_overridden_by_a_copy_cannot_be_mapped():
    rig = transfer.TargetRig(np.tile(np.eye(4), (2, 1, 1)), np.array([-1, 0]), (transfer.RotationCopy(1, 0, 1.0),))
    with pytest.raises(ValueError, match="target bone 1 copies another bone's rotation"):
        transfer.transfer_rotations(np.tile(np.eye(3), (3, 1, 1, 1)), rig, [(0, 1)])


def test_root_puts_the_hips_where_the_source_hips_go_scaled(generator):
    rest = np.eye(4)
    rest[:3, :3] = random_rotations(generator, 1)[0]
    rest[:3, 3] = [2.0, 0.0, 1.2]
    heads = np.array([[0.1, 0.2, 0.9], [0.5, -0.3, 1.1], [0.4, -0.2, 0.7]])
    deltas = random_rotations(generator, 3)
    source_hips, target_hips = np.array([0.0, 0.0, -0.05]), np.array([0.0, -0.04, -0.12])
    origin = np.array([2.0, 0.0, 0.0])
    location = transfer.root_locations(heads, deltas, np.zeros(3), origin, rest, 1.25,
                                       source_hips=source_hips, target_hips=target_hips)
    placed = location @ rest[:3, :3].T + rest[:3, 3]  # where Blender puts the root's head
    target_hip_path = placed + deltas @ target_hips
    source_hip_path = heads + deltas @ source_hips
    assert np.abs(target_hip_path - (origin + 1.25 * source_hip_path)).max() < 1e-12
    hips, knees, ankles = np.array([[0, 0, 1.0]]), np.array([[0, 0, 0.55]]), np.array([[0, 0.1, 0.1]])
    assert transfer.leg_length(hips, knees, ankles) == pytest.approx(0.45 + np.hypot(0.1, 0.45))


def test_channel_values_rebuild_the_rotation(generator):
    matrices = random_rotations(generator, 40)
    quaternions = roma.rotmat_to_unitquat(torch.from_numpy(matrices))[..., [3, 0, 1, 2]].numpy()
    axes = {"X": np.array([1.0, 0, 0]), "Y": np.array([0, 1.0, 0]), "Z": np.array([0, 0, 1.0])}
    for order in channels.EULER_ORDERS:
        angles = channels.matrix_to_euler(matrices, order)
        rebuilt = np.eye(3)
        for letter in order:  # the first axis applies first: R = R3 R2 R1
            turn = roma.rotvec_to_rotmat(torch.from_numpy(angles[:, "XYZ".index(letter), None] * axes[letter]))
            rebuilt = turn.numpy() @ rebuilt
        assert np.abs(rebuilt - matrices).max() < 1e-9, order
    axis_angle = channels.channel_values(quaternions, "AXIS_ANGLE")
    rotvec = torch.from_numpy(axis_angle[:, :1] * axis_angle[:, 1:])
    assert np.abs(roma.rotvec_to_rotmat(rotvec).numpy() - matrices).max() < 1e-9
    assert channels.channel_property("XZY") == "rotation_euler"
    with pytest.raises(ValueError, match="unknown rotation mode"):
        channels.channel_property("EULER")
