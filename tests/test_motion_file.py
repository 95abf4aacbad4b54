"""The motion file: round trip, every refusal, and atomic writes."""
from __future__ import annotations

import dataclasses
import hashlib
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ikol_engine import __version__, skeleton
from ikol_engine.skeleton import hands
from ikol_engine.common.atomic_file import remove_partial_files
from ikol_engine.motion import (
    SCHEMA_VERSION, Motion, MotionFileError, file_sha256, read_motion, write_motion,
)

T, R, N, V = 50, 17, 10, 40
ARRAY_FIELDS = (
    "frame_indices", "joint_names", "parents", "rest_joints", "betas",
    "mesh_vertices", "mesh_faces", "skin_weights", "rotations", "translation",
    "valid", "residual_mm", "targets", "target_confidence", "twist", "twist_confidence",
    "regressor_keypoint_names", "regressor_keypoints", "regressor_confidence", "image_keypoints",
)


def random_motion(seed: int = 0, frames: int = T) -> Motion:
    rng = np.random.default_rng(seed)
    quaternions = rng.normal(size=(frames, 24, 4))
    quaternions /= np.linalg.norm(quaternions, axis=-1, keepdims=True)
    f32 = np.float32
    return Motion(
        fps=29.97,
        frame_indices=np.arange(frames, dtype=np.int64) * 2 + 7,
        joint_names=np.array(skeleton.JOINT_NAMES),
        parents=np.array(skeleton.PARENTS, dtype=np.int64),
        rest_joints=rng.normal(size=(24, 3)).astype(f32),
        betas=rng.normal(size=N).astype(f32),
        mesh_vertices=rng.normal(size=(V, 3)).astype(f32),
        mesh_faces=rng.integers(0, V, size=(2 * V, 3)),
        skin_weights=rng.dirichlet(np.ones(24), size=V).astype(f32),
        rotations=quaternions.astype(f32),
        translation=rng.normal(size=(frames, 3)).astype(f32),
        valid=rng.random(frames) > 0.2,
        residual_mm=rng.random(frames).astype(f32) * 30,
        targets=rng.normal(size=(frames, skeleton.NUM_KEYPOINTS, 3)).astype(f32),
        target_confidence=rng.random((frames, skeleton.NUM_KEYPOINTS)).astype(f32),
        twist=rng.uniform(-np.pi, np.pi, size=(frames, skeleton.NUM_TWISTS)).astype(f32),
        twist_confidence=rng.random((frames, skeleton.NUM_TWISTS)).astype(f32),
        regressor_name="test-regressor",
        regressor_keypoint_names=np.array([f"kp{i}" for i in range(R)]),
        regressor_keypoints=rng.normal(size=(frames, R, 3)).astype(f32),
        regressor_confidence=rng.random((frames, R)).astype(f32),
        image_keypoints=(rng.random((frames, R, 2)) * 1920).astype(f32),
        options={"device": "cpu", "smoothing": 0.5, "iterations": 12, "flags": [True, None]},
        source_video="clip.mp4",
        source_sha256="ab" * 32,
    )


def rewrite(path: Path, **changes: np.ndarray | None) -> None:
    """Rewrites a motion file's arrays with ``changes`` (None deletes a key)."""
    with np.load(path, allow_pickle=False) as archive:
        arrays = {key: archive[key] for key in archive.files}
    for key, value in changes.items():
        if value is None:
            del arrays[key]
        else:
            arrays[key] = value
    path.unlink()
    with open(path, "wb") as stream:  # a stream keeps numpy from renaming the file
        np.savez(stream, **arrays)


def partial_files(directory: Path) -> list[str]:
    return [name for name in os.listdir(directory) if ".partial" in name]


def test_round_trip_is_exact(tmp_path: Path) -> None:
    motion = random_motion()
    path = write_motion(tmp_path / "clip.npz", motion)
    back = read_motion(path)
    for name in ARRAY_FIELDS:
        original, loaded = getattr(motion, name), getattr(back, name)
        assert loaded.dtype == original.dtype, name
        assert loaded.shape == original.shape, name
        assert np.array_equal(loaded, original), name
    assert back.fps == 29.97
    assert back.options == {"device": "cpu", "smoothing": 0.5, "iterations": 12, "flags": [True, None]}
    assert (back.regressor_name, back.source_video, back.source_sha256) == (
        "test-regressor", "clip.mp4", "ab" * 32)
    assert back.engine_version == __version__
    with np.load(path, allow_pickle=False) as archive:
        assert int(archive["schema_version"]) == SCHEMA_VERSION == 5
    assert partial_files(tmp_path) == []


