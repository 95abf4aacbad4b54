"""Following one chosen person through a whole clip: never another's pose, picked as asked.

On the Sports2D sample (230 frames, the jumper and a walker who passes below him) and on
two-person clips made from it (``two_person_clips.py``): the jumper's image keypoints
stay on him in every keyed frame (checked against the hand marks of
``sports2d_people.py``); ``--person X,Y`` picks each side of a side-by-side clip and
``all`` writes one file per person whose poses match single-person runs of each half;
when the walker passes in front of the jumper, ids do not swap and her pose is never
keyed as his.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from ikol_engine.cli import main
from ikol_engine.motion import Motion, read_motion
from ikol_engine.people import PeopleError
from ikol_engine.people.lookahead import ProvisionalFollow
from ikol_engine.people.scan import scan_people
from ikol_engine.pipeline import AnalyzeOptions, analyze, analyze_people
from ikol_engine.regressors.blazepose.landmarks import LANDMARK_INDEX
from ikol_engine.samples import demo_video
from sports2d_people import TORSO_POINTS
from two_person_clips import JUMPER_X, WALKER_START, WALKER_X, passing_in_front, side_by_side

HIPS = [LANDMARK_INDEX["left_hip"], LANDMARK_INDEX["right_hip"]]
# The hand marks are torso centres, +-50 px; the hips sit below the torso's middle.
MARK_TOLERANCE_PX = 160.0


def hip_centres(motion: Motion) -> np.ndarray:
    """(T, 2) midpoint of the hips' image keypoints, pixels."""
    return motion.image_keypoints[:, HIPS].mean(axis=1)


def pose_centres(motion: Motion) -> np.ndarray:
    """(T, 2) confidence-weighted centre of all image keypoints, pixels."""
    weights = np.maximum(motion.regressor_confidence, 1e-6)
    return np.einsum("tr,trk->tk", weights, motion.image_keypoints) / weights.sum(axis=1, keepdims=True)


@pytest.fixture(scope="module")
def whole_sample(tmp_path_factory) -> Motion:
    output = tmp_path_factory.mktemp("follow") / "demo.npz"
    motion, _ = analyze(demo_video(), output)
    return read_motion(output)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    return side_by_side(folder), passing_in_front(folder)


def test_the_whole_sample_follows_the_jumper_and_never_the_walker(whole_sample: Motion) -> None:
    motion = whole_sample
    assert len(motion.valid) == 230 and motion.valid.sum() >= 0.85 * 230
    person = motion.options["person"]
    assert person["choice"] == "auto" and len(person["found"]) >= 2 and person["id"] in person["found"]
    hips, checked = hip_centres(motion), 0
    for frame, people in TORSO_POINTS.items():
        if not motion.valid[frame]:
            continue
        to_jumper = np.linalg.norm(hips[frame] - people["jumper"])
        assert to_jumper < MARK_TOLERANCE_PX, (frame, hips[frame], people["jumper"])
        if "walker" in people:
            assert np.linalg.norm(hips[frame] - people["walker"]) > 2 * to_jumper, frame
        checked += 1
    assert checked >= len(TORSO_POINTS) - 3
    # Every keyed frame's pose lies in the followed person's recorded box.
    boxes, centres = motion.person_boxes[motion.valid], pose_centres(motion)[motion.valid]
    assert np.all((centres >= boxes[:, :2]) & (centres <= boxes[:, 2:]))
    assert motion.person_boxes.shape == (230, 4)


def test_one_pass_follows_the_person_a_scan_first_would(whole_sample: Motion, tmp_path: Path, monkeypatch) -> None:
    # Forcing the fallback (the people found early picked someone else) runs the two
    # passes: the people found first, then the followed person's.
    monkeypatch.setattr(ProvisionalFollow, "follows", lambda self, serial: False)
    analyze(demo_video(), tmp_path / "twice.npz")
    twice = read_motion(tmp_path / "twice.npz")
    assert twice.options["person"] == whole_sample.options["person"]
    np.testing.assert_array_equal(twice.person_boxes, whole_sample.person_boxes)
    once, both = whole_sample.valid, whole_sample.valid & twice.valid
    assert abs(int(once.sum()) - int(twice.valid.sum())) <= 5 and both.sum() >= once.sum() - 5
    # The frames BlazePose saw differ only where a person was known late: same poses.
    gap = np.linalg.norm(hip_centres(whole_sample)[both] - hip_centres(twice)[both], axis=1)
    assert np.median(gap) < 2.0 and np.percentile(gap, 95) < 20.0, (np.median(gap), np.percentile(gap, 95))


