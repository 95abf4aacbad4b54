"""The engine's two jobs: ``analyze`` (video to motion file) and ``refine`` (motion file to motion file).

``analyze`` streams the video through the regressor, then hands the keypoints to
:mod:`.track`; ``refine`` re-runs only the latter from the keypoints a motion file
keeps, so changing IK settings never needs the video or the network again. Both write
their result atomically: an interrupted run leaves any previous file as it was.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import torch

from . import __version__, skeleton
from .body import BodyModel
from .ik.solver import default_body
from .motion import Motion, file_sha256, read_motion, write_motion
from .observations import Observations
from .regressors import create_regressor, layout_for
from .regressors.base import KeypointFrames
from .track.options import Progress, SolveOptions, TrackError
from .track.solve import Solution, solve_observations
from .video.decode import frame_range, iter_frames, probe


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
    """

    start_s: float | None = None
    end_s: float | None = None
    stride: int = 1
    model_complexity: int = 1
    regressor: str = "blazepose"
    batch_size: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.stride, int) or self.stride < 1:
            raise ValueError(f"stride must be an integer >= 1, got {self.stride!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or isinstance(self.batch_size, bool)
                                            or self.batch_size < 1):
            raise ValueError(f"batch size must be an integer >= 1, got {self.batch_size!r}")


def regress_video(video: str | Path, options: AnalyzeOptions = AnalyzeOptions(),
                  progress: Progress | None = None) -> Observations:
    """Runs the regressor over the chosen frames of a video, streaming them.

    Raises:
        VideoError: the video is missing, unreadable or the range is empty.
        RegressorError: the regressor cannot start (e.g. a missing model file).
    """
    report = progress or (lambda stage, done, total: None)
    info = probe(video)
    start, end = frame_range(info, options.start_s, options.end_s)
    total = len(range(start, end, options.stride))
    parts: list[KeypointFrames] = []
    indices: list[int] = []
    report("regress", 0, total)
    batch: list = []
    with create_regressor(options.regressor, model_complexity=options.model_complexity,
                          batch_size=options.batch_size) as regressor:
        per_call = getattr(regressor, "batch_size", 1)  # backends that batch say how many frames they take

        def regress() -> None:
            parts.append(regressor([f.image for f in batch]))
            indices.extend(f.index for f in batch)
            batch.clear()
            report("regress", len(indices), total)

        for frame in iter_frames(video, start, end, options.stride):
            batch.append(frame)
            if len(batch) == per_call:
                regress()
        if batch:
            regress()
    frames = KeypointFrames.concatenate(parts)
    return Observations(names=frames.keypoint_names, keypoints=frames.keypoints, confidence=frames.confidence,
                     image=frames.image_keypoints, detected=frames.detected,
                     frame_indices=np.asarray(indices, dtype=np.int64), fps=info.fps / options.stride,
                     image_size=(info.width, info.height), twist=frames.twist,
                     twist_confidence=frames.twist_confidence, betas=frames.betas)


def analyze(video: str | Path, output: str | Path, options: AnalyzeOptions = AnalyzeOptions(),
            solve_options: SolveOptions = SolveOptions(), body: BodyModel | None = None,
            progress: Progress | None = None) -> tuple[Motion, Solution]:
    """Video to motion file: regress, solve, write atomically; returns what it wrote."""
    video = Path(video)
    track = regress_video(video, options, progress)
    solution = solve_observations(track, layout_for(track.names), solve_options, body, progress)
    run = {"analyze": dataclasses.asdict(options), "solve": dataclasses.asdict(solve_options),
           "image_size": list(track.image_size), "result": solution.info}
    motion = _motion(track, solution, body or default_body(), run, regressor_name=_regressor_name(options),
                     source_video=video.name, source_sha256=file_sha256(video))
    write_motion(output, motion)
    return motion, solution


