"""Finding and tracking every person on the Sports2D demo: cost per frame and recall.

The detector (BlazePose's person detector through LiteRT, ``ikol_engine.people``) runs on
all 230 frames at each tile level setting; recall is counted on the 18 frames whose people
were marked by hand (``tests/sports2d_people.py``): a person is found when a detection's
hip keypoint lies within half its body radius of the mark, and a detection near no mark is
counted as false. The tracker then links the finest setting's detections, and is timed
on them alone (median of repeated runs). A contact sheet of the tracks is written too.
Writes benchmarks/results/people.json, people.md and people_sheet.jpg.

Usage: python benchmarks/people_benchmark.py [--levels 1 2] [--threads 1]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

from ikol_engine.common.atomic_file import atomic_path
from ikol_engine.people import (
    PersonDetector,
    TrackerOptions,
    contact_sheet,
    describe,
    parse_person,
    select_people,
    track_detections,
    write_contact_sheet,
)
from ikol_engine.people.detector import tile_windows
from ikol_engine.samples import demo_video
from ikol_engine.video.decode import iter_frames, probe

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from sports2d_people import TORSO_POINTS, finds  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SHEET_FRAMES = (0, 60, 120, 150, 190, 210)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def detect_all(levels: int, threads: int) -> tuple[list, list[float], dict]:
    """Detections and seconds per frame over the whole demo; the sheet frames' images."""
    detector = PersonDetector(levels=levels, num_threads=threads)
    found, seconds, images = [], [], {}
    for frame in iter_frames(demo_video()):
        start = time.perf_counter()
        found.append(detector(frame.image))
        seconds.append(time.perf_counter() - start)
        if frame.index in SHEET_FRAMES:
            images[frame.index] = frame.image
    return found, seconds, images


def recall(found: list) -> dict:
    """Marked people found, and detections near no mark, over the marked frames."""
    hits = {"jumper": [0, 0], "walker": [0, 0]}
    false = 0
    for index, people in TORSO_POINTS.items():
        detections = found[index]
        used = np.zeros(len(detections), bool)
        for name, point in people.items():
            near = finds(detections.boxes, detections.keypoints, point)
            hits[name][0] += int(near.any())
            hits[name][1] += 1
            used |= near
        false += int((~used).sum())
    both = [len(d) >= 2 for d in found[60:191]]
    return {
        "jumper_found": hits["jumper"][0], "jumper_marked": hits["jumper"][1],
        "walker_found": hits["walker"][0], "walker_marked": hits["walker"][1],
        "false_detections": false, "marked_frames": len(TORSO_POINTS),
        "frames_60_190_with_two_or_more": float(np.mean(both)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    info = probe(demo_video())
    machine = (f"{cpu_name()}, {os.cpu_count()} CPU threads shared with other work "
               f"(load average {os.getloadavg()[0]:.1f} at the start), "
               f"{args.threads} interpreter thread(s)")

    rows, found, images = [], None, {}
    for levels in args.levels:
        found, seconds, images = detect_all(levels, args.threads)
        windows = len(tile_windows(info.width, info.height, levels))
        rows.append({"levels": levels, "windows": windows,
                     "ms_per_frame_median": 1000 * float(np.median(seconds)),
                     "ms_per_frame_mean": 1000 * float(np.mean(seconds)),
                     "ms_per_frame_best": 1000 * float(np.min(seconds)), **recall(found)})

    frames = list(range(len(found)))
    options = TrackerOptions(max_gap=round(info.fps))
    times = []
    for _ in range(5):
        start = time.perf_counter()
        tracks = track_detections(frames, found, options)
        times.append(time.perf_counter() - start)
    chosen = select_people(tracks, parse_person("auto"))[0]
    tracking = {
        "levels": args.levels[-1], "max_gap": options.max_gap,
        "ms_per_frame": 1000 * float(np.median(times)) / len(frames),
        "tracks": [{"id": t.id, "first": t.first_frame, "last": t.last_frame,
                    "detected": len(t.frames), "describe": describe(t, info.width, info.height)}
                   for t in tracks],
        "auto": chosen.id,
    }
    sheet = contact_sheet([(i, images[i]) for i in SHEET_FRAMES], tracks, columns=3, width=420)
    write_contact_sheet(RESULTS / "people_sheet.jpg", sheet)

    result = {"machine": machine, "video": f"Sports2D demo {info.width}x{info.height}, "
              f"{len(found)} frames", "detector": rows, "tracker": tracking}
    with atomic_path(RESULTS / "people.json") as temp:
        temp.write_text(json.dumps(result, indent=2) + "\n")
    with atomic_path(RESULTS / "people.md") as temp:
        temp.write_text(markdown(result))
    print(markdown(result))


def markdown(result: dict) -> str:
    lines = [
        f"Machine: {result['machine']}. Video: {result['video']}.",
        "Detector: BlazePose's pose_detection.tflite through ai-edge-litert on square tiles "
        "(level 1: frame-high squares; each further level 1.6x smaller). Recall on the 18 "
        "hand-marked frames (tests/sports2d_people.py).",
        "",
        "| levels | model runs/frame | ms/frame median (best) | jumper found | walker found | "
        "false detections | frames 60-190 with >= 2 |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["detector"]:
        lines.append(
            f"| {r['levels']} | {r['windows']} | {r['ms_per_frame_median']:.0f} "
            f"({r['ms_per_frame_best']:.0f}) | "
            f"{r['jumper_found']}/{r['jumper_marked']} | {r['walker_found']}/{r['walker_marked']} | "
            f"{r['false_detections']} | {100 * r['frames_60_190_with_two_or_more']:.0f}% |"
        )
    t = result["tracker"]
    lines += [
        "",
        f"Tracker on the levels-{t['levels']} detections of every frame (max gap {t['max_gap']} "
        f"frames): {t['ms_per_frame']:.3f} ms/frame; `--person auto` picks {t['auto']}.",
        "",
        "| id | frames | detected | describe |",
        "|---:|---|---:|---|",
    ]
    lines += [f"| {r['id']} | {r['first']}-{r['last']} | {r['detected']} | {r['describe']} |"
              for r in t["tracks"]]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
