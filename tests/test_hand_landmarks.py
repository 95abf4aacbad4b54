"""Hand landmarks from video: MediaPipe Hands on crops placed by BlazePose's body, on the
Sports2D demo's first 5.3 s (the jumper alone; the passer-by takes over later), and the
crop geometry on synthetic images."""
from __future__ import annotations

from pathlib import Path

import mediapipe as mp
import numpy as np
import pytest

from ikol_engine.regressors import KeypointFrames, RegressorError
from ikol_engine.regressors.blazepose import BlazePoseRegressor
from ikol_engine.regressors.blazepose import hands as hands_module
from ikol_engine.regressors.blazepose.hand_landmarks import (
    BODY_WRISTS, HAND_LANDMARK_NAMES, HAND_WRIST, SIDES,
)
from ikol_engine.regressors.blazepose.hands import (
    CROP_PER_FOREARM, CROP_SIZE, MAX_WRIST_OFFSET, MIN_CROP_PX, CropBox, HandFrames, HandLandmarker,
    cut_crop, hand_crop_box, required_hand_model_files,
)
from ikol_engine.regressors.blazepose.landmarks import LANDMARK_INDEX
from ikol_engine.samples import demo_video
from ikol_engine.video.decode import iter_frames

END_FRAME = int(5.3 * 30)  # the demo runs at 30 fps
CHUNK = 32  # frames per call, as a pipeline would batch them
LEFT, RIGHT = SIDES.index("left"), SIDES.index("right")


@pytest.fixture(scope="module")
def demo() -> tuple[KeypointFrames, HandFrames]:
    """BlazePose's body and the hands found from it, over the demo's first 159 frames."""
    bodies, hands, chunk = [], [], []
    with BlazePoseRegressor() as regressor, HandLandmarker() as landmarker:

        def run_chunk() -> None:
            body = regressor(chunk)
            bodies.append(body)
            hands.append(landmarker(chunk, body.image_keypoints, body.confidence))
            chunk.clear()

        for frame in iter_frames(demo_video(), 0, END_FRAME):
            chunk.append(frame.image)
            if len(chunk) == CHUNK:
                run_chunk()
        run_chunk()
    return KeypointFrames.concatenate(bodies), HandFrames.concatenate(hands)


def body_wrist(body: KeypointFrames, side: int) -> np.ndarray:
    """(T, 2) the body's wrist pixels on one side."""
    return body.image_keypoints[:, BODY_WRISTS[side]]


def test_landmark_names_follow_mediapipes_order() -> None:
    order = tuple(p.name.lower() for p in sorted(mp.solutions.hands.HandLandmark, key=int))
    assert HAND_LANDMARK_NAMES == order and len(order) == 21
    assert HAND_LANDMARK_NAMES[HAND_WRIST] == "wrist"
    assert BODY_WRISTS == (LANDMARK_INDEX["left_wrist"], LANDMARK_INDEX["right_wrist"]) == (15, 16)


def test_shapes_dtypes_and_empty_rows(demo: tuple[KeypointFrames, HandFrames]) -> None:
    _, hands = demo
    assert len(hands) == END_FRAME == 159
    assert hands.image_keypoints.shape == (159, 2, 21, 2) and hands.image_keypoints.dtype == np.float32
    assert hands.world_keypoints.shape == (159, 2, 21, 3) and hands.world_keypoints.dtype == np.float32
    assert hands.confidence.shape == (159, 2, 21) and hands.confidence.dtype == np.float32
    assert hands.label_agrees.shape == (159, 2) and hands.found.shape == (159, 2)
    assert 0.0 <= hands.confidence.min() and hands.confidence.max() <= 1.0
    missed = ~hands.found
    for array in (hands.image_keypoints, hands.world_keypoints, hands.confidence, hands.label_agrees):
        assert not array[missed].any()
    # One confidence per hand: every landmark of a found hand carries it.
    found = hands.confidence[hands.found]
    assert (found == found[:, :1]).all() and (found > 0).all()


def test_hands_are_found_in_many_frames_only_where_the_body_shows_them(
    demo: tuple[KeypointFrames, HandFrames],
) -> None:
    body, hands = demo
    # Measured: left 49 of 159 frames (0.31), right 100 (0.63). The hands are some 30 px
    # long and motion-blurred; BlazePose's left wrist is below 0.5 confidence in 51
    # frames (3 before the jumper is found), where that side is skipped. Given the
    # whole frames (every other one), MediaPipe found no hand at all.
    assert hands.found[:, LEFT].mean() >= 0.25
    assert hands.found[:, RIGHT].mean() >= 0.55
    wrist_confidence = body.confidence[:, list(BODY_WRISTS)]
    assert (wrist_confidence[hands.found] >= 0.5).all()
    np.testing.assert_array_equal(hands.confidence[..., HAND_WRIST][hands.found], wrist_confidence[hands.found])


