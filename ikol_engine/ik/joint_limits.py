"""One-sided bounds on how far joints turn about chosen axes (a finger never bends back).

Each bound is on the twist angle of a joint's local rotation about an axis in the
joint's rest frame (:func:`.rotations.twist_angle`): about a hinge axis that is the
hinge's flexion. Inside its range a bound costs nothing; beyond it, ``weight`` per
rad^2 of the excess, a smooth quadratic wall the Gauss-Newton steps see.
"""
from __future__ import annotations

from dataclasses import dataclass

import roma
import torch

from .rotations import twist_angle


@dataclass(frozen=True)
class JointLimits:
    """L bounds, several per joint allowed.

    Attributes:
        joints: (L,) joint index of each bound (never the root, 0).
        axes: (L, 3) unit axes in the joint's rest frame; low, high: (L,) radians.
        weight: m^2 of keypoint error worth one rad^2 beyond a bound.
    """

    joints: torch.Tensor
    axes: torch.Tensor
    low: torch.Tensor
    high: torch.Tensor
    weight: float

    def to(self, device: torch.device, dtype: torch.dtype) -> "JointLimits":
        return JointLimits(self.joints.to(device), self.axes.to(device, dtype), self.low.to(device, dtype),
                           self.high.to(device, dtype), self.weight)

    def excess(self, quat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """How far each bound is passed, and its derivative.

        Args:
            quat: (B, J-1, 4) local rotations of joints 1..J-1, unit quaternions (roma's xyzw).
        Returns:
            excess: (B, L) radians beyond the range (0 inside it);
            gradient: (B, L, 3) d excess / d delta for a right increment ``R exp(delta)``.
        """
        angle, d_angle = twist_angle(quat[:, self.joints - 1], self.axes.expand(quat.shape[0], -1, -1))
        excess = angle - torch.minimum(torch.maximum(angle, self.low), self.high)
        return excess, d_angle * (excess != 0).to(angle.dtype)[..., None]

    def project(self, rotations: torch.Tensor) -> torch.Tensor:
        """The rotations turned back into their ranges, one bound after another.

        ``R exp(d a)`` adds exactly ``d`` to R's twist about ``a``, so each bound is met
        by turning about its own axis alone.

        Args:
            rotations: (B, J, 3, 3) local rotations.
        Returns:
            (B, J, 3, 3).
        """
        turned = list(rotations.unbind(1))  # not in place: gradients flow through every turn
        for joint, axis, low, high in zip(self.joints.tolist(), self.axes, self.low, self.high):
            angle, _ = twist_angle(roma.rotmat_to_unitquat(turned[joint]), axis.expand(rotations.shape[0], 3))
            back = torch.minimum(torch.maximum(angle, low), high) - angle
            turned[joint] = turned[joint] @ roma.rotvec_to_rotmat(back[:, None] * axis)
        return torch.stack(turned, 1)
