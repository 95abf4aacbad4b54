"""Retargeting in Blender: an IKOL rig's Action onto another armature, as one new Action.

The source's keys are read whole from its F-Curves (``foreach_get``; linear curves are
sampled with numpy, any other curve through ``FCurve.evaluate``), never by stepping the
scene through frames. The target gets keys on the same frames as the source, in each
mapped bone's own rotation mode, plus the root bone's location (see
:func:`.transfer.root_locations`), all written in bulk by :mod:`ikol_blender.keyframes`.

Finger joints are keyed where both rigs have them: a built-in map keeps only the target's
bones (:func:`resolve_mapping`), and the fingers of a source imported from a motion file
without them are skipped (:func:`keyed_pairs`), as :func:`.mapping.finger_note` reports.

Nothing in the scene changes unless the whole retarget succeeds: the maths runs before
anything is written, and if writing fails the new Action is removed and the target's
previous Action (and slot) put back.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import bpy
import numpy as np

from .. import keyframes
from . import channels, mapping as maps, transfer

_LINEAR = "LINEAR"
# Rigify limbs follow their IK chain unless IK_FK is 1; the map drives the FK controls.
_RIGIFY_FK_SWITCHES = ("upper_arm_parent.L", "upper_arm_parent.R", "thigh_parent.L", "thigh_parent.R")
_FK_SWITCH_PROPERTY = "IK_FK"
_DATA_STORES = {"ARMATURE": "armatures", "MESH": "meshes", "CURVE": "curves", "CAMERA": "cameras"}


class RetargetError(ValueError):
    """A retarget that cannot run: no animation, wrong objects, unusable mapping."""


def resolve_mapping(target: bpy.types.Object, choice: str, custom: Mapping[str, str] | None = None,
                    ) -> tuple[str, dict[str, str]]:
    """The mapping to use for ``target``: ``"auto"``, a built-in map's name, or ``"custom"``.

    Returns:
        The map's name (the detected one for auto) and the mapping, checked against the
        target's bones.
    Raises:
        MappingError: see :func:`.mapping.detect_mapping` and :func:`.mapping.validate`.
    """
    bone_names = [bone.name for bone in target.data.bones]
    if choice == "auto":
        name, chosen = maps.detect_mapping(bone_names)
    elif choice == "custom":
        name, chosen = "custom", dict(custom or {})
    else:
        name, chosen = choice, maps.built_in(choice, bone_names)
        share = maps.coverage(chosen, bone_names)
        if share < maps.MIN_COVERAGE:
            raise maps.MappingError(f"{target.name} has {100 * share:.0f}% of the {choice} mapping's bones; "
                                    "pick another mapping (or Auto)")
    present = set(bone_names)
    if choice != "custom":
        # A built-in map may name bones a variant of the rig lacks (an extra spine bone).
        chosen = {joint: bone for joint, bone in chosen.items() if bone in present}
    return name, maps.validate(chosen, bone_names)


def keyed_pairs(source: bpy.types.Object, mapping: Mapping[str, str]) -> dict[str, str]:
    """The pairs :func:`retarget` keys: ``mapping`` without the finger joints ``source`` has no
    bone for (a rig from a motion file without fingers), which are skipped rather than refused."""
    return {joint: bone for joint, bone in mapping.items()
            if joint not in maps.FINGER_JOINT_NAMES or joint in source.data.bones}


def retarget(source: bpy.types.Object, target: bpy.types.Object, mapping: Mapping[str, str],
             *, action_name: str | None = None) -> bpy.types.Action:
    """Keys ``target`` with ``source``'s animation, in one new Action made active on it.

    Args:
        source: the IKOL SMPL armature (SMPL bone names, quaternion rotations), animated.
        target: any other armature in the scene.
        mapping: SMPL joint name -> target bone name (see :func:`resolve_mapping`); finger
            joints the source lacks are left out (:func:`keyed_pairs`).
        action_name: the new Action's name; default ``"<source action>_<target>"``.
    Returns:
        The new Action. The target's previous Action stays in ``bpy.data``.
    Raises:
        RetargetError: the source has no keyed Action, an object is no armature, source
            and target are one object, the source lacks a mapped body bone, or the
            mapping names only fingers and the source has none.
        MappingError: the mapping names an unknown joint or a bone the target lacks.
    """
    _check_objects(source, target)
    mapping = keyed_pairs(source, maps.validate(mapping, [bone.name for bone in target.data.bones]))
    missing = [joint for joint in mapping if joint not in source.data.bones]
    if missing:
        raise RetargetError(f"{source.name} has no bone {missing[0]!r}; the source must be an IKOL SMPL rig")
    if not mapping:
        raise RetargetError(f"the mapping names only fingers, and {source.name} has none")
    frames, deltas, root_heads = _source_motion(source, list(mapping))
    keyed = _target_channels(source, target, mapping, frames, deltas, root_heads)
    return _write(target, keyed, action_name or f"{source.animation_data.action.name}_{target.name}")


def retarget_from_blend(path: str | Path, object_name: str | None, mapping: str | Mapping[str, str],
                        source: bpy.types.Object, scene: bpy.types.Scene) -> bpy.types.Object:
    """Appends an armature, with the meshes it deforms, from a .blend file into ``scene``
    and retargets ``source`` onto it.

    Args:
        path: the .blend file.
        object_name: the armature object to take; None for the file's only armature.
        mapping: ``"auto"``, a built-in map's name, or a mapping (SMPL joint -> bone).
        source: the IKOL SMPL rig whose Action is retargeted.
        scene: where the armature and its meshes are linked (its master collection).
    Returns:
        The appended armature, keyed. If anything fails, what was appended is removed.
    Raises:
        RetargetError: the file is missing or unreadable, or holds no such armature (or
            several, with no name given); and as :func:`retarget`.
        MappingError: as :func:`resolve_mapping` and :func:`retarget`.
    """
    appended, target = _append_from(Path(path), object_name)
    try:
        character = [target, *(obj for obj in appended if _deformed_by(obj, target))]
        for obj in character:
            scene.collection.objects.link(obj)
        chosen = mapping if not isinstance(mapping, str) else resolve_mapping(target, mapping)[1]
        retarget(source, target, chosen)
    except BaseException:
        _remove_appended(appended)
        raise
    _remove_appended([obj for obj in appended if obj not in character])
    return target


def check_rig_file(path: str | Path, object_name: str | None, mapping: str | Mapping[str, str]) -> str:
    """Checks, before any video is analysed, that :func:`retarget_from_blend` can use this rig.

    Returns:
        The mapping's name (the detected one for ``"auto"``, ``"custom"`` for a mapping).
    Raises:
        RetargetError, MappingError: as :func:`retarget_from_blend` would, bar the source's.
    """
    appended, target = _append_from(Path(path), object_name)
    try:
        if isinstance(mapping, str):
            return resolve_mapping(target, mapping)[0]
        maps.validate(mapping, [bone.name for bone in target.data.bones])
        return "custom"
    finally:
        _remove_appended(appended)


def _append_from(path: Path, object_name: str | None) -> tuple[list[bpy.types.Object], bpy.types.Object]:
    """All objects of a .blend appended (linked to no scene) and the armature among them."""
    if not path.is_file():
        raise RetargetError(f"{path}: no such .blend file")
    try:
        with bpy.data.libraries.load(str(path), link=False) as (available, loaded):
            loaded.objects = list(available.objects)
    except OSError as error:
        raise RetargetError(f"{path}: cannot read it as a .blend file ({error})") from None
    appended = [obj for obj in loaded.objects if obj is not None]
    try:
        return appended, _the_armature(path, appended, object_name)
    except BaseException:
        _remove_appended(appended)
        raise


def _the_armature(path: Path, objects: list[bpy.types.Object], name: str | None) -> bpy.types.Object:
    """The armature named ``name`` among a file's objects, or its only armature."""
    if name is not None:
        named = [obj for obj in objects if obj.name == name]
        if not named:
            raise RetargetError(f"{path}: no object {name!r}")
        if named[0].type != "ARMATURE":
            raise RetargetError(f"{path}: {name!r} is no armature")
        return named[0]
    armatures = [obj for obj in objects if obj.type == "ARMATURE"]
    if len(armatures) != 1:
        raise RetargetError(f"{path}: {len(armatures)} armatures; name one as FILE.blend:OBJECT")
    return armatures[0]


