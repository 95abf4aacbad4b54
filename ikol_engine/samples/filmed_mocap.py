"""Real mocap filmed by a known camera, observed with a monocular regressor's errors.

Test and benchmark data for the camera-aware IK: a DeepMimic clip on an SMPL body
stands on a floor, a pinhole camera a few metres away looks down at it, and the
observations imitate BlazePose: image keypoints with a few pixels of noise, and
metric 3D keypoints about the hips whose depth is poor, i.e. large errors along each
keypoint's viewing ray, smooth in time and shared in part by the whole body, plus
smaller errors in every direction. Truth and observations are in the camera frame of
:mod:`ikol_engine.ik.world_terms` (x right, y up, camera at the origin looking down -z).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import roma
import torch

from .. import skeleton
from ..body import BodyModel
from ..observations import Observations, to_world_axes
from ..ik.world_terms import FOOT_KEYPOINTS, PinholeCamera, foot_clearance
from ..skeleton.kinematics import forward_kinematics, rest_offsets
from .deepmimic import load_deepmimic
from ..skeleton.tree import SMPL_TREE


@dataclass(frozen=True)
class Filming:
    """Where the camera stands and how wrong the regressor is.

    Attributes:
        distance: m from the camera to the clip's mean position, along the ground.
        height: m of the camera above the floor; tilt_deg: how far it looks down.
        heading_deg: the clip's turn about the vertical (0: walking towards the camera).
        focal_px, image_size: the pinhole (principal point at the image centre).
        pixel_noise_px: image noise per axis; ray_noise_m: depth error along each ray,
        its share ``ray_shared`` common to the whole body; other_noise_m: per-axis error;
        correlation: frame-to-frame correlation of the 3D errors (AR(1)).
    """

    distance: float = 4.5
    height: float = 1.4
    tilt_deg: float = 12.0
    heading_deg: float = 60.0
    focal_px: float = 1400.0
    image_size: tuple[int, int] = (1920, 1080)
    pixel_noise_px: float = 2.5
    ray_noise_m: float = 0.075
    ray_shared: float = 0.5
    other_noise_m: float = 0.025
    correlation: float = 0.97


@dataclass(frozen=True)
class FilmedClip:
    """Truth and observations, camera frame, T frames.

    Attributes:
        fps; camera; betas: (N,);
        rotations: (T, 24, 3, 3) true local rotations (root in the camera frame);
        translation: (T, 3) true root translation; keypoints: (T, 29, 3) true keypoints;
        pixels: (T, 29, 2) observed; targets: (T, 29, 3) observed metric keypoints about
        their own pelvis; floor: (normal (3,), height) the true floor plane;
        clearance: (4,) resting height of FOOT_KEYPOINTS above it.
    """

    fps: float
    camera: PinholeCamera
    betas: np.ndarray
    rotations: np.ndarray
    translation: np.ndarray
    keypoints: np.ndarray
    pixels: np.ndarray
    targets: np.ndarray
    floor: tuple[np.ndarray, float]
    clearance: np.ndarray


def looped(name: str, cycles: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """A looping DeepMimic clip played ``cycles`` times, each cycle carried on from where
    the last one ended -> rotations (T, 24, 3, 3), root positions (T, 3), fps."""
    clip = load_deepmimic(name)
    rotations, position = clip.rotations[:-1], clip.translation[:-1]
    step = (clip.translation[-1] - clip.translation[0]) * torch.tensor([1.0, 0.0, 1.0])
    return (rotations.repeat(cycles, 1, 1, 1),
            torch.cat([position + k * step for k in range(cycles)]), clip.fps)


def _ar1(shape: tuple[int, ...], correlation: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance noise, AR(1) along the first axis."""
    out = np.empty(shape)
    out[0] = rng.standard_normal(shape[1:])
    innovation = math.sqrt(1 - correlation ** 2)
    for t in range(1, shape[0]):
        out[t] = correlation * out[t - 1] + innovation * rng.standard_normal(shape[1:])
    return out


