"""The regressor interface and the BlazePose backend, on the real Sports2D demo video.

The demo (230 frames, 1768x994, 30 fps): one person jumps off a box, another walks past.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import mediapipe as mp
import mediapipe.python.solutions.download_utils as download_utils
import numpy as np
import pytest

from ikol_engine.regressors import (
    BlazePoseRegressor,
    KeypointFrames,
    Regressor,
    RegressorError,
    create_regressor,
)
from ikol_engine.regressors.blazepose import LANDMARK_NAMES, regressor as blazepose
from ikol_engine.samples import demo_video
from ikol_engine.video.decode import iter_frames, probe

CHUNK = 32  # frames per regressor call, as a pipeline would batch them
L = {name: i for i, name in enumerate(LANDMARK_NAMES)}


@pytest.fixture(scope="module")
def demo() -> Path:
    return demo_video()


@pytest.fixture(scope="module")
def tracked(demo: Path) -> Iterator[tuple[BlazePoseRegressor, KeypointFrames]]:
    """The full-complexity regressor and its results over the whole demo, in chunks."""
    with create_regressor("blazepose") as regressor:
        parts, chunk = [], []
        for frame in iter_frames(demo):
            chunk.append(frame.image)
            if len(chunk) == CHUNK:
                parts.append(regressor(chunk))
                chunk = []
        parts.append(regressor(chunk))
        yield regressor, KeypointFrames.concatenate(parts)


@pytest.fixture(scope="module")
def result(tracked: tuple[BlazePoseRegressor, KeypointFrames]) -> KeypointFrames:
    return tracked[1]


@pytest.fixture
def no_download(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if mediapipe tries to fetch a model (its Pose calls this function)."""

    def forbidden(model_path: str) -> None:
        pytest.fail(f"mediapipe tried to download {model_path}")

    monkeypatch.setattr(download_utils, "download_oss_model", forbidden)


def world(result: KeypointFrames) -> np.ndarray:
    """(D, 33, 3) world keypoints of the frames where a person was found."""
    return result.keypoints[result.detected]


def test_names_shapes_and_empty_rows(result: KeypointFrames, tracked: tuple, demo: Path) -> None:
    regressor = tracked[0]
    assert regressor.name == "blazepose-full"
    assert len(regressor.keypoint_names) == 33
    assert regressor.keypoint_names[:3] == ("nose", "left_eye_inner", "left_eye")
    assert regressor.keypoint_names[-1] == "right_foot_index"
    assert regressor.keypoint_names == tuple(p.name.lower() for p in mp.solutions.pose.PoseLandmark)
    assert result.keypoint_names == regressor.keypoint_names
    assert len(result) == probe(demo).frame_count == 230
    assert result.keypoints.shape == (230, 33, 3) and result.keypoints.dtype == np.float32
    assert result.confidence.shape == (230, 33) and result.confidence.dtype == np.float32
    assert result.image_keypoints.shape == (230, 33, 2)
    assert result.image_keypoints.dtype == np.float32
    assert result.twist is None and result.twist_confidence is None and result.betas is None
    missed = ~result.detected
    assert missed.any()  # the clip opens before the jumper is in view
    for array in (result.keypoints, result.confidence, result.image_keypoints):
        assert not array[missed].any()
    assert 0.0 <= result.confidence.min() and result.confidence.max() <= 1.0


def test_finds_the_person_in_most_frames(result: KeypointFrames) -> None:
    # Measured: 222 of 230 (96.5%); misses are frames 0-2 and a few near the end.
    assert result.detected.mean() >= 0.9


def test_image_keypoints_lie_in_the_frame(result: KeypointFrames) -> None:
    width, height = 1768, 994
    xy = result.image_keypoints[result.detected]
    inside = (xy[..., 0] >= 0) & (xy[..., 0] <= width) & (xy[..., 1] >= 0) & (xy[..., 1] <= height)
    # Measured: 44 of 7,326 landmarks (0.6%) fall up to 43 px left of the frame while the
    # walker leaves it; BlazePose extrapolates cut-off parts rather than clipping them.
    assert inside.mean() >= 0.98
    margin = 0.05
    assert xy[..., 0].min() > -margin * width and xy[..., 0].max() < (1 + margin) * width
    assert xy[..., 1].min() > -margin * height and xy[..., 1].max() < (1 + margin) * height
    # Where the keypoints are: the person spans a good part of the frame's height.
    span = xy[..., 1].max(axis=1) - xy[..., 1].min(axis=1)
    assert np.median(span) > 0.3 * height