def test_frame_times_round_trip_and_older_files_time_frames_by_index(tmp_path: Path) -> None:
    motion = random_motion()
    uneven = np.cumsum(np.r_[0.0, np.where(np.arange(T - 1) < 20, 1 / 30, 1 / 15)]) + 0.2
    back = read_motion(write_motion(tmp_path / "timed.npz", dataclasses.replace(motion, frame_times=uneven)))
    assert back.frame_times.dtype == np.float64 and np.array_equal(back.times, uneven)
    # A schema-1 file (written before frame_times) still reads, timed index / fps.
    path = write_motion(tmp_path / "old.npz", motion)
    rewrite(path, schema_version=np.array(1))
    old = read_motion(path)
    assert old.frame_times is None
    assert np.array_equal(old.times, motion.frame_indices / motion.fps)


def test_person_boxes_round_trip_and_older_files_have_none(tmp_path: Path) -> None:
    motion = random_motion()
    boxes = np.random.default_rng(4).uniform(0, 1000, (T, 4))
    boxes[:5] = np.nan  # before the followed person's track starts
    back = read_motion(write_motion(tmp_path / "person.npz", dataclasses.replace(motion, person_boxes=boxes)))
    assert back.person_boxes.dtype == np.float32
    assert np.array_equal(back.person_boxes, boxes.astype(np.float32), equal_nan=True)
    # A schema-2 file (written before people were followed) still reads, with no boxes.
    path = write_motion(tmp_path / "old.npz", motion)
    rewrite(path, schema_version=np.array(2))
    assert read_motion(path).person_boxes is None
    with pytest.raises(MotionFileError, match="person_boxes"):
        write_motion(tmp_path / "bad.npz", dataclasses.replace(motion, person_boxes=boxes[:, :3]))


def test_contacts_round_trip_and_older_files_have_none(tmp_path: Path) -> None:
    motion = random_motion()
    contacts = np.random.default_rng(5).uniform(size=(T, 4)) > 0.5
    back = read_motion(write_motion(tmp_path / "feet.npz", dataclasses.replace(motion, contacts=contacts)))
    assert back.contacts.dtype == np.bool_ and np.array_equal(back.contacts, contacts)
    # A schema-3 file (written before foot contacts) still reads, with none.
    path = write_motion(tmp_path / "old.npz", motion)
    rewrite(path, schema_version=np.array(3))
    assert read_motion(path).contacts is None
    with pytest.raises(MotionFileError, match="contacts has shape"):
        write_motion(tmp_path / "bad.npz", dataclasses.replace(motion, contacts=contacts[:, :2]))


def hand_keys(seed: int = 6, frames: int = T) -> dict[str, np.ndarray]:
    """Every hand key, random but valid."""
    rng = np.random.default_rng(seed)
    quaternions = rng.normal(size=(frames, 30, 4))
    return {
        "hand_landmarks": rng.normal(size=(frames, 2, 21, 3)) * 0.05,
        "hand_landmark_pixels": rng.random((frames, 2, 21, 2)) * 1000,
        "hand_landmark_confidence": rng.random((frames, 2, 21)),
        "hand_joint_names": np.array(hands.HAND_JOINT_NAMES),
        "hand_parents": np.array(hands.FILE_HAND_PARENTS),
        "hand_rest_joints": rng.normal(size=(30, 3)),
        "skin_weights_with_fingers": rng.dirichlet(np.ones(54), size=V),
        "hand_rotations": quaternions / np.linalg.norm(quaternions, axis=-1, keepdims=True),
        "hand_valid": rng.random((frames, 2)) > 0.5,
        "hand_residual_mm": rng.random((frames, 2)) * 10,
    }


def test_hands_round_trip_and_older_files_have_none(tmp_path: Path) -> None:
    motion = random_motion()
    keys = hand_keys()
    back = read_motion(write_motion(tmp_path / "hands.npz", dataclasses.replace(motion, **keys)))
    assert back.has_fingers
    for name, value in keys.items():
        assert np.array_equal(getattr(back, name), value.astype(getattr(back, name).dtype)), name
    path = write_motion(tmp_path / "old.npz", motion)
    rewrite(path, schema_version=np.array(4))
    old = read_motion(path)
    assert not old.has_fingers and old.hand_landmarks is None


@pytest.mark.parametrize("change, words", [
    ({"hand_rotations": None}, "without hand_rotations"),
    ({"hand_landmark_pixels": None}, "without hand_landmark_pixels"),
    ({"hand_parents": np.arange(30) + 30}, "hand_parents must each name"),
    ({"hand_rotations": np.full((T, 30, 4), 0.6)}, "not unit quaternions"),
    ({"skin_weights_with_fingers": np.full((V, 54), 0.5)}, "rows must sum to 1"),
    ({"hand_valid": np.zeros((T, 3), bool)}, "hand_valid has shape"),
])
def test_broken_hand_keys_are_refused(tmp_path: Path, change: dict, words: str) -> None:
    motion = dataclasses.replace(random_motion(), **(hand_keys() | change))
    with pytest.raises(MotionFileError, match=words):
        write_motion(tmp_path / "bad.npz", motion)
    assert not (tmp_path / "bad.npz").exists()


