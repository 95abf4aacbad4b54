"""Swing and twist of rotations about a bone axis (HybrIK's decomposition)."""
from __future__ import annotations

import torch
import roma

from .. import skeleton


def swing_between(source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The smallest rotation taking direction ``source`` onto direction ``target``.

    Args:
        source: (..., 3) directions (need not be unit length).
        target: (..., 3) directions.
    Returns:
        (..., 3, 3) rotation matrices; identity where either direction is zero.
    """
    u = torch.nn.functional.normalize(source, dim=-1)
    v = torch.nn.functional.normalize(target, dim=-1)
    # Half-angle quaternion (u x v, 1 + u.v): smooth everywhere except at 180 degrees,
    # where we turn about any axis perpendicular to u instead.
    cos = (u * v).sum(-1, keepdim=True)
    helper = torch.where(u[..., :1].abs() < 0.9, u.new_tensor([1.0, 0, 0]), u.new_tensor([0, 1.0, 0]))
    half_turn = torch.cat([torch.cross(u, helper.expand_as(u), dim=-1), torch.zeros_like(cos)], dim=-1)
    quat = torch.cat([torch.cross(u, v, dim=-1), 1.0 + cos], dim=-1)
    quat = torch.where(1.0 + cos > 1e-6, quat, half_turn)
    degenerate = (quat.square().sum(-1, keepdim=True) < 1e-20)
    quat = torch.where(degenerate, torch.tensor([0, 0, 0, 1.0], dtype=u.dtype, device=u.device), quat)
    return roma.unitquat_to_rotmat(torch.nn.functional.normalize(quat, dim=-1))


def twist_rotation(axis: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotation by ``angle`` (...,) radians about unit ``axis`` (..., 3) -> (..., 3, 3)."""
    return roma.rotvec_to_rotmat(axis * angle[..., None])


def twist_angle(quat: torch.Tensor, axis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Twist angle of ``rotation = swing @ twist(axis)`` and its derivative.

    The derivative is with respect to a right increment ``rotation @ exp(delta)``,
    which is how the Gauss-Newton solver updates rotations.

    Args:
        quat: (..., 4) the rotations as unit quaternions, roma's xyzw order.
        axis: (..., 3) unit axes.
    Returns:
        angle: (...,) in (-pi, pi]; gradient: (..., 3) d angle / d delta.
    """
    v, w = quat[..., :3], quat[..., 3]
    s = (v * axis).sum(-1)
    angle = 2.0 * torch.atan2(s, w)
    angle = torch.atan2(torch.sin(angle), torch.cos(angle))
    # From q' = q * (1, delta/2): ds = delta.(w a + a x v)/2 and dw = -delta.v/2.
    numerator = w[..., None] * (w[..., None] * axis + torch.cross(axis, v, dim=-1)) + s[..., None] * v
    gradient = numerator / (s.square() + w.square()).clamp(min=1e-12)[..., None]
    return angle, gradient


def wrap_angle(angle: torch.Tensor) -> torch.Tensor:
    """Angles mapped into (-pi, pi]."""
    return torch.atan2(torch.sin(angle), torch.cos(angle))


def bone_axes(offsets: torch.Tensor) -> torch.Tensor:
    """(B, K, 3) rest offsets -> (B, 23, 3) unit rest bone axes of joints 1..23."""
    return torch.nn.functional.normalize(offsets[:, list(skeleton.BONE_CHILD[1:])], dim=-1)


def bone_twists(rotations: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
    """Twist angles (B, 23) of local rotations (B, 24, 3, 3) about their rest bones."""
    angle, _ = twist_angle(roma.rotmat_to_unitquat(rotations[:, 1:]), bone_axes(offsets))
    return angle
