"""Checking and normalising what callers pass to the IK, with errors that say what is wrong."""
from __future__ import annotations

from typing import Any

import torch

from .. import skeleton


def as_tensor(name: str, value: Any, shape: tuple[int | None, ...], dtype: torch.dtype,
              device: torch.device) -> torch.Tensor:
    """``value`` as a tensor of ``shape`` (None = any size), or a ValueError naming ``name``."""
    try:
        tensor = torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise ValueError(f"{name} must be a tensor or array ({error})") from None
    if tensor.is_complex() or tensor.dtype == torch.bool:
        raise ValueError(f"{name} must be real-valued, got {tensor.dtype}")
    if tensor.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, tensor.shape)):
        want = "(" + ", ".join("B" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {want}, got {tuple(tensor.shape)}")
    return tensor.to(device=device, dtype=dtype)


def frames_where(mask: torch.Tensor, limit: int = 8) -> str:
    frames = torch.nonzero(mask).flatten().tolist()
    more = f" and {len(frames) - limit} more" if len(frames) > limit else ""
    return ", ".join(map(str, frames[:limit])) + more


def check_targets(targets: Any, confidence: Any, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (targets (B, 29, 3), confidence (B, 29)) with unobserved targets zeroed."""
    raw = torch.as_tensor(targets) if not isinstance(targets, torch.Tensor) else targets
    dtype = raw.dtype if raw.dtype in (torch.float32, torch.float64) else torch.float32
    k = skeleton.NUM_KEYPOINTS
    targets = as_tensor("targets", targets, (None, k, 3), dtype, device)
    if targets.shape[0] == 0:
        raise ValueError("targets is empty: at least one frame is needed")
    confidence = as_tensor("confidence", confidence, (targets.shape[0], k), dtype, device)
    if not torch.isfinite(confidence).all() or (confidence < 0).any():
        raise ValueError("confidence must be finite and >= 0")
    bad = (~torch.isfinite(targets).all(-1)) & (confidence > 0)
    if bad.any():
        raise ValueError(f"targets contain NaN or infinite values at keypoints with confidence > 0 "
                         f"(frames {frames_where(bad.any(-1))}); set their confidence to 0 to ignore them")
    empty = (confidence > 0).sum(-1) == 0
    if empty.any():
        raise ValueError(f"no keypoint has confidence > 0 in frames {frames_where(empty)}: "
                         "such frames have no person to solve for")
    targets = torch.where(confidence[..., None] > 0, targets, torch.zeros_like(targets))
    return targets, confidence
