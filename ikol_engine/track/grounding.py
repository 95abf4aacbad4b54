"""The clip in the camera's world, for the IK's last pass: camera, placement, floor, foot contacts.

The regressor's metric keypoints come about the person's hips. The camera (a field of
view or lens given, or estimated from the clip) and the pinhole fit of those keypoints
to their pixels place the person in it, smoothed in time like the pose (depth from
apparent size is the noisiest axis). The floor is fitted under the resting feet, and
each heel and toe is found resting or not from a first solve placed there (its image
speed, 3D speed and height above the floor, :mod:`~ikol_engine.ik.contacts`). The last
IK pass then solves in the camera's frame with all of it (:func:`grounding_terms`): the
keypoints' pixels through the camera, resting feet held where they rest, no foot below
the floor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..ik.contacts import contact_targets, detect_contacts
from ..ik.world_terms import FOOT_KEYPOINTS, foot_clearance
from ..observations import KeypointLayout
from ..skeleton.groups import group_weights
from .camera import Camera, clip_camera, fit_translation
from .cleanup import fill_gaps
from .filtering import one_euro_forward_backward
from .ground import Ground, fit_ground
from .options import SolveOptions

_FEET = list(FOOT_KEYPOINTS)
#: The floor's pull on a foot below it, as one keypoint's. The floor is fitted under
#: feet whose regressed heights scatter by centimetres about it; a hard floor (100)
#: pushed every low one up into the pose: on the Sports2D sample the mean residual rose
#: from 19 to 26 mm and the pose's jitter by 27 %.
FLOOR_WEIGHT = 1.0
#: m: a frame whose feet are all further below the floor than this stands on something
#: lower than the floor (the ground after jumping off the box the floor was found on):
#: the floor neither lifts it nor places its contacts.
LOWER_LEVEL_M = 0.25


@dataclass(frozen=True)
class Grounding:
    """A clip's V valid frames placed in the camera's frame (x right, y up, looking down -z).

    Attributes:
        camera, camera_source: the pinhole and where its focal length came from
            (see :func:`~.camera.clip_camera`).
        placement: (V, 3) where the targets (about the hips) sit in the camera.
        pixels: (V, 29, 2) the targets' pixels; pixel_confidence: (V, 29), 0 = not
            shown, times the keypoint groups' weights.
        ground: the floor under the resting feet, camera frame, or None (none found).
        floor_frames: (V,) bool, the frames the floor is under the person (see
            :data:`LOWER_LEVEL_M`); clearance: (4,) resting height of each foot point
            above the floor, m.
        contacts: (V, 4) bool, each foot point (FOOT_KEYPOINTS) resting.
        lock, lock_confidence: (V, 4, 3) where each resting point rests and (V, 4) 1 there.
    """

    camera: Camera
    camera_source: str
    placement: np.ndarray
    pixels: np.ndarray
    pixel_confidence: np.ndarray
    ground: Ground | None
    floor_frames: np.ndarray
    clearance: np.ndarray
    contacts: np.ndarray
    lock: np.ndarray
    lock_confidence: np.ndarray

    def info(self) -> dict[str, Any]:
        """What was found, JSON-able: the camera and each foot point's frames at rest."""
        return {"camera": {"focal_px": self.camera.focal_px, "fov_deg": self.camera.fov_deg,
                           "source": self.camera_source},
                "contact_frames": [int(n) for n in self.contacts.sum(0)]}