def film(name: str, cycles: int, body: BodyModel, filming: Filming = Filming(), seed: int = 0,
         betas: np.ndarray | None = None) -> FilmedClip:
    """Films a DeepMimic clip (see the module docstring)."""
    rng = np.random.default_rng(seed)
    rotations, position, fps = looped(name, cycles)
    betas_t = torch.zeros(body.num_betas) if betas is None else torch.as_tensor(betas, dtype=torch.float32)
    rest = body.rest_keypoints(betas_t[None])
    offsets = rest_offsets(rest, SMPL_TREE).expand(len(rotations), -1, -1).double()
    rotations = rotations.double()

    # World: y up. Turn the clip to its heading, centre it, stand its lowest foot on y = 0.
    yaw = roma.rotvec_to_rotmat(torch.tensor([0.0, math.radians(filming.heading_deg), 0.0], dtype=torch.float64))
    position = position.double() @ yaw.T
    position = position - position.mean(0) * torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    rotations[:, 0] = yaw @ rotations[:, 0]
    transl = position - offsets[:, 0]
    _, keypoints = forward_kinematics(rotations, offsets, transl, SMPL_TREE)
    clearance = foot_clearance(rest.double())[0]
    floor_y = float((keypoints[:, list(FOOT_KEYPOINTS), 1] - clearance).min())

    # Camera: at the given height above the floor, looking down by the tilt.
    tilt = math.radians(filming.tilt_deg)
    centre = torch.tensor([0.0, floor_y + filming.height, filming.distance], dtype=torch.float64)
    to_camera = torch.tensor([[1.0, 0.0, 0.0], [0.0, math.cos(tilt), -math.sin(tilt)],
                              [0.0, math.sin(tilt), math.cos(tilt)]], dtype=torch.float64)
    rotations[:, 0] = to_camera @ rotations[:, 0]
    root = (position - centre) @ to_camera.T
    transl = root - offsets[:, 0]
    _, keypoints = forward_kinematics(rotations, offsets, transl, SMPL_TREE)
    normal = to_camera @ torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64)
    floor = (normal.numpy(), floor_y - float(centre[1]))

    camera = PinholeCamera.centred(filming.focal_px, *filming.image_size)
    truth = keypoints.numpy()
    frames, count = truth.shape[:2]
    pixels = camera.project(keypoints).numpy() + filming.pixel_noise_px * rng.standard_normal((frames, count, 2))
    ray = truth / np.linalg.norm(truth, axis=-1, keepdims=True)
    shared = filming.ray_shared
    along = filming.ray_noise_m * (math.sqrt(shared) * _ar1((frames, 1), filming.correlation, rng)
                                   + math.sqrt(1 - shared) * _ar1((frames, count), filming.correlation, rng))
    seen = truth + along[..., None] * ray + filming.other_noise_m * _ar1((frames, count, 3), filming.correlation, rng)
    targets = seen - seen[:, :1]
    return FilmedClip(fps=fps, camera=camera, betas=betas_t.numpy(), rotations=rotations.numpy(),
                      translation=transl.numpy(), keypoints=truth, pixels=pixels, targets=targets, floor=floor,
                      clearance=clearance.numpy())


def true_contacts(clip: FilmedClip, speed: float = 0.15, height: float = 0.03) -> np.ndarray:
    """(T, 4) where the true foot keypoints rest: slower than ``speed`` m/s and within
    ``height`` m of their resting height above the floor."""
    feet = clip.keypoints[:, list(FOOT_KEYPOINTS)]
    moving = np.linalg.norm(np.gradient(feet, axis=0), axis=-1) * clip.fps
    above = feet @ clip.floor[0] - clip.floor[1] - clip.clearance
    return (moving < speed) & (above < height)


def foot_slide(feet: np.ndarray, contacts: np.ndarray, normal: np.ndarray) -> float:
    """Mean displacement along the floor between consecutive frames of a contact, metres/frame.

    Args:
        feet: (T, 4, 3); contacts: (T, 4) bool; normal: (3,) the floor's.
    """
    step = np.diff(feet, axis=0)
    step = step - (step @ normal)[..., None] * normal
    both = contacts[1:] & contacts[:-1]
    return float(np.linalg.norm(step, axis=-1)[both].mean())


def filmed_observations(clip: FilmedClip) -> Observations:
    """The clip as a regressor with SMPL's 29 keypoints (HybrIK's layout) would report it:
    metric keypoints about the hips in camera axes, their pixels, full confidence."""
    frames = len(clip.targets)
    return Observations(names=skeleton.KEYPOINT_NAMES, keypoints=to_world_axes(clip.targets),
                        confidence=np.ones((frames, skeleton.NUM_KEYPOINTS)), image=clip.pixels,
                        detected=np.ones(frames, dtype=bool), frame_indices=np.arange(frames), fps=clip.fps,
                        image_size=(int(2 * clip.camera.cx), int(2 * clip.camera.cy)))