def _deformed_by(obj: bpy.types.Object, armature: bpy.types.Object) -> bool:
    """Whether ``obj`` is the armature's child or skinned to it (it moves with the character)."""
    return obj.parent == armature or any(
        modifier.type == "ARMATURE" and modifier.object == armature for modifier in getattr(obj, "modifiers", ()))


def _remove_appended(objects: list[bpy.types.Object]) -> None:
    """Removes appended objects and the data only they used."""
    for obj in objects:
        data = obj.data
        bpy.data.objects.remove(obj)
        store = _DATA_STORES.get(getattr(data, "id_type", ""))
        if store is not None and data.users == 0:
            getattr(bpy.data, store).remove(data)


def _check_objects(source: bpy.types.Object, target: bpy.types.Object) -> None:
    for role, obj in (("source", source), ("target", target)):
        if obj is None or obj.type != "ARMATURE":
            raise RetargetError(f"the {role} must be an armature, not {getattr(obj, 'type', 'nothing')}")
    if source == target:
        raise RetargetError(f"{source.name} cannot be retargeted onto itself")
    animation = source.animation_data
    if animation is None or animation.action is None:
        raise RetargetError(f"{source.name} has no Action to retarget")


def _source_motion(source: bpy.types.Object, joints: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames, world deltas and root-head path of the source's animation.

    Returns:
        frames: (T,) every frame any rotation or the root location is keyed on;
        deltas: (T, J, 3, 3) world deltas of ``joints``' bones (:func:`.transfer.world_deltas`);
        root_heads: (T, 3) world position of the root bone's head.
    """
    bones = list(source.data.bones)  # Blender lists parents before children
    index = {bone.name: i for i, bone in enumerate(bones)}
    for bone in bones:
        if source.pose.bones[bone.name].rotation_mode != "QUATERNION":
            raise RetargetError(f"{source.name}: bone {bone.name} does not rotate by quaternion; "
                                "the source must be an IKOL SMPL rig")
    root = source.data.bones.get(maps.ROOT_JOINT)
    if root is None or root.parent is not None:
        raise RetargetError(f"{source.name} has no root bone {maps.ROOT_JOINT}; the source must be an IKOL SMPL rig")
    curves = {(curve.data_path, curve.array_index): curve
              for curve in keyframes.curves(source, source.animation_data.action)}
    paths = {bone.name: f'pose.bones["{bpy.utils.escape_identifier(bone.name)}"]' for bone in bones}
    used = [(paths[b.name] + ".rotation_quaternion", axis) for b in bones for axis in range(4)]
    used += [(paths[root.name] + ".location", axis) for axis in range(3)]
    keyed = {key: (curves[key], _keys(curves[key])) for key in used if key in curves}
    frames = np.unique(np.concatenate([points[:, 0] for _, points in keyed.values()] or [np.zeros(0)]))
    if len(frames) == 0:
        raise RetargetError(f"{source.name}'s Action keys none of its bones")
    pose = source.pose.bones
    quaternions = np.empty((len(frames), len(bones), 4))
    for joint, bone in enumerate(bones):
        for axis in range(4):
            key = (paths[bone.name] + ".rotation_quaternion", axis)
            quaternions[:, joint, axis] = _sample(keyed.get(key), frames, pose[bone.name].rotation_quaternion[axis])
    location = np.stack([_sample(keyed.get((paths[root.name] + ".location", axis)), frames,
                                 pose[root.name].location[axis]) for axis in range(3)], axis=-1)
    rest = np.array([np.array(b.matrix_local) for b in bones])
    parents = [index[b.parent.name] if b.parent else -1 for b in bones]
    world = np.array(source.matrix_world)
    turn = transfer.rotation_part(world)
    posed = turn @ transfer.pose_orientations(transfer.rotation_part(rest), parents, quaternions)
    chosen = [index[joint] for joint in joints]
    deltas = transfer.world_deltas(turn @ transfer.rotation_part(rest[chosen]), posed[:, chosen])
    root_rest = rest[index[root.name]]
    heads = location @ root_rest[:3, :3].T + root_rest[:3, 3]
    root_heads = heads @ world[:3, :3].T + world[:3, 3]
    return frames, deltas, root_heads


def _target_channels(source: bpy.types.Object, target: bpy.types.Object, mapping: dict[str, str],
                     frames: np.ndarray, deltas: np.ndarray, root_heads: np.ndarray) -> list[keyframes.Channel]:
    bones = list(target.data.bones)
    index = {bone.name: i for i, bone in enumerate(bones)}
    world = np.array(target.matrix_world)
    rest = world @ np.array([np.array(b.matrix_local) for b in bones])
    parents = np.array([index[b.parent.name] if b.parent is not None and b.use_inherit_rotation else -1
                        for b in bones])
    rig = transfer.TargetRig(rest, parents, tuple(_rotation_copies(target, index, _drives_fk(mapping))))
    joints = list(mapping)
    pairs = [(j, index[mapping[joint]]) for j, joint in enumerate(joints)]
    try:
        quaternions = transfer.transfer_rotations(deltas, rig, pairs)
    except ValueError as error:
        raise RetargetError(f"{target.name}: {error}") from None
    keyed = []
    for column, (_, bone_index) in enumerate(pairs):
        bone = bones[bone_index].name
        mode = target.pose.bones[bone].rotation_mode
        values = channels.channel_values(quaternions[:, column], mode)
        path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"].{channels.channel_property(mode)}'
        keyed += [keyframes.Channel(path, axis, bone, frames, values[:, axis]) for axis in range(values.shape[1])]
    if maps.ROOT_JOINT in mapping:
        bone = mapping[maps.ROOT_JOINT]
        source_hips, target_hips = _hip_offsets(source, target, mapping)
        location = transfer.root_locations(root_heads, deltas[:, joints.index(maps.ROOT_JOINT)],
                                           np.array(source.matrix_world)[:3, 3], world[:3, 3], rest[index[bone]],
                                           _leg_scale(source, target, mapping), source_hips=source_hips,
                                           target_hips=target_hips)
        path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"].location'
        keyed += [keyframes.Channel(path, axis, bone, frames, location[:, axis]) for axis in range(3)]
    keyed += _fk_switches(target, mapping, frames)
    return keyed


def _rotation_copies(target: bpy.types.Object, index: dict[str, int], fk: bool) -> list[transfer.RotationCopy]:
    """The constraints :class:`.transfer.TargetRig` models: whole world-space rotation copies within the rig.

    Others (local-space copies, partial axes, other types) are taken to keep their rest
    result, which holds where they follow unposed bones, as Rigify's do. With ``fk`` (the
    Action keys Rigify's IK/FK switches to FK) each influence is the one the switches
    then give (:func:`_influence`).
    """
    copies = []
    for pose_bone in target.pose.bones:
        for constraint in pose_bone.constraints:
            if constraint.type not in ("COPY_ROTATION", "COPY_TRANSFORMS") or constraint.mute:
                continue
            if constraint.target != target or constraint.subtarget not in index:
                continue
            if constraint.owner_space != "WORLD" or constraint.target_space != "WORLD":
                continue
            if constraint.mix_mode != "REPLACE":
                continue
            if constraint.type == "COPY_ROTATION" and not (
                    constraint.use_x and constraint.use_y and constraint.use_z
                    and not (constraint.invert_x or constraint.invert_y or constraint.invert_z)):
                continue
            copies.append(transfer.RotationCopy(index[pose_bone.name], index[constraint.subtarget],
                                                _influence(target, pose_bone, constraint, fk)))
    return copies


def _influence(target: bpy.types.Object, pose_bone: bpy.types.PoseBone, constraint: bpy.types.Constraint,
               fk: bool) -> float:
    """A constraint's influence once the retarget's keys apply.

    Rigify's deforming arm bones copy the FK chain, then the IK chain by an influence a
    driver reads from the IK/FK switch; the fingers hang from them, so their parents'
    motion depends on the switch the Action keys (to FK, with ``fk``), not on its value now.
    """
    driver = _switch_driver(target, pose_bone, constraint) if fk else None
    if driver is None:
        return float(constraint.influence)
    # A driver curve maps the driver's value (the switch's, 1: FK) through its keys and modifiers, if any.
    value = driver.evaluate(1.0) if len(driver.keyframe_points) or len(driver.modifiers) else 1.0
    return float(np.clip(value, 0.0, 1.0))


def _switch_driver(target: bpy.types.Object, pose_bone: bpy.types.PoseBone,
                   constraint: bpy.types.Constraint) -> bpy.types.FCurve | None:
    """The driver of a constraint's influence where it reads one of the rig's IK/FK switches and nothing else."""
    animation = target.animation_data
    path = (f'pose.bones["{bpy.utils.escape_identifier(pose_bone.name)}"]'
            f'.constraints["{bpy.utils.escape_identifier(constraint.name)}"].influence')
    driver = animation.drivers.find(path) if animation is not None else None
    if driver is None or driver.driver.type not in ("SUM", "AVERAGE", "MIN", "MAX") \
            or len(driver.driver.variables) != 1:
        return None
    variable = driver.driver.variables[0]
    switches = {f'pose.bones["{bone}"]["{_FK_SWITCH_PROPERTY}"]' for bone in _RIGIFY_FK_SWITCHES}
    read = variable.targets[0]
    if variable.type != "SINGLE_PROP" or read.id != target or read.data_path not in switches:
        return None
    return driver


def _world_heads(obj: bpy.types.Object, names: list[str]) -> np.ndarray:
    """(N, 3) rest world positions of the named bones' heads."""
    world = np.array(obj.matrix_world)
    return np.array([world[:3, :3] @ np.array(obj.data.bones[name].head_local) + world[:3, 3] for name in names])


def _hip_offsets(source: bpy.types.Object, target: bpy.types.Object, mapping: dict[str, str],
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(3,) rest world offsets from each rig's root head to its mapped hips' midpoint (zero if unmapped)."""
    hips = [joint for joint in ("L_Hip", "R_Hip") if joint in mapping]
    if not hips:
        return np.zeros(3), np.zeros(3)
    root = maps.ROOT_JOINT
    source_heads = _world_heads(source, [root] + hips)
    target_heads = _world_heads(target, [mapping[root]] + [mapping[joint] for joint in hips])
    return source_heads[1:].mean(axis=0) - source_heads[0], target_heads[1:].mean(axis=0) - target_heads[0]


def _leg_scale(source: bpy.types.Object, target: bpy.types.Object, mapping: dict[str, str]) -> float:
    """Target leg length / source leg length from rest heads of the mapped hips, knees, ankles; 1 if unmapped."""
    sides = [side for side in ("L_", "R_") if all(side + joint in mapping for joint in ("Hip", "Knee", "Ankle"))]
    if not sides:
        return 1.0
    joints = ("Hip", "Knee", "Ankle")
    source_legs = [_world_heads(source, [side + joint for side in sides]) for joint in joints]
    target_legs = [_world_heads(target, [mapping[side + joint] for side in sides]) for joint in joints]
    return transfer.leg_length(*target_legs) / transfer.leg_length(*source_legs)


def _drives_fk(mapping: dict[str, str]) -> bool:
    """Whether the mapping drives Rigify's FK limb controls (and so keys its IK/FK switches to FK)."""
    return any(bone.endswith(("_fk.L", "_fk.R")) for bone in mapping.values())


def _fk_switches(target: bpy.types.Object, mapping: dict[str, str], frames: np.ndarray) -> list[keyframes.Channel]:
    """Keys Rigify's IK/FK switches to FK where the mapping drives its FK limb controls."""
    if not _drives_fk(mapping):
        return []
    switches = []
    for bone in _RIGIFY_FK_SWITCHES:
        pose_bone = target.pose.bones.get(bone)
        if pose_bone is not None and _FK_SWITCH_PROPERTY in pose_bone:
            path = f'pose.bones["{bpy.utils.escape_identifier(bone)}"]["{_FK_SWITCH_PROPERTY}"]'
            ends = np.unique(frames[[0, -1]])
            switches.append(keyframes.Channel(path, 0, bone, ends, np.ones(len(ends))))
    return switches


def _write(target: bpy.types.Object, keyed: list[keyframes.Channel], name: str) -> bpy.types.Action:
    animation = target.animation_data
    had_animation = animation is not None
    previous_action = animation.action if had_animation else None
    previous_slot = animation.action_slot if had_animation and keyframes.is_slotted() else None
    action = keyframes.new_action(target, name)
    try:
        keyframes.write_keys(target, action, keyed)
    except BaseException:
        if had_animation:
            target.animation_data.action = previous_action
            if previous_slot is not None:
                target.animation_data.action_slot = previous_slot
        else:
            target.animation_data_clear()
        bpy.data.actions.remove(action)
        raise
    return action


def _keys(curve: bpy.types.FCurve) -> np.ndarray:
    """(K, 2) frame and value of each key."""
    co = np.empty(2 * len(curve.keyframe_points), dtype=np.float32)
    curve.keyframe_points.foreach_get("co", co)
    return co.reshape(-1, 2).astype(np.float64)


def _sample(keyed: tuple[bpy.types.FCurve, np.ndarray] | None, frames: np.ndarray, rest_value: float) -> np.ndarray:
    """(T,) a curve's values on ``frames``: numpy for linear keys, ``evaluate`` otherwise; unkeyed, the pose's value.

    Args:
        keyed: the curve and its (K, 2) keys (:func:`_keys`), or None for no curve.
    """
    if keyed is None or len(keyed[1]) == 0:
        return np.full(len(frames), float(rest_value))
    curve, points = keyed
    modes = np.empty(len(points), dtype=np.int32)
    curve.keyframe_points.foreach_get("interpolation", modes)
    linear = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items[_LINEAR].value
    if np.all(modes[:-1] == linear) and len(curve.modifiers) == 0 and curve.extrapolation == "CONSTANT":
        return np.interp(frames, points[:, 0], points[:, 1])
    return np.array([curve.evaluate(float(frame)) for frame in frames])