def test_hand_wrist_lands_on_the_body_wrist(demo: tuple[KeypointFrames, HandFrames]) -> None:
    body, hands = demo
    for side, bound in ((LEFT, 9.0), (RIGHT, 7.0)):
        found = hands.found[:, side]
        distance = np.linalg.norm(hands.image_keypoints[found, side, HAND_WRIST] - body_wrist(body, side)[found], axis=-1)
        # Measured medians: left 6.4 px, right 4.8 px (a hand is about 30 px long).
        assert np.median(distance) < bound, (SIDES[side], np.median(distance))
        # None beyond the rejection distance of its own crop.
        sides = np.array([hand_crop_box(pixels, side).side for pixels in body.image_keypoints[found]])
        assert (distance <= MAX_WRIST_OFFSET * sides).all()


def test_hands_never_trade_sides(demo: tuple[KeypointFrames, HandFrames]) -> None:
    body, hands = demo
    both = hands.found.all(axis=1)
    assert both.sum() >= 25  # measured 35 frames
    for side in (LEFT, RIGHT):
        wrist = hands.image_keypoints[both, side, HAND_WRIST]
        own = np.linalg.norm(wrist - body_wrist(body, side)[both], axis=-1)
        other = np.linalg.norm(wrist - body_wrist(body, 1 - side)[both], axis=-1)
        assert (own < other).all(), SIDES[side]


def test_world_landmarks_are_a_hand_in_metres_about_its_centre(demo: tuple[KeypointFrames, HandFrames]) -> None:
    _, hands = demo
    world = hands.world_keypoints[hands.found]
    middle_tip = HAND_LANDMARK_NAMES.index("middle_finger_tip")
    span = np.linalg.norm(world[:, middle_tip] - world[:, HAND_WRIST], axis=-1)
    # Measured: median 0.147 m from wrist to middle fingertip (an adult's is about 0.19).
    assert 0.10 < np.median(span) < 0.22
    assert np.abs(world.mean(axis=1)).max() < 0.05  # measured 0.025 m
    # x and y run along the image's: from the wrist, each landmark lies the same way in
    # both (measured: median cosine 0.999, the worst hand's median 0.98).
    image = hands.image_keypoints[hands.found]
    in_image, in_world = image[:, 1:] - image[:, :1], world[:, 1:, :2] - world[:, :1, :2]
    cosine = (in_image * in_world).sum(-1) / np.linalg.norm(in_image, axis=-1) / np.linalg.norm(in_world, axis=-1)
    assert np.median(cosine) > 0.99 and np.median(cosine, axis=1).min() > 0.9


def test_no_person_no_hands() -> None:
    rng = np.random.default_rng(0)
    images = [np.zeros((994, 1768, 3), np.uint8), rng.integers(0, 256, (994, 1768, 3), dtype=np.uint8)]
    with HandLandmarker() as landmarker:
        nobody = landmarker(images, np.zeros((2, 33, 2)), np.zeros((2, 33)))
        assert not nobody.confidence.any() and not nobody.found.any()
        # A body that claims hands where the image has none: MediaPipe finds nothing in
        # the crops either (measured: none in 20 blank and 20 noise frames).
        pixels = np.tile(_standing_body(), (2, 1, 1))
        claimed = landmarker(images, pixels, np.ones((2, 33)))
        assert not claimed.confidence.any()


def test_results_do_not_depend_on_earlier_frames(
    demo: tuple[KeypointFrames, HandFrames], capfd: pytest.CaptureFixture[str]
) -> None:
    body, hands = demo
    start, stop = 60, 66
    images = [frame.image for frame in iter_frames(demo_video(), start, stop)]
    pixels, confidence = body.image_keypoints[start:stop], body.confidence[start:stop]
    with HandLandmarker() as landmarker:
        alone = landmarker(images, pixels, confidence)
        landmarker(images[::-1], pixels[::-1], confidence[::-1])
        again = landmarker(images, pixels, confidence)
    assert alone.found.any()
    for label in ("image_keypoints", "world_keypoints", "confidence", "label_agrees"):
        expected = getattr(hands, label)[start:stop]
        np.testing.assert_array_equal(getattr(alone, label), expected, err_msg=label)
        np.testing.assert_array_equal(getattr(again, label), expected, err_msg=label)
    assert capfd.readouterr().out == ""  # the Blender side reads the engine's stdout


