"""The engine's two jobs: ``analyze`` (video to motion file) and ``refine`` (motion file to motion file).

``analyze`` finds everyone in the video (:mod:`.people`: detected, tracked, one id
each), picks the person to follow (``AnalyzeOptions.person``) and streams the video
through the regressor on that person's region only, so nobody else can take over; the
keypoints go to :mod:`.track`. The people are found on the frames decoded for the
regressor, a second ahead of it (:mod:`.people.lookahead`), unless a scan is given.
``person="all"`` finds the people first and then follows each in turn
(:func:`analyze_people`). ``refine`` re-runs only the track stage from the
keypoints a motion file keeps, so changing IK settings never needs the video or the
network again. Every result is written atomically: an interrupted run leaves any
previous file as it was.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from . import __version__, skeleton
from .body import BodyModel
from .common.devices import resolve_device
from .ik.solver import default_body
from .motion import Motion, file_sha256, read_motion, write_motion
from .observations import Observations
from .people import PersonChoice, Track, parse_person, select_people
from .people.follow import FollowPlan, keep_chosen, spread
from .people.lookahead import ProvisionalFollow, lookahead_frames, scanned
from .people.scan import PeopleScan, Scanner, scan_people
from .regressors import create_regressor, layout_for
from .regressors.base import KeypointFrames, Regressor
from .regressors.blazepose.hands import HandFrames, HandLandmarker
from .skeleton import hands
from .track.options import Progress, SolveOptions, TrackError
from .track.solve import Solution, solve_observations
from .video.decode import Frame, VideoInfo, check_fps, frame_range, iter_frames, prefetched, probe

#: Where the engine's own warnings go (a cut-off video); front ends show them to the user.
log = logging.getLogger("ikol_engine")


@dataclass(frozen=True)
class AnalyzeOptions:
    """What to read from the video and how (the regressor side).

    Attributes:
        start_s, end_s: the part of the video to analyse, seconds (None: from the
            start, to the end); stride: analyse every n-th frame.
        model_complexity: BlazePose's model, 0 (lite), 1 (full, bundled) or 2 (heavy).
        regressor: which keypoint regressor (see :func:`.regressors.create_regressor`).
        batch_size: frames per network run for backends that batch (ONNX); None: the
            backend's choice. BlazePose takes frames one by one either way.
        fps: the video's real frame rate, for a container that states a broken one
            (frames are then timed ``index / fps``); None: the container's rate and
            the decoder's timestamps.
        person: whom to follow: ``auto`` (present longest; ties: the larger), a person
            id from ``ikol-engine people``, ``X,Y`` (whose box holds that pixel in the
            first frame anyone is seen), or ``all`` (:func:`analyze_people`); see
            :mod:`.people.selection`.
        hands: find each hand's landmarks too (MediaPipe Hands on crops around the
            body's hands; BlazePose only), for the fingers.
        hand_step: look for the hands in every this many analysed frames, bridged
            between: 2 halves their cost (MediaPipe Hands took 35 ms a frame for both
            hands on the 2-core CPU), but on the sample the fingers then turned faster
            between frames (99th percentile 17 degrees against 13) and so did the elbows
            turned to the palms (largest 108 degrees against 71).

    Every value is checked on construction, before any frame is decoded.
    """

    start_s: float | None = None
    end_s: float | None = None
    stride: int = 1
    model_complexity: int = 1
    regressor: str = "blazepose"
    batch_size: int | None = None
    fps: float | None = None
    person: str = "auto"
    hands: bool = True
    hand_step: int = 1

    def __post_init__(self) -> None:
        for label, value in (("start", self.start_s), ("end", self.end_s)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not 0 <= value < math.inf):
                raise ValueError(f"{label} time must be a finite number of seconds >= 0, got {value!r}")
        if self.start_s is not None and self.end_s is not None and self.start_s >= self.end_s:
            raise ValueError(f"start time {self.start_s} s must come before end time {self.end_s} s")
        if self.model_complexity not in (0, 1, 2) or isinstance(self.model_complexity, bool):
            raise ValueError(f"model complexity must be 0, 1 or 2, got {self.model_complexity!r}")
        if self.fps is not None:
            check_fps(self.fps)
        if not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"stride must be an integer >= 1, got {self.stride!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool)
                                            or self.batch_size < 1):
            raise ValueError(f"batch size must be an integer >= 1, got {self.batch_size!r}")
        if not isinstance(self.hands, bool):
            raise ValueError(f"hands must be true or false, got {self.hands!r}")
        if not isinstance(self.hand_step, int) or isinstance(self.hand_step, bool) or self.hand_step < 1:
            raise ValueError(f"hand step must be an integer >= 1, got {self.hand_step!r}")
        if not isinstance(self.person, str):
            raise ValueError(f"person must be a string (auto, all, an id or X,Y), got {self.person!r}")
        parse_person(self.person)

    @property
    def choice(self) -> PersonChoice:
        return parse_person(self.person)


@dataclass(frozen=True)
class VideoRead:
    """How decoding went: the frames of the range the container promised, and decoded.

    Fewer decoded than promised means a cut-off or damaged file, analysed as far as it
    decodes (see :mod:`.video.decode`).
    """

    frames_promised: int
    frames_decoded: int

    @property
    def truncated(self) -> bool:
        return self.frames_decoded < self.frames_promised


def regress_video(video: str | Path, options: AnalyzeOptions = AnalyzeOptions(),
                  progress: Progress | None = None, follow: FollowPlan | None = None) -> tuple[Observations, VideoRead]:
    """Runs the regressor over the chosen frames of a video, streaming them.

    With ``follow``, the regressor sees only the followed person's region, in the frames
    of their track (:mod:`.people.follow`); other frames are gaps. The regressor is built
    before the first frame is decoded, so a bad regressor setting is refused at once. A
    video that ends before its container said is analysed as far as it decodes, with a
    warning on the ``ikol_engine`` logger.

    Raises:
        VideoError: the video is missing, unreadable, states an implausible frame rate
            (without ``options.fps``), or the range is empty.
        RegressorError: the regressor cannot start (e.g. a missing model file).
    """
    with _regressor(options) as regressor, _hand_landmarker(options) as landmarker:
        info = probe(video, options.fps)
        start, end = frame_range(info, options.start_s, options.end_s)
        frames = prefetched(iter_frames(video, start, end, options.stride, fps=options.fps))
        views = ((frame, frame.image if follow is None else follow.view(frame.index, frame.image)
                  if follow.covers(frame.index) else None) for frame in frames)
        run = _regressed(regressor, views, len(range(start, end, options.stride)), progress, landmarker,
                         options.hand_step)
    if follow is not None:
        run = run.kept(follow)
    return run.observations(Path(video), info, options)


def _regress_finding_people(video: Path, options: AnalyzeOptions, progress: Progress | None
                            ) -> tuple[PeopleScan, Track, tuple[Observations, VideoRead, FollowPlan] | None]:
    """:func:`regress_video` following ``options.person`` as the people are found, on one
    decoding of the video (:mod:`.people.lookahead`).

    Returns:
        (scan, person, followed): the whole scan, the person it picks, and that person's
        observations, the decoding and their :class:`FollowPlan`; ``followed`` is None
        where the people found early on picked someone else, who was followed instead.

    Raises:
        as :func:`regress_video` and :func:`find_people`.
    """
    with _regressor(options) as regressor, _hand_landmarker(options) as landmarker:
        info = probe(video, options.fps)
        start, end = frame_range(info, options.start_s, options.end_s)
        scanner = Scanner(info, start, end)
        follow = ProvisionalFollow(options.choice, scanner.step, start, end)
        frames = prefetched(iter_frames(video, start, end, math.gcd(options.stride, scanner.step), fps=options.fps))
        stream = prefetched(scanned(frames, scanner, lookahead_frames(scanner)))
        views = ((frame, follow.view(frame, people)) for frame, people in stream
                 if (frame.index - start) % options.stride == 0)
        run = _regressed(regressor, views, len(range(start, end, options.stride)), progress, landmarker,
                         options.hand_step)
    scan, [person] = find_people(video, options, scan=scanner.result())
    serial = next(serial for serial, track in scanner.kept().items() if track.id == person.id)
    if not follow.follows(serial):
        return scan, person, None
    plan = FollowPlan.make(person, scan.tracks, scan.step, scan.start, scan.end)
    return scan, person, (*run.kept(plan).observations(video, info, options), plan)


def _regressor(options: AnalyzeOptions) -> Regressor:
    return create_regressor(options.regressor, model_complexity=options.model_complexity,
                            batch_size=options.batch_size)


def _hand_landmarker(options: AnalyzeOptions) -> HandLandmarker | contextlib.nullcontext[None]:
    """The hands' landmarker, where asked for and the regressor's keypoints are BlazePose's
    (whose wrists and knuckles place the hands' crops); else a stand-in that gives None."""
    if not options.hands or options.regressor != "blazepose":
        return contextlib.nullcontext()
    return HandLandmarker()


@dataclass(frozen=True)
class _Regressed:
    """What a regressor pass saw: every frame decoded, and the poses of those it was shown.

    Attributes:
        found: the regressor's output on the frames shown, in order.
        hands: the hands' landmarks on the same frames, or None.
        rows: (N,) positions of those frames among ``indices``.
        indices, times: (T,) every frame's index and time.
        promised: the frames the container promised in the range.
    """

    found: KeypointFrames
    hands: HandFrames | None
    rows: np.ndarray
    indices: np.ndarray
    times: np.ndarray
    promised: int

    def kept(self, plan: FollowPlan) -> _Regressed:
        """The poses that are the followed person's (:func:`.people.follow.keep_chosen`), and their hands."""
        found = keep_chosen(plan, self.indices[self.rows], self.found)
        if self.hands is None:
            return dataclasses.replace(self, found=found)
        kept_hands = HandFrames(self.hands.image_keypoints, self.hands.world_keypoints,
                                np.where(found.detected[:, None, None], self.hands.confidence, 0.0),
                                self.hands.label_agrees)
        return dataclasses.replace(self, found=found, hands=kept_hands)

    def observations(self, video: Path, info: VideoInfo, options: AnalyzeOptions) -> tuple[Observations, VideoRead]:
        read = VideoRead(frames_promised=self.promised, frames_decoded=len(self.indices))
        if read.truncated:
            log.warning(f"{video.name}: the container promised {read.frames_promised} frames here but only "
                        f"{read.frames_decoded} decoded (cut off or damaged); analysed those {read.frames_decoded}")
        frames = spread(self.found, self.rows, len(self.indices))
        hand_arrays = {}
        if self.hands is not None:
            def placed(values: np.ndarray) -> np.ndarray:
                out = np.zeros((len(self.indices), *values.shape[1:]), np.float32)
                out[self.rows] = values
                return out
            hand_arrays = {"hand_landmarks": placed(self.hands.world_keypoints),
                           "hand_pixels": placed(self.hands.image_keypoints),
                           "hand_confidence": placed(self.hands.confidence)}
        observed = Observations(names=frames.keypoint_names, keypoints=frames.keypoints, confidence=frames.confidence,
                                image=frames.image_keypoints, detected=frames.detected, frame_indices=self.indices,
                                fps=info.fps / options.stride, image_size=(info.width, info.height), twist=frames.twist,
                                twist_confidence=frames.twist_confidence, betas=frames.betas, frame_times=self.times,
                                **hand_arrays)
        return observed, read


def _regressed(regressor: Regressor, views: Iterable[tuple[Frame, np.ndarray | None]], total: int,
               progress: Progress | None, landmarker: HandLandmarker | None = None, hand_step: int = 1) -> _Regressed:
    """Runs ``regressor`` on each frame's view ((H, W, 3) uint8 RGB; None: a gap), in
    batches of the size the backend takes, and ``landmarker`` on every ``hand_step``-th view
    where given; ``total``: the frames expected, for progress."""
    report = progress or (lambda stage, done, total: None)
    parts: list[KeypointFrames] = []
    with contextlib.ExitStack() as stack:
        hands = None if landmarker is None else stack.enter_context(_HandsAlongside(landmarker, hand_step))

        def run(images: list[np.ndarray]) -> None:
            part = regressor(images)
            if hands is not None:
                hands.submit(sum(map(len, parts)), list(images), part)
            parts.append(part)

        indices: list[int] = []
        times: list[float] = []
        rows: list[int] = []
        batch: list[np.ndarray] = []
        per_call = getattr(regressor, "batch_size", 1)  # backends that batch say how many frames they take
        report("regress", 0, total)
        for frame, image in views:
            indices.append(frame.index)
            times.append(frame.time_s)
            if image is not None:
                rows.append(len(indices) - 1)
                batch.append(image)
                if len(batch) == per_call:
                    run(batch)
                    batch.clear()
            report("regress", len(indices), total)
        if batch:
            run(batch)
        found_hands = None if hands is None else hands.found()
    names = regressor.keypoint_names
    found = KeypointFrames.concatenate(parts) if parts else _nobody(names, 0)
    return _Regressed(found, found_hands, np.asarray(rows, dtype=np.int64), np.asarray(indices, dtype=np.int64),
                      np.asarray(times, dtype=np.float64), total)


class _HandsAlongside:
    """The hands' landmarks found on a worker thread while the regressor takes the next
    frames: MediaPipe lets go of the interpreter while it works, so on the 2-core CPU
    BlazePose and the hands took 6.1 s for the sample's first 159 frames instead of 8.6.
    One batch at a time is in flight, so memory stays bounded and the order kept."""

    def __init__(self, landmarker: HandLandmarker, step: int) -> None:
        self._landmarker, self._step = landmarker, step
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ikol-hands")
        self._parts: list[HandFrames] = []
        self._pending: Future[HandFrames] | None = None

    def submit(self, first: int, images: list[np.ndarray], body: KeypointFrames) -> None:
        """Looks for the hands in a batch whose first image is the clip's ``first``-th regressed frame."""
        self._collect()
        self._pending = self._pool.submit(_hands_every, self._step, first, self._landmarker, images, body)

    def found(self) -> HandFrames:
        """Every batch's hands, in order (a worker's error is raised here)."""
        self._collect()
        return HandFrames.concatenate(self._parts) if self._parts else HandFrames.empty(0)

    def _collect(self) -> None:
        if self._pending is not None:
            self._parts.append(self._pending.result())
            self._pending = None

    def __enter__(self) -> _HandsAlongside:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _hands_every(every: int, first: int, landmarker: HandLandmarker, images: list[np.ndarray],
                 body: KeypointFrames) -> HandFrames:
    """The hands in every ``every``-th of a batch's images (the batch's first is the clip's
    ``first``-th regressed frame), BlazePose's ``body`` placing them; none in the others."""
    picked = [i for i in range(len(images)) if (first + i) % every == 0]
    hands_found = HandFrames.empty(len(images))
    if picked:
        found = landmarker([images[i] for i in picked], body.image_keypoints[picked], body.confidence[picked])
        for name in ("image_keypoints", "world_keypoints", "confidence", "label_agrees"):
            getattr(hands_found, name)[picked] = getattr(found, name)
    return hands_found


def _nobody(names: tuple[str, ...], count: int) -> KeypointFrames:
    """``count`` frames without a person."""
    r = len(names)
    return KeypointFrames(names, np.zeros((count, r, 3)), np.zeros((count, r)), np.zeros((count, r, 2)),
                          np.zeros(count, bool))


def find_people(video: str | Path, options: AnalyzeOptions = AnalyzeOptions(),
                progress: Progress | None = None, scan: PeopleScan | None = None) -> tuple[PeopleScan, list[Track]]:
    """Everyone in the analysed part of the video, and whom ``options.person`` picks.

    Args:
        scan: the people already found in this video with these options' start, end and
            fps (a ``people`` request just before); None: found now.
    Raises:
        TrackError: nobody was found at all ("no person was found", as for a blank video).
        PeopleError: the pick matches nobody (its message lists the people found).
    """
    if scan is None:
        scan = scan_people(video, options.start_s, options.end_s, options.fps, progress)
    if not scan.tracks:
        raise TrackError("no person was found in any frame (the person detector found nobody)")
    return scan, select_people(scan.tracks, options.choice)


def analyze(video: str | Path, output: str | Path, options: AnalyzeOptions = AnalyzeOptions(),
            solve_options: SolveOptions = SolveOptions(), body: BodyModel | None = None,
            progress: Progress | None = None, scan: PeopleScan | None = None) -> tuple[Motion, Solution]:
    """Video to motion file: regress, solve, write atomically; returns what it wrote.

    The compute device is checked to exist before the regressor starts (the options
    and the body were checked when they were made), so no bad setting waits for the
    keypoint pass to be refused. The run's options record how the video decoded
    (``options["video"]``: frames promised and decoded, the rate and where it came from).
    ``scan``: see :func:`find_people`; without one, the people are found on the frames
    decoded for the regressor, in the same pass (:func:`_regress_finding_people`).
    """
    if options.choice.mode == "all":
        raise ValueError("person 'all' writes one file per person: use analyze_people")
    video = Path(video)
    resolve_device(solve_options.device)
    followed = None
    if scan is None:
        scan, person, followed = _regress_finding_people(video, options, progress)
        if followed is None:
            log.info(f"{video.name}: the whole clip picks person {person.id}, not the one followed from its "
                     f"start; following person {person.id} again")
    else:
        scan, [person] = find_people(video, options, progress, scan)
    digest = file_sha256(video)
    if followed is None:
        motion, solution = _follow_person(video, digest, options, solve_options, body, progress, scan, person)
    else:
        track, read, plan = followed
        motion, solution = _solved(video, digest, options, solve_options, body, progress, scan, person, plan,
                                   track, read)
    write_motion(output, motion)
    return motion, solution


def analyze_people(video: str | Path, folder: str | Path, options: AnalyzeOptions = AnalyzeOptions(),
                   solve_options: SolveOptions = SolveOptions(), body: BodyModel | None = None,
                   progress: Progress | None = None,
                   scan: PeopleScan | None = None) -> list[tuple[Path, Motion, Solution]]:
    """One motion file per person the choice picks (everyone for ``all``), written to
    ``folder / <video stem>_person<ID>.npz``; returns (path, motion, solution) each.

    The video's people are found once; each person is then regressed and solved on
    their own, so the cost grows linearly with the number of people. A person who
    turns out to have no solvable frame is skipped with a warning, unless nobody has one.
    The files are written once every person is solved, so an interrupted or cancelled
    run writes none. ``scan``: see :func:`find_people`.
    """
    video, folder = Path(video), Path(folder)
    resolve_device(solve_options.device)
    scan, people = find_people(video, options, progress, scan)
    digest = file_sha256(video)  # one read of the whole video, for every person's file
    solved, failures = [], []
    for person in people:
        try:
            solved.append((folder / f"{video.stem}_person{person.id}.npz",
                           *_follow_person(video, digest, options, solve_options, body, progress, scan, person)))
        except TrackError as error:  # a brief or hidden person: the others still count
            failures.append(f"person {person.id}: {error}")
            log.warning(f"{video.name}: person {person.id} skipped: {error}")
    if not solved:
        raise TrackError("no person could be solved: " + "; ".join(failures))
    for output, motion, _ in solved:
        write_motion(output, motion)
    return solved


def _follow_person(video: Path, source_sha256: str, options: AnalyzeOptions, solve_options: SolveOptions,
                   body: BodyModel | None, progress: Progress | None, scan: PeopleScan,
                   person: Track) -> tuple[Motion, Solution]:
    """One person of a scan, regressed with everyone else hidden and solved (not written)."""
    plan = FollowPlan.make(person, scan.tracks, scan.step, scan.start, scan.end)
    track, read = regress_video(video, options, progress, follow=plan)
    return _solved(video, source_sha256, options, solve_options, body, progress, scan, person, plan, track, read)


def _solved(video: Path, source_sha256: str, options: AnalyzeOptions, solve_options: SolveOptions,
            body: BodyModel | None, progress: Progress | None, scan: PeopleScan, person: Track, plan: FollowPlan,
            track: Observations, read: VideoRead) -> tuple[Motion, Solution]:
    """The followed person's observations solved, as a motion (not written)."""
    solution = solve_observations(track, layout_for(track.names), solve_options, body, progress)
    run = {"analyze": dataclasses.asdict(options), "solve": dataclasses.asdict(solve_options),
           "image_size": list(track.image_size), "result": solution.info,
           "video": {"frames_promised": read.frames_promised, "frames_decoded": read.frames_decoded,
                     "fps": track.fps * options.stride, "fps_given": options.fps is not None},
           "person": {"id": person.id, "choice": options.person, "found": [t.id for t in scan.tracks],
                      "detected_frames": len(person.frames), "detection_step": scan.step}}
    motion = _motion(track, solution, body or default_body(), run, regressor_name=_regressor_name(options),
                     source_video=video.name, source_sha256=source_sha256,
                     person_boxes=plan.boxes_over(track.frame_indices))
    return motion, solution


def refine(source: str | Path, output: str | Path, solve_options: SolveOptions | Mapping[str, Any] = MappingProxyType({}),
           body: BodyModel | None = None, progress: Progress | None = None) -> tuple[Motion, Solution]:
    """Re-solves a motion file's stored keypoints with new settings; writes atomically.

    ``solve_options``: all the settings, or a mapping of the :class:`SolveOptions` fields
    to change, the others staying as the run that wrote ``source`` had them (a refine of
    the smoothing must not reset the field of view the clip was analysed with). The
    clip's body shape is kept: a refine changes poses, never the rig's skeleton.
    ``output`` may be ``source`` itself: the old file stays whole until the new one is
    complete. A clip whose focal length was estimated keeps that estimate unless the
    changes give a camera; ``keep_contacts`` keeps the file's foot contacts (e.g. edited
    in Blender) instead of detecting them again.
    """
    old = read_motion(source)
    if not isinstance(solve_options, SolveOptions):
        solve_options = recorded_solve_options(old, solve_options)
    resolve_device(solve_options.device)
    image_size = old.options.get("image_size")
    if not (isinstance(image_size, list) and len(image_size) == 2):
        raise TrackError(f"{source}: the motion file does not record the video's image size; analyse again")
    confidence = old.regressor_confidence
    track = Observations(names=tuple(str(n) for n in old.regressor_keypoint_names), keypoints=old.regressor_keypoints,
                      confidence=confidence, image=old.image_keypoints, detected=confidence.sum(axis=1) > 0,
                      frame_indices=old.frame_indices, fps=old.fps, image_size=(int(image_size[0]), int(image_size[1])),
                      twist=old.regressor_twist, twist_confidence=old.regressor_twist_confidence,
                      betas=old.regressor_betas, frame_times=old.times, hand_landmarks=old.hand_landmarks,
                      hand_pixels=old.hand_landmark_pixels, hand_confidence=old.hand_landmark_confidence)
    if solve_options.keep_contacts and old.contacts is None:
        raise TrackError(f"{source}: the motion file has no foot contacts to keep (written before schema 4); "
                         "refine once without keep_contacts")
    solution = solve_observations(track, layout_for(track.names), solve_options, body, progress,
                                  shape=old.betas, focal_px=_estimated_focal(old),
                                  contacts=old.contacts if solve_options.keep_contacts else None)
    run = dict(old.options, solve=dataclasses.asdict(solve_options), result=solution.info)
    motion = _motion(track, solution, body or default_body(), run, regressor_name=old.regressor_name,
                     source_video=old.source_video, source_sha256=old.source_sha256, person_boxes=old.person_boxes)
    write_motion(output, motion)
    return motion, solution


def recorded_solve_options(motion: Motion, changes: Mapping[str, Any] = MappingProxyType({})) -> SolveOptions:
    """The settings the run that wrote ``motion`` used, with ``changes`` applied.

    Fields the file does not record (written by an older engine) take their defaults.
    """
    recorded = motion.options.get("solve")
    known = {field.name for field in dataclasses.fields(SolveOptions)}
    kept = {key: value for key, value in recorded.items() if key in known} if isinstance(recorded, dict) else {}
    # A lens given replaces the field of view, so a new field of view must drop the old lens.
    if "fov_deg" in changes:
        kept.pop("focal_mm", None)
    return SolveOptions(**{**kept, **changes})


def _estimated_focal(motion: Motion) -> float | None:
    """The focal length (pixels) the run that wrote ``motion`` estimated, or None."""
    result = motion.options.get("result")
    camera = result.get("camera") if isinstance(result, dict) else None
    if isinstance(camera, dict) and camera.get("source") == "estimated":
        focal = camera.get("focal_px")
        return float(focal) if isinstance(focal, (int, float)) and focal > 0 else None
    return None


def _regressor_name(options: AnalyzeOptions) -> str:
    return f"{options.regressor}-complexity{options.model_complexity}"


def _motion(track: Observations, solution: Solution, body: BodyModel, run: dict[str, Any], *, regressor_name: str,
            source_video: str, source_sha256: str, person_boxes: np.ndarray | None) -> Motion:
    betas = torch.from_numpy(solution.betas)[None]
    identity = torch.eye(3).expand(1, skeleton.NUM_JOINTS, 3, 3)
    mesh = body.vertices(identity, betas, torch.zeros(1, 3))[0].detach().numpy()
    return Motion(
        fps=track.fps, frame_indices=track.frame_indices, frame_times=track.times, joint_names=np.array(skeleton.JOINT_NAMES),
        parents=np.array(skeleton.PARENTS), rest_joints=body.rest_joints(betas)[0].numpy(), betas=solution.betas,
        mesh_vertices=mesh, mesh_faces=body.faces.astype(np.int64), skin_weights=body.skin_weights,
        rotations=solution.rotations, translation=solution.translation, valid=solution.valid,
        residual_mm=solution.residual_mm, targets=solution.targets, target_confidence=solution.target_confidence,
        twist=solution.twist, twist_confidence=solution.twist_confidence, regressor_name=regressor_name,
        regressor_keypoint_names=np.array(track.names), regressor_keypoints=track.keypoints,
        regressor_confidence=track.confidence, image_keypoints=track.image, options=run,
        source_video=source_video, source_sha256=source_sha256, engine_version=__version__,
        regressor_twist=track.twist, regressor_twist_confidence=track.twist_confidence, regressor_betas=track.betas,
        person_boxes=person_boxes, contacts=solution.contacts, **_hand_keys(track, solution, body))


def _hand_keys(track: Observations, solution: Solution, body: BodyModel) -> dict[str, np.ndarray]:
    """The motion file's hand keys: the landmarks where they were found, the fingers where solved."""
    keys = {}
    if track.hand_landmarks is not None:
        keys = {"hand_landmarks": track.hand_landmarks, "hand_landmark_pixels": track.hand_pixels,
                "hand_landmark_confidence": track.hand_confidence}
    fingers = solution.fingers
    if fingers is not None:
        betas = torch.from_numpy(solution.betas)[None]
        keys |= {"hand_joint_names": np.array(hands.HAND_JOINT_NAMES), "hand_parents": np.array(hands.FILE_HAND_PARENTS),
                 "hand_rest_joints": body.rest_finger_joints(betas)[0].numpy(),
                 "skin_weights_with_fingers": body.skin_weights_with_fingers, "hand_rotations": fingers.rotations,
                 "hand_valid": fingers.seen, "hand_residual_mm": fingers.residual_mm}
    return keys
