"""Streamed video input through OpenCV: probe a file, turn seconds into frames, iterate frames.

Frames come out one at a time as RGB ``uint8`` arrays, so a long clip never sits in memory.

Timing
------
Each :class:`Frame` carries the decoder's own timestamp (the frame's presentation time,
``CAP_PROP_POS_MSEC``), so a variable-frame-rate clip keeps its real timing; seconds
given as a range (``start_s``, ``end_s``) map to frame numbers through the container's
rate. A container rate outside 1..1000 fps is refused (:data:`MIN_FPS`, :data:`MAX_FPS`):
such a rate is broken, and using it would stretch or squash the motion in time. The
caller may then give the real rate (``fps``), which also puts the frames on the grid
``index / fps``, since timestamps in such a file cannot be trusted either.

Truncated or short files
------------------------
Containers often state a frame count the decoder does not reach (estimated from the
duration, or a file cut off mid-write), and OpenCV cannot tell a decoding error from the
end of the stream: both make ``grab()`` return False. :func:`iter_frames` therefore reads
until the decoder stops rather than until the stated count, and treats an early stop as
the end of the video. It raises :class:`VideoError` only when a requested non-empty range
yields no frame at all, or when a frame that was grabbed cannot be converted. A cut-off
file thus reads as its decodable prefix; the last :attr:`Frame.index` shows how far it
got, and the pipeline compares it with the count the container promised.
"""
from __future__ import annotations

import itertools
import math
import queue
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

__all__ = ["MAX_FPS", "MIN_FPS", "Frame", "VideoError", "VideoInfo", "check_fps", "frame_range", "frames_at",
           "iter_frames", "prefetched",
           "probe"]

#: The frame rates taken as real, from the container or from the user.
MIN_FPS, MAX_FPS = 1.0, 1000.0


class VideoError(ValueError):
    """A video file is missing, unreadable or unsuitable; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about a video.

    Attributes:
        path: the file.
        width, height: frame size in pixels.
        fps: frames per second: the caller's where given, else the container's.
        fps_given: ``fps`` is the caller's (frames then sit on the grid ``index / fps``).
        frame_count: frames stated by the container (may be an estimate, see the module
            docstring); counted by decoding only where the container states none.
        duration_s: ``frame_count / fps``.
    """

    path: Path
    width: int
    height: int
    fps: float
    frame_count: int
    duration_s: float
    fps_given: bool = False


@dataclass(frozen=True)
class Frame:
    """One decoded frame.

    Attributes:
        index: frame number in the source video (0-based, counting every frame).
        time_s: the decoder's timestamp of the frame, seconds from the stream's start
            (``index / fps`` where the caller gave the rate).
        image: (H, W, 3) uint8, RGB.
    """

    index: int
    time_s: float
    image: np.ndarray


def check_fps(fps: float) -> None:
    """Refuses a frame rate outside :data:`MIN_FPS`..:data:`MAX_FPS` (or not a number).

    Raises:
        ValueError: saying which rates are taken.
    """
    if isinstance(fps, bool) or not isinstance(fps, (int, float)) or not MIN_FPS <= fps <= MAX_FPS:
        raise ValueError(f"frame rate must be between {MIN_FPS:g} and {MAX_FPS:g} fps, got {fps!r}")


def _open(path: str | Path, fps: float | None = None) -> tuple[Path, cv2.VideoCapture, float]:
    """Open ``path`` for decoding and return it with its capture and frame rate
    (``fps`` where given, else the container's, which must be plausible).

    The file checks come first because OpenCV reports every failure the same way
    (``isOpened()`` False) and the user needs to know which one it was.
    """
    path = Path(path)
    if not path.exists():
        raise VideoError(f"video file {path} does not exist")
    if path.is_dir():
        raise VideoError(f"video path {path} is a directory, not a file")
    if path.stat().st_size == 0:
        raise VideoError(f"video file {path} is empty (0 bytes)")
    # FFmpeg explicitly: other backends (GStreamer, image sequences) read paths differently.
    capture = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    if not capture.isOpened():
        capture.release()
        raise VideoError(f"{path} is not a video OpenCV can open (unknown format or corrupt)")
    if fps is not None:
        check_fps(fps)
        return path, capture, float(fps)
    stated = float(capture.get(cv2.CAP_PROP_FPS))
    if not (math.isfinite(stated) and MIN_FPS <= stated <= MAX_FPS):
        capture.release()
        # Guessing a rate would silently stretch or squash the motion in time.
        raise VideoError(
            f"video file {path} states an implausible frame rate ({stated:g} fps, outside "
            f"{MIN_FPS:g}-{MAX_FPS:g}); give the real rate (--fps) or remux it with one"
        )
    return path, capture, stated