def test_world_origin_is_between_the_hips(result: KeypointFrames) -> None:
    w = world(result)
    mid_hip = (w[:, L["left_hip"]] + w[:, L["right_hip"]]) / 2
    assert np.abs(mid_hip).max() < 0.01  # measured 0.9 mm


@pytest.mark.parametrize(
    "bone",
    [
        ("left_hip", "left_knee"),
        ("right_hip", "right_knee"),
        ("left_knee", "left_ankle"),
        ("right_knee", "right_ankle"),
    ],
)
def test_leg_bones_are_metric_and_steady(result: KeypointFrames, bone: tuple[str, str]) -> None:
    start, end = result.keypoints[:, L[bone[0]]], result.keypoints[:, L[bone[1]]]
    lengths = np.linalg.norm(end - start, axis=1)
    # Measured medians 0.36-0.38 m, medians of the frame-to-frame change 6-8 mm, 90th
    # percentiles 28-36 mm, standard deviations 28-41 mm.
    assert 0.30 < np.median(lengths[result.detected]) < 0.50
    both = result.detected[1:] & result.detected[:-1]
    change = np.abs(np.diff(lengths))[both]
    assert np.median(change) < 0.02
    assert np.percentile(change, 90) < 0.07
    assert lengths[result.detected].std() < 0.07


def test_left_and_right_thighs_agree(result: KeypointFrames) -> None:
    w = world(result)
    left = np.median(np.linalg.norm(w[:, L["left_hip"]] - w[:, L["left_knee"]], axis=1))
    right = np.median(np.linalg.norm(w[:, L["right_hip"]] - w[:, L["right_knee"]], axis=1))
    assert abs(left - right) < 0.03  # measured 0.2 mm


def test_world_axes_follow_the_image_x_right_y_down(result: KeypointFrames) -> None:
    w, xy = world(result), result.image_keypoints[result.detected]
    # Each frame's world x and y against its pixel x and y over the 33 landmarks: world
    # keypoints are the image's shape in metres, so the correlation is strongly positive.
    for axis, least in ((0, 0.8), (1, 0.9)):  # measured minima 0.88 and 0.98
        correlation = [np.corrcoef(w[i, :, axis], xy[i, :, axis])[0, 1] for i in range(len(w))]
        assert min(correlation) > least
    # y down: the upright person's nose is above (smaller y than) the hips' midpoint.
    mid_hip_y = (w[:, L["left_hip"], 1] + w[:, L["right_hip"], 1]) / 2
    assert np.mean(w[:, L["nose"], 1] < mid_hip_y) > 0.95  # measured 97.7%
    assert np.median(w[:, L["nose"], 1]) < -0.4  # measured -0.57 m


def test_world_z_points_away_from_the_camera(result: KeypointFrames) -> None:
    w, xy = world(result), result.image_keypoints[result.detected]
    # Facing the camera, the body's left shoulder shows on the image's right, and the nose
    # is nearer the camera than the ears: smaller z if z points away from it.
    facing = xy[:, L["left_shoulder"], 0] > xy[:, L["right_shoulder"], 0]
    ears_z = (w[:, L["left_ear"], 2] + w[:, L["right_ear"], 2]) / 2
    nose_in_front = w[:, L["nose"], 2] < ears_z
    assert facing.mean() > 0.5  # measured 74%
    assert nose_in_front[facing].mean() > 0.8  # measured 88%
    assert nose_in_front[~facing].mean() < 0.5  # measured 24%


