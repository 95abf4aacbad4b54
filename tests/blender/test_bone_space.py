"""bone_space without Blender: axes, rest frames, and the pose conversion against the engine's FK."""
from __future__ import annotations

import numpy as np
import pytest

from finger_motion import global_pose, with_fingers
from ikol_blender.scene import bone_space
from ikol_engine.skeleton import hands

MM = 1e-3


def random_quaternions(shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    q = np.random.default_rng(seed).normal(size=shape + (4,))
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def test_axis_change_makes_smpl_stand_up_facing_minus_y():
    up, forward, left = bone_space.to_blender_axes(np.eye(3)[[1, 2, 0]])
    np.testing.assert_allclose(up, [0, 0, 1], atol=1e-15)
    np.testing.assert_allclose(forward, [0, -1, 0], atol=1e-15)
    np.testing.assert_allclose(left, [1, 0, 0], atol=1e-15)
    # The quaternion used for poses is the same turn as the matrix used for points.
    np.testing.assert_allclose(bone_space.quaternion_to_matrix(bone_space._AXIS_CHANGE_QUATERNION),
                               bone_space.AXIS_CHANGE, atol=1e-15)


def test_quaternion_matrix_round_trip_including_half_turns():
    q = random_quaternions((2000,))
    q[:500, 0] = 0.0  # 180 degree turns: w = 0, where naive conversions divide by zero
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    back = bone_space.matrix_to_quaternion(bone_space.quaternion_to_matrix(q))
    assert np.abs(np.abs((q * back).sum(-1)) - 1.0).max() < 1e-12
    a, b = q[:1000], q[1000:]
    product = bone_space.quaternion_to_matrix(bone_space.quaternion_multiply(a, b))
    assert np.abs(product - bone_space.quaternion_to_matrix(a) @ bone_space.quaternion_to_matrix(b)).max() < 1e-12


def test_rest_bones_point_along_the_chains(clip):
    motion = clip.motion
    bones = bone_space.rest_bones(motion.rest_joints, motion.parents)
    names = list(motion.joint_names)
    index = names.index
    frames = bones.orientations
    assert np.abs(frames.transpose(0, 2, 1) @ frames - np.eye(3)).max() < 1e-12
    assert np.abs(np.linalg.det(frames) - 1.0).max() < 1e-12
    direction = (bones.tails - bones.heads) / np.linalg.norm(bones.tails - bones.heads, axis=1, keepdims=True)
    assert np.abs(direction - frames[:, :, 1]).max() < 1e-12
    np.testing.assert_allclose(bones.heads, bone_space.to_blender_axes(motion.rest_joints), atol=1e-7)
    # Multi-child joints point at the chain they continue; single-child joints at the child.
    for joint, child in [("Pelvis", "Spine1"), ("Spine3", "Neck"), ("L_Knee", "L_Ankle"), ("R_Elbow", "R_Wrist")]:
        np.testing.assert_allclose(bones.tails[index(joint)], bones.heads[index(child)], atol=1e-7)
    # Leaves continue their parent bone.
    for leaf, parent in [("Head", "Neck"), ("L_Hand", "L_Wrist"), ("R_Foot", "R_Ankle")]:
        np.testing.assert_allclose(direction[index(leaf)], direction[index(parent)], atol=1e-12)
    # Roll rule: vertical bones have x = the body's left and z = forward (Blender -y);
    # the feet, pointing forward, take z = up.
    pelvis = frames[index("Pelvis")]
    assert pelvis[:, 0] @ [1, 0, 0] > 0.99 and pelvis[:, 2] @ [0, -1, 0] > 0.94  # bone leans 15 degrees
    assert frames[index("L_Foot"), :, 2] @ [0, 0, 1] > 0.9


def test_rest_pose_is_identity_in_bone_space(clip):
    motion = clip.motion
    bones = bone_space.rest_bones(motion.rest_joints, motion.parents)
    identity = np.zeros((3, 24, 4))
    identity[..., 0] = 1.0
    quaternions, location = bone_space.pose_from_smpl(identity, np.zeros((3, 3)), bones.orientations)
    assert np.abs(quaternions - identity).max() < 1e-12
    assert np.abs(location).max() < 1e-15


def test_converted_pose_reproduces_engine_fk(clip):
    """Blender's evaluation rule applied to the converted channels puts every head on the engine's joint."""
    motion = clip.motion
    bones = bone_space.rest_bones(motion.rest_joints, motion.parents)
    quaternions, location = bone_space.pose_from_smpl(motion.rotations, motion.translation, bones.orientations)
    heads = bone_space.armature_fk(bones, motion.parents, quaternions, location)
    truth = bone_space.to_blender_axes(clip.joints)
    error = np.linalg.norm(heads - truth, axis=-1)
    print(f"armature FK vs engine FK: max {error.max() / MM:.5f} mm")
    assert error.max() < 0.1 * MM
    # The numpy SMPL FK agrees with the engine's too (it is what previews use).
    smpl = bone_space.smpl_fk(motion.rest_joints, motion.parents, motion.rotations, motion.translation)
    assert np.linalg.norm(smpl - clip.joints, axis=-1).max() < 0.1 * MM


def test_conversion_holds_for_any_rest_orientation(clip):
    """The formula depends on B only through conjugation: arbitrary bone frames still give exact heads."""
    motion = clip.motion
    bones = bone_space.rest_bones(motion.rest_joints, motion.parents)
    twisted = bone_space.RestBones(bones.heads, bones.tails,
                                   bone_space.quaternion_to_matrix(random_quaternions((24,), seed=5)))
    quaternions, location = bone_space.pose_from_smpl(motion.rotations, motion.translation, twisted.orientations)
    heads = bone_space.armature_fk(twisted, motion.parents, quaternions, location)
    assert np.linalg.norm(heads - bone_space.to_blender_axes(clip.joints), axis=-1).max() < 0.1 * MM


def test_hemisphere_is_continuous_and_rotations_unchanged():
    steps = random_quaternions((200, 24), seed=1) * 0.05
    steps[..., 0] += 1.0  # small steps: a smooth random walk of rotations
    walk = np.empty_like(steps)
    walk[0] = random_quaternions((24,), seed=2)
    for t in range(1, len(walk)):
        walk[t] = bone_space.quaternion_multiply(walk[t - 1], steps[t])
        walk[t] /= np.linalg.norm(walk[t], axis=-1, keepdims=True)
    scrambled = walk * np.where(np.random.default_rng(3).random(walk.shape[:2]) < 0.5, -1.0, 1.0)[..., None]
    assert ((scrambled[1:] * scrambled[:-1]).sum(-1) < 0).sum() > 1000  # the input does flip
    fixed = bone_space.continuous_hemisphere(scrambled)
    assert ((fixed[1:] * fixed[:-1]).sum(-1) >= 0).all()
    assert (fixed[0, :, 0] >= 0).all()
    np.testing.assert_allclose(np.abs((fixed * scrambled).sum(-1)), 1.0, atol=1e-12)
    assert np.abs(fixed - fixed[0] * np.sign((fixed * fixed[0]).sum(-1))[..., None]).max() > 0.5  # it moved


@pytest.mark.parametrize("frames", [0, 1])
def test_hemisphere_of_tiny_inputs(frames):
    q = -np.tile([1.0, 0, 0, 0], (frames, 2, 1))
    assert bone_space.continuous_hemisphere(q).shape == (frames, 2, 4)
    assert (bone_space.continuous_hemisphere(q)[..., 0] >= 0).all()


def test_finger_bones_run_down_the_fingers_and_leave_the_body_as_it_was(clip, body):
    motion = with_fingers(clip.motion, body)
    fingers = bone_space.rest_bones_with_fingers(motion.rest_joints, motion.parents, motion.hand_rest_joints,
                                                 motion.hand_parents)
    alone = bone_space.rest_bones(motion.rest_joints, motion.parents)
    for mine, theirs in ((fingers.heads, alone.heads), (fingers.tails, alone.tails),
                         (fingers.orientations, alone.orientations)):
        np.testing.assert_array_equal(mine[:24], theirs)  # the wrists still point at SMPL's hands
    frames = fingers.orientations
    assert len(frames) == 54 and np.abs(frames.transpose(0, 2, 1) @ frames - np.eye(3)).max() < 1e-12
    np.testing.assert_allclose(fingers.heads[24:], bone_space.to_blender_axes(motion.hand_rest_joints), atol=1e-7)
    bones = fingers.tails - fingers.heads
    names = list(motion.hand_joint_names)
    for finger in hands.FINGERS:
        first, second, tip = (24 + names.index(f"left_{finger}{k}") for k in (1, 2, 3))
        # Each bone ends at the finger's next joint; the tip continues the phalanx before it.
        np.testing.assert_allclose(fingers.tails[[first, second]], fingers.heads[[second, tip]], atol=1e-7)
        np.testing.assert_allclose(bones[tip], bones[second], atol=1e-7)
        assert motion.hand_parents[first - 24] == motion.joint_names.tolist().index("L_Wrist")


def test_converted_finger_pose_reproduces_the_chain(clip, body):
    """The body's conversion, applied to all 54 joints, puts every finger head where the file's chain does."""
    motion = with_fingers(clip.motion, body)
    bones = bone_space.rest_bones_with_fingers(motion.rest_joints, motion.parents, motion.hand_rest_joints,
                                               motion.hand_parents)
    rotations = np.concatenate([motion.rotations, motion.hand_rotations], axis=1)
    quaternions, location = bone_space.pose_from_smpl(rotations, motion.translation, bones.orientations)
    heads = bone_space.armature_fk(bones, np.concatenate([motion.parents, motion.hand_parents]), quaternions, location)
    _, truth = global_pose(motion)
    error = np.linalg.norm(heads - bone_space.to_blender_axes(truth), axis=-1)
    print(f"armature FK vs the file's chain, 54 joints: max {error.max() / MM:.5f} mm")
    assert error.max() < 0.1 * MM
    assert np.linalg.norm(truth[:, 24:] - truth[:1, 24:], axis=-1).max() > 0.05  # the fingers do move
