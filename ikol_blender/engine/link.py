"""The one place the extension imports engine code: numpy-only engine modules.

An installed extension carries the engine in ``vendor/`` (see ``build_addon.py``); a
source checkout has it installed beside. Only :mod:`ikol_engine.motion`,
:mod:`ikol_engine.track.filtering`, :mod:`ikol_engine.track.ground`, :mod:`ikol_engine.common.atomic_file`
and the finger joints' names of :mod:`ikol_engine.skeleton.hands` are used here (numpy and the
standard library), so Blender's Python never needs torch.
"""
from __future__ import annotations

_ADDON = __package__.rpartition(".")[0]  # vendor/ sits beside engine/, at the add-on's top

try:
    from ..vendor.ikol_engine import motion
    from ..vendor.ikol_engine.common import atomic_file
    from ..vendor.ikol_engine.skeleton import hands
    from ..vendor.ikol_engine.track import filtering, ground
except ModuleNotFoundError as error:
    # Only a missing vendor folder means "source checkout"; a vendored engine that fails
    # to import for another reason must say so.
    if error.name not in (f"{_ADDON}.vendor", f"{_ADDON}.vendor.ikol_engine"):
        raise
    from ikol_engine import motion
    from ikol_engine.common import atomic_file
    from ikol_engine.skeleton import hands
    from ikol_engine.track import filtering, ground

CONTACT_NAMES = motion.CONTACT_NAMES
HAND_JOINT_NAMES = hands.HAND_JOINT_NAMES
Motion = motion.Motion
MotionFileError = motion.MotionFileError
read_motion = motion.read_motion
write_motion = motion.write_motion
quaternion_continuity = filtering.quaternion_continuity
atomic_path = atomic_file.atomic_path
remove_partial_files = atomic_file.remove_partial_files
Ground = ground.Ground

__all__ = ["CONTACT_NAMES", "Ground", "HAND_JOINT_NAMES", "Motion", "MotionFileError", "atomic_path",
           "quaternion_continuity", "read_motion", "remove_partial_files", "write_motion"]
