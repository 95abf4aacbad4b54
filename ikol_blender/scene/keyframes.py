"""The one keyframe writer: whole F-Curves at once, on Blender 4.2 to 5.x.

Keys are written per curve with ``keyframe_points.add`` and ``foreach_set`` (about a
million keys a second) instead of ``keyframe_insert`` (a few thousand a second).

Blender 4.4 made actions "slotted": F-Curves live in a channelbag of a keyframe strip,
per slot, and 5.0 removed the old ``Action.fcurves``. Which API to use is decided by
what the running Blender offers, not by its version number.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

import bpy
import numpy as np


class Channel(NamedTuple):
    """One animated value: an F-Curve and its keys.

    Attributes:
        data_path: RNA path from the animated ID, e.g. ``'pose.bones["Pelvis"].location'``.
        index: array index of the value (0 for a scalar).
        group: channel group the curve is listed under (a bone's name groups its curves).
        frames: (K,) key times, in frames, increasing.
        values: (K,) key values.
        interpolation: of every key, a ``Keyframe.interpolation`` item: "LINEAR" for
            sampled motion, "CONSTANT" for on/off steps.
    """

    data_path: str
    index: int
    group: str
    frames: np.ndarray
    values: np.ndarray
    interpolation: str = "LINEAR"


def is_slotted() -> bool:
    """True where actions have slots, layers and channelbags (Blender 4.4+)."""
    # 4.3 ships an experimental ActionKeyframeStrip without channelbag(); treat it as legacy.
    strip = getattr(bpy.types, "ActionKeyframeStrip", None)
    return strip is not None and "channelbag" in strip.bl_rna.functions


def new_action(obj: bpy.types.Object, name: str) -> bpy.types.Action:
    """Creates a new Action and makes it the one animating ``obj`` (with its own slot).

    Whatever action ``obj`` had stays in ``bpy.data``; only the assignment changes.
    """
    action = bpy.data.actions.new(name)
    animation = obj.animation_data or obj.animation_data_create()
    animation.action = action
    if is_slotted():
        slot = action.slots.new(id_type="OBJECT", name=obj.name)
        animation.action_slot = slot
    return action


def write_keys(obj: bpy.types.Object, action: bpy.types.Action, channels: Iterable[Channel]) -> list[bpy.types.FCurve]:
    """Writes one new F-Curve per channel into ``action``, with the channel's interpolation.

    Args:
        obj: the animated object; on slotted Blenders its assigned slot of ``action``
            (see :func:`new_action`) receives the curves.
        action: the action to write into; it must not have these curves yet.
        channels: the curves to write.
    Returns:
        The new F-Curves, in the order of ``channels``.
    Raises:
        ValueError: a channel's frames and values differ in length, or ``obj`` has no
            slot of ``action`` assigned (slotted Blenders).
    """
    new_curve = _curve_factory(obj, action)
    curves = []
    for channel in channels:
        arrays = _arrays(channel)
        curve = new_curve(channel.data_path, channel.index, channel.group)
        _fill(curve, *arrays, channel.interpolation)
        curves.append(curve)
    return curves


def rewrite_keys(obj: bpy.types.Object, action: bpy.types.Action, channels: Iterable[Channel]) -> None:
    """Replaces the keys of ``channels``' F-Curves in ``action`` (making missing curves).

    The curves themselves stay, with whatever the animator set on them (modifiers,
    colours, lock); only their keyframes are replaced.
    """
    channels = list(channels)
    arrays = [_arrays(channel) for channel in channels]  # all checked before any curve changes
    existing = {(curve.data_path, curve.array_index): curve for curve in curves(obj, action)}
    missing = [channel for channel in channels if (channel.data_path, channel.index) not in existing]
    for channel, (frames, values) in zip(channels, arrays):
        curve = existing.get((channel.data_path, channel.index))
        if curve is not None:
            curve.keyframe_points.clear()
            _fill(curve, frames, values, channel.interpolation)
    write_keys(obj, action, missing)


def remove_curves(obj: bpy.types.Object, action: bpy.types.Action, data_paths: Iterable[str]) -> None:
    """Removes the F-Curves of ``data_paths`` (every index) animating ``obj`` in ``action``, if any."""
    data_paths = set(data_paths)
    fcurves = curves(obj, action)
    for curve in [curve for curve in fcurves if curve.data_path in data_paths]:
        fcurves.remove(curve)


def _arrays(channel: Channel) -> tuple[np.ndarray, np.ndarray]:
    frames = np.asarray(channel.frames, dtype=np.float32)
    values = np.asarray(channel.values, dtype=np.float32)
    if frames.shape != values.shape or frames.ndim != 1:
        raise ValueError(f"{channel.data_path}[{channel.index}]: frames {frames.shape} and values "
                         f"{values.shape} must be equal 1-D shapes")
    return frames, values


def curves(obj: bpy.types.Object, action: bpy.types.Action):
    """The F-Curves animating ``obj`` in ``action``."""
    if not is_slotted():
        return action.fcurves
    animation = obj.animation_data
    slot = animation.action_slot if animation and animation.action == action else None
    if slot is None or not action.layers or not action.layers[0].strips:
        return []
    return action.layers[0].strips[0].channelbag(slot, ensure=True).fcurves


def _fill(curve: bpy.types.FCurve, frames: np.ndarray, values: np.ndarray, interpolation: str) -> None:
    points = curve.keyframe_points
    points.add(len(frames))
    points.foreach_set("co", np.stack([frames, values], axis=1).ravel())
    mode = bpy.types.Keyframe.bl_rna.properties["interpolation"].enum_items[interpolation].value
    points.foreach_set("interpolation", np.full(len(frames), mode, dtype=np.int32))
    curve.update()


def _curve_factory(obj: bpy.types.Object, action: bpy.types.Action):
    """A function (data_path, index, group) -> new FCurve for this Blender's action API."""
    if not is_slotted():
        return lambda path, index, group: action.fcurves.new(path, index=index, action_group=group)
    animation = obj.animation_data
    slot = animation.action_slot if animation and animation.action == action else None
    if slot is None:
        raise ValueError(f"{obj.name!r} has no slot of action {action.name!r} assigned; use new_action()")
    layer = action.layers[0] if action.layers else action.layers.new("Layer")
    strip = layer.strips[0] if layer.strips else layer.strips.new(type="KEYFRAME")
    channelbag = strip.channelbag(slot, ensure=True)
    if "group_name" in channelbag.fcurves.bl_rna.functions["new"].parameters:  # 5.0+
        return lambda path, index, group: channelbag.fcurves.new(path, index=index, group_name=group)

    def new_grouped(path: str, index: int, group: str) -> bpy.types.FCurve:
        curve = channelbag.fcurves.new(path, index=index)
        curve.group = channelbag.groups.get(group) or channelbag.groups.new(group)
        return curve
    return new_grouped
