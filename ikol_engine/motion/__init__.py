"""The motion file, the engine's contract with Blender: schema, checks, atomic writes
(:mod:`.file`, re-exported here). Numpy only: the Blender extension reads it."""
from __future__ import annotations

from .file import CONTACT_NAMES, QUATERNION_TOLERANCE, SCHEMA_VERSION, Motion, MotionFileError, file_sha256, read_motion, write_motion

__all__ = ["CONTACT_NAMES", "QUATERNION_TOLERANCE", "SCHEMA_VERSION", "Motion", "MotionFileError", "file_sha256", "read_motion",
           "write_motion"]