def refine(source: str | Path, output: str | Path, solve_options: SolveOptions | Mapping[str, Any] = MappingProxyType({}),
           body: BodyModel | None = None, progress: Progress | None = None) -> tuple[Motion, Solution]:
    """Re-solves a motion file's stored keypoints with new settings; writes atomically.

    ``solve_options``: all the settings, or a mapping of the :class:`SolveOptions` fields
    to change, the others staying as the run that wrote ``source`` had them (a refine of
    the smoothing must not reset the field of view the clip was analysed with). The
    clip's body shape is kept: a refine changes poses, never the rig's skeleton.
    ``output`` may be ``source`` itself: the old file stays whole until the new one is
    complete.
    """
    old = read_motion(source)
    if not isinstance(solve_options, SolveOptions):
        solve_options = recorded_solve_options(old, solve_options)
    image_size = old.options.get("image_size")
    if not (isinstance(image_size, list) and len(image_size) == 2):
        raise TrackError(f"{source}: the motion file does not record the video's image size; analyse again")
    confidence = old.regressor_confidence
    track = Observations(names=tuple(str(n) for n in old.regressor_keypoint_names), keypoints=old.regressor_keypoints,
                      confidence=confidence, image=old.image_keypoints, detected=confidence.sum(axis=1) > 0,
                      frame_indices=old.frame_indices, fps=old.fps, image_size=(int(image_size[0]), int(image_size[1])),
                      twist=old.regressor_twist, twist_confidence=old.regressor_twist_confidence,
                      betas=old.regressor_betas)
    solution = solve_observations(track, layout_for(track.names), solve_options, body, progress,
                                  shape=old.betas)
    run = dict(old.options, solve=dataclasses.asdict(solve_options), result=solution.info)
    motion = _motion(track, solution, body or default_body(), run, regressor_name=old.regressor_name,
                     source_video=old.source_video, source_sha256=old.source_sha256)
    write_motion(output, motion)
    return motion, solution


def recorded_solve_options(motion: Motion, changes: Mapping[str, Any] = MappingProxyType({})) -> SolveOptions:
    """The settings the run that wrote ``motion`` used, with ``changes`` applied.

    Fields the file does not record (written by an older engine) take their defaults.
    """
    recorded = motion.options.get("solve")
    known = {field.name for field in dataclasses.fields(SolveOptions)}
    kept = {key: value for key, value in recorded.items() if key in known} if isinstance(recorded, dict) else {}
    return SolveOptions(**{**kept, **changes})


def _regressor_name(options: AnalyzeOptions) -> str:
    return f"{options.regressor}-complexity{options.model_complexity}"


def _motion(track: Observations, solution: Solution, body: BodyModel, run: dict[str, Any], *, regressor_name: str,
            source_video: str, source_sha256: str) -> Motion:
    betas = torch.from_numpy(solution.betas)[None]
    identity = torch.eye(3).expand(1, skeleton.NUM_JOINTS, 3, 3)
    mesh = body.vertices(identity, betas, torch.zeros(1, 3))[0].detach().numpy()
    return Motion(
        fps=track.fps, frame_indices=track.frame_indices, joint_names=np.array(skeleton.JOINT_NAMES),
        parents=np.array(skeleton.PARENTS), rest_joints=body.rest_joints(betas)[0].numpy(), betas=solution.betas,
        mesh_vertices=mesh, mesh_faces=body.faces.astype(np.int64), skin_weights=body.skin_weights,
        rotations=solution.rotations, translation=solution.translation, valid=solution.valid,
        residual_mm=solution.residual_mm, targets=solution.targets, target_confidence=solution.target_confidence,
        twist=solution.twist, twist_confidence=solution.twist_confidence, regressor_name=regressor_name,
        regressor_keypoint_names=np.array(track.names), regressor_keypoints=track.keypoints,
        regressor_confidence=track.confidence, image_keypoints=track.image, options=run,
        source_video=source_video, source_sha256=source_sha256, engine_version=__version__,
        regressor_twist=track.twist, regressor_twist_confidence=track.twist_confidence, regressor_betas=track.betas)