# Crop geometry.


def test_crop_box_maps_crop_pixels_to_frame_pixels() -> None:
    box = CropBox(x0=100.5, y0=-20.0, side=64.0, size=256)
    assert box.scale == 0.25
    crop = np.array([[0.0, 0.0], [256.0, 256.0], [128.0, 64.0], [1.0, 3.0]])
    expected = np.array([[100.5, -20.0], [164.5, 44.0], [132.5, -4.0], [100.75, -19.25]])
    np.testing.assert_allclose(box.to_frame(crop), expected, atol=1e-5)
    assert box.to_frame(crop).dtype == np.float32
    # Crop pixel j's centre, j + 0.5, samples the frame at index x0 + (j + 0.5) * scale - 0.5.
    np.testing.assert_allclose(box.sampling_matrix(), [[0.25, 0, 100.125], [0, 0.25, -20.375]])


@pytest.mark.parametrize("side", [32.0, 256.0, 512.0])  # enlarged 8x, as is, shrunk 2x
def test_a_spot_cut_out_maps_back_where_it_was(side: float) -> None:
    # A smooth spot centred between pixels: its brightness-weighted centre in the crop,
    # mapped back, lands on its centre in the frame, to a small fraction of a pixel.
    centre = np.array([300.3, 200.7])
    y, x = np.mgrid[0:500, 0:700] + 0.5  # pixel centres
    sigma = max(side / CROP_SIZE, 1.0) * 3.0
    spot = np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma**2))
    image = np.repeat((255 * spot).round().astype(np.uint8)[..., None], 3, axis=2)
    box = CropBox(centre[0] - 0.4 * side, centre[1] - 0.55 * side, side, CROP_SIZE)
    crop = cut_crop(image, box)
    assert crop.shape == (CROP_SIZE, CROP_SIZE, 3) and crop.dtype == np.uint8
    weight = crop[..., 0].astype(np.float64)
    v, u = np.mgrid[0:CROP_SIZE, 0:CROP_SIZE] + 0.5
    found = np.array([(u * weight).sum(), (v * weight).sum()]) / weight.sum()
    np.testing.assert_allclose(box.to_frame(found), centre, atol=0.05 * max(1.0, side / CROP_SIZE))


def test_cut_crop_is_black_outside_the_frame() -> None:
    image = np.full((100, 100, 3), 200, np.uint8)
    crop = cut_crop(image, CropBox(-50.0, -50.0, 100.0, 64))
    assert (crop[:30, :30] == 0).all() and (crop[34:, 34:] == 200).all()


def _standing_body() -> np.ndarray:
    """(33, 2) body pixels with the forearms hanging 50 px straight down, hands at rest."""
    pixels = np.zeros((33, 2))
    for name, x in (("left", 900.0), ("right", 700.0)):
        pixels[LANDMARK_INDEX[f"{name}_elbow"]] = (x, 400.0)
        pixels[LANDMARK_INDEX[f"{name}_wrist"]] = (x, 450.0)
        for finger, dx in (("pinky", -4.0), ("index", 4.0), ("thumb", 0.0)):
            pixels[LANDMARK_INDEX[f"{name}_{finger}"]] = (x + dx, 462.0)
    return pixels


def test_crop_box_follows_the_forearm() -> None:
    pixels = _standing_body()
    box = hand_crop_box(pixels, LEFT)
    assert box.side == CROP_PER_FOREARM * 50.0 and box.size == CROP_SIZE
    centre = np.array([box.x0, box.y0]) + box.side / 2
    # Centred on the hand's points (mean y 459), pushed further down the forearm's line.
    assert centre[0] == pytest.approx(900.0) and 459.0 < centre[1] < 459.0 + 0.5 * 50.0
    assert hand_crop_box(pixels, RIGHT).x0 == pytest.approx(box.x0 - 200.0)
    # A forearm seen end-on is a few pixels long; the crop keeps its floor.
    pixels[LANDMARK_INDEX["left_elbow"]] = (900.0, 447.0)
    assert hand_crop_box(pixels, LEFT).side == MIN_CROP_PX


