"""Reading and validating body model files (official SMPL ``.pkl``, ``.npz``)."""
from __future__ import annotations

import pickle
import tokenize
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import skeleton
from ..skeleton.hands import (
    FINGER_JOINT_NAMES, FINGERS, HAND_JOINT_NAMES, NUM_FINGER_JOINTS, SMPLH_JOINT_NAMES, SMPLH_NUM_BODY_JOINTS,
    SMPLH_PARENTS, WRISTS,
)
from .safe_pickle import ForeignObjectError, load_model_pickle

DEFAULT_BODY_PATH = Path(__file__).parent / "data" / "default_body.npz"
NUM_POSE_BASIS = 9 * (skeleton.NUM_JOINTS - 1)
# Landmarks smplx's vertex-joint selector reads (its SMPL-H vertex-id names).
SMPLX_LANDMARKS: tuple[str, ...] = (
    "nose", "reye", "leye", "rear", "lear", "LBigToe", "LSmallToe", "LHeel", "RBigToe",
    "RSmallToe", "RHeel", "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb",
    "rindex", "rmiddle", "rring", "rpinky",
)
SMPL_NUM_VERTICES = 6890


class BodyModelError(ValueError):
    """A body model file is missing, unreadable or not an SMPL-layout model."""


@dataclass(frozen=True)
class BodyArrays:
    """A validated body model in SMPL's layout (V vertices, F faces, N shape directions).

    Attributes:
        v_template: (V, 3) rest vertices, metres, y-up.
        faces: (F, 3) triangle vertex indices.
        j_regressor: (24, V) joint regressor.
        weights: (V, 24) skinning weights.
        shapedirs: (V, 3, N) shape blend shapes.
        posedirs: (V, 3, 207) pose corrective blend shapes.
        landmarks: landmark name -> vertex index (includes the five leaf points).
        skeleton_directions: names of the last shape directions when they are joint
            placements (the bundled body's), else empty (SMPL's are all PCA).
        hand_j_regressor: (30, V) regressor of SMPL-H's finger joints
            (skeleton.hands.HAND_JOINT_NAMES), or None for a body without fingers.
        smplh_weights: (V, 52) skinning weights over SMPL-H's joints, or None.
    """

    path: Path
    v_template: np.ndarray
    faces: np.ndarray
    j_regressor: np.ndarray
    weights: np.ndarray
    shapedirs: np.ndarray
    posedirs: np.ndarray
    landmarks: dict[str, int]
    skeleton_directions: tuple[str, ...] = ()
    hand_j_regressor: np.ndarray | None = None
    smplh_weights: np.ndarray | None = None

    @property
    def leaf_vertices(self) -> np.ndarray:
        """(5,) vertex indices of the leaf keypoints, in skeleton.LEAF_NAMES order."""
        return np.array([self.landmarks[n] for n in skeleton.LEAF_LANDMARKS], dtype=np.int64)

    @property
    def smplx_vertex_ids(self) -> dict[str, int]:
        return {n: self.landmarks[n] for n in SMPLX_LANDMARKS}


def read_body_arrays(path: str | Path | None = None) -> BodyArrays:
    """Loads and validates a body model; ``None`` gives the bundled default body.

    Raises:
        BodyModelError: naming the file and what is wrong with it.
    """
    path = Path(path) if path is not None else DEFAULT_BODY_PATH
    raw = _read_raw(path)
    return _validate(path, raw)


def _read_raw(path: Path) -> dict:
    if not path.is_file():
        raise BodyModelError(f"{path}: no such body model file")
    suffix = path.suffix.lower()
    try:
        if suffix == ".pkl":
            with path.open("rb") as stream:
                return load_model_pickle(stream)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as archive:
                return {key: archive[key] for key in archive.files}
    except ForeignObjectError as error:
        raise BodyModelError(f"{path}: {error}") from None
    except ValueError as error:
        if "allow_pickle" in str(error):
            raise BodyModelError(f"{path}: holds pickled Python objects; a body .npz must hold plain arrays") from None
        raise BodyModelError(f"{path}: unreadable ({error})") from None
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, zlib.error, OSError, KeyError, TypeError,
            AttributeError, IndexError, RuntimeError, NotImplementedError, SyntaxError, tokenize.TokenError) as error:
        # RuntimeError, NotImplementedError: zipfile refusing a member flagged encrypted or
        # as patch data, which one flipped bit can make of an .npz; SyntaxError, TokenError:
        # numpy's parser of a damaged .npy header.
        raise BodyModelError(f"{path}: truncated or not a body model file ({type(error).__name__}: {error})") from None
    raise BodyModelError(f"{path}: unsupported body model format {suffix!r} (expected .pkl or .npz)")


