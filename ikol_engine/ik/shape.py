"""One body shape for a whole clip, from its robust bone lengths."""
from __future__ import annotations

from typing import Any

import torch

from .. import skeleton
from ..body import BodyModel
from ..common.devices import resolve_device
from .inputs import check_targets

_CHILDREN = torch.arange(1, skeleton.NUM_KEYPOINTS)
_PARENTS = torch.tensor(skeleton.KEYPOINT_PARENTS[1:])


def fit_shape(
    targets: Any,
    confidence: Any,
    body: BodyModel | None = None,
    *,
    iterations: int = 10,
    regularization: float = 1e-4,
    device: str | torch.device = "auto",
) -> torch.Tensor:
    """Betas whose rest bone lengths match the clip's median bone lengths.

    A person's bones do not change length within a clip, so one shape is fitted to
    the per-bone median over frames (robust to the regressor's outliers) by
    Gauss-Newton on the lengths; a small ridge keeps directions that do not change
    bone lengths (girth) at the mean.

    Args:
        targets: (T, 29, 3) keypoints of one clip; confidence: (T, 29).
        body: the body model (default: the bundled body).
        regularization: ridge weight, m^2 per unit beta^2.
    Returns:
        (N,) betas, N = body.num_betas, on the device ``targets`` came on.
    """
    from .solver import default_body

    out_device = targets.device if isinstance(targets, torch.Tensor) else torch.device("cpu")
    compute = resolve_device(device)
    body = body if body is not None else default_body()
    targets, confidence = check_targets(targets, confidence, compute)
    children, parents = _CHILDREN.to(compute), _PARENTS.to(compute)

    lengths = (targets[:, children] - targets[:, parents]).norm(dim=-1)        # (T, 28)
    seen = (confidence[:, children] > 0) & (confidence[:, parents] > 0)
    observed = torch.nanmedian(torch.where(seen, lengths, torch.full_like(lengths, float("nan"))), dim=0).values
    used = torch.isfinite(observed)
    observed = torch.where(used, observed, torch.zeros_like(observed))

    n = body.num_betas
    eye = torch.eye(n, dtype=targets.dtype, device=compute)
    rest_template = body.rest_keypoints(torch.zeros(1, n, dtype=targets.dtype, device=compute))[0]
    rest_dirs = body.rest_keypoints(eye) - rest_template                        # (N, 29, 3)
    bone_template = rest_template[children] - rest_template[parents]            # (28, 3)
    bone_dirs = (rest_dirs[:, children] - rest_dirs[:, parents]).permute(1, 2, 0)  # (28, 3, N)

    betas = targets.new_zeros(n)
    for _ in range(iterations):
        bones = bone_template + bone_dirs @ betas
        length = bones.norm(dim=-1)
        residual = (length - observed) * used
        jac = ((bones / length[:, None])[:, None, :] @ bone_dirs)[:, 0] * used[:, None]  # (28, N)
        normal = jac.T @ jac + regularization * eye
        betas = betas - torch.linalg.solve(normal, jac.T @ residual + regularization * betas)
    return betas.to(out_device)
