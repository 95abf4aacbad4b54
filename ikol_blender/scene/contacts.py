"""Foot contacts as keyed custom properties of the rig, and back into a motion file.

A motion file's ``contacts`` ((T, 4) bool, columns :data:`CONTACT_NAMES`) say on which
frames each heel and toe rests on the floor, where the IK holds it in place. On import
each column becomes a float custom property of the armature object (1.0 resting, 0.0
free), keyed on the valid frames with CONSTANT interpolation: on/off steps an animator
sees and edits in the Graph Editor and Dope Sheet. Refine with "Use edited contacts"
reads the curves back (above 0.5: resting) into a copy of the motion file
(:func:`edited_contacts`, :func:`write_with_contacts`), which the engine then solves with.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import bpy
import numpy as np

from ..engine.link import CONTACT_NAMES, Motion, write_motion
from . import keyframes

#: The armature object's custom property for each column of ``Motion.contacts``, in the
#: order of :data:`CONTACT_NAMES`: ``ikol_contact_L_Heel``, ``ikol_contact_R_Heel``,
#: ``ikol_contact_L_Toe``, ``ikol_contact_R_Toe``. Each is animated by the F-Curve
#: ``["<name>"]`` of the rig's Action.
CONTACT_PROPERTIES: tuple[str, ...] = tuple(f"ikol_contact_{name}" for name in CONTACT_NAMES)
CONTACT_GROUP = "IKOL Contacts"
_RESTING = 0.5  # curve values above this read as resting: an edited key need not be exactly 1
_SIDES = {"L": "left", "R": "right"}


def contact_data_path(prop: str) -> str:
    """The F-Curve data path of a custom property of the armature object."""
    return f'["{prop}"]'


def contact_channels(armature: bpy.types.Object, motion: Motion, frames: np.ndarray) -> list[keyframes.Channel]:
    """Makes the contact properties on ``armature`` and returns their curves' channels.

    Args:
        armature: the rig; each property gets its first valid frame's value, a 0 to 1
            range and a description.
        motion: its contacts are keyed on its valid frames.
        frames: (V,) Blender frame of each valid frame, the bone keys' frames.
    Returns:
        One CONSTANT channel per :data:`CONTACT_PROPERTIES`; none for a motion without contacts.
    """
    if motion.contacts is None:
        return []
    values = motion.contacts[motion.valid].astype(np.float32)  # (V, 4)
    channels = []
    for column, (name, prop) in enumerate(zip(CONTACT_NAMES, CONTACT_PROPERTIES)):
        side, point = name.split("_")
        armature[prop] = float(values[0, column])
        armature.id_properties_ui(prop).update(
            min=0.0, max=1.0, soft_min=0.0, soft_max=1.0, precision=0,
            description=f"IKOL: 1 where the {_SIDES[side]} {point.lower()} rests on the floor (the IK holds it "
                        f"in place), 0 where it is free. Edit the keys, then Refine with Use edited contacts")
        channels.append(keyframes.Channel(contact_data_path(prop), 0, CONTACT_GROUP, frames, values[:, column],
                                          "CONSTANT"))
    return channels


def remove_contacts(armature: bpy.types.Object, action: bpy.types.Action) -> None:
    """Removes the contact properties and their curves (a motion without contacts replaced the rig's)."""
    keyframes.remove_curves(armature, action, [contact_data_path(prop) for prop in CONTACT_PROPERTIES])
    for prop in CONTACT_PROPERTIES:
        if prop in armature:
            del armature[prop]


def edited_contacts(armature: bpy.types.Object, motion: Motion, frames: np.ndarray) -> np.ndarray:
    """The rig's contact curves as ``motion``'s contacts: (T, 4) bool, columns :data:`CONTACT_NAMES`.

    Each curve is evaluated at each valid frame's Blender frame (above 0.5: resting).
    Frames without a pose have no key of their own; they keep the file's contacts (free
    where the file has none).

    Args:
        armature: the rig, keyed from ``motion``.
        motion: the rig's motion file.
        frames: (T,) Blender frame of each of ``motion``'s frames (see
            :func:`~ikol_blender.scene.importer.blender_frames`).
    Raises:
        ValueError: the rig has no contact curve for some foot point, or ``frames`` is
            not one per motion frame.
    """
    frames = np.asarray(frames, dtype=np.float64)
    if frames.shape != motion.valid.shape:
        raise ValueError(f"frames {frames.shape} must be one per motion frame {motion.valid.shape}")
    animation = armature.animation_data
    action = animation.action if animation is not None else None
    found = {curve.data_path: curve for curve in keyframes.curves(armature, action)} if action else {}
    missing = [prop for prop in CONTACT_PROPERTIES if contact_data_path(prop) not in found]
    if missing:
        raise ValueError(f"{armature.name} has no foot contact curves ({', '.join(missing)}): its motion file "
                         f"records no contacts. Turn Use edited contacts off to have the engine detect them")
    contacts = np.zeros((len(frames), len(CONTACT_NAMES)), dtype=bool) if motion.contacts is None \
        else np.array(motion.contacts, dtype=bool)
    posed = frames[motion.valid]
    for column, prop in enumerate(CONTACT_PROPERTIES):
        curve = found[contact_data_path(prop)]
        contacts[motion.valid, column] = [curve.evaluate(frame) > _RESTING for frame in posed]
    return contacts


def write_with_contacts(motion: Motion, contacts: np.ndarray, path: str | Path) -> Path:
    """Writes a copy of ``motion`` with ``contacts`` ((T, 4) bool) in place of its own, atomically.

    Raises:
        MotionFileError: ``contacts`` is not (T, 4); nothing is written.
        OSError: the file cannot be written; nothing is left behind.
    """
    return write_motion(path, dataclasses.replace(motion, contacts=np.asarray(contacts, dtype=bool)))
