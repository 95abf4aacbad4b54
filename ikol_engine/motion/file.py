"""The motion file: what the engine writes and the Blender add-on reads.

A motion file is an ``.npz`` archive (``np.savez``) of plain arrays, read
with ``np.load(..., allow_pickle=False)`` so opening one can never run code. Strings are
numpy unicode arrays; single values are 0-d arrays. It is written atomically (see
:mod:`ikol_engine.common.atomic_file`): a crash never leaves half a file.

Conventions
-----------
* Sizes: T frames, 24 SMPL joints (:data:`ikol_engine.skeleton.JOINT_NAMES`), 29 IK
  targets (:data:`ikol_engine.skeleton.KEYPOINT_NAMES`: the joints, then five leaf
  points), 23 twists (joints 1..23, the root has none), R regressor keypoints, N shape
  coefficients, V mesh vertices, F mesh triangles.
* Lengths in metres. Axes are SMPL's: **y up**. The rest pose is SMPL's T-pose, facing
  +z with the body's left at +x.
* World frame: camera-aligned and y-up: x to the image's right, y up, z towards the
  camera (the OpenCV camera frame turned 180 degrees about x).
* Quaternions are unit, ordered **w, x, y, z**. Their hemisphere (q vs -q) is whatever
  the writer chose; the engine keeps consecutive frames in the same hemisphere so that
  keyframe interpolation does not spin, and this module never changes data.
* Frames where no person was found or the IK failed have ``valid = False``; their other
  per-frame values are placeholders (identity rotations, zeros) and must not be keyed.

Keys
----
=========================  ============  ========  ==========================================
key                        shape         dtype     meaning
=========================  ============  ========  ==========================================
schema_version             ()            int64     :data:`SCHEMA_VERSION`; readers refuse newer
fps                        ()            float64   frames per second of the source video, > 0
frame_indices              (T,)          int64     source video frame number of each frame
joint_names                (24,)         str       SMPL joint (bone) names, in order
parents                    (24,)         int64     parent joint index; -1 for the root (Pelvis)
rest_joints                (24, 3)       float32   rest-pose joint positions for ``betas``, m
betas                      (N,)          float32   SMPL shape coefficients
mesh_vertices              (V, 3)        float32   the body's rest-pose mesh for ``betas``, m
mesh_faces                 (F, 3)        int64     triangles, indices into ``mesh_vertices``
skin_weights               (V, 24)       float32   linear-blend skin weight of each joint; rows
                                                   sum to 1
rotations                  (T, 24, 4)    float32   local joint rotations (relative to the parent
                                                   joint, from the rest pose), unit wxyz;
                                                   joint 0 is the global orientation
translation                (T, 3)        float32   root translation, m, world frame: smplx's
                                                   ``transl``, so the Pelvis is at
                                                   ``rest_joints[0] + translation``
valid                      (T,)          bool      a person was found and solved
residual_mm                (T,)          float32   mean distance from the fitted keypoints to
                                                   the IK targets, mm
targets                    (T, 29, 3)    float32   IK target positions, m, world frame
target_confidence          (T, 29)       float32   weight of each target, 0..1
twist                      (T, 23)       float32   twist of joints 1..23 about their rest
                                                   bone, radians
twist_confidence           (T, 23)       float32   weight of each twist, 0..1
regressor_name             ()            str       which keypoint regressor produced these
regressor_keypoint_names   (R,)          str       the regressor's keypoint names, in order
regressor_keypoints        (T, R, 3)     float32   raw regressor 3D keypoints, as it gave them
regressor_confidence       (T, R)        float32   the regressor's confidence per keypoint
image_keypoints            (T, R, 2)     float32   keypoints in the image, pixels (x right,
                                                   y down, origin at the top-left corner)
options                    ()            str       JSON object: the options of the run
source_video               ()            str       the video's file name (no directory)
source_sha256              ()            str       SHA-256 of the video file, hex
engine_version             ()            str       ``ikol_engine.__version__`` that wrote it
=========================  ============  ========  ==========================================

Optional keys; files without them read as before. ``frame_times`` is written by every
engine since schema 2; a file without it (schema 1) has its frames at
``frame_indices / fps`` (:attr:`Motion.times`). ``person_boxes`` is written by every
analyze since schema 3, which follows one chosen person; the run's ``options["person"]``
then records whom: ``id`` (the person's id in ``ikol-engine people``), ``choice`` (the
``--person`` given), ``found`` (every id found), ``detected_frames`` and
``detection_step``. ``contacts`` is written by every engine since schema 4: the frames
where each foot point rests on the floor, which the IK held in place. The hands' keys
(schema 5) are written where the hands were analysed (not with ``--no-hands``, nor by a
regressor without hand landmarks, nor for a body without fingers); each group comes
whole. Fingers are SMPL-H's 15 joints per hand (:mod:`ikol_engine.skeleton.hands`), the
left hand's then the right's; a hand's first joints hang off the body's wrist. The regressor's own twist and shape come only from regressors that
give them (HybrIK's network, whose keypoints are the 29 targets' set):

===========================  ==========  ========  ==========================================
key                          shape       dtype     meaning
===========================  ==========  ========  ==========================================
frame_times                  (T,)        float64   each frame's time in the video, seconds,
                                                   increasing: the decoder's timestamps, so
                                                   variable-frame-rate clips keep their timing
regressor_twist              (T, 23)     float32   the regressor's twist of joints 1..23, rad
regressor_twist_confidence   (T, 23)     float32   its confidence, 0..1
regressor_betas              (10,)       float32   the regressor's SMPL shape for the clip
person_boxes                 (T, 4)      float32   the followed person's box [x0, y0, x1, y1],
                                                   pixels (interpolated between the
                                                   detector's runs); NaN outside their track
contacts                     (T, 4)      bool      the foot point rests (columns
                                                   :data:`CONTACT_NAMES`: left heel, right
                                                   heel, left toe, right toe)
hand_landmarks               (T,2,21,3)  float32   each hand's 21 MediaPipe landmarks (left,
                                                   right; MediaPipe's order), metres about
                                                   the hand's centre, camera axes
hand_landmark_pixels         (T,2,21,2)  float32   the same in the image, pixels
hand_landmark_confidence     (T,2,21)    float32   0 where that hand was not found
hand_joint_names             (30,)       str       SMPL-H's finger joint names
hand_parents                 (30,)       int64     parent of each, an index into
                                                   ``joint_names`` then ``hand_joint_names``
hand_rest_joints             (30, 3)     float32   rest positions of the finger joints, m
skin_weights_with_fingers    (V, 54)     float32   skin weights over the 24 joints then the
                                                   30 finger joints (the hand joints' own
                                                   columns empty: the fingers move that skin)
hand_rotations               (T, 30, 4)  float32   finger joints' local rotations, unit wxyz
hand_valid                   (T, 2)      bool      each hand was seen and solved in the frame
                                                   (else held between seen frames, or at rest)
hand_residual_mm             (T, 2)      float32   mean distance from the solved hand to its
                                                   landmarks, mm (0 where not seen)
===========================  ==========  ========  ==========================================

The mesh makes a file self-contained: Blender builds the rig from it without the engine.
The IK inputs (``targets`` .. ``twist_confidence``) are kept so the IK can be re-run
without the regressor; the raw regressor output so the mapping to targets can be redone.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import numbers
import tokenize
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..common.atomic_file import atomic_path

#: 2 added ``frame_times``, 3 ``person_boxes``, 4 ``contacts``, 5 the hands' landmarks and
#: the fingers; older files still read (version 1's times are index / fps).
SCHEMA_VERSION = 5
#: Columns of ``contacts``: the foot points the IK locks (the ankles stand in for the heels).
CONTACT_NAMES: tuple[str, ...] = ("L_Heel", "R_Heel", "L_Toe", "R_Toe")
QUATERNION_TOLERANCE = 1e-3

# Every array field: dtype and shape. Letters are sizes shared between arrays, fixed by
# the first array that has them (T frames, N shape coefficients, R regressor keypoints).
_ARRAYS: dict[str, tuple[type, tuple[int | str, ...]]] = {
    "frame_indices": (np.int64, ("T",)),
    "joint_names": (np.str_, (24,)),
    "parents": (np.int64, (24,)),
    "rest_joints": (np.float32, (24, 3)),
    "betas": (np.float32, ("N",)),
    "mesh_vertices": (np.float32, ("V", 3)),
    "mesh_faces": (np.int64, ("F", 3)),
    "skin_weights": (np.float32, ("V", 24)),
    "rotations": (np.float32, ("T", 24, 4)),
    "translation": (np.float32, ("T", 3)),
    "valid": (np.bool_, ("T",)),
    "residual_mm": (np.float32, ("T",)),
    "targets": (np.float32, ("T", 29, 3)),
    "target_confidence": (np.float32, ("T", 29)),
    "twist": (np.float32, ("T", 23)),
    "twist_confidence": (np.float32, ("T", 23)),
    "regressor_keypoint_names": (np.str_, ("R",)),
    "regressor_keypoints": (np.float32, ("T", "R", 3)),
    "regressor_confidence": (np.float32, ("T", "R")),
    "image_keypoints": (np.float32, ("T", "R", 2)),
}
# Optional arrays (see the module docstring): checked where present, absent in older files.
_OPTIONAL_ARRAYS: dict[str, tuple[type, tuple[int | str, ...]]] = {
    "frame_times": (np.float64, ("T",)),
    "regressor_twist": (np.float32, ("T", 23)),
    "regressor_twist_confidence": (np.float32, ("T", 23)),
    "regressor_betas": (np.float32, (10,)),
    "person_boxes": (np.float32, ("T", 4)),
    "contacts": (np.bool_, ("T", 4)),
    "hand_landmarks": (np.float32, ("T", 2, 21, 3)),
    "hand_landmark_pixels": (np.float32, ("T", 2, 21, 2)),
    "hand_landmark_confidence": (np.float32, ("T", 2, 21)),
    "hand_joint_names": (np.str_, (30,)),
    "hand_parents": (np.int64, (30,)),
    "hand_rest_joints": (np.float32, (30, 3)),
    "skin_weights_with_fingers": (np.float32, ("V", 54)),
    "hand_rotations": (np.float32, ("T", 30, 4)),
    "hand_valid": (np.bool_, ("T", 2)),
    "hand_residual_mm": (np.float32, ("T", 2)),
}
# Keys that come together or not at all: what the hands' landmarks were, and the fingers solved.
_HAND_LANDMARK_KEYS = ("hand_landmarks", "hand_landmark_pixels", "hand_landmark_confidence")
_FINGER_KEYS = ("hand_joint_names", "hand_parents", "hand_rest_joints", "skin_weights_with_fingers",
                "hand_rotations", "hand_valid", "hand_residual_mm")
_STRINGS = ("regressor_name", "source_video", "source_sha256", "engine_version")
_FILE_KEYS = ("schema_version", "fps", *_ARRAYS, *_STRINGS, "options")

# What np.load and reading an archive member raise on a file that is not a complete npz;
# zipfile refuses members flagged encrypted (RuntimeError) or as patch data
# (NotImplementedError), which one flipped bit in the directory can make of any file, and
# numpy's parser of an .npy header lets SyntaxError and tokenize's TokenError through.
_UNREADABLE = (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error, RuntimeError, NotImplementedError,
               SyntaxError, tokenize.TokenError)


class MotionFileError(ValueError):
    """A motion file, or a Motion about to be written, is missing or malformed."""


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: == on arrays is ambiguous
class Motion:
    """One solved clip; the fields are the file's keys (see the module docstring)."""

    fps: float
    frame_indices: np.ndarray
    joint_names: np.ndarray
    parents: np.ndarray
    rest_joints: np.ndarray
    betas: np.ndarray
    mesh_vertices: np.ndarray
    mesh_faces: np.ndarray
    skin_weights: np.ndarray
    rotations: np.ndarray
    translation: np.ndarray
    valid: np.ndarray
    residual_mm: np.ndarray
    targets: np.ndarray
    target_confidence: np.ndarray
    twist: np.ndarray
    twist_confidence: np.ndarray
    regressor_name: str
    regressor_keypoint_names: np.ndarray
    regressor_keypoints: np.ndarray
    regressor_confidence: np.ndarray
    image_keypoints: np.ndarray
    options: dict[str, Any]
    source_video: str
    source_sha256: str
    engine_version: str = __version__
    regressor_twist: np.ndarray | None = None
    regressor_twist_confidence: np.ndarray | None = None
    regressor_betas: np.ndarray | None = None
    frame_times: np.ndarray | None = None
    person_boxes: np.ndarray | None = None
    contacts: np.ndarray | None = None
    hand_landmarks: np.ndarray | None = None
    hand_landmark_pixels: np.ndarray | None = None
    hand_landmark_confidence: np.ndarray | None = None
    hand_joint_names: np.ndarray | None = None
    hand_parents: np.ndarray | None = None
    hand_rest_joints: np.ndarray | None = None
    skin_weights_with_fingers: np.ndarray | None = None
    hand_rotations: np.ndarray | None = None
    hand_valid: np.ndarray | None = None
    hand_residual_mm: np.ndarray | None = None

    @property
    def has_fingers(self) -> bool:
        """Whether the file holds finger rotations (schema 5, hands analysed)."""
        return self.hand_rotations is not None

    @property
    def times(self) -> np.ndarray:
        """(T,) seconds of each frame in the video: ``frame_times``, or for a file
        without them ``frame_indices / fps``."""
        if self.frame_times is not None:
            return np.asarray(self.frame_times, dtype=np.float64)
        return np.asarray(self.frame_indices, dtype=np.float64) / self.fps

    def validate(self) -> None:
        """Raises MotionFileError naming the first field that breaks the schema."""
        if not isinstance(self.fps, numbers.Real) or not math.isfinite(self.fps) or self.fps <= 0:
            raise MotionFileError(f"fps must be a finite number > 0, got {self.fps!r}")
        sizes: dict[str, int] = {}
        for name, (dtype, shape) in _ARRAYS.items():
            _check_array(name, np.asarray(getattr(self, name)), np.dtype(dtype), shape, sizes)
        for name, (dtype, shape) in _OPTIONAL_ARRAYS.items():
            if getattr(self, name) is not None:
                _check_array(name, np.asarray(getattr(self, name)), np.dtype(dtype), shape, sizes)
        if self.frame_times is not None:
            times = np.asarray(self.frame_times, dtype=np.float64)
            if not np.isfinite(times).all() or (np.diff(times) <= 0).any():
                raise MotionFileError("frame_times must be finite and increasing")
        for name in _STRINGS:
            if not isinstance(getattr(self, name), str):
                raise MotionFileError(f"{name} must be a str, got {type(getattr(self, name)).__name__}")
        _options_json(self.options)
        _check_quaternions(np.asarray(self.rotations), np.asarray(self.joint_names))
        _check_mesh(np.asarray(self.mesh_faces), np.asarray(self.skin_weights))
        for group in (_HAND_LANDMARK_KEYS, _FINGER_KEYS):
            present = [name for name in group if getattr(self, name) is not None]
            if present and len(present) < len(group):
                missing = [name for name in group if name not in present]
                raise MotionFileError(f"{', '.join(present)} given without {', '.join(missing)}")
        if self.has_fingers:
            _check_quaternions(np.asarray(self.hand_rotations), np.asarray(self.hand_joint_names))
            _check_mesh(np.asarray(self.mesh_faces), np.asarray(self.skin_weights_with_fingers))
            parents = np.asarray(self.hand_parents)
            if ((parents < 0) | (parents >= len(self.joint_names) + np.arange(len(parents)))).any():
                raise MotionFileError("hand_parents must each name a body joint or an earlier finger joint")


