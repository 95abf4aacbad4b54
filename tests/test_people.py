"""Finding, tracking and choosing people: ikol_engine.people.

The real-video tests run the detector on every second frame of the Sports2D demo (115
frames, once per session) and compare with the torso points marked by hand in
``sports2d_people.py``: a detection finds a marked person when its hip keypoint lies
within half its body radius of the mark.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from ikol_engine.people.boxes import follow_boxes
from ikol_engine.people.detector import (
    Detections,
    PersonDetector,
    letterbox,
    ssd_anchors,
    tile_windows,
)
from ikol_engine.people.overview import contact_sheet, describe, write_contact_sheet
from ikol_engine.people.selection import PeopleError, parse_person, select_people
from ikol_engine.people.tracker import (
    FORBIDDEN,
    Track,
    TrackerOptions,
    assign,
    association_cost,
    track_detections,
)
from ikol_engine.samples import demo_video
from ikol_engine.video.decode import iter_frames
from sports2d_people import TORSO_POINTS, finds

STRIDE = 2
FPS = 30


@pytest.fixture(scope="session")
def demo_detections() -> tuple[list[int], list[Detections], dict[int, np.ndarray]]:
    """Frame indices, detections at every STRIDE-th frame, and the marked frames' images."""
    detector = PersonDetector()
    frames, found, images = [], [], {}
    for frame in iter_frames(demo_video(), stride=STRIDE):
        frames.append(frame.index)
        found.append(detector(frame.image))
        if frame.index in TORSO_POINTS:
            images[frame.index] = frame.image
    return frames, found, images


@pytest.fixture(scope="session")
def demo_tracks(demo_detections) -> list[Track]:
    frames, found, _ = demo_detections
    return track_detections(frames, found, TrackerOptions(max_gap=FPS))  # one second


# --- detector -----------------------------------------------------------------------


def test_anchor_layout_matches_the_model_output():
    anchors = ssd_anchors()
    assert anchors.shape == (2254, 2)
    # 28x28 grid, two anchors per cell, first: centre of the top-left stride-8 cell.
    np.testing.assert_allclose(anchors[0], [0.5 / 28, 0.5 / 28])
    np.testing.assert_allclose(anchors[1], anchors[0])
    np.testing.assert_allclose(anchors[2], [1.5 / 28, 0.5 / 28])
    # The last six share the bottom-right 7x7 cell.
    np.testing.assert_allclose(anchors[-6:], np.tile([6.5 / 7, 6.5 / 7], (6, 1)))


def test_letterbox_maps_input_pixels_back_to_the_image():
    image = np.zeros((100, 300, 3), np.uint8)
    image[40:60, 200:220] = 255  # a white square centred at (210, 50)
    tensor, scale, offset = letterbox(image)
    assert tensor.shape == (1, 224, 224, 3) and tensor.min() == -1.0
    white = np.argwhere(tensor[0, :, :, 0] > 0.0)
    centre = (white.mean(axis=0)[::-1] + 0.5 - offset) / scale
    np.testing.assert_allclose(centre, [210, 50], atol=1.5)


def test_tiles_cover_the_frame_with_overlap():
    for width, height in ((1768, 994), (720, 1280), (500, 500)):
        for level in (1, 2, 3):
            windows = tile_windows(width, height, level)
            covered = np.zeros((height, width), bool)
            for x0, y0, side in windows:
                assert x0 >= 0 and y0 >= 0 and x0 + side <= width and y0 + side <= height
                covered[y0 : y0 + side, x0 : x0 + side] = True
            assert covered.all(), (width, height, level)
    assert tile_windows(500, 500, 1) == [(0, 0, 500)]


def test_detector_rejects_a_non_rgb_image():
    with pytest.raises(ValueError, match="uint8"):
        PersonDetector()(np.zeros((64, 64), np.uint8))


def test_detector_finds_both_people_where_marked(demo_detections):
    frames, found, _ = demo_detections
    by_frame = dict(zip(frames, found))
    hits: dict[str, list[bool]] = {"jumper": [], "walker": []}
    for index, people in TORSO_POINTS.items():
        detections = by_frame[index]
        for name, point in people.items():
            hits[name].append(bool(finds(detections.boxes, detections.keypoints, point).any()))
    # The jumper is missed at most at the two marked frames of his flip against the sun.
    assert sum(hits["jumper"]) >= len(hits["jumper"]) - 2, hits["jumper"]
    assert all(hits["walker"]), hits["walker"]


