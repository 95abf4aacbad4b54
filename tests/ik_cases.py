"""Ground-truth IK problems: poses and shapes pushed through FK."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ikol_engine import skeleton
from ikol_engine.body import BodyModel
from ikol_engine.ik.rotations import bone_twists
from ikol_engine.skeleton.kinematics import forward_kinematics, rest_offsets
from ikol_engine.skeleton.tree import SMPL_TREE


@dataclass
class Case:
    rotations: torch.Tensor    # (B, 24, 3, 3)
    translation: torch.Tensor  # (B, 3)
    betas: torch.Tensor        # (B, N)
    globals: torch.Tensor      # (B, 24, 3, 3)
    keypoints: torch.Tensor    # (B, 29, 3)
    twist: torch.Tensor        # (B, 23)

    @property
    def confidence(self) -> torch.Tensor:
        return torch.ones(self.keypoints.shape[:2], dtype=self.keypoints.dtype)


def make_case(body: BodyModel, rotations: torch.Tensor, betas: torch.Tensor, translation: torch.Tensor) -> Case:
    offsets = rest_offsets(body.rest_keypoints(betas), SMPL_TREE)
    globals_, keypoints = forward_kinematics(rotations, offsets, translation, SMPL_TREE)
    twist = bone_twists(rotations, offsets)
    return Case(rotations, translation, betas, globals_, keypoints, twist)


def degrees(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Geodesic angle between rotation matrices, degrees."""
    import roma

    return torch.rad2deg(roma.rotmat_geodesic_distance(a, b))
