"""One body shape for a whole clip, from its robust bone lengths."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import skeleton
from ..body import BodyModel
from ..common.devices import resolve_device
from .inputs import check_targets


def _rigid_pairs() -> tuple[tuple[int, int], ...]:
    """Keypoint pairs whose distance no pose changes: every bone (parent, child), and
    every two children of one joint (the pelvis's hips and Spine1, the chest's neck and
    collars), which sit on the same rigid segment."""
    parents = skeleton.KEYPOINT_PARENTS
    pairs = [(parents[k], k) for k in range(1, len(parents))]
    for j in range(skeleton.NUM_JOINTS):
        children = [k for k in range(len(parents)) if parents[k] == j]
        pairs += [(a, b) for i, a in enumerate(children) for b in children[i + 1:]]
    return tuple(pairs)


#: The (P,) rigid pairs the shape fit matches, as (keypoint, keypoint).
RIGID_PAIRS = _rigid_pairs()


@dataclass(frozen=True)
class DistanceFit:
    """How one rigid distance of the fitted body compares with the clip's.

    Attributes:
        name: ``"first-second"`` keypoint names, e.g. ``"L_Hip-L_Knee"``;
        clip_m: the clip's median distance; body_m: the fitted body's rest distance.
    """

    name: str
    clip_m: float
    body_m: float

    @property
    def error_m(self) -> float:
        return self.body_m - self.clip_m


def _pairs_for(confidence: torch.Tensor) -> torch.Tensor:
    """(P, 2) the rigid pairs, plus a span over each joint no frame sees that has one
    child: nothing but the prior moves such a joint, so it stays near rest, and a body
    whose span is longer than the clip's (a foot longer than from ankle to toe) could
    only fold it to reach.

    Args:
        confidence: (T, 29).
    """
    parents = skeleton.KEYPOINT_PARENTS
    seen = (confidence > 0).any(dim=0).tolist()
    spans = []
    for k, p in enumerate(parents):
        if p > 0 and not seen[p] and parents.count(p) == 1 and seen[k] and seen[parents[p]]:
            spans.append((parents[p], k))
    return torch.tensor(RIGID_PAIRS + tuple(spans), device=confidence.device)


def _clip_distances(targets: torch.Tensor, confidence: torch.Tensor, pairs: torch.Tensor
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Median over frames of each pair's distance where both ends are seen.

    Args:
        targets: (T, 29, 3); confidence: (T, 29); pairs: (P, 2).
    Returns:
        (P,) medians (0 where never seen) and (P,) bool, seen at least once.
    """
    lengths = (targets[:, pairs[:, 1]] - targets[:, pairs[:, 0]]).norm(dim=-1)   # (T, P)
    seen = (confidence[:, pairs[:, 1]] > 0) & (confidence[:, pairs[:, 0]] > 0)
    observed = torch.nanmedian(torch.where(seen, lengths, torch.full_like(lengths, float("nan"))), dim=0).values
    used = torch.isfinite(observed)
    return torch.where(used, observed, torch.zeros_like(observed)), used


def _body_distances(body: BodyModel, betas: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """(P,) rest distances of the pairs (P, 2) for betas (N,)."""
    rest = body.rest_keypoints(betas[None])[0]
    return (rest[pairs[:, 1]] - rest[pairs[:, 0]]).norm(dim=-1)


def fit_shape(
    targets: Any,
    confidence: Any,
    body: BodyModel | None = None,
    *,
    iterations: int = 10,
    regularization: float = 1e-6,
    device: str | torch.device = "auto",
) -> torch.Tensor:
    """Betas whose rest skeleton matches the clip's median bone lengths.

    A person's bones do not change length within a clip, and neither do the distances
    between joints on one rigid segment (hip to hip, collar to collar); over a joint no
    frame sees, with one child (a foot's ball between ankle and toe), the span is matched
    too. One shape is
    fitted to the median of each such distance over frames (robust to the regressor's
    outliers) by Gauss-Newton. The prior treats every beta as N(0, 1): ``regularization``
    is the variance of a median distance, so directions the keypoints cannot see (girth;
    which way a single bone leaves its parent, which the pose absorbs) stay at the mean
    and each centimetre a skeleton direction moves must buy back its cost in distances.

    Args:
        targets: (T, 29, 3) keypoints of one clip; confidence: (T, 29).
        body: the body model (default: the bundled body).
        regularization: prior weight, m^2 per unit beta^2: the variance of a median
            distance. The default, (1 mm)^2, suits exact keypoints (mocap); the video
            pipeline uses (1 cm)^2 for a regressor's (``track.solve``).
    Returns:
        (N,) betas, N = body.num_betas, on the device ``targets`` came on.
    """
    from .solver import default_body

    out_device = targets.device if isinstance(targets, torch.Tensor) else torch.device("cpu")
    compute = resolve_device(device)
    body = body if body is not None else default_body()
    targets, confidence = check_targets(targets, confidence, compute)
    pairs = _pairs_for(confidence)
    observed, used = _clip_distances(targets, confidence, pairs)

    n = body.num_betas
    eye = torch.eye(n, dtype=targets.dtype, device=compute)
    rest_template = body.rest_keypoints(torch.zeros(1, n, dtype=targets.dtype, device=compute))[0]
    rest_dirs = body.rest_keypoints(eye) - rest_template                        # (N, 29, 3)
    bone_template = rest_template[pairs[:, 1]] - rest_template[pairs[:, 0]]     # (P, 3)
    bone_dirs = (rest_dirs[:, pairs[:, 1]] - rest_dirs[:, pairs[:, 0]]).permute(1, 2, 0)  # (P, 3, N)

    betas = targets.new_zeros(n)
    for _ in range(iterations):
        bones = bone_template + bone_dirs @ betas
        length = bones.norm(dim=-1)
        residual = (length - observed) * used
        jac = ((bones / length[:, None])[:, None, :] @ bone_dirs)[:, 0] * used[:, None]  # (P, N)
        normal = jac.T @ jac + regularization * eye
        betas = betas - torch.linalg.solve(normal, jac.T @ residual + regularization * betas)
    return betas.to(out_device)


def shape_fit_report(targets: Any, confidence: Any, betas: torch.Tensor, body: BodyModel | None = None
                     ) -> list[DistanceFit]:
    """Per rigid distance the clip shows, the clip's median against the body's.

    Args:
        targets: (T, 29, 3); confidence: (T, 29); betas: (N,) the body's shape.
    Returns:
        one :class:`DistanceFit` per pair the fit matched (seen in some frame): the
        rigid pairs in :data:`RIGID_PAIRS` order, then the spans over unseen joints.
    """
    from .solver import default_body

    body = body if body is not None else default_body()
    targets, confidence = check_targets(targets, confidence, torch.device("cpu"))
    pairs = _pairs_for(confidence)
    observed, used = _clip_distances(targets, confidence, pairs)
    fitted = _body_distances(body, torch.as_tensor(betas, dtype=targets.dtype).cpu(), pairs)
    names = skeleton.KEYPOINT_NAMES
    return [DistanceFit(f"{names[a]}-{names[b]}", float(observed[p]), float(fitted[p]))
            for p, (a, b) in enumerate(pairs.tolist()) if bool(used[p])]