def test_reset_forgets_the_tracked_person(tracked: tuple, demo: Path) -> None:
    regressor, result = tracked
    first = [frame.image for frame in iter_frames(demo, 0, 16)]
    regressor.reset()
    np.testing.assert_array_equal(regressor(first).keypoints, result.keypoints[:16])
    # Without a reset the tracker carries frame 15's person into frame 0, where a fresh
    # start finds nobody (measured: up to 0.84 m apart).
    carried_over = regressor(first)
    assert carried_over.detected.all() and not result.detected[:3].any()
    regressor.reset()
    again = regressor(first)
    np.testing.assert_array_equal(again.detected, result.detected[:16])
    np.testing.assert_array_equal(again.keypoints, result.keypoints[:16])


def test_nothing_is_written_to_stdout(capfd: pytest.CaptureFixture[str], demo: Path) -> None:
    # The Blender side reads the engine's stdout, so the backend must keep it clean.
    images = [frame.image for frame in iter_frames(demo, 100, 102)]
    with BlazePoseRegressor() as regressor:
        assert regressor(images).detected.all()
    assert capfd.readouterr().out == ""


def test_closed_regressor_refuses_work() -> None:
    regressor = BlazePoseRegressor()
    with regressor:
        pass
    regressor.close()  # twice is harmless
    with pytest.raises(RegressorError, match="blazepose-full regressor is closed"):
        regressor([np.zeros((64, 64, 3), np.uint8)])


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((64, 64, 3), np.float32), "float32 array of shape"),
        (np.zeros((64, 64), np.uint8), r"uint8 array of shape \(64, 64\)"),
        (np.zeros((64, 64, 4), np.uint8), r"uint8 array of shape \(64, 64, 4\)"),
        ([[0, 0, 0]], "list"),
    ],
)
def test_bad_images_are_rejected(tracked: tuple, image: object, message: str) -> None:
    expected = rf"image 1 must be a \(H, W, 3\) uint8 RGB array, got a {message}"
    with pytest.raises(ValueError, match=expected):
        tracked[0]([np.zeros((64, 64, 3), np.uint8), image])


@pytest.mark.parametrize("complexity", [-1, 3, 1.5, "1"])
def test_invalid_complexity_is_a_value_error(complexity: object, no_download: None) -> None:
    with pytest.raises(ValueError, match=r"model_complexity must be one of \[0, 1, 2\]"):
        BlazePoseRegressor(model_complexity=complexity)  # type: ignore[arg-type]


@pytest.mark.parametrize("keyword", ["min_detection_confidence", "min_tracking_confidence"])
def test_confidence_thresholds_must_lie_in_0_1(keyword: str) -> None:
    with pytest.raises(ValueError, match=f"{keyword} must lie in 0..1"):
        BlazePoseRegressor(**{keyword: 1.5})


@pytest.mark.parametrize("complexity, model", [(0, "lite"), (1, "full"), (2, "heavy")])
def test_missing_landmark_model_names_file_and_remedy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_download: None, complexity: int, model: str
) -> None:
    # A mediapipe install whose detector is present but whose landmark models are not.
    detector = tmp_path / "modules" / "pose_detection" / "pose_detection.tflite"
    detector.parent.mkdir(parents=True)
    detector.write_bytes(b"stand-in")
    monkeypatch.setattr(blazepose, "_mediapipe_root", lambda: tmp_path)
    folder = tmp_path / "modules" / "pose_landmark"
    with pytest.raises(RegressorError) as raised:
        BlazePoseRegressor(model_complexity=complexity)
    message = str(raised.value)
    file = f"pose_landmark_{model}.tflite"
    assert f"{folder / file}  (copy {file} into {folder})" in message
    assert "@mediapipe/pose" in message
    assert "pose_detection" not in message


def test_every_missing_model_file_is_listed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_download: None
) -> None:
    monkeypatch.setattr(blazepose, "_mediapipe_root", lambda: tmp_path)
    with pytest.raises(RegressorError) as raised:
        create_regressor("blazepose", model_complexity=2)
    message = str(raised.value)
    assert str(tmp_path / "modules" / "pose_detection" / "pose_detection.tflite") in message
    assert str(tmp_path / "modules" / "pose_landmark" / "pose_landmark_heavy.tflite") in message


