"""Keypoint regressors: video frames in, 3D keypoints (and, where a backend has them, twist
and body shape) out. One subpackage per backend, each with its own reading of its
keypoints for the track stage (a :class:`~ikol_engine.observations.KeypointLayout`).
:func:`create_regressor` builds one from a short spec string; :func:`layout_for` finds
the layout of stored keypoints (``refine`` has no regressor, only its keypoints)."""
from __future__ import annotations

from collections.abc import Callable, Sequence

from ..observations import KeypointLayout
from ..track.options import TrackError
from .base import NUM_BETAS, NUM_TWISTS, KeypointFrames, Regressor, RegressorError
from .blazepose import BLAZEPOSE_LAYOUT, BlazePoseRegressor
from .hybrik.layout import HYBRIK_LAYOUT

__all__ = [
    "NUM_BETAS",
    "NUM_TWISTS",
    "BlazePoseRegressor",
    "KeypointFrames",
    "Regressor",
    "RegressorError",
    "create_regressor",
    "layout_for",
]

_LAYOUTS: tuple[KeypointLayout, ...] = (BLAZEPOSE_LAYOUT, HYBRIK_LAYOUT)


def _blazepose(argument: str, model_complexity: int, batch_size: int | None) -> Regressor:
    if argument:
        raise ValueError(f"the blazepose regressor takes no argument, got {argument!r}")
    return BlazePoseRegressor(model_complexity=model_complexity)


def _onnx(argument: str, model_complexity: int, batch_size: int | None) -> Regressor:
    if not argument:
        raise ValueError("the onnx regressor needs the model file: onnx:PATH (write one with "
                         "`ikol-engine export-onnx --checkpoint CKPT -o PATH`)")
    # Imported here: the ONNX backend is optional and pulls in onnxruntime.
    from .hybrik.onnx_regressor import OnnxRegressor

    return OnnxRegressor(argument, model_complexity=model_complexity, batch_size=batch_size)


# Spec name -> builder taking (the spec's text after "name:", "" if none, the model
# complexity, and the frames per network run or None). A new backend is one more entry.
_BACKENDS: dict[str, Callable[[str, int, int | None], Regressor]] = {"blazepose": _blazepose, "onnx": _onnx}


def create_regressor(spec: str = "blazepose", model_complexity: int = 1, batch_size: int | None = None) -> Regressor:
    """Build the regressor a spec names: ``"blazepose"``, or ``"name:argument"`` for
    backends that take one, such as ``"onnx:regressor.onnx"`` (HybrIK's ResNet-34,
    exported by ``ikol-engine export-onnx``).

    Args:
        spec: backend name, optionally followed by ``:`` and the backend's argument.
        model_complexity: model size for backends that offer several (BlazePose: 0, 1, 2;
            the ONNX backend uses BlazePose for its person boxes).
        batch_size: frames per network run, for backends that batch (ONNX); None lets
            the backend choose.

    Raises:
        ValueError: unknown backend (the message lists the known ones), or an argument the
            backend rejects.
        RegressorError: the backend's model cannot be loaded.
    """
    name, _, argument = spec.partition(":")
    builder = _BACKENDS.get(name.strip().lower())
    if builder is None:
        raise ValueError(f"unknown regressor {spec!r}; known: {', '.join(sorted(_BACKENDS))}")
    return builder(argument, model_complexity, batch_size)


def layout_for(names: Sequence[str]) -> KeypointLayout:
    """The layout whose keypoints have these names.

    Raises:
        TrackError: keypoints no regressor here gives.
    """
    for layout in _LAYOUTS:
        if tuple(names) == tuple(layout.names):
            return layout
    known = ", ".join(f"{layout.name} ({len(layout.names)})" for layout in _LAYOUTS)
    raise TrackError(f"{len(names)} keypoints ({', '.join(list(names)[:3])}, ...) are none of the known "
                     f"regressors' keypoints: {known}")