def ground_clip(first_keypoints: np.ndarray, points: np.ndarray, pixels: np.ndarray, confidence: np.ndarray,
                layout: KeypointLayout, rest_keypoints: np.ndarray, image_size: tuple[int, int], fps: float,
                options: SolveOptions, estimated_focal_px: float | None = None,
                contacts: np.ndarray | None = None) -> Grounding:
    """Camera, placement, floor and foot contacts of a clip (see the module docstring).

    Args:
        first_keypoints: (V, 29, 3) a first solve's keypoints about the hips.
        points: (V, R, 3) the regressor's metric keypoints (filtered, y-up, about the
            hips); pixels: (V, R, 2); confidence: (V, R).
        rest_keypoints: (29, 3) the body's rest keypoints.
        estimated_focal_px: an earlier estimate of this clip's focal length, kept by a
            refine that is given no camera; contacts: (V, 4) bool to keep instead of
            detecting them (a refine of contacts edited in Blender).
    """
    camera, source = clip_camera(image_size, points, pixels, confidence, fov_deg=options.fov_deg,
                                 focal_mm=options.focal_mm, sensor_mm=options.sensor_mm,
                                 estimated_px=estimated_focal_px)
    placement = _placement(points, pixels, confidence, camera, fps, options)
    ground = fit_ground(points[:, list(layout.foot_points)] + placement[:, None], np.ones(len(points), dtype=bool),
                        fps)
    floor = None if ground is None else (ground.normal, ground.height)
    clearance = foot_clearance(torch.from_numpy(rest_keypoints[None]).double())[0].numpy()
    target_pixels, shown = layout.image_targets(pixels, confidence)
    feet = first_keypoints[:, _FEET] + placement[:, None]
    floor_frames = np.ones(len(feet), dtype=bool) if ground is None else \
        (feet @ ground.normal - ground.height - clearance).max(1) > -LOWER_LEVEL_M
    if contacts is None:
        contacts = detect_contacts(feet, fps, pixels=target_pixels[:, _FEET],
                                   body_height_px=_height_px(target_pixels, shown), floor=floor,
                                   clearance=clearance, floor_frames=floor_frames,
                                   thresholds=options.contact_thresholds())
    lock, lock_confidence = contact_targets(feet, contacts, floor=floor, clearance=clearance, floor_frames=floor_frames,
                                            pixels=target_pixels[:, _FEET], camera=camera.pinhole)
    # The keypoint groups' weights count in the image as they do in 3D.
    pixel_confidence = shown * group_weights(options.torso, options.arms, options.legs, options.head)
    return Grounding(camera, source, placement, target_pixels, pixel_confidence, ground, floor_frames, clearance,
                     np.asarray(contacts, dtype=bool), lock, lock_confidence)


def grounding_terms(grounding: Grounding, options: SolveOptions) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The last pass's world arguments of :func:`~ikol_engine.ik.solve`.

    Returns:
        (frame-wise (V, ...) tensors, the other settings); the image keypoints only with
        ``options.reprojection`` > 0, the foot locks with ``options.foot_lock`` > 0.
    """
    g = grounding
    tensor = lambda values: torch.from_numpy(np.ascontiguousarray(values)).float()  # noqa: E731
    per_frame: dict[str, torch.Tensor] = {"placement": tensor(g.placement)}
    settings: dict[str, Any] = {}
    if options.reprojection > 0:
        per_frame |= {"pixels": tensor(g.pixels), "pixel_confidence": tensor(g.pixel_confidence)}
        settings |= {"camera": g.camera.pinhole, "pixel_weight": options.reprojection}
    if options.foot_lock > 0 and g.contacts.any():
        per_frame |= {"foot_lock": tensor(g.lock), "foot_lock_confidence": tensor(g.lock_confidence)}
        settings["foot_lock_weight"] = options.foot_lock
    if g.ground is not None:
        per_frame["floor_confidence"] = tensor(g.floor_frames.astype(np.float32))
        settings |= {"floor": (torch.from_numpy(g.ground.normal).float(), g.ground.height),
                     "floor_weight": FLOOR_WEIGHT}
    return per_frame, settings


def _placement(points: np.ndarray, pixels: np.ndarray, confidence: np.ndarray, camera: Camera, fps: float,
               options: SolveOptions) -> np.ndarray:
    """(V, 3) pinhole placement of the metric keypoints, bridged where a frame has too
    few pixels and smoothed like the pose."""
    placement = fit_translation(points, pixels, confidence, camera)
    lost = ~np.isfinite(placement).all(-1)
    if lost.any():  # too few confident pixels: carry the neighbours' placement
        placement = fill_gaps(placement, ~lost, max_gap=len(placement))[0]
    params = options.filter_params()
    return placement if params is None else one_euro_forward_backward(placement, fps, params)


def _height_px(pixels: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """(V,) the person's height in the image: the vertical span of their shown targets'
    pixels, the clip's median where a frame shows fewer than two."""
    seen, rows = confidence > 0, pixels[..., 1]
    span = np.where(seen, rows, -np.inf).max(1) - np.where(seen, rows, np.inf).min(1)
    usable = np.isfinite(span) & (span > 0)
    fallback = float(np.median(span[usable])) if usable.any() else 1.0
    return np.where(usable, span, fallback)