def test_arrays_are_cast_to_the_schema_dtypes(tmp_path: Path) -> None:
    motion = random_motion()
    wide = dataclasses.replace(motion, rotations=motion.rotations.astype(np.float64),
                               frame_indices=motion.frame_indices.astype(np.int32))
    back = read_motion(write_motion(tmp_path / "clip.npz", wide))
    assert back.rotations.dtype == np.float32 and back.frame_indices.dtype == np.int64
    assert np.array_equal(back.rotations, motion.rotations)


def test_suffix_is_kept_and_parent_created(tmp_path: Path) -> None:
    path = tmp_path / "new" / "dir" / "clip.motion"
    assert write_motion(path, random_motion()) == path
    assert sorted(os.listdir(path.parent)) == ["clip.motion"]
    assert read_motion(path).rotations.shape == (T, 24, 4)


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nothing_here.npz"


def _random_bytes(tmp_path: Path) -> Path:
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(1).bytes(4096))
    return path


def _truncated(tmp_path: Path) -> Path:
    path = write_motion(tmp_path / "cut.npz", random_motion())
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupt(tmp_path: Path) -> Path:
    path = write_motion(tmp_path / "flipped.npz", random_motion())
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 200] = bytes(b ^ 0xFF for b in data[middle:middle + 200])
    path.write_bytes(bytes(data))
    return path


def _foreign(tmp_path: Path) -> Path:
    path = tmp_path / "foreign.npz"
    np.savez(path, weights=np.arange(3))
    return path


def _rewritten(**changes: np.ndarray | None):
    def make(tmp_path: Path) -> Path:
        path = write_motion(tmp_path / "clip.npz", random_motion())
        rewrite(path, **changes)
        return path
    return make


_ROTATIONS = random_motion().rotations

READ_FAULTS = {
    "missing file": (_missing, ["not found"]),
    "random bytes": (_random_bytes, ["not an npz", "corrupt"]),
    "truncated": (_truncated, ["truncated"]),
    "corrupt member": (_corrupt, ["truncated or corrupt"]),
    "foreign npz": (_foreign, ["not an IKOL motion file", "weights"]),
    "newer schema": (_rewritten(schema_version=np.array(SCHEMA_VERSION + 1)),
                     [f"written by a newer IKOL engine (schema {SCHEMA_VERSION + 1}, this engine reads up to "
                      f"{SCHEMA_VERSION}); update the engine"]),
    "missing rotations": (_rewritten(rotations=None), ["missing keys: rotations"]),
    "wrong rotations shape": (_rewritten(rotations=_ROTATIONS[..., :3]),
                              ["rotations has shape (50, 24, 3), expected (T=50, 24, 4)"]),
    "fewer target frames": (_rewritten(targets=np.zeros((49, 29, 3), np.float32)),
                            ["targets has shape (49, 29, 3), expected (T=50, 29, 3)"]),
    "non-unit quaternions": (_rewritten(rotations=_ROTATIONS * np.float32(1.01)),
                             ["not unit quaternions", "1200 of 1200"]),
    "object array": (_rewritten(joint_names=np.array(list(skeleton.JOINT_NAMES), dtype=object)),
                     ["joint_names is an object array; refused"]),
    "bad options": (_rewritten(options=np.array("{not json")), ["options are not valid JSON"]),
    "frame times backwards": (_rewritten(frame_times=np.arange(T, 0, -1) / 30.0),
                              ["frame_times must be finite and increasing"]),
    "frame times too few": (_rewritten(frame_times=np.arange(T - 1) / 30.0),
                            ["frame_times has shape (49,), expected (T=50)"]),
}


@pytest.mark.parametrize("make, words", READ_FAULTS.values(), ids=READ_FAULTS.keys())
def test_read_refuses_with_path_and_reason(tmp_path: Path, make, words: list[str]) -> None:
    path = make(tmp_path)
    with pytest.raises(MotionFileError) as caught:
        read_motion(path)
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message
    assert isinstance(caught.value, ValueError)


def test_write_refuses_invalid_motion_and_keeps_old_file(tmp_path: Path) -> None:
    path = write_motion(tmp_path / "clip.npz", random_motion(seed=0))
    before = path.read_bytes()
    bad = dataclasses.replace(random_motion(seed=1), rotations=_ROTATIONS * np.float32(2.0))
    with pytest.raises(MotionFileError, match="not unit quaternions") as caught:
        write_motion(path, bad)
    assert str(path) in str(caught.value)
    assert path.read_bytes() == before
    assert partial_files(tmp_path) == []


