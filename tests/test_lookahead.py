"""The scan fed frame by frame: its schedule, the lag of the one-pass analyze, the provisional pick.

A scripted detector stands in for the model: it "sees" the people of a made-up clip
(boxes moving at known speeds, hidden in known frames) inside the windows it is asked
to look through, so which frames get a whole-frame search, and what the pass knows at
each frame, can be checked exactly.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ikol_engine.people.detector import AROUND_SCALE, Detections
from ikol_engine.people.lookahead import MAX_WAITING_BYTES, ProvisionalFollow, lookahead_frames, scanned
from ikol_engine.people.scan import FULL_SEARCHES_PER_S, Scanner, boxes_at
from ikol_engine.people.selection import parse_person, select_people
from ikol_engine.people.tracker import Tracker, TrackerOptions
from ikol_engine.video.decode import Frame, VideoInfo

WIDTH, HEIGHT, FPS = 640, 360, 30.0


def _box(cx: float, cy: float, side: float = 100.0) -> np.ndarray:
    return np.array([cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2])


class ScriptedPeople:
    """A detector over a made-up clip: ``people(index)`` gives the (N, 4) boxes in frame
    ``index``; a frame's index is written in its first pixel (see :func:`frame`)."""

    def __init__(self, people) -> None:
        self.people = people
        self.calls: list[tuple[int, str]] = []  # (frame, "full" | "around")

    def __call__(self, image: np.ndarray) -> Detections:
        index = _index(image)
        self.calls.append((index, "full"))
        return _detections(self.people(index))

    def around(self, image: np.ndarray, boxes: np.ndarray) -> Detections:
        index = _index(image)
        self.calls.append((index, "around"))
        boxes = np.asarray(boxes).reshape(-1, 4)
        halves = AROUND_SCALE * (boxes[:, 2] - boxes[:, 0]) / 2
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2
        found = [box for box in self.people(index)
                 if np.any(np.all(np.abs((box[:2] + box[2:]) / 2 - centres) <= halves[:, None], axis=1))]
        return _detections(np.array(found).reshape(-1, 4))


def _detections(boxes: np.ndarray) -> Detections:
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    return Detections(boxes.astype(float), np.full(len(boxes), 0.9), np.repeat(centres[:, None], 4, axis=1))


def _index(image: np.ndarray) -> int:
    return int(image[0, 0, 0]) * 256 + int(image[0, 0, 1])


def frame(index: int) -> Frame:
    image = np.full((HEIGHT, WIDTH, 3), 200, np.uint8)
    image[0, 0, :2] = divmod(index, 256)
    return Frame(index, index / FPS, image)


def scanner_for(detector: ScriptedPeople, frames: int) -> Scanner:
    info = VideoInfo(Path("scripted.mp4"), WIDTH, HEIGHT, FPS, frames, frames / FPS)
    return Scanner(info, 0, frames, detector)


def walker_and_hidden(index: int) -> np.ndarray:
    """A walks right at 2 px/frame; B stands still, hidden in frames 60-80, then leaves at 150."""
    people = [_box(100 + 2 * index, 180)]
    if not 60 <= index < 80 and index < 150:
        people.append(_box(500, 180, 120))
    return np.array(people)


def test_scanner_searches_the_whole_frame_at_its_rate_and_right_after_a_miss():
    detector = ScriptedPeople(walker_and_hidden)
    scanner = scanner_for(detector, 240)
    for index in range(240):
        if scanner.due(index):
            scanner.see(index, frame(index).image)
    kinds = dict(detector.calls)
    step = scanner.step
    assert list(kinds) == list(range(0, 240, step))
    periodic = set(range(0, 240, step * round(FPS / step / FULL_SEARCHES_PER_S)))
    # B is hidden over frames 60-79: every run after a miss searches the whole frame,
    # until he is found again; after he leaves at 150, until his track ends.
    found_again = next(i for i in kinds if i >= 80)
    last_seen = max(i for i in kinds if i < 150)
    after_misses = {i for i in kinds if 60 < i <= found_again or 150 < i <= last_seen + scanner.max_gap + step}
    assert {i for i, kind in kinds.items() if kind == "full"} == periodic | after_misses
    tracks = scanner.result().tracks
    assert [(t.first_frame, t.last_frame) for t in tracks] == [(0, max(kinds)), (0, last_seen)]