@pytest.mark.parametrize("complexity", [0, 2])
def test_installed_mediapipe_never_downloads(complexity: int, no_download: None) -> None:
    # mediapipe's wheel lacks lite and heavy; whoever copied them in gets a working model,
    # everyone else a RegressorError, and nobody a download attempt.
    files = blazepose.required_model_files(complexity)
    missing = [path for path in files if not path.is_file()]
    if missing:
        with pytest.raises(RegressorError, match="needs model files") as raised:
            BlazePoseRegressor(model_complexity=complexity)
        assert all(str(path) in str(raised.value) for path in missing)
    else:
        BlazePoseRegressor(model_complexity=complexity).close()


def test_factory_knows_blazepose_and_lists_backends() -> None:
    with create_regressor() as regressor:
        assert isinstance(regressor, Regressor) and regressor.name == "blazepose-full"
    with pytest.raises(ValueError, match=r"unknown regressor 'hrnet'; known: blazepose"):
        create_regressor("hrnet")
    with pytest.raises(ValueError, match="takes no argument"):
        create_regressor("blazepose:model.onnx")


# KeypointFrames itself: validation and joining chunks.


def frames(
    n: int, *, betas: float | None = None, twist: bool = False, detected: int | None = None
) -> KeypointFrames:
    """N frames of 2 keypoints, frame i's values all i, the first ``detected`` found."""
    values = np.arange(n, dtype=np.float32)
    found = np.arange(n) < (n if detected is None else detected)
    return KeypointFrames(
        ("a", "b"),
        np.broadcast_to(values[:, None, None], (n, 2, 3)),
        np.broadcast_to(values[:, None] / n, (n, 2)),
        np.broadcast_to(values[:, None, None], (n, 2, 2)),
        found,
        twist=np.zeros((n, 23)) if twist else None,
        betas=None if betas is None else np.full(10, betas),
    )


def test_concatenate_joins_in_order_and_weights_betas_by_detections() -> None:
    joined = KeypointFrames.concatenate([frames(3, betas=1.0, detected=1), frames(2, betas=4.0)])
    assert len(joined) == 5
    np.testing.assert_array_equal(joined.keypoints[:, 0, 0], [0, 1, 2, 0, 1])
    np.testing.assert_array_equal(joined.detected, [True, False, False, True, True])
    np.testing.assert_allclose(joined.betas, np.full(10, (1 * 1.0 + 2 * 4.0) / 3))
    assert joined.betas.dtype == np.float32 and joined.twist is None


def test_concatenate_refuses_mismatched_parts() -> None:
    with pytest.raises(ValueError, match="nothing to concatenate"):
        KeypointFrames.concatenate([])
    with pytest.raises(ValueError, match="part 1 and part 0 disagree on whether twist is given"):
        KeypointFrames.concatenate([frames(2), frames(2, twist=True)])
    other = frames(2)
    other.keypoint_names = ("a", "c")
    with pytest.raises(ValueError, match="part 1 has other keypoint names"):
        KeypointFrames.concatenate([frames(2), other])


def test_keypoint_frames_check_shapes() -> None:
    good = frames(4)
    with pytest.raises(ValueError, match=r"keypoints has shape \(4, 2, 2\), expected \(4, 2, 3\)"):
        names, _, confidence, image_keypoints, detected = _fields(good)
        KeypointFrames(names, image_keypoints, confidence, image_keypoints, detected)
    with pytest.raises(ValueError, match=r"twist has shape \(4, 24\), expected \(4, 23\)"):
        KeypointFrames(*_fields(good), twist=np.zeros((4, 24)))
    with pytest.raises(ValueError, match="twist_confidence given without twist"):
        KeypointFrames(*_fields(good), twist_confidence=np.zeros((4, 23)))
    with pytest.raises(ValueError, match=r"betas has shape \(11,\), expected \(10,\)"):
        KeypointFrames(*_fields(good), betas=np.zeros(11))


def _fields(f: KeypointFrames) -> tuple:
    return f.keypoint_names, f.keypoints, f.confidence, f.image_keypoints, f.detected


def test_landmark_table_matches_mediapipes_output_order() -> None:
    order = tuple(landmark.name.lower() for landmark in sorted(mp.solutions.pose.PoseLandmark, key=int))
    assert LANDMARK_NAMES == order