def test_detector_sees_two_people_while_both_are_in_view(demo_detections):
    # Both are in view from frame 60 (the walker clear of the tree) to 190 (see the marks).
    frames, found, _ = demo_detections
    counts = np.array([len(d) for f, d in zip(frames, found) if 60 <= f <= 190])
    assert np.mean(counts >= 2) >= 0.85


# --- tracker ------------------------------------------------------------------------


def _track_near(tracks: list[Track], index: int, point: tuple[int, int]) -> list[int]:
    """Ids of tracks detected at ``index`` with a box on the marked point."""
    ids = []
    for track in tracks:
        at = np.flatnonzero(track.frames == index)
        if at.size and finds(track.boxes[at], track.keypoints[at], point)[0]:
            ids.append(track.id)
    return ids


def test_jumper_is_one_track_over_the_whole_clip(demo_tracks):
    jumper = select_people(demo_tracks, parse_person("auto"))[0]
    assert jumper.first_frame == 0 and jumper.last_frame >= 220
    # Detected in most analysed frames of its span, and its box never leaves him.
    assert len(jumper.frames) >= 0.85 * ((jumper.last_frame - jumper.first_frame) // STRIDE + 1)
    on_him = 0
    for index, people in TORSO_POINTS.items():
        at = np.flatnonzero(jumper.frames == index)
        if at.size == 0:
            continue
        hip = jumper.keypoints[at[0], 0]
        radius = (jumper.boxes[at[0], 2] - jumper.boxes[at[0], 0]) / 2
        to_jumper = np.linalg.norm(hip - people["jumper"]) / radius
        assert to_jumper <= 0.75, (index, to_jumper)
        if "walker" in people:
            assert np.linalg.norm(hip - people["walker"]) > 2 * np.linalg.norm(hip - people["jumper"])
        on_him += 1
    assert on_him >= len(TORSO_POINTS) - 2
    # Continuity: between detections the box centre moves less than 0.35 box sides a frame.
    centres = (jumper.boxes[:, :2] + jumper.boxes[:, 2:]) / 2
    sides = jumper.boxes[:-1, 2] - jumper.boxes[:-1, 0]
    steps = np.linalg.norm(np.diff(centres, axis=0), axis=1) / np.diff(jumper.frames) / sides
    assert steps.max() < 0.35


def test_followed_boxes_hold_the_jumper_in_every_marked_frame(demo_tracks):
    # Every frame of his span, the frames between detections interpolated.
    jumper = select_people(demo_tracks, parse_person("auto"))[0]
    frames = np.arange(jumper.first_frame, jumper.last_frame + 1)
    boxes = follow_boxes(jumper, frames)
    for index, people in TORSO_POINTS.items():
        if index > jumper.last_frame:
            continue
        x0, y0, x1, y1 = boxes[index - frames[0]]
        # Where in his box the mark is: 0..1 across it.
        u, v = (people["jumper"][0] - x0) / (x1 - x0), (people["jumper"][1] - y0) / (y1 - y0)
        assert 0.15 < u < 0.85 and 0.15 < v < 0.85, (index, u, v)


def test_walker_is_one_other_track(demo_tracks):
    jumper = select_people(demo_tracks, parse_person("auto"))[0]
    walker_ids = set()
    for index, people in TORSO_POINTS.items():
        if "walker" in people:
            walker_ids.update(_track_near(demo_tracks, index, people["walker"]))
    assert len(walker_ids) == 1 and jumper.id not in walker_ids
    walker = next(t for t in demo_tracks if t.id in walker_ids)
    assert walker.first_frame <= 42 and walker.last_frame >= 190


def test_contact_sheet_numbers_the_people(demo_tracks, demo_detections, tmp_path: Path):
    _, _, images = demo_detections
    shown = [(i, images[i]) for i in (0, 100, 190)]
    sheet = contact_sheet(shown, demo_tracks, columns=3, width=400)
    assert sheet.shape == (round(994 * 400 / 1768), 1200, 3)
    path = tmp_path / "people.png"
    write_contact_sheet(path, sheet)
    assert cv2.imread(str(path)).shape == sheet.shape
    assert [p.name for p in tmp_path.iterdir()] == ["people.png"]
    # The jumper's box is drawn in his track's colour around him in frame 0.
    jumper = select_people(demo_tracks, parse_person("auto"))[0]
    x0, y0, x1, y1 = (jumper.boxes[0] * 400 / 1768).round().astype(int)
    assert np.all(sheet[max(y0, 0) + 10, max(x0, 0)] == (230, 25, 75))


def _detections(boxes: list[list[float]]) -> Detections:
    boxes_array = np.array(boxes, float).reshape(-1, 4)
    centres = (boxes_array[:, :2] + boxes_array[:, 2:]) / 2
    keypoints = np.repeat(centres[:, None, :], 4, axis=1)
    return Detections(boxes_array, np.full(len(boxes_array), 0.9), keypoints)


def _box(cx: float, cy: float, side: float = 100.0) -> list[float]:
    return [cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]


def test_ids_survive_a_crossing_with_one_person_hidden():
    # A walks right at 10 px/frame, B left at 10 px/frame, level; they meet at frame 50
    # and B, behind A, goes undetected for frames 40-64 (25 frames).
    frames, found = list(range(100)), []
    for t in frames:
        boxes = [_box(100 + 10 * t, 300)]
        if not 40 <= t < 65:
            boxes.append(_box(1100 - 10 * t, 300, 90))
        found.append(_detections(boxes))
    tracks = track_detections(frames, found, TrackerOptions(max_gap=30))
    assert [t.id for t in tracks] == [1, 2]
    a, b = tracks
    assert len(a.frames) == 100 and len(b.frames) == 75
    np.testing.assert_allclose((a.boxes[:, 0] + a.boxes[:, 2]) / 2, 100 + 10 * a.frames)
    np.testing.assert_allclose((b.boxes[:, 0] + b.boxes[:, 2]) / 2, 1100 - 10 * b.frames)


def test_a_gap_longer_than_max_gap_starts_a_new_track():
    frames = list(range(60))
    found = [_detections([] if 20 <= t < 45 else [_box(300, 300)]) for t in frames]
    tracks = track_detections(frames, found, TrackerOptions(max_gap=10))
    assert [(t.first_frame, t.last_frame) for t in tracks] == [(0, 19), (45, 59)]


def test_two_odd_sized_boxes_do_not_rescale_a_track():
    # Side 100, then two boxes 1.45 times larger (two people boxed as one), then side 95:
    # 95 against the last box would be a ratio of 1.53, against the recent median 1.05.
    sides = [100.0] * 10 + [145.0] * 2 + [95.0] * 10
    found = [_detections([_box(300 + 2 * t, 300, side)]) for t, side in enumerate(sides)]
    tracks = track_detections(list(range(len(sides))), found)
    assert len(tracks) == 1 and len(tracks[0].frames) == len(sides)


def test_single_false_detections_get_no_track():
    # One person throughout; a false detection every 10 frames, each somewhere else.
    frames = list(range(30))
    found = [_detections([_box(300, 300)] + ([_box(900 + 40 * t, 500)] if t % 10 == 5 else []))
             for t in frames]
    tracks = track_detections(frames, found)
    assert len(tracks) == 1 and len(tracks[0].frames) == 30


def test_cost_forbids_far_and_resized_boxes():
    options = TrackerOptions()
    track = np.array([_box(0, 0, 100)])
    detections = np.array([_box(0, 0, 100), _box(40, 0, 100), _box(200, 0, 100), _box(0, 0, 300)])
    cost = association_cost(track, np.array([1.0]), detections, options)[0]
    assert cost[0] == pytest.approx(0.0)
    assert 0.0 < cost[1] < FORBIDDEN  # 0.4 sides away
    assert cost[2] == FORBIDDEN  # 2 sides away
    assert cost[3] == FORBIDDEN  # 3 times the size
    # Unseen for 11 frames, the allowed distance has grown by 0.5 sides.
    far = association_cost(track, np.array([11.0]), detections[2:3] - [100, 0, 100, 0], options)
    assert far[0, 0] < FORBIDDEN


def test_assign_skips_forbidden_pairs():
    cost = np.array([[0.1, FORBIDDEN], [0.2, FORBIDDEN], [FORBIDDEN, FORBIDDEN]])
    assert assign(cost) == [(0, 0)]
    assert assign(np.array([[1.0, 0.2], [0.3, 1.0]])) == [(0, 1), (1, 0)]
    assert assign(np.zeros((0, 3))) == []


def test_tracker_rejects_frames_out_of_order():
    with pytest.raises(ValueError, match="increase"):
        track_detections([3, 2], [_detections([]), _detections([])])


# --- boxes between detections --------------------------------------------------------


def _track(track_id: int, frames: list[int], boxes: list[list[float]]) -> Track:
    boxes_array = np.array(boxes, float)
    centres = (boxes_array[:, :2] + boxes_array[:, 2:]) / 2
    return Track(track_id, np.array(frames), boxes_array, np.full(len(frames), 0.9),
                 np.repeat(centres[:, None], 4, axis=1))


def test_follow_boxes_interpolates_missed_frames():
    track = _track(1, [10, 14], [_box(100, 200), _box(140, 200)])
    boxes = follow_boxes(track, np.arange(10, 15))
    np.testing.assert_allclose((boxes[:, 0] + boxes[:, 2]) / 2, [100, 110, 120, 130, 140])
    with pytest.raises(ValueError, match="frames 10-14"):
        follow_boxes(track, np.array([9]))


# --- selection ----------------------------------------------------------------------


@pytest.fixture
def three_people() -> list[Track]:
    return [
        _track(1, [0, 1, 2, 3, 4], [_box(200, 300, 100)] * 5),
        _track(2, [0, 1, 2, 3, 4], [_box(600, 300, 300)] * 5),  # as long, larger
        _track(3, [2, 3, 4], [_box(1000, 300, 200)] * 3),
    ]


def test_parse_person():
    assert parse_person("auto").mode == "auto"
    assert parse_person(" ALL ").mode == "all"
    assert parse_person("3").track_id == 3
    assert parse_person("640,360").point == (640.0, 360.0)
    for bad in ("", "first", "0", "-2", "1,2,3", "nan,4", "1.5"):
        with pytest.raises(PeopleError, match="--person|start at 1"):
            parse_person(bad)


def test_select_auto_id_point_all(three_people):
    def pick(text: str) -> list[int]:
        return [t.id for t in select_people(three_people, parse_person(text))]

    assert pick("auto") == [2]  # tie on length, larger box
    assert pick("3") == [3]
    assert pick("210,290") == [1]
    assert pick("all") == [1, 2, 3]
    # Inside two boxes: the smaller one.
    nested = three_people + [_track(4, [0, 1, 2], [_box(600, 300, 80)] * 3)]
    assert [t.id for t in select_people(nested, parse_person("600,300"))] == [4]
    # A track absent from the first frame cannot be picked by pixel.
    with pytest.raises(PeopleError, match="inside nobody's box in frame 0, the first"):
        select_people(three_people, parse_person("1000,300"))


def test_select_errors_list_the_people(three_people):
    with pytest.raises(PeopleError) as error:
        select_people(three_people, parse_person("7"))
    message = str(error.value)
    assert "no person has id 7" in message
    assert "person 2: frames 0-4 (5 detected), mean box [450, 150, 750, 450]" in message
    assert message.count("\n  person") == 3
    with pytest.raises(PeopleError, match="nobody was detected"):
        select_people([], parse_person("auto"))


def test_describe():
    left_small = _track(1, [0, 1], [_box(200, 500, 150)] * 2)
    right_large = _track(2, [5, 9], [_box(1500, 500, 600), _box(300, 500, 600)])
    assert describe(left_small, 1768, 994) == "left, small, frames 0-1"
    assert describe(right_large, 1768, 994) == "right, large, frames 5-9"
    assert describe(right_large, 1768).startswith("right, medium")
