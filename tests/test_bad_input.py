"""Bad input fails fast and clearly, never as a fake result.

Bad options are refused before a frame is decoded (timed against the decode of one
sample frame); a video of noise is "no person found", not a motion; a cut-off video
says how far it got; an implausible container rate is refused and the real one can be
given; the terminal carries only the engine's own lines.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from ikol_engine import samples
from ikol_engine.cli import main
from ikol_engine.motion import read_motion
from ikol_engine.observations import Observations
from ikol_engine.pipeline import AnalyzeOptions, analyze, regress_video
from ikol_engine.server import EventWriter, Server
from ikol_engine.track.options import TrackError
from ikol_engine.track.presence import MIN_PERSON_PX, person_frames
from ikol_engine.video.decode import iter_frames

#: A refusal must come in under this fraction of the time one sample frame takes to decode.
FRACTION_OF_A_FRAME = 0.5
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def demo() -> Path:
    return samples.demo_video()


@pytest.fixture(scope="module")
def frame_decode_s(demo: Path) -> float:
    """Seconds to open the sample and decode its first frame (1768x994 H.264), best of five."""
    best = math.inf
    for _ in range(5):
        started = time.perf_counter()
        with contextlib.closing(iter_frames(demo)) as frames:
            next(frames)
        best = min(best, time.perf_counter() - started)
    return best


def _cuda_unless_present() -> list[str]:
    return ["--device", "cuda:99" if torch.cuda.is_available() else "cuda"]


BAD_OPTIONS = {
    "fov 0": (["--fov", "0"], "field of view"),
    "fov 180": (["--fov", "180"], "field of view"),
    "fov nan": (["--fov", "nan"], "field of view"),
    "device bogus": (["--device", "bogus"], "unknown device 'bogus'"),
    "device absent": (_cuda_unless_present(), "asked for, but"),
    "fps 0": (["--fps", "0"], "frame rate must be between 1 and 1000"),
    "fps 5000": (["--fps", "5000"], "frame rate must be between 1 and 1000"),
    "start after end": (["--start", "3", "--end", "2"], "must come before end"),
    "smoothing inf": (["--smoothing", "inf"], "smoothing must be a finite number"),
    "iterations -1": (["--iterations", "-1"], "iterations must be an integer from 0 to 100"),
}


@pytest.mark.parametrize("arguments, message", BAD_OPTIONS.values(), ids=BAD_OPTIONS.keys())
def test_cli_refuses_a_bad_option_before_decoding(demo: Path, frame_decode_s: float, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str], arguments: list[str],
                                                   message: str) -> None:
    import ikol_engine.pipeline  # noqa: F401  (imported once, as a CLI process has before it reads a frame)

    output = tmp_path / "out.npz"
    started = time.perf_counter()
    code = main(["analyze", str(demo), "-o", str(output), *arguments])
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("ikol-engine: error: ") and message in err and err.count("\n") == 1
    assert not output.exists() and list(tmp_path.iterdir()) == []
    assert elapsed < FRACTION_OF_A_FRAME * frame_decode_s, (
        f"refused after {elapsed * 1e3:.1f} ms; one frame decodes in {frame_decode_s * 1e3:.1f} ms")


@pytest.mark.parametrize("content", [None, b"not a body model"], ids=["missing", "corrupt"])
def test_cli_refuses_a_bad_body_file_before_decoding(demo: Path, frame_decode_s: float, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], content: bytes | None
                                                      ) -> None:
    body = tmp_path / "body.pkl"
    if content is not None:
        body.write_bytes(content)
    output = tmp_path / "out.npz"
    started = time.perf_counter()
    code = main(["analyze", str(demo), "-o", str(output), "--body", str(body)])
    elapsed = time.perf_counter() - started
    assert code == 2 and str(body) in capsys.readouterr().err
    assert not output.exists()
    assert elapsed < FRACTION_OF_A_FRAME * frame_decode_s


def _server() -> tuple[Server, io.BytesIO]:
    events = io.BytesIO()
    return Server(io.BytesIO(), EventWriter(events)), events


@pytest.mark.parametrize("solve, body, kind, message", [
    ({"fov_deg": 0}, None, "bad_request", "field of view"),
    ({"focal_mm": 0.01}, None, "bad_request", "0.01 mm lens on a 36 mm sensor sees 179.94 degrees"),
    ({"foot_lock": -1}, None, "bad_request", "foot_lock must be a finite number >= 0"),
    ({"device": "bogus"}, None, "bad_request", "unknown device"),
    ({"device": "cuda:99" if torch.cuda.is_available() else "cuda"}, None, "bad_input", "asked for, but"),
    ({}, "/nonexistent/body.pkl", "bad_input", "no such body model file"),
], ids=["fov", "lens", "foot lock", "device name", "device absent", "body"])
def test_server_refuses_a_bad_job_before_it_starts(demo: Path, frame_decode_s: float, tmp_path: Path,
                                                    solve: dict, body: str | None, kind: str, message: str) -> None:
    server, events = _server()
    request = {"id": 7, "type": "analyze", "video": str(demo), "output": str(tmp_path / "out.npz"),
               "solve": solve, "body": body}
    started = time.perf_counter()
    server._handle(json.dumps(request).encode())
    elapsed = time.perf_counter() - started
    event = json.loads(events.getvalue().decode().splitlines()[-1])
    assert (event["id"], event["event"], event["kind"]) == (7, "error", kind) and message in event["message"]
    assert not server._queue  # never queued: the worker would decode frames first
    assert elapsed < FRACTION_OF_A_FRAME * frame_decode_s


def _noise_clip(path: Path, size: int, seed: int, frames: int = 30) -> Path:
    rng = np.random.default_rng(seed)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (size, size))
    for _ in range(frames):
        writer.write(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    writer.release()
    return path


def test_noise_is_no_person_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # On this noise BlazePose reports a "person" in a few frames (measured: 3 of 30, about
    # 25 px across): without the plausibility rule they became a 3-key motion file.
    clip = _noise_clip(tmp_path / "noise.mp4", 64, seed=2)
    observed, _ = regress_video(clip)
    assert observed.detected.sum() >= 1, "the detector no longer sees a person in this noise: pick other noise"
    assert not person_frames(observed).any()
    output = tmp_path / "noise.npz"
    with pytest.raises(TrackError, match="no person was found in any frame"):
        analyze(clip, output)
    assert not output.exists()
    assert main(["analyze", str(clip), "-o", str(output)]) == 2
    assert "no person was found" in capsys.readouterr().err and not output.exists()


def _observations(span_px: float, confidence: float, detected: np.ndarray, fps: float = 30.0) -> Observations:
    frames, points = len(detected), 33
    image = np.zeros((frames, points, 2), np.float32)
    image[:, :, 1] = np.linspace(100.0, 100.0 + span_px, points)
    return Observations(names=tuple(f"p{i}" for i in range(points)), keypoints=np.zeros((frames, points, 3)),
                        confidence=np.full((frames, points), confidence), image=image, detected=detected,
                        frame_indices=np.arange(frames), fps=fps, image_size=(1920, 1080))


def test_person_rule_needs_size_confidence_and_duration() -> None:
    detected = np.ones(30, bool)
    assert person_frames(_observations(MIN_PERSON_PX + 1, 0.8, detected)).all()
    assert not person_frames(_observations(MIN_PERSON_PX - 1, 0.8, detected)).any()
    assert not person_frames(_observations(300.0, 0.3, detected)).any()
    # Runs of 1 and 5 frames (under 0.2 s at 30 fps) go, one of 6 stays.
    runs = np.zeros(30, bool)
    runs[2], runs[6:11], runs[15:21] = True, True, True
    assert np.flatnonzero(person_frames(_observations(300.0, 0.8, runs))).tolist() == list(range(15, 21))
    # A clip shorter than the shortest run needs the person throughout.
    assert person_frames(_observations(300.0, 0.8, np.ones(1, bool))).all()


def test_the_samples_person_is_kept_in_every_detected_frame(demo: Path) -> None:
    observed, read = regress_video(demo, AnalyzeOptions(end_s=1.0))
    assert observed.detected.sum() >= 27 and (read.frames_promised, read.frames_decoded) == (30, 30)
    assert np.array_equal(person_frames(observed), observed.detected)


# Lines the CLI itself writes on stderr: progress, warnings and errors.
OUR_LINES = re.compile(r"(people|keypoints|inverse kinematics): \d+/\d+ \(\d+%\)|ikol-engine: (warning|error): .+")


def test_cut_off_video_is_said_and_recorded_and_stderr_is_ours(demo: Path, tmp_path: Path) -> None:
    # The sample keeps its index at the start, so its first bytes decode as a shorter clip.
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(demo.read_bytes()[:350_000])
    output = tmp_path / "cut.npz"
    result = subprocess.run([sys.executable, "-m", "ikol_engine.cli", "analyze", str(cut), "-o", str(output),
                             "--end", "1.0"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert [line for line in lines if not OUR_LINES.fullmatch(line)] == []
    warning = [line for line in lines if line.startswith("ikol-engine: warning: ")]
    assert len(warning) == 1 and "cut.mp4: the container promised 30 frames" in warning[0]
    video = read_motion(output).options["video"]
    assert video["frames_promised"] == 30 and 5 <= video["frames_decoded"] < 30
    assert f"only {video['frames_decoded']} decoded" in warning[0]
    assert len(read_motion(output).frame_indices) == video["frames_decoded"]
    # The libraries' lines went to the log beside the output, not nowhere.
    log = output.with_suffix(".log").read_text()
    assert "TensorFlow Lite" in log


def test_odd_container_rate_is_refused_and_the_real_one_can_be_given(demo: Path, tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # 20 sample frames at half size, whose AVI header then claims 2400 fps (OpenCV's
    # writer cannot write such a rate itself): the stream header's rate, dwRate / dwScale.
    clip = tmp_path / "odd_rate.avi"
    capture = cv2.VideoCapture(str(demo))
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (884, 497))
    for _ in range(20):
        writer.write(cv2.resize(capture.read()[1], (884, 497)))
    writer.release()
    capture.release()
    data = bytearray(clip.read_bytes())
    header = data.find(b"strh") + 8
    scale = struct.unpack_from("<I", data, header + 20)[0]
    struct.pack_into("<I", data, header + 24, 2400 * scale)
    clip.write_bytes(bytes(data))
    output = tmp_path / "odd.npz"
    assert main(["analyze", str(clip), "-o", str(output)]) == 2
    err = capsys.readouterr().err
    assert "implausible frame rate (2400 fps, outside 1-1000)" in err and "--fps" in err and not output.exists()
    assert main(["analyze", str(clip), "-o", str(output), "--fps", "30"]) == 0
    motion = read_motion(output)
    assert motion.fps == 30.0 and motion.options["video"]["fps_given"] is True
    assert np.allclose(motion.times, np.arange(20) / 30.0)