def test_tracks_keep_their_number_while_an_earlier_one_is_kept_late():
    tracker = Tracker(TrackerOptions(min_hits=3))
    # B is seen at frame 0 and then only from frame 4: kept at 5. A starts at 1, kept at 3.
    for index in range(8):
        boxes = [_box(100 + index, 100)] if index >= 1 else []
        if index == 0 or index >= 4:
            boxes.append(_box(400, 100))
        tracker.update(index, _detections(np.array(boxes).reshape(-1, 4)))
        if index == 3:
            early = tracker.kept()
    late = tracker.kept()
    [serial_a] = early
    assert early[serial_a].id == 1 and late[serial_a].id == 2  # the id moved, the number did not
    recent = tracker.kept(since=6)
    assert all(t.frames.tolist() == [6, 7] for t in recent.values())
    assert [t.id for t in recent.values()] == [t.id for t in late.values()]


def test_the_lag_outlasts_a_gap_unless_frames_would_fill_the_memory():
    def scanner_of(width: int, height: int) -> Scanner:
        info = VideoInfo(Path("x.mp4"), width, height, FPS, 100, 100 / FPS)
        return Scanner(info, 0, 100, ScriptedPeople(walker_and_hidden))

    hd, uhd = scanner_of(1920, 1080), scanner_of(3840, 2160)
    # A person unseen for the longest gap, then kept with the detections a track needs.
    assert lookahead_frames(hd) >= hd.max_gap + hd.step * hd.min_hits
    assert lookahead_frames(hd) * 1920 * 1080 * 3 <= MAX_WAITING_BYTES
    assert hd.step * hd.min_hits <= lookahead_frames(uhd) < uhd.max_gap
    assert (lookahead_frames(uhd) + 1) * 3840 * 2160 * 3 > MAX_WAITING_BYTES >= lookahead_frames(uhd) * 3840 * 2160 * 3


def test_each_frame_goes_on_after_the_lag_knowing_the_people_the_whole_scan_finds_there():
    detector = ScriptedPeople(walker_and_hidden)
    scanner = scanner_for(detector, 200)
    lag = lookahead_frames(scanner)
    handed = []
    for item, people in scanned((frame(i) for i in range(200)), scanner, lag):
        assert scanner.seen_through >= min(item.index + lag, 198)
        handed.append((item.index, people))
    assert [index for index, _ in handed] == list(range(200))
    final = scanner.result().tracks
    for index, people in handed:
        # B hidden over 60-80 is interpolated across the gap, as in the whole scan.
        np.testing.assert_allclose(_present(list(people.values()), index), _present(final, index))


def _present(tracks, index: int) -> np.ndarray:
    """(N, 4) the boxes of the tracks present at frame ``index``, sorted."""
    boxes = boxes_at(tracks, np.array([index]))[:, 0]
    return np.array(sorted(map(tuple, boxes[~np.isnan(boxes[:, 0])])))


def hider_then_stayer(index: int) -> np.ndarray:
    """A stands left for frames 0-59; B comes in at frame 20 and stays to the end."""
    people = []
    if index < 60:
        people.append(_box(150, 180, 120))
    if index >= 20:
        people.append(_box(480, 180, 120))
    return np.array(people).reshape(-1, 4)


@pytest.mark.parametrize(("choice", "final_id", "same"),
                         [("auto", 2, False), ("1", 1, True), ("150,180", 1, True), ("480,180", None, False)])
def test_the_provisional_pick_is_kept_and_checked_against_the_whole_clip(choice: str, final_id: int | None,
                                                                         same: bool):
    detector = ScriptedPeople(hider_then_stayer)
    scanner = scanner_for(detector, 200)
    follow = ProvisionalFollow(parse_person(choice), scanner.step, 0, 200)
    shown = {item.index: follow.view(item, people)
             for item, people in scanned((frame(i) for i in range(200)), scanner, lookahead_frames(scanner))}
    followed = [i for i, view in shown.items() if view is not None]
    if choice == "480,180":  # nobody's box holds the pixel in the first frame: never picked
        assert followed == []
    else:  # A, the longest present when the first frames go on, is followed to his last frame
        assert followed == list(range(0, 60))
        assert not shown[40][130:230, 430:530].any()  # B blacked out
        assert shown[40][130:230, 100:200].all()  # A kept
    serials = {track.id: serial for serial, track in scanner.kept().items()}
    assert sorted(serials) == [1, 2]
    if final_id is not None:
        assert follow.follows(serials[final_id]) is same
        assert select_people(scanner.result().tracks, parse_person(choice))[0].id == final_id


def test_all_is_not_a_provisional_pick():
    with pytest.raises(ValueError, match="one person"):
        ProvisionalFollow(parse_person("all"), 2, 0, 10)
