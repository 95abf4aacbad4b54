"""Choosing the torch device from a user's setting."""
from __future__ import annotations

import re

import torch

_DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")
_NAMES_HINT = "use 'auto', 'cpu', 'cuda' or 'cuda:N'"


def check_device_name(device: str) -> None:
    """Refuses a device setting that is not ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.

    Only the spelling: whether that device exists here is :func:`resolve_device`'s
    question, which needs torch to look.

    Raises:
        ValueError: not a string, or not one of those names.
    """
    if not isinstance(device, str) or _DEVICE_NAME.fullmatch(device) is None:
        raise ValueError(f"unknown device {device!r}: {_NAMES_HINT}")


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.

    Raises:
        ValueError: an unknown name, or CUDA asked for where it is not available.
    """
    if isinstance(device, str) and device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"unknown device {device!r}: {_NAMES_HINT}") from error
    if resolved.type not in ("cpu", "cuda"):
        raise ValueError(f"unsupported device {device!r}: {_NAMES_HINT}")
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but this torch build sees no CUDA GPU "
                             f"(torch {torch.__version__}); use 'cpu' or install a CUDA build of torch")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} asked for, but only {torch.cuda.device_count()} GPU(s) are visible")
    return resolved
