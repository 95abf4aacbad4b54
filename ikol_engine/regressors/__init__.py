"""Keypoint regressors: video frames in, 3D keypoints (and, where a backend has them, twist
and body shape) out. :func:`create_regressor` builds one from a short spec string."""
from __future__ import annotations

from collections.abc import Callable

from .base import NUM_BETAS, NUM_TWISTS, KeypointFrames, Regressor, RegressorError
from .blazepose import BlazePoseRegressor

__all__ = [
    "NUM_BETAS",
    "NUM_TWISTS",
    "BlazePoseRegressor",
    "KeypointFrames",
    "Regressor",
    "RegressorError",
    "create_regressor",
]


def _blazepose(argument: str, model_complexity: int) -> Regressor:
    if argument:
        raise ValueError(f"the blazepose regressor takes no argument, got {argument!r}")
    return BlazePoseRegressor(model_complexity=model_complexity)


# Spec name -> builder taking (the spec's text after "name:", "" if none, and the model
# complexity). A new backend is one more entry.
_BACKENDS: dict[str, Callable[[str, int], Regressor]] = {"blazepose": _blazepose}


def create_regressor(spec: str = "blazepose", model_complexity: int = 1) -> Regressor:
    """Build the regressor a spec names: ``"blazepose"``, or ``"name:argument"`` for
    backends that take one (such as a model path).

    Args:
        spec: backend name, optionally followed by ``:`` and the backend's argument.
        model_complexity: model size for backends that offer several (BlazePose: 0, 1, 2).

    Raises:
        ValueError: unknown backend (the message lists the known ones), or an argument the
            backend rejects.
        RegressorError: the backend's model cannot be loaded.
    """
    name, _, argument = spec.partition(":")
    builder = _BACKENDS.get(name.strip().lower())
    if builder is None:
        raise ValueError(f"unknown regressor {spec!r}; known: {', '.join(sorted(_BACKENDS))}")
    return builder(argument, model_complexity)