# Errors, results' checks and model files.


@pytest.fixture(scope="module")
def landmarker() -> HandLandmarker:
    with HandLandmarker() as landmarker:
        yield landmarker


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((64, 64, 3), np.float32), "float32 array of shape"),
        (np.zeros((64, 64), np.uint8), r"uint8 array of shape \(64, 64\)"),
        ([[0, 0, 0]], "list"),
    ],
)
def test_bad_images_are_rejected(landmarker: HandLandmarker, image: object, message: str) -> None:
    with pytest.raises(ValueError, match=rf"image 1 must be a \(H, W, 3\) uint8 RGB array, got a {message}"):
        landmarker([np.zeros((64, 64, 3), np.uint8), image], np.zeros((2, 33, 2)), np.zeros((2, 33)))


def test_body_arrays_must_match_the_images(landmarker: HandLandmarker) -> None:
    images = [np.zeros((64, 64, 3), np.uint8)] * 3
    with pytest.raises(ValueError, match="body_pixels has 2 frames but there are 3 images"):
        landmarker(images, np.zeros((2, 33, 2)), np.zeros((3, 33)))
    with pytest.raises(ValueError, match="body_confidence has 4 frames but there are 3 images"):
        landmarker(images, np.zeros((3, 33, 2)), np.zeros((4, 33)))
    with pytest.raises(ValueError, match=r"body_pixels must be \(T, 33, 2\) BlazePose landmarks, got shape \(3, 17, 2\)"):
        landmarker(images, np.zeros((3, 17, 2)), np.zeros((3, 33)))
    with pytest.raises(ValueError, match=r"body_confidence must be \(T, 33\) BlazePose landmarks, got shape \(3,\)"):
        landmarker(images, np.zeros((3, 33, 2)), np.zeros(3))


def test_closed_landmarker_refuses_work() -> None:
    landmarker = HandLandmarker()
    landmarker.reset()
    landmarker.close()
    landmarker.close()  # twice is harmless
    with pytest.raises(RegressorError, match="mediapipe-hands-full hand landmarker is closed"):
        landmarker([np.zeros((64, 64, 3), np.uint8)], np.zeros((1, 33, 2)), np.zeros((1, 33)))


@pytest.mark.parametrize(
    "keywords, message",
    [
        ({"model_complexity": 2}, r"model_complexity must be one of \[0, 1\], got 2"),
        ({"min_detection_confidence": 1.5}, "min_detection_confidence must lie in 0..1"),
        ({"min_tracking_confidence": -0.1}, "min_tracking_confidence must lie in 0..1"),
        ({"min_body_confidence": 2.0}, "min_body_confidence must lie in 0..1"),
    ],
)
def test_invalid_settings_are_value_errors(keywords: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        HandLandmarker(**keywords)


@pytest.mark.parametrize("complexity, model", [(0, "lite"), (1, "full")])
def test_missing_model_files_are_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, complexity: int, model: str
) -> None:
    installed = required_hand_model_files(complexity)
    assert all(path.is_file() for path in installed)  # both ship in the mediapipe wheel
    palm = tmp_path / "modules" / "palm_detection" / f"palm_detection_{model}.tflite"
    palm.parent.mkdir(parents=True)
    palm.write_bytes(b"stand-in")
    monkeypatch.setattr(hands_module, "_mediapipe_root", lambda: tmp_path)
    with pytest.raises(RegressorError) as raised:
        HandLandmarker(model_complexity=complexity)
    message = str(raised.value)
    folder, file = tmp_path / "modules" / "hand_landmark", f"hand_landmark_{model}.tflite"
    assert f"{folder / file}  (copy {file} into {folder})" in message
    assert "palm_detection" not in message


def test_hand_frames_check_shapes_and_join_in_order() -> None:
    first, second = HandFrames.empty(2), HandFrames.empty(3)
    second.confidence[1, RIGHT] = 0.5
    joined = HandFrames.concatenate([first, second])
    assert len(joined) == 5
    np.testing.assert_array_equal(joined.found, [[False, False]] * 3 + [[False, True], [False, False]])
    with pytest.raises(ValueError, match="nothing to concatenate"):
        HandFrames.concatenate([])
    with pytest.raises(ValueError, match=r"world_keypoints has shape \(2, 2, 21, 2\), expected \(2, 2, 21, 3\)"):
        HandFrames(first.image_keypoints, first.image_keypoints, first.confidence, first.label_agrees)