def test_a_pixel_picks_each_side_of_a_two_person_clip(clips, tmp_path: Path) -> None:
    clip = clips[0]
    jumper_at = (TORSO_POINTS[0]["jumper"][0] - JUMPER_X[0], TORSO_POINTS[0]["jumper"][1])
    walker = TORSO_POINTS[WALKER_START]["walker"]  # the right half starts at the sample's frame WALKER_START
    walker_at = (walker[0] - WALKER_X[0] + clip.split, walker[1])
    for (x, y), inside in ((jumper_at, (0, clip.split)), (walker_at, (clip.split, clip.width))):
        output = tmp_path / f"at_{x}_{y}.npz"
        analyze(clip.path, output, AnalyzeOptions(person=f"{x},{y}"))
        motion = read_motion(output)
        centres = pose_centres(motion)[motion.valid]
        assert motion.valid.sum() >= 0.8 * len(motion.valid)
        assert np.all((centres[:, 0] > inside[0]) & (centres[:, 0] < inside[1])), (x, y)
        assert motion.options["person"]["choice"] == f"{x},{y}"


def test_all_writes_one_file_per_person_matching_single_person_runs(clips, tmp_path: Path) -> None:
    clip = clips[0]
    written = analyze_people(clip.path, tmp_path / "all", AnalyzeOptions(person="all"))
    assert [path.name for path, _, _ in written] == [f"side_by_side_person{i}.npz" for i in (1, 2)][:len(written)]
    assert len(written) == 2
    by_side = {}
    for path, _, _ in written:
        motion = read_motion(path)
        side = "left" if np.median(pose_centres(motion)[motion.valid, 0]) < clip.split else "right"
        by_side[side] = motion
    assert by_side.keys() == {"left", "right"}
    for (side, half), offset in zip(zip(("left", "right"), clip.halves), (0, clip.split)):
        alone, _ = analyze(half, tmp_path / f"{side}_alone.npz")
        both = by_side[side]
        common = both.valid & alone.valid
        assert common.sum() >= 0.8 * len(common)
        # The same person seen the same way: image keypoints where both runs are sure of them.
        sure = (both.regressor_confidence > 0.5) & (alone.regressor_confidence > 0.5) & common[:, None]
        moved = np.linalg.norm(both.image_keypoints - (alone.image_keypoints + [offset, 0]), axis=-1)[sure]
        # BlazePose's depth (and so a hand's or a foot's turn) varies with the pixels
        # around its crop, which differ between the clips; the body's core does not.
        # And the same pose in 3D, within BlazePose's own noise: its depth varies with the
        # frame it is given (here the half-width clip against the two-person one), so the
        # metric landmarks differ by centimetres, not by another pose's decimetres.
        apart_mm = 1000 * np.linalg.norm(both.regressor_keypoints - alone.regressor_keypoints, axis=-1)[sure]
        print(f"{side}: {common.sum()} frames in both runs; image keypoints {np.median(moved):.2f} px median, "
              f"{np.percentile(moved, 95):.2f} px 95th percentile; 3D landmarks {np.median(apart_mm):.1f} mm median")
        assert np.median(moved) < 3.0 and np.percentile(moved, 95) < 15.0
        assert np.median(apart_mm) < 30.0