def probe(path: str | Path, fps: float | None = None) -> VideoInfo:
    """Read a video's size, frame rate and length, and check that a first frame decodes.

    Args:
        fps: the real frame rate, overriding the container's (see the module docstring).
    Raises:
        VideoError: the path does not exist, is a directory or an empty file; OpenCV cannot
            open it or decode its first frame; or it states an implausible frame rate
            and ``fps`` is not given.
        ValueError: ``fps`` is outside 1..1000.
    """
    given = fps is not None
    path, capture, fps = _open(path, fps)
    try:
        if not capture.grab():
            raise VideoError(
                f"video file {path} opens but no frame decodes (corrupt or empty stream)"
            )
        width = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        frame_count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if frame_count <= 0:
            # Raw streams (e.g. bare MJPEG) carry no count; counting is exact, if slow.
            frame_count = 1
            while capture.grab():
                frame_count += 1
    finally:
        capture.release()
    return VideoInfo(path, width, height, fps, frame_count, frame_count / fps, fps_given=given)


def frame_range(info: VideoInfo, start_s: float | None, end_s: float | None) -> tuple[int, int]:
    """Turn a time span in seconds into the frames ``[start_frame, end_frame)`` it covers.

    Times round to the nearest frame. ``None`` means the start or the end of the video; an
    end past the video is clamped to its (stated) frame count.

    Raises:
        ValueError: a time is negative or not finite, ``start_s >= end_s``, or the span is
            too short to hold a frame.
        VideoError: ``start_s`` lies at or beyond the end of the video.
    """
    for label, value in (("start", start_s), ("end", end_s)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{label} time must be a finite number of seconds >= 0, got {value}")
    if start_s is not None and end_s is not None and start_s >= end_s:
        raise ValueError(f"start time {start_s} s must come before end time {end_s} s")
    start = 0 if start_s is None else round(start_s * info.fps)
    if start >= info.frame_count:
        raise VideoError(
            f"start time {start_s} s is beyond the end of {info.path} "
            f"({info.duration_s:.3f} s, {info.frame_count} frames at {info.fps:g} fps)"
        )
    end = info.frame_count if end_s is None else min(round(end_s * info.fps), info.frame_count)
    if end <= start:
        raise ValueError(
            f"time span {start_s}-{end_s} s holds no frame of {info.path} at {info.fps:g} fps"
        )
    return start, end


def iter_frames(
    path: str | Path, start_frame: int = 0, end_frame: int | None = None, stride: int = 1,
    fps: float | None = None,
) -> Iterator[Frame]:
    """Decode frames ``start_frame, start_frame + stride, ...`` below ``end_frame``, one at a time.

    Frames are skipped with ``grab()`` rather than seeking: seeking by frame number lands
    on the wrong frame for many codecs, and grabbing skips the colour conversion. The
    arguments and the file are checked, and the file opened, when this is called (so
    mistakes surface at once, not at the first frame); the capture is released when the
    iterator is exhausted, closed or garbage-collected.

    Args:
        path: the video file.
        start_frame: first frame wanted (>= 0).
        end_frame: stop before this frame; ``None`` reads to the end of the stream.
        stride: yield every ``stride``-th frame (>= 1).
        fps: the real frame rate: frames then get ``index / fps`` as their time rather
            than the decoder's timestamps (see the module docstring).

    Yields:
        :class:`Frame` with a (H, W, 3) uint8 RGB image; the previous frame's array is not
        reused, so a caller may keep frames it needs.

    Raises:
        ValueError: negative start, stride < 1, or ``end_frame < start_frame``.
        VideoError: the file cannot be opened (see :func:`probe`), a non-empty range yields
            no frame, or a grabbed frame cannot be retrieved. An early end of the stream
            after at least one frame is not an error (see the module docstring).
    """
    if start_frame < 0:
        raise ValueError(f"start_frame must be >= 0, got {start_frame}")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    if end_frame is not None and end_frame < start_frame:
        raise ValueError(f"end_frame {end_frame} comes before start_frame {start_frame}")
    wanted = itertools.count(start_frame, stride) if end_frame is None else iter(range(start_frame, end_frame, stride))
    grid = fps is not None
    path, capture, fps = _open(path, fps)
    return _frames(path, capture, fps if grid else None, wanted)


def frames_at(path: str | Path, indices: Iterable[int], fps: float | None = None) -> Iterator[Frame]:
    """Decode just frames ``indices`` (any order, repeats ignored), in one pass, in order.

    As :func:`iter_frames`: the frames between are grabbed, not converted; the stream
    ending before the last index asked for ends the iteration (the caller sees which
    frames came).

    Raises:
        ValueError: a negative index.
        VideoError: as :func:`iter_frames`.
    """
    wanted = sorted({int(i) for i in indices})
    if wanted and wanted[0] < 0:
        raise ValueError(f"frame index {wanted[0]} is negative")
    grid = fps is not None
    path, capture, fps = _open(path, fps)
    return _frames(path, capture, fps if grid else None, iter(wanted))


def _frames(path: Path, capture: cv2.VideoCapture, grid_fps: float | None, wanted: Iterator[int]) -> Iterator[Frame]:
    """The generator behind :func:`iter_frames` and :func:`frames_at`: the frames of an
    increasing sequence of indices, over an opened capture it releases; frames are timed
    on ``grid_fps``'s grid where given, else by the decoder."""
    try:
        grabbed = 0  # frames grabbed so far, i.e. the index of the next one grab() reads
        previous_s = -math.inf
        first = True
        for index in wanted:
            while grabbed <= index and capture.grab():
                grabbed += 1
            if grabbed <= index:
                if first:
                    raise VideoError(
                        f"no frame of {path} decodes from frame {index} on: the stream "
                        f"ends or breaks after {grabbed} frame(s)"
                    )
                return
            first = False
            # The grabbed frame's presentation time, read before retrieve() moves on.
            time_s = index / grid_fps if grid_fps else capture.get(cv2.CAP_PROP_POS_MSEC) / 1000.0
            if not time_s > previous_s or not math.isfinite(time_s):
                raise VideoError(f"frame {index} of {path} has a timestamp ({time_s:g} s) that does not follow "
                                 f"the previous frame's ({previous_s:g} s); give the real rate (--fps) to time "
                                 "the frames by their number instead")
            previous_s = time_s
            ok, bgr = capture.retrieve()
            if not ok:
                raise VideoError(f"frame {index} of {path} was read but could not be decoded")
            # In place: a second full-size buffer per frame would double the peak memory.
            image = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB, dst=bgr)
            yield Frame(index, time_s, image)
    finally:
        capture.release()


_DONE = object()
T = TypeVar("T")


def prefetched(frames: Iterable[T], depth: int = 4) -> Iterator[T]:
    """The same frames (or any items), made ahead on a thread while the caller works on
    the last one.

    OpenCV decodes with Python's lock released, so on a machine with two cores the
    decoding of the next frames overlaps the models' work on this one. At most ``depth``
    items wait made. An error while making them is raised here, where the item it
    stopped would have come; closing this iterator early stops the thread.
    """
    waiting: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def offer(item: object) -> bool:
        """Queues ``item`` unless the consumer has stopped; False once it has."""
        while not stop.is_set():
            try:
                waiting.put(item, timeout=0.1)
                return True
            except queue.Full:
                pass
        return False

    def decode() -> None:
        try:
            for frame in frames:
                if not offer(frame):
                    return
            offer(_DONE)
        except BaseException as error:  # raised again in the consumer
            offer(error)
        finally:
            close = getattr(frames, "close", None)
            if close is not None:
                close()  # releases the capture now, not whenever the generator is collected

    worker = threading.Thread(target=decode, name="ikol-decode", daemon=True)
    worker.start()
    try:
        while (item := waiting.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        worker.join()