def _array(path: Path, raw: dict, key: str, shape: tuple, dtype: type) -> np.ndarray:
    if key not in raw:
        raise BodyModelError(f"{path}: missing '{key}' (found: {', '.join(sorted(raw))})")
    try:
        value = np.asarray(raw[key], dtype=dtype)
    except (TypeError, ValueError) as error:
        raise BodyModelError(f"{path}: '{key}' is not a numeric array ({error})") from None
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        want = "(" + ", ".join("*" if s is None else str(s) for s in shape) + ")"
        raise BodyModelError(f"{path}: '{key}' has shape {value.shape}, expected {want}")
    if not np.all(np.isfinite(value)):
        raise BodyModelError(f"{path}: '{key}' contains NaN or infinite values")
    return value


def _validate(path: Path, raw: dict) -> BodyArrays:
    j = skeleton.NUM_JOINTS
    v_template = _array(path, raw, "v_template", (None, 3), np.float32)
    v = v_template.shape[0]
    faces = _array(path, raw, "f", (None, 3), np.int64)
    if faces.size and (faces.min() < 0 or faces.max() >= v):
        raise BodyModelError(f"{path}: 'f' indexes vertices outside 0..{v - 1}")
    if np.shape(raw.get("kintree_table"))[-1:] == (len(SMPLH_JOINT_NAMES),):
        raw = _smplh_as_smpl(path, raw, v)
    kintree = _array(path, raw, "kintree_table", (2, j), np.int64)
    parents = tuple(int(p) for p in kintree[0, 1:])
    if parents != skeleton.PARENTS[1:]:
        raise BodyModelError(f"{path}: 'kintree_table' is not SMPL's 24-joint tree")
    arrays = BodyArrays(
        path=path,
        v_template=v_template,
        faces=faces,
        j_regressor=_array(path, raw, "J_regressor", (j, v), np.float32),
        weights=_array(path, raw, "weights", (v, j), np.float32),
        shapedirs=_array(path, raw, "shapedirs", (v, 3, None), np.float32),
        posedirs=_array(path, raw, "posedirs", (v, 3, NUM_POSE_BASIS), np.float32),
        landmarks=_landmarks(path, raw, v),
        skeleton_directions=_skeleton_directions(path, raw),
        **_hand_arrays(path, raw, v),
    )
    if len(arrays.skeleton_directions) > arrays.shapedirs.shape[-1]:
        raise BodyModelError(f"{path}: names {len(arrays.skeleton_directions)} skeleton directions but "
                             f"'shapedirs' has {arrays.shapedirs.shape[-1]}")
    if not np.allclose(arrays.weights.sum(axis=1), 1.0, atol=1e-3):
        raise BodyModelError(f"{path}: skinning 'weights' rows do not sum to 1")
    return arrays