def write_motion(path: str | Path, motion: Motion) -> Path:
    """Validates ``motion`` and writes it atomically to ``path``; returns the path.

    Raises:
        MotionFileError: ``motion`` breaks the schema; nothing is written.
    """
    path = Path(path)
    try:
        motion.validate()
    except MotionFileError as error:
        raise MotionFileError(f"{path}: refusing to write: {error}") from None
    arrays = _pack(_cast(motion))
    with atomic_path(path) as temp, open(temp, "wb") as stream:
        # A stream rather than a name: np.savez would append ".npz" to other suffixes.
        # Uncompressed: deflate took ~80 ms of a 1,000-frame refine that must stay under
        # a second, and a few MB per thousand frames is no burden.
        np.savez(stream, **arrays)
    return path


def read_motion(path: str | Path) -> Motion:
    """Reads and validates a motion file; arrays come back in the schema's dtypes.

    Raises:
        MotionFileError: naming the file and what is wrong with it.
    """
    path = Path(path)
    raw = _load(path)
    _check_schema_version(path, raw)
    # Keys beyond the schema's are ignored: any change that matters bumps the version.
    missing = [key for key in _FILE_KEYS if key not in raw]
    if missing:
        raise MotionFileError(f"{path}: incomplete motion file, missing keys: {', '.join(missing)}")
    try:
        motion = _unpack(raw)
        motion.validate()
    except MotionFileError as error:
        raise MotionFileError(f"{path}: {error}") from None
    return _cast(motion)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file, read in chunks (videos can be larger than memory)."""
    with open(path, "rb") as stream:
        return hashlib.file_digest(stream, "sha256").hexdigest()


def _check_array(name: str, value: np.ndarray, dtype: np.dtype, shape: tuple[int | str, ...],
                 sizes: dict[str, int]) -> None:
    if value.dtype.hasobject:
        raise MotionFileError(f"{name} is an object array; refused (a motion file holds plain arrays)")
    castable = value.dtype.kind == "U" if dtype.kind == "U" else np.can_cast(value.dtype, dtype, "same_kind")
    if not castable:
        raise MotionFileError(f"{name} has dtype {value.dtype}, which does not cast to {dtype}")
    if value.ndim == len(shape):
        for dim, size in zip(shape, value.shape):
            if isinstance(dim, str):
                sizes.setdefault(dim, size)
    expected = tuple(sizes.get(dim, dim) if isinstance(dim, str) else dim for dim in shape)
    if value.shape != expected:
        described = ", ".join(f"{dim}={sizes[dim]}" if dim in sizes else str(dim) for dim in shape)
        raise MotionFileError(f"{name} has shape {value.shape}, expected ({described})")


def _check_quaternions(rotations: np.ndarray, joint_names: np.ndarray) -> None:
    quaternions = rotations.astype(np.float64)
    finite = np.isfinite(quaternions).all(axis=-1)
    if not finite.all():
        frame, joint = np.argwhere(~finite)[0]
        raise MotionFileError(f"rotations contain NaN or infinite values (first at frame {frame}, "
                              f"joint {joint_names[joint]})")
    norms = np.linalg.norm(quaternions, axis=-1)
    bad = np.abs(norms - 1.0) > QUATERNION_TOLERANCE
    if bad.any():
        frame, joint = np.argwhere(bad)[0]
        raise MotionFileError(f"rotations are not unit quaternions: {bad.sum()} of {bad.size} have "
                              f"|norm - 1| > {QUATERNION_TOLERANCE} (first at frame {frame}, joint "
                              f"{joint_names[joint]}, norm {norms[frame, joint]:.6f})")


def _check_mesh(faces: np.ndarray, skin_weights: np.ndarray) -> None:
    vertices = len(skin_weights)
    if faces.size and (faces.min() < 0 or faces.max() >= vertices):
        raise MotionFileError(f"mesh_faces index vertices outside 0..{vertices - 1} "
                              f"(range {faces.min()}..{faces.max()})")
    sums = skin_weights.astype(np.float64).sum(axis=1)
    if not np.isfinite(sums).all() or (np.abs(sums - 1.0) > 1e-3).any():
        raise MotionFileError("skin_weights rows must sum to 1 (a vertex follows its joints fully)")


def _options_json(options: dict[str, Any]) -> str:
    """Strict JSON (no NaN), so any JSON reader, not only Python's, can read it."""
    if not isinstance(options, dict) or not all(isinstance(key, str) for key in options):
        raise MotionFileError(f"options must be a dict with str keys, got {options!r}")
    try:
        return json.dumps(options, sort_keys=True, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise MotionFileError(f"options are not JSON-serialisable: {error}") from None


def _cast(motion: Motion) -> Motion:
    arrays = {name: np.asarray(getattr(motion, name)).astype(dtype) for name, (dtype, _) in _ARRAYS.items()}
    arrays |= {name: np.asarray(getattr(motion, name)).astype(dtype) for name, (dtype, _) in _OPTIONAL_ARRAYS.items()
               if getattr(motion, name) is not None}
    return dataclasses.replace(motion, fps=float(motion.fps), **arrays)


def _pack(motion: Motion) -> dict[str, np.ndarray]:
    arrays = {
        "schema_version": np.array(SCHEMA_VERSION, dtype=np.int64),
        "fps": np.array(motion.fps, dtype=np.float64),
        "options": np.array(_options_json(motion.options), dtype=np.str_),
    }
    arrays.update({name: getattr(motion, name) for name in _ARRAYS})
    arrays.update({name: getattr(motion, name) for name in _OPTIONAL_ARRAYS if getattr(motion, name) is not None})
    arrays.update({name: np.array(getattr(motion, name), dtype=np.str_) for name in _STRINGS})
    return arrays


def _load(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise MotionFileError(f"{path}: motion file not found")
    try:
        archive = np.load(path, allow_pickle=False)
    except _UNREADABLE as error:
        raise MotionFileError(f"{path}: not an npz archive, or truncated or corrupt "
                              f"({type(error).__name__}: {error})") from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise MotionFileError(f"{path}: not an IKOL motion file (a single .npy array, not an .npz archive)")
    with archive:
        return {key: _member(path, archive, key) for key in archive.files}


def _member(path: Path, archive: np.lib.npyio.NpzFile, key: str) -> np.ndarray:
    try:
        return archive[key]
    except ValueError as error:
        # numpy's only way of saying "this member is a pickled object array".
        if "allow_pickle" in str(error):
            raise MotionFileError(f"{path}: {key} is an object array; refused (a motion file holds "
                                  "plain arrays, and unpickling could run code)") from None
        raise MotionFileError(f"{path}: {key} is unreadable, file truncated or corrupt ({error})") from None
    except _UNREADABLE as error:
        raise MotionFileError(f"{path}: {key} is unreadable, file truncated or corrupt "
                              f"({type(error).__name__}: {error})") from None


def _check_schema_version(path: Path, raw: dict[str, np.ndarray]) -> None:
    if "schema_version" not in raw:
        raise MotionFileError(f"{path}: not an IKOL motion file (no schema_version; keys: "
                              f"{', '.join(sorted(raw)) or 'none'})")
    value = raw["schema_version"]
    if value.shape != () or value.dtype.kind not in "iu":
        raise MotionFileError(f"{path}: schema_version must be a single integer, got {value.dtype} "
                              f"of shape {value.shape}")
    version = int(value)
    if version > SCHEMA_VERSION:
        raise MotionFileError(f"{path}: written by a newer IKOL engine (schema {version}, this engine "
                              f"reads up to {SCHEMA_VERSION}); update the engine")
    if version < 1:
        raise MotionFileError(f"{path}: invalid schema_version {version}")


def _unpack(raw: dict[str, np.ndarray]) -> Motion:
    return Motion(
        fps=float(_scalar(raw, "fps", "fiu")),
        options=_parse_options(str(_scalar(raw, "options", "U"))),
        **{name: raw[name] for name in _ARRAYS},
        **{name: raw[name] for name in _OPTIONAL_ARRAYS if name in raw},
        **{name: str(_scalar(raw, name, "U")) for name in _STRINGS},
    )


def _scalar(raw: dict[str, np.ndarray], key: str, kinds: str) -> np.generic:
    value = raw[key]
    if value.shape != () or value.dtype.kind not in kinds:
        want = "a string" if kinds == "U" else "a number"
        raise MotionFileError(f"{key} has dtype {value.dtype} and shape {value.shape}, expected {want} "
                              "of shape ()")
    return value[()]


def _parse_options(text: str) -> dict[str, Any]:
    try:
        options = json.loads(text)
    except json.JSONDecodeError as error:
        raise MotionFileError(f"options are not valid JSON ({error})") from None
    if not isinstance(options, dict):
        raise MotionFileError(f"options must be a JSON object, got {type(options).__name__}")
    return options
