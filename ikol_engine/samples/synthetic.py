"""Plausible random poses and shapes, for tests and benchmarks of the IK.

Each joint rotates about a random axis by a random angle whose spread follows how far
that joint moves in life (knees and elbows a lot, the spine and collars a little),
with a guard that keeps knees and elbows bending the anatomical way.
"""
from __future__ import annotations

import torch
import roma

from .. import skeleton

# Angle spread (radians) per joint, in SMPL order.
_SPREAD = torch.tensor([
    0.6, 0.5, 0.5, 0.2, 0.6, 0.6, 0.15, 0.3, 0.3, 0.15, 0.15, 0.15,
    0.2, 0.15, 0.15, 0.3, 0.5, 0.5, 0.6, 0.6, 0.4, 0.4, 0.15, 0.15,
])
_HINGES = {4: (1.0, 0.0, 0.0), 5: (1.0, 0.0, 0.0), 18: (0.0, -1.0, 0.0), 19: (0.0, 1.0, 0.0)}


def random_pose(batch: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(batch, 24, 3, 3) local rotations of plausible random poses."""
    axes = torch.nn.functional.normalize(torch.randn(batch, skeleton.NUM_JOINTS, 3, generator=generator), dim=-1)
    angles = torch.randn(batch, skeleton.NUM_JOINTS, 1, generator=generator) * _SPREAD[:, None]
    rotvec = axes * angles
    for joint, axis in _HINGES.items():
        # Knees flex backwards about +x; elbows bring the forearm forwards (+z), one way only.
        flexion = torch.rand(batch, 1, generator=generator) * 2.0
        rotvec[:, joint] = 0.1 * rotvec[:, joint] + flexion * torch.tensor(axis)
    return roma.rotvec_to_rotmat(rotvec.to(dtype))


def random_betas(batch: int, num_betas: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(batch, num_betas) shapes drawn from the shape space's unit normal, clipped at 2.5."""
    return (torch.randn(batch, num_betas, generator=generator)).clamp(-2.5, 2.5).to(dtype)