def _smplh_as_smpl(path: Path, raw: dict, num_vertices: int) -> dict:
    """An SMPL-H file's arrays in SMPL's 24-joint layout, with its fingers as the hand arrays.

    SMPL's hand joint (the middle of the knuckles) moves what SMPL-H's finger joints
    move, all but the thumb's base, which SMPL leaves to the wrist (as the bundled body
    does); the fingers' pose correctives have no SMPL joint to go to and are dropped.
    """
    kintree = _array(path, raw, "kintree_table", (2, len(SMPLH_JOINT_NAMES)), np.int64)
    if tuple(int(p) for p in kintree[0, 1:]) != SMPLH_PARENTS[1:]:
        raise BodyModelError(f"{path}: 'kintree_table' has 52 joints but is not SMPL-H's tree")
    regressor = _array(path, raw, "J_regressor", (len(SMPLH_JOINT_NAMES), num_vertices), np.float32)
    weights = _array(path, raw, "weights", (num_vertices, len(SMPLH_JOINT_NAMES)), np.float32)
    posedirs = _array(path, raw, "posedirs", (num_vertices, 3, 9 * (len(SMPLH_JOINT_NAMES) - 1)), np.float32)
    body = SMPLH_NUM_BODY_JOINTS
    smpl_regressor, smpl_weights = [regressor[:body]], weights[:, :body].copy()
    for side, wrist in enumerate(WRISTS):
        first = body + side * NUM_FINGER_JOINTS
        knuckles = [first + FINGER_JOINT_NAMES.index(f"{finger}1") for finger in FINGERS if finger != "thumb"]
        thumb_base = first + FINGER_JOINT_NAMES.index("thumb1")
        smpl_regressor.append(regressor[knuckles].mean(axis=0, keepdims=True))
        smpl_weights[:, wrist] += weights[:, thumb_base]
    hand_columns = [weights[:, body + side * NUM_FINGER_JOINTS: body + (side + 1) * NUM_FINGER_JOINTS].sum(axis=1)
                    - weights[:, body + side * NUM_FINGER_JOINTS + FINGER_JOINT_NAMES.index("thumb1")]
                    for side in range(len(WRISTS))]
    smpl_posedirs = np.concatenate([posedirs[..., :9 * (body - 1)],
                                    np.zeros((num_vertices, 3, NUM_POSE_BASIS - 9 * (body - 1)), np.float32)], -1)
    return dict(raw, J_regressor=np.concatenate(smpl_regressor), weights=np.column_stack([smpl_weights, *hand_columns]),
                posedirs=smpl_posedirs, kintree_table=np.stack([np.array(skeleton.PARENTS), np.arange(skeleton.NUM_JOINTS)]),
                hand_J_regressor=regressor[body:], smplh_weights=weights)


def _hand_arrays(path: Path, raw: dict, num_vertices: int) -> dict[str, np.ndarray]:
    """The finger joints' regressor and SMPL-H skin weights, where the file has both."""
    keys = ("hand_J_regressor", "smplh_weights")
    if not any(key in raw for key in keys):
        return {}
    if "hand_joint_names" in raw and tuple(np.asarray(raw["hand_joint_names"]).tolist()) != HAND_JOINT_NAMES:
        raise BodyModelError(f"{path}: 'hand_joint_names' are not SMPL-H's 30 finger joints in SMPL-H's order")
    regressor = _array(path, raw, keys[0], (len(HAND_JOINT_NAMES), num_vertices), np.float32)
    weights = _array(path, raw, keys[1], (num_vertices, len(SMPLH_JOINT_NAMES)), np.float32)
    if not np.allclose(weights.sum(axis=1), 1.0, atol=1e-3):
        raise BodyModelError(f"{path}: skinning 'smplh_weights' rows do not sum to 1")
    return {"hand_j_regressor": regressor, "smplh_weights": weights}


def _skeleton_directions(path: Path, raw: dict) -> tuple[str, ...]:
    if "skeleton_direction_names" not in raw:
        return ()
    names = np.asarray(raw["skeleton_direction_names"])
    if names.ndim != 1 or names.dtype.kind != "U":
        raise BodyModelError(f"{path}: 'skeleton_direction_names' is not a list of names")
    return tuple(str(n) for n in names.tolist())


def _landmarks(path: Path, raw: dict, num_vertices: int) -> dict[str, int]:
    if "landmark_names" in raw:
        names = [str(n) for n in np.asarray(raw["landmark_names"]).tolist()]
        ids = _array(path, raw, "landmark_vertex_ids", (len(names),), np.int64)
        landmarks = dict(zip(names, (int(i) for i in ids)))
    elif num_vertices == SMPL_NUM_VERTICES:
        from smplx.vertex_ids import vertex_ids  # the official mesh's published landmarks

        landmarks = dict(vertex_ids["smplh"])
        landmarks["head_top"] = skeleton.SMPL_LEAF_VERTICES[0]
    else:
        raise BodyModelError(
            f"{path}: a mesh of {num_vertices} vertices (not SMPL's {SMPL_NUM_VERTICES}) "
            "needs 'landmark_names' and 'landmark_vertex_ids'")
    missing = [n for n in skeleton.LEAF_LANDMARKS + SMPLX_LANDMARKS if n not in landmarks]
    if missing:
        raise BodyModelError(f"{path}: landmarks missing: {', '.join(missing)}")
    if any(not 0 <= i < num_vertices for i in landmarks.values()):
        raise BodyModelError(f"{path}: a landmark vertex index is outside 0..{num_vertices - 1}")
    return landmarks