@pytest.mark.parametrize("change, words", [
    ({"fps": 0.0}, "fps must be a finite number > 0"),
    ({"fps": float("nan")}, "fps must be a finite number > 0"),
    ({"twist": np.zeros((T, 24), np.float32)}, "twist has shape (50, 24), expected (T=50, 23)"),
    ({"image_keypoints": np.zeros((T, R + 1, 2), np.float32)},
     "image_keypoints has shape (50, 18, 2), expected (T=50, R=17, 2)"),
    ({"valid": np.ones(T, np.float32)}, "valid has dtype float32, which does not cast to bool"),
    ({"joint_names": np.arange(24)}, "joint_names has dtype int64, which does not cast to <U"),
    ({"options": {"bad": float("nan")}}, "options are not JSON-serialisable"),
    ({"source_video": Path("clip.mp4")}, "source_video must be a str"),
    ({"mesh_faces": np.full((3, 3), V)}, f"mesh_faces index vertices outside 0..{V - 1}"),
    ({"skin_weights": np.full((V, 24), 0.5, np.float32)}, "skin_weights rows must sum to 1"),
])
def test_validate_names_the_fault(change: dict, words: str) -> None:
    motion = dataclasses.replace(random_motion(), **change)
    with pytest.raises(MotionFileError) as caught:
        motion.validate()
    assert words in str(caught.value)


def test_nan_quaternion_is_refused() -> None:
    rotations = _ROTATIONS.copy()
    rotations[3, 5, 0] = np.nan
    with pytest.raises(MotionFileError, match=r"NaN or infinite values \(first at frame 3, joint R_Knee\)"):
        dataclasses.replace(random_motion(), rotations=rotations).validate()


def test_interrupted_write_keeps_old_file_and_leaves_no_temp(tmp_path: Path, monkeypatch) -> None:
    path = write_motion(tmp_path / "clip.npz", random_motion(seed=0))
    before = path.read_bytes()
    seen: dict[str, object] = {}

    def interrupted_savez(stream, **arrays) -> None:
        stream.write(b"PK\x03\x04" + b"\0" * 1000)
        stream.flush()
        seen["temp"] = Path(stream.name)
        seen["partials"] = partial_files(tmp_path)
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez", interrupted_savez)
    with pytest.raises(KeyboardInterrupt):
        write_motion(path, random_motion(seed=1))
    # The temp file existed beside the target, with the target's suffix, while writing...
    temp = seen["temp"]
    assert temp.parent == tmp_path and temp.name.startswith(".clip.npz.partial-") and temp.suffix == ".npz"
    assert seen["partials"] == [temp.name]
    # ...and is gone afterwards, with the old result untouched.
    assert partial_files(tmp_path) == []
    assert path.read_bytes() == before
    monkeypatch.undo()
    assert np.array_equal(read_motion(path).rotations, random_motion(seed=0).rotations)


def test_a_killed_writers_temp_file_is_found_and_removed_by_its_parent(tmp_path: Path) -> None:
    path = write_motion(tmp_path / "clip.npz", random_motion(seed=0))
    before = path.read_bytes()
    # SIGKILL mid-write: no Python cleanup runs, so the temporary file stays.
    script = ("import os, signal, sys; from pathlib import Path; from ikol_engine.common.atomic_file import atomic_path\n"
              "with atomic_path(Path(sys.argv[1])) as temp:\n"
              "    temp.write_bytes(b'PK half a file'); os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", script, str(path)], timeout=120)
    assert killed.returncode == -signal.SIGKILL
    [leftover] = partial_files(tmp_path)
    # Look-alikes that are not this target's temporary files stay.
    others = [".other.npz.partial-0123456789ab.npz", ".clip.npz.partial-nothex.npz", "clip.npz.partial-0123456789ab.npz"]
    for name in others:
        (tmp_path / name).write_bytes(b"x")

    assert remove_partial_files(path) == [tmp_path / leftover]
    assert sorted(os.listdir(tmp_path)) == sorted(["clip.npz", *others])
    assert path.read_bytes() == before
    assert remove_partial_files(tmp_path / "missing-folder" / "clip.npz") == []
    # A folder (one file per person): what was left for any file in it, and nothing else.
    folder = tmp_path / "people"
    folder.mkdir()
    for name in ("video_person1.npz", ".video_person2.npz.partial-00112233aabb.npz", "notes.partial-0.txt"):
        (folder / name).write_bytes(b"x")
    assert remove_partial_files(folder) == [folder / ".video_person2.npz.partial-00112233aabb.npz"]
    assert sorted(os.listdir(folder)) == ["notes.partial-0.txt", "video_person1.npz"]


def test_file_sha256_matches_hashlib(tmp_path: Path) -> None:
    data = np.random.default_rng(2).bytes(3 * 1024 * 1024)
    path = tmp_path / "video.bin"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    assert file_sha256(path) != hashlib.sha256(data[:-1]).hexdigest()
