"""Streamed video input on synthetic clips whose frames carry their own index."""
from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from ikol_engine.video import decode as video
from ikol_engine.video.decode import VideoError, frame_range, iter_frames, probe

WIDTH, HEIGHT = 160, 120
BITS = 9  # enough for 512 frames
CELL = WIDTH // BITS


def write_clip(
    path: Path,
    frames: int,
    fps: float = 24.0,
    fourcc: str = "MJPG",
    size: tuple[int, int] = (WIDTH, HEIGHT),
) -> Path:
    """Write a clip whose frame i shows i in binary as black/white cells across the top
    half, and a pure red bottom half (to tell RGB from BGR)."""
    width, height = size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} into {path.suffix}"
    cell = width // BITS
    for i in range(frames):
        bgr = np.zeros((height, width, 3), np.uint8)
        for bit in range(BITS):
            if i >> bit & 1:
                bgr[: height // 2, bit * cell : (bit + 1) * cell] = 255
        bgr[height // 2 + 8 :, :] = (0, 0, 255)
        writer.write(bgr)
    writer.release()
    return path


def decode_index(image: np.ndarray) -> int:
    """Read back the index :func:`write_clip` drew into an RGB frame."""
    height, width = image.shape[:2]
    cell = width // BITS
    top = image[: height // 2].mean(axis=(0, 2))
    # Cell centres only: compression blurs the edges between cells.
    centres = [top[bit * cell + cell // 4 : (bit + 1) * cell - cell // 4] for bit in range(BITS)]
    return sum(1 << bit for bit, centre in enumerate(centres) if centre.mean() > 128)


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("clips")
    return {
        "avi": write_clip(folder / "clip.avi", 40, fps=24.0, fourcc="MJPG"),
        "mp4": write_clip(folder / "clip.mp4", 40, fps=30.0, fourcc="mp4v"),
    }


@pytest.mark.parametrize("kind, fps", [("avi", 24.0), ("mp4", 30.0)])
def test_probe_reads_size_rate_and_length(clips: dict[str, Path], kind: str, fps: float) -> None:
    info = probe(clips[kind])
    assert (info.width, info.height, info.frame_count) == (WIDTH, HEIGHT, 40)
    assert info.fps == pytest.approx(fps)
    assert info.duration_s == pytest.approx(40 / fps)
    assert info.path == clips[kind]


@pytest.mark.parametrize("kind", ["avi", "mp4"])
def test_every_frame_comes_out_in_order_as_rgb(clips: dict[str, Path], kind: str) -> None:
    fps = probe(clips[kind]).fps
    frames = list(iter_frames(clips[kind]))
    assert [f.index for f in frames] == list(range(40))
    assert [decode_index(f.image) for f in frames] == list(range(40))
    assert [f.time_s for f in frames] == pytest.approx([i / fps for i in range(40)])
    image = frames[7].image
    assert image.shape == (HEIGHT, WIDTH, 3) and image.dtype == np.uint8
    red, green, blue = image[HEIGHT - 20].mean(axis=0)
    assert red > 200 and green < 50 and blue < 50


@pytest.mark.parametrize(
    "start, end, stride, expected",
    [
        (5, 20, 3, [5, 8, 11, 14, 17]),
        (0, None, 10, [0, 10, 20, 30]),
        (33, None, 1, [33, 34, 35, 36, 37, 38, 39]),
        (38, 1000, 1, [38, 39]),  # an end past the stream stops where the stream does
        (12, 13, 5, [12]),
        (39, 40, 1, [39]),
    ],
)
def test_start_end_and_stride_select_exact_frames(
    clips: dict[str, Path], start: int, end: int | None, stride: int, expected: list[int]
) -> None:
    frames = list(iter_frames(clips["avi"], start, end, stride))
    assert [f.index for f in frames] == expected
    assert [decode_index(f.image) for f in frames] == expected


def test_empty_range_yields_nothing(clips: dict[str, Path]) -> None:
    assert list(iter_frames(clips["avi"], 10, 10)) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"start_frame": -1}, "start_frame must be >= 0"),
        ({"stride": 0}, "stride must be >= 1"),
        ({"start_frame": 10, "end_frame": 5}, "comes before start_frame"),
    ],
)
def test_bad_iteration_arguments_raise_at_call(
    clips: dict[str, Path], kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        iter_frames(clips["avi"], **kwargs)  # not iterated: the check must not wait for it


def test_start_past_the_stream_raises(clips: dict[str, Path]) -> None:
    frames = iter_frames(clips["avi"], 45)
    expected = r"no frame of .*clip\.avi decodes from frame 45 on.*after 40 frame"
    with pytest.raises(VideoError, match=expected):
        next(frames)


@pytest.mark.parametrize(
    "start_s, end_s, expected",
    [
        (None, None, (0, 40)),
        (0.5, None, (12, 40)),
        (None, 1.0, (0, 24)),
        (0.25, 1.25, (6, 30)),
        (0.52, 0.6, (12, 14)),  # nearest frames: 12.48 -> 12, 14.4 -> 14
        (1.0, 99.0, (24, 40)),  # an end past the video is clamped
    ],
)
def test_frame_range_maps_seconds_to_frames(
    clips: dict[str, Path], start_s: float | None, end_s: float | None, expected: tuple[int, int]
) -> None:
    assert frame_range(probe(clips["avi"]), start_s, end_s) == expected


@pytest.mark.parametrize(
    "start_s, end_s, error, message",
    [
        (1.0, 1.0, ValueError, "must come before end time"),
        (1.2, 0.5, ValueError, "must come before end time"),
        (-0.1, None, ValueError, "start time must be a finite number of seconds >= 0"),
        (None, -2.0, ValueError, "end time must be a finite number of seconds >= 0"),
        (math.nan, None, ValueError, "start time must be a finite"),
        (0.5, 0.51, ValueError, "holds no frame"),
        (1.7, None, VideoError, r"beyond the end of .*clip\.avi \(1\.667 s, 40 frames at 24 fps\)"),
        (5.0, 6.0, VideoError, "beyond the end"),
    ],
)
def test_frame_range_rejects_bad_spans(
    clips: dict[str, Path], start_s: float | None, end_s: float | None, error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        frame_range(probe(clips["avi"]), start_s, end_s)


def test_missing_directory_and_empty_paths_are_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.mp4"
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    cases = [
        (missing, "does not exist"),
        (tmp_path, "is a directory"),
        (empty, r"is empty \(0 bytes\)"),
    ]
    for path, message in cases:
        with pytest.raises(VideoError, match=message) as probed:
            probe(path)
        assert str(path) in str(probed.value)
        with pytest.raises(VideoError, match=message):
            iter_frames(path)


@pytest.mark.parametrize("suffix", [".mp4", ".avi", ".mkv", ""])
def test_random_bytes_are_not_a_video(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"noise{suffix}"
    path.write_bytes(np.random.default_rng(7).integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match="is not a video OpenCV can open") as raised:
        probe(path)
    assert str(path) in str(raised.value)


def test_truncated_avi_reads_as_its_decodable_prefix(
    clips: dict[str, Path], tmp_path: Path
) -> None:
    data = clips["avi"].read_bytes()
    cut = tmp_path / "cut.avi"
    cut.write_bytes(data[: len(data) // 2])
    assert probe(cut).frame_count == 40  # the header still claims the full length
    frames = list(iter_frames(cut))
    # The documented choice: a stream that stops early ends the video, no error.
    assert 5 <= len(frames) < 40
    assert [f.index for f in frames] == list(range(len(frames)))
    assert [decode_index(f.image) for f in frames] == list(range(len(frames)))
    expected = f"decodes from frame 38 on: the stream ends or breaks after {len(frames)} frame"
    with pytest.raises(VideoError, match=expected):
        list(iter_frames(cut, 38))


def test_avi_cut_before_its_first_frame_fails_probe(clips: dict[str, Path], tmp_path: Path) -> None:
    data = clips["avi"].read_bytes()
    cut = tmp_path / "headers_only.avi"
    cut.write_bytes(data[: data.index(b"movi") + 4])
    with pytest.raises(VideoError, match=r"headers_only\.avi opens but no frame decodes"):
        probe(cut)


def test_truncated_mp4_fails_probe(clips: dict[str, Path], tmp_path: Path) -> None:
    # mp4v files end with the index (moov atom), so a cut file has none.
    data = clips["mp4"].read_bytes()
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(data[: int(len(data) * 0.9)])
    with pytest.raises(VideoError, match=r"cut\.mp4 is not a video"):
        probe(cut)


def test_raw_stream_without_a_count_is_counted(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "raw.mjpg", 23, fps=25.0)
    assert cv2.VideoCapture(str(path), cv2.CAP_FFMPEG).get(cv2.CAP_PROP_FRAME_COUNT) <= 0
    info = probe(path)
    assert info.frame_count == 23
    assert [decode_index(f.image) for f in iter_frames(path)] == list(range(23))


@pytest.mark.parametrize("bad_fps", [0.0, math.nan, -1.0, 0.5, 1200.0, 90000.0])
def test_implausible_frame_rate_is_refused_unless_given(
    clips: dict[str, Path], monkeypatch: pytest.MonkeyPatch, bad_fps: float
) -> None:
    real_capture = cv2.VideoCapture

    class NoRateCapture:
        """A real capture whose container states a broken frame rate."""

        def __init__(self, *args: object) -> None:
            self._capture = real_capture(*args)

        def get(self, prop: int) -> float:
            return bad_fps if prop == cv2.CAP_PROP_FPS else self._capture.get(prop)

        def __getattr__(self, name: str) -> object:
            return getattr(self._capture, name)

    monkeypatch.setattr(video.cv2, "VideoCapture", NoRateCapture)
    with pytest.raises(VideoError, match=r"clip\.avi states an implausible frame rate .*outside 1-1000.*--fps"):
        probe(clips["avi"])
    with pytest.raises(VideoError, match="implausible frame rate"):
        iter_frames(clips["avi"])
    # The real rate given: the clip reads whole, timed on that rate's grid.
    info = probe(clips["avi"], fps=24.0)
    assert (info.fps, info.frame_count, info.fps_given) == (24.0, 40, True)
    frames = list(iter_frames(clips["avi"], fps=24.0))
    assert [f.index for f in frames] == list(range(40))
    assert [f.time_s for f in frames] == [i / 24.0 for i in range(40)]


@pytest.mark.parametrize("fps", [0.0, 0.99, 1000.5, math.inf, math.nan])
def test_a_given_rate_outside_1_to_1000_is_refused(clips: dict[str, Path], fps: float) -> None:
    with pytest.raises(ValueError, match="frame rate must be between 1 and 1000 fps"):
        probe(clips["avi"], fps=fps)


def test_streaming_keeps_about_one_frame_in_memory(tmp_path: Path) -> None:
    width, height, count = 1280, 720, 300
    path = write_clip(tmp_path / "long.avi", count, fps=30.0, size=(width, height))
    frame_bytes = width * height * 3
    tracemalloc.start()
    try:
        seen = 0
        last_index = -1
        for frame in iter_frames(path):
            seen += 1
            last_index = frame.index
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (seen, last_index) == (count, count - 1)
    # The loop variable still holds the previous frame while the next one decodes: two
    # frames, plus small change. A decoder buffering the clip would need 300.
    assert peak < 3 * frame_bytes, f"peak {peak / frame_bytes:.2f} frames"


def test_exported_frames_are_the_asked_ones_scaled(clips: dict[str, Path], tmp_path: Path) -> None:
    from ikol_engine.video.frames import export_frames

    paths = export_frames(clips["avi"], [17, 3, 30], tmp_path, max_width=WIDTH // 2)
    assert [p.name for p in paths] == ["frame_000017.png", "frame_000003.png", "frame_000030.png"]
    for path, index in zip(paths, (17, 3, 30)):
        image = cv2.imread(str(path))
        assert image.shape == (HEIGHT // 2, WIDTH // 2, 3)
        full = cv2.resize(image, (WIDTH, HEIGHT), interpolation=cv2.INTER_NEAREST)
        assert decode_index(cv2.cvtColor(full, cv2.COLOR_BGR2RGB)) == index
        assert image[-5, :, 2].mean() > 200 and image[-5, :, 0].mean() < 60  # red stays red
    with pytest.raises(VideoError, match="no frame 45"):
        export_frames(clips["avi"], [5, 45], tmp_path / "beyond")


def test_frames_command(clips: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ikol_engine.cli import main

    assert main(["frames", str(clips["mp4"]), "--at", "7", "2", "-o", str(tmp_path)]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "frame_000007.png"), str(tmp_path / "frame_000002.png")]
    assert decode_index(cv2.cvtColor(cv2.imread(str(tmp_path / "frame_000007.png")), cv2.COLOR_BGR2RGB)) == 7
    assert main(["frames", str(clips["mp4"]), "--at", "99", "-o", str(tmp_path / "none")]) == 2
    assert "decodes from frame 99" in capsys.readouterr().err


#: 60 frames of FFmpeg's test pattern: 30 at 30 fps, then 30 at 15 fps (made by
#: tools/make_vfr_clip.sh with a setpts expression).
VFR_CLIP = Path(__file__).parent / "data" / "vfr_30_then_15fps.mp4"
VFR_TIMES = [i / 30 if i <= 30 else 1.0 + (i - 30) / 15 for i in range(60)]


def test_variable_rate_frames_carry_the_decoders_timestamps() -> None:
    frames = list(iter_frames(VFR_CLIP))
    assert [f.index for f in frames] == list(range(60))
    assert np.abs(np.array([f.time_s for f in frames]) - VFR_TIMES).max() < 1e-3
    # index / fps on the container's average rate would be off by a third of a second.
    info = probe(VFR_CLIP)
    assert np.abs(np.arange(60) / info.fps - VFR_TIMES).max() > 0.3
    strided = [f.time_s for f in iter_frames(VFR_CLIP, 20, 50, 10)]
    assert np.abs(np.array(strided) - [VFR_TIMES[i] for i in (20, 30, 40)]).max() < 1e-3


def test_the_pipeline_keeps_the_decoders_timestamps() -> None:
    from ikol_engine.pipeline import regress_video

    observed, read = regress_video(VFR_CLIP)
    assert (read.frames_promised, read.frames_decoded) == (60, 60)
    assert np.abs(observed.times - VFR_TIMES).max() < 1e-3


def test_prefetched_frames_come_in_order_errors_surface_and_closing_stops_the_decoder(clips) -> None:
    import threading

    from ikol_engine.video.decode import prefetched

    path = clips["avi"]
    ahead = [decode_index(frame.image) for frame in prefetched(iter_frames(path), depth=3)]
    assert ahead == [decode_index(frame.image) for frame in iter_frames(path)] == list(range(40))

    def breaking():
        yield from iter_frames(path, 0, 5)
        raise VideoError("frame 5 broke")

    seen = []
    with pytest.raises(VideoError, match="frame 5 broke"):
        for frame in prefetched(breaking(), depth=2):
            seen.append(frame.index)
    assert seen == [0, 1, 2, 3, 4]  # every frame before the error still arrives

    stream = prefetched(iter_frames(path), depth=2)
    assert next(stream).index == 0
    stream.close()  # the consumer stops early: the decoding thread ends, the file is released
    assert not any(thread.name == "ikol-decode" for thread in threading.enumerate())