def test_a_person_passing_in_front_swaps_no_ids_and_is_never_keyed_as_the_other(clips, tmp_path: Path) -> None:
    clip, patch = clips[1]
    scan = scan_people(clip)
    jumper_at = np.array([TORSO_POINTS[0]["jumper"][0] - JUMPER_X[0], TORSO_POINTS[0]["jumper"][1]])
    [jumper] = [t for t in scan.tracks if t.first_frame == 0 and np.all(t.boxes[0, :2] <= jumper_at)
                and np.all(jumper_at <= t.boxes[0, 2:])]
    # He is hidden while the patch covers his torso; his track (his id) goes on after it.
    hidden = np.flatnonzero((patch[:, 0] < jumper_at[0] - 60) & (patch[:, 1] > jumper_at[0] + 60))
    assert len(hidden) >= 3
    assert jumper.last_frame >= hidden.max() + 10
    after = jumper.frames[jumper.frames > hidden.max()]
    assert len(after) >= 5 and np.all(np.abs((jumper.boxes[jumper.frames > hidden.max(), 0]
                                              + jumper.boxes[jumper.frames > hidden.max(), 2]) / 2
                                             - jumper_at[0]) < 150)

    output = tmp_path / "front.npz"
    analyze(clip, output, AnalyzeOptions(person=str(jumper.id)))
    motion = read_motion(output)
    assert motion.options["person"]["id"] == jumper.id
    centres = pose_centres(motion)
    for frame in np.flatnonzero(motion.valid):
        x0, x1 = patch[frame]
        # A keyed pose centred well inside the patch would be the walker's.
        assert not (x0 + 40 < centres[frame, 0] < x1 - 40), (frame, centres[frame], patch[frame])
    assert motion.valid[hidden].sum() <= len(hidden) // 2
    assert motion.valid.sum() >= len(motion.valid) - 2 * len(hidden) - 10


def test_people_lists_json_and_writes_a_sheet(clips, tmp_path: Path, capsys) -> None:
    clip = clips[0]
    assert main(["people", str(clip.path), "--json"]) == 0
    people = json.loads(capsys.readouterr().out)
    assert [p["id"] for p in people] == list(range(1, len(people) + 1)) and len(people) == 2
    for person in people:
        assert person["frames"] >= 10 and len(person["box"]) == 4
        x0, y0, x1, y1 = person["box"]
        assert x0 < x1 and y0 < y1
    sides = sorted(("left" if (p["box"][0] + p["box"][2]) / 2 < clip.split else "right") for p in people)
    assert sides == ["left", "right"]
    sheet = tmp_path / "sheet.png"
    assert main(["people", str(clip.path), "--sheet", str(sheet)]) == 0
    out = capsys.readouterr().out
    assert "2 people" in out and "person 1:" in out and "person 2:" in out
    assert cv2.imread(str(sheet)).shape[1] == 3 * 640


@pytest.mark.parametrize(("person", "words"), [
    ("7", "no person has id 7"),
    ("5000,5000", "inside nobody's box"),
])
def test_a_pick_that_matches_nobody_lists_the_people(clips, tmp_path: Path, capsys, person: str, words: str) -> None:
    clip = clips[0]
    output = tmp_path / "none.npz"
    assert main(["analyze", str(clip.path), "-o", str(output), "--person", person]) == 2
    err = capsys.readouterr().err
    assert words in err and "person 1: frames" in err and "person 2: frames" in err
    assert not output.exists()
    with pytest.raises(PeopleError):
        analyze(clip.path, output, AnalyzeOptions(person=person))


def test_a_bad_person_value_is_refused_before_any_frame() -> None:
    for bad in ("nobody", "0", "1,2,3", "nan,4"):
        with pytest.raises(ValueError, match="person"):
            AnalyzeOptions(person=bad)


def test_all_needs_a_folder_and_makes_it(clips, tmp_path: Path, capsys) -> None:
    assert main(["analyze", str(clips[0].path), "-o", str(tmp_path / "x.npz"), "--person", "all"]) == 2
    assert "-o must be a folder" in capsys.readouterr().err
    folder = tmp_path / "new" / "people"
    assert main(["analyze", str(clips[0].path), "-o", str(folder), "--person", "all", "--iterations", "2"]) == 0
    out = capsys.readouterr().out
    assert sorted(p.name for p in folder.glob("*.npz")) == ["side_by_side_person1.npz", "side_by_side_person2.npz"]
    assert out.count("wrote ") == 2


def test_people_refuses_a_bad_range_before_reading_the_video(tmp_path: Path, capsys) -> None:
    assert main(["people", str(tmp_path / "not-even-there.mp4"), "--start", "3", "--end", "1"]) == 2
    assert "start time 3.0 s must come before end time 1.0 s" in capsys.readouterr().err
