"""Loading a released HybrIK/IKOL ResNet-34 checkpoint into :class:`~.network.HybrIKNetwork`.

Checkpoints are read with ``torch.load(..., weights_only=True)``: tensors and plain
containers only, so opening one cannot run code. A file holds either the state dict
itself or a dict with it under ``"model"`` or ``"state_dict"``; keys saved from a
``DataParallel`` wrapper carry a ``module.`` prefix, which is dropped.

Keys that are expected but not used (everything else must match exactly):

* ``smpl.*``: the buffers of HybrIK's SMPL layer (template, blend shapes, regressors,
  kinematic tree). They are SMPL's body model data, used by HybrIK's own IK and mesh;
  here our IK runs on the user's body model instead, and the network's weights do not
  depend on them.
* ``decsigma.*``: a per-keypoint uncertainty head that later versions of the model
  code build. Only the Laplace loss of the HRNet models trains it; the ResNet-34
  configuration trains with an L1 loss, which leaves it at its random start, so
  confidence comes from the heatmaps instead (see :class:`~.network.HybrIKNetwork`).
"""
from __future__ import annotations

import pickle
from collections.abc import Mapping
from pathlib import Path

import torch

from .network import HybrIKNetwork

#: Key prefixes present in released checkpoints that the network does not use (see above).
IGNORED_PREFIXES: tuple[str, ...] = ("smpl.", "decsigma.")
_WRAPPERS = ("model", "state_dict")
_LISTED = 12  # names shown per kind of problem; the rest are counted


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, or not the ResNet-34 regressor's weights."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint file, unwrapped (see the module docstring).

    Raises:
        CheckpointError: no such file, a file ``weights_only`` refuses, or no state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, AttributeError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint of plain tensors ({first})") from None
    for key in _WRAPPERS:
        if isinstance(raw, Mapping) and isinstance(raw.get(key), Mapping):
            raw = raw[key]
            break
    if not isinstance(raw, Mapping) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        raise CheckpointError(f"{path}: holds no state dict (a mapping of parameter names to tensors)")
    state = {str(k): v for k, v in raw.items()}
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def check_state_dict(state: Mapping[str, torch.Tensor], network: HybrIKNetwork) -> dict[str, torch.Tensor]:
    """The entries of ``state`` the network takes, after checking that they fit it exactly.

    Returns:
        ``state`` without the ignored keys.
    Raises:
        CheckpointError: listing missing keys, unexpected keys and shape mismatches.
    """
    used = {k: v for k, v in state.items() if not k.startswith(IGNORED_PREFIXES)}
    expected = network.state_dict()
    missing = sorted(set(expected) - set(used))
    unexpected = sorted(set(used) - set(expected))
    mismatched = sorted(f"{k} {tuple(used[k].shape)} (expected {tuple(expected[k].shape)})"
                        for k in set(used) & set(expected) if used[k].shape != expected[k].shape)
    problems = [(label, names) for label, names in (("missing", missing), ("unexpected", unexpected),
                                                     ("wrong shape", mismatched)) if names]
    if problems:
        lines = []
        for label, names in problems:
            more = f" ... and {len(names) - _LISTED} more" if len(names) > _LISTED else ""
            lines.append(f"  {label} ({len(names)}): {', '.join(names[:_LISTED])}{more}")
        raise CheckpointError("the checkpoint does not fit HybrIK's ResNet-34 regressor (with camera head):\n"
                              + "\n".join(lines))
    return used


def load_checkpoint(path: str | Path) -> HybrIKNetwork:
    """The network with a checkpoint's weights, in eval mode, on the CPU.

    Raises:
        CheckpointError: see :func:`read_state_dict` and :func:`check_state_dict`.
    """
    network = HybrIKNetwork()
    try:
        used = check_state_dict(read_state_dict(path), network)
    except CheckpointError as error:
        message = str(error)
        raise CheckpointError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    network.load_state_dict(used, strict=True)
    return network.eval()
