"""Fixtures for the Blender side: a solved clip written as a motion file, and a clean bpy.

Blender reads and writes its user folder on start; it points at a throwaway folder here,
set before any test module imports bpy.
"""
from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import roma
import torch

from ikol_engine import skeleton
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.motion import Motion, write_motion
from ikol_engine.samples.synthetic import random_betas, random_pose
from ikol_engine.skeleton.tree import SMPL_TREE

_USER_RESOURCES = tempfile.mkdtemp(prefix="ikol-blender-user-")
os.environ["BLENDER_USER_RESOURCES"] = _USER_RESOURCES
atexit.register(shutil.rmtree, _USER_RESOURCES, ignore_errors=True)


_EXIT_STATUS = pytest.StashKey[int]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config.stash[_EXIT_STATUS] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """On bpy 4.2 leave without the interpreter's teardown, after pytest has reported.

    bpy 4.2.23 used as a module crashes (SIGSEGV) in its own teardown at exit once the
    Refine settings PropertyGroup has been registered and unregistered from
    ``ikol_blender.ui.operators``, even in a three-line script (the same class from a
    top-level module did not crash); bpy 5.0.1 does not. The session's status stays the
    exit code.
    """
    import bpy

    if bpy.app.version < (4, 3, 0) and _EXIT_STATUS in config.stash:
        shutil.rmtree(_USER_RESOURCES, ignore_errors=True)
        for stream in (sys.stdout, sys.stderr):
            stream.flush()
        os._exit(config.stash[_EXIT_STATUS])


FRAMES = 40
FIRST_SOURCE_FRAME = 5
INVALID = (0, 3, 17, 18, 30)


@dataclass(frozen=True)
class Clip:
    """A motion and its truth from the engine (float64 torch arrays, SMPL axes)."""

    motion: Motion
    rotations: torch.Tensor    # (T, 24, 3, 3)
    translation: torch.Tensor  # (T, 3)
    betas: torch.Tensor        # (1, N)
    joints: np.ndarray         # (T, 24, 3) engine FK


def make_clip(body, seed: int = 3, frames: int = FRAMES) -> Clip:
    """Random natural poses on a random shape, walking off, quaternion signs scrambled."""
    generator = torch.Generator().manual_seed(seed)
    rotations = random_pose(frames, generator, dtype=torch.float64)
    # A random person: the phenotype directions. Skeleton directions drawn at random give
    # lopsided bodies (one leg longer, the pelvis leaning) no person has.
    betas = random_betas(1, 10, generator, dtype=torch.float64)
    steps = torch.randn(frames, 3, generator=generator, dtype=torch.float64) * 0.05
    translation = torch.cumsum(steps, dim=0) + torch.tensor([0.3, 0.9, -2.0], dtype=torch.float64)
    rest = body.rest_keypoints(betas)
    _, keypoints = forward_kinematics(rotations, rest_offsets(rest.expand(frames, -1, -1), SMPL_TREE), translation,
                                      SMPL_TREE)
    quaternions = roma.rotmat_to_unitquat(rotations)[..., [3, 0, 1, 2]].numpy()  # xyzw -> wxyz
    # A file may hold either sign of each quaternion; the importer must make them continuous.
    signs = np.where(np.random.default_rng(seed).random(quaternions.shape[:2]) < 0.5, -1.0, 1.0)
    rest_mesh = body.vertices(torch.eye(3, dtype=torch.float64).expand(1, 24, 3, 3), betas,
                              torch.zeros(1, 3, dtype=torch.float64))[0]
    valid = np.ones(frames, dtype=bool)
    valid[list(INVALID)] = False
    residual = np.random.default_rng(seed + 1).uniform(2.0, 40.0, frames)
    f32 = np.float32
    motion = Motion(
        fps=29.97,
        frame_indices=np.arange(frames, dtype=np.int64) + FIRST_SOURCE_FRAME,
        joint_names=np.array(skeleton.JOINT_NAMES),
        parents=np.array(skeleton.PARENTS, dtype=np.int64),
        rest_joints=rest[0, :24].numpy().astype(f32),
        betas=betas[0].numpy().astype(f32),
        mesh_vertices=rest_mesh.numpy().astype(f32),
        mesh_faces=body.faces.astype(np.int64),
        skin_weights=body.skin_weights.astype(f32),
        rotations=(quaternions * signs[..., None]).astype(f32),
        translation=translation.numpy().astype(f32),
        valid=valid,
        residual_mm=residual.astype(f32),
        targets=keypoints.numpy().astype(f32),
        target_confidence=np.ones((frames, skeleton.NUM_KEYPOINTS), f32),
        twist=np.zeros((frames, skeleton.NUM_TWISTS), f32),
        twist_confidence=np.zeros((frames, skeleton.NUM_TWISTS), f32),
        regressor_name="none",
        regressor_keypoint_names=np.array(skeleton.KEYPOINT_NAMES),
        regressor_keypoints=keypoints.numpy().astype(f32),
        regressor_confidence=np.ones((frames, skeleton.NUM_KEYPOINTS), f32),
        image_keypoints=np.zeros((frames, skeleton.NUM_KEYPOINTS, 2), f32),
        options={},
        source_video="jump_off_box.mp4",
        source_sha256="00" * 32,
    )
    return Clip(motion, rotations, translation, betas, keypoints[:, :24].numpy())


@pytest.fixture(scope="session")
def clip(body) -> Clip:
    return make_clip(body)


@pytest.fixture
def motion_file(clip, tmp_path) -> Path:
    return write_motion(tmp_path / "jump_off_box.npz", clip.motion)


@pytest.fixture
def blank():
    """A factory-fresh, empty Blender session; yields bpy.context."""
    import bpy

    bpy.ops.wm.read_factory_settings(use_empty=True)
    yield bpy.context
    bpy.ops.wm.read_factory_settings(use_empty=True)
