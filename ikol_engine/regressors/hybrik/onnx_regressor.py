"""The paper's regressor through onnxruntime: HybrIK's ResNet-34 exported by ``ikol-engine export-onnx``.

Per frame: a person box (from BlazePose's landmarks on the same frame, or the last box
found), the original's square crop and normalisation (:mod:`ikol_engine.regressors.hybrik.crop`),
the network on batches of crops, and the original's decoding (:mod:`ikol_engine.regressors.hybrik.decode`).

Results, for :class:`~.base.KeypointFrames`:

* ``keypoint_names``: :data:`ikol_engine.skeleton.KEYPOINT_NAMES`, HybrIK's 29 (SMPL's 24
  joints, head top, middle fingertips, big toes).
* ``keypoints``: metres relative to the pelvis, camera axes: x to the image's right, y
  down, z away from the camera (BlazePose's axes, so the same ``to_world_axes`` applies).
* ``image_keypoints``: pixels of the full frame; ``confidence``: from each heatmap's
  sharpness (see :class:`ikol_engine.regressors.hybrik.network.HybrIKNetwork`).
* ``twist``: radians per joint 1..23, the IK's convention (checked against HybrIK's IK,
  see :func:`ikol_engine.regressors.hybrik.decode.twist_from_phi`); ``twist_confidence``: the
  length of the predicted (cos, sin) pair, at most 1.
* ``betas``: SMPL shape, the per-coordinate median over the call's frames with a person.

The execution provider is CUDA where onnxruntime lists it and a session on it really
runs (a one-frame trial), else the CPU; :attr:`OnnxRegressor.provider` says which, and
a line on stderr too. Frames go through the network ``batch_size`` at a time.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ... import skeleton
from . import conventions as hc
from .crop import box_around, crop_box, crop_images
from .decode import crop_to_image, crop_to_metric, twist_from_phi
from .network import INPUT_NAME, OUTPUT_NAMES
from ..base import KeypointFrames, Regressor, RegressorError

__all__ = ["BlazePoseBoxes", "BoxSource", "OnnxRegressor", "create_session"]

CUDA, CPU = "CUDAExecutionProvider", "CPUExecutionProvider"
#: Landmark boxes grow by this share of their size on each side: landmarks are joints
#: and face points, while a detector's box (what the network was trained on) reaches
#: the top of the head, the fingertips and the soles.
LANDMARK_BOX_MARGIN = 0.1
#: Frames per network run when none is asked for. On CUDA, large batches keep the GPU
#: busy. On the CPU batching gained nothing on the 2-core test machine (10.7 frames/s
#: at batch 1, 11.4 at 16, 10.6 at 64: each frame's 29x64^3 heatmap volume is 30 MB, so
#: a batch's no longer stays in the caches), and single frames keep memory low.
DEFAULT_BATCH = {CUDA: 64, CPU: 1}
#: Frames a person box is carried over when BlazePose loses the person (the original's
#: demo keeps tracking its last box), about half a second at 30 fps.
MAX_BOX_REUSE = 15


class BoxSource(Protocol):
    """Where the person is: one box per frame, in video order."""

    def __call__(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes (N, 4) x0, y0, x1, y1 in pixels, and found (N,) bool (rows of misses are ignored)."""

    def reset(self) -> None: ...

    def close(self) -> None: ...


class BlazePoseBoxes:
    """Person boxes around BlazePose's image landmarks (tracking, video mode)."""

    def __init__(self, model_complexity: int = 1) -> None:
        from ..blazepose.regressor import BlazePoseRegressor

        self._pose = BlazePoseRegressor(model_complexity=model_complexity)

    def __call__(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        frames = self._pose(images)
        return box_around(frames.image_keypoints.astype(np.float64), LANDMARK_BOX_MARGIN), frames.detected

    def reset(self) -> None:
        self._pose.reset()

    def close(self) -> None:
        self._pose.close()


def create_session(path: str | Path, prefer: str = "auto"):
    """An onnxruntime session for the model, on CUDA if that really works, else the CPU.

    Args:
        path: the .onnx file.
        prefer: "auto" (CUDA where it works) or "cpu".
    Returns:
        (session, provider name).
    Raises:
        RegressorError: the file is missing or onnxruntime cannot load it.
    """
    import onnxruntime

    path = Path(path)
    if not path.is_file():
        raise RegressorError(f"{path}: no such ONNX model file (write one with `ikol-engine export-onnx`)")
    if prefer not in ("auto", "cpu"):
        raise ValueError(f"prefer must be 'auto' or 'cpu', got {prefer!r}")
    if prefer == "auto" and CUDA in onnxruntime.get_available_providers():
        # onnxruntime-gpu lists CUDA even where its libraries or a GPU are missing, and then
        # warns while falling back; the caller reports what ran, so the probe stays quiet.
        onnxruntime.set_default_logger_severity(4)
        try:
            session = onnxruntime.InferenceSession(str(path), providers=[CUDA, CPU])
            if session.get_providers()[0] == CUDA:
                trial = np.zeros((1, 3, hc.INPUT_SIZE, hc.INPUT_SIZE), np.float32)
                session.run(None, {session.get_inputs()[0].name: trial})
                return session, CUDA
        except Exception:  # noqa: BLE001 - any CUDA failure (libraries, driver, kernels) means: use the CPU
            pass
        finally:
            onnxruntime.set_default_logger_severity(2)  # onnxruntime's default, warnings
    try:
        return onnxruntime.InferenceSession(str(path), providers=[CPU]), CPU
    except Exception as error:  # noqa: BLE001 - onnxruntime's own exception types are not public
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise RegressorError(f"{path}: onnxruntime cannot load it as a model ({first})") from None


def _available_providers() -> list[str]:
    import onnxruntime

    return onnxruntime.get_available_providers()


class OnnxRegressor(Regressor):
    """HybrIK's ResNet-34 regressor from an ONNX file written by ``ikol-engine export-onnx``.

    Args:
        model_path: the .onnx file.
        model_complexity: BlazePose model for the person boxes (0, 1, 2).
        batch_size: crops per network run (>= 1); None: :data:`DEFAULT_BATCH` for the provider.
        prefer: "auto" (CUDA where it works) or "cpu".
        boxes: where the person is (default: BlazePose on the same frames).

    Raises:
        RegressorError: the file is missing, not loadable, or not this network's export.
        ValueError: bad batch size or preference.
    """

    keypoint_names = skeleton.KEYPOINT_NAMES

    def __init__(self, model_path: str | Path, *, model_complexity: int = 1, batch_size: int | None = None,
                 prefer: str = "auto", boxes: BoxSource | None = None) -> None:
        if batch_size is not None and (not isinstance(batch_size, int) or isinstance(batch_size, bool)
                                       or batch_size < 1):
            raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
        self.path = Path(model_path)
        self._session, self.provider = create_session(self.path, prefer)
        self.batch_size = batch_size if batch_size is not None else DEFAULT_BATCH[self.provider]
        self._check_model()
        self.name = f"hybrik-resnet34-onnx:{self.path.name}"
        self._boxes = boxes if boxes is not None else BlazePoseBoxes(model_complexity)
        self._last_box: np.ndarray | None = None
        self._box_age = 0
        note = ""
        if self.provider == CPU and prefer == "auto" and CUDA in _available_providers():
            note = " (CUDA is listed but did not start: its libraries or a GPU are missing)"
        sys.stderr.write(f"ikol-engine: regressor {self.path.name} runs on onnxruntime's {self.provider}{note}\n")

    def _check_model(self) -> None:
        inputs = [i.name for i in self._session.get_inputs()]
        outputs = [o.name for o in self._session.get_outputs()]
        meta = self._session.get_modelmeta().custom_metadata_map
        problem = None
        if inputs != [INPUT_NAME] or not set(OUTPUT_NAMES) <= set(outputs):
            problem = f"inputs {inputs} and outputs {outputs}, expected [{INPUT_NAME!r}] and {list(OUTPUT_NAMES)}"
        elif meta.get(hc.FORMAT_KEY, hc.FORMAT) != hc.FORMAT:
            problem = f"format {meta[hc.FORMAT_KEY]!r}, expected {hc.FORMAT!r}"
        if problem is not None:
            raise RegressorError(f"{self.path}: not an IKOL export of HybrIK's ResNet-34 regressor ({problem}); "
                                 "write one with `ikol-engine export-onnx --checkpoint CKPT -o OUT.onnx`")
        if "ikol.conventions" in meta:  # written by export-onnx: the file must agree with this code
            written = json.loads(meta["ikol.conventions"])
            if written.get("depth_factor_m") != hc.DEPTH_FACTOR_M or written.get("input_size") != hc.INPUT_SIZE:
                raise RegressorError(f"{self.path}: exported with other conventions ({written}); export it again")

    def __call__(self, images: Sequence[np.ndarray]) -> KeypointFrames:
        """Regress the 29 keypoints, twist and shape for each (H, W, 3) uint8 RGB image."""
        if self._session is None:
            raise RegressorError(f"{self.name} regressor is closed")
        self.check_images(images)
        n, k = len(images), skeleton.NUM_KEYPOINTS
        boxes, found = self._track_boxes(images)
        keypoints = np.zeros((n, k, 3), np.float32)
        confidence = np.zeros((n, k), np.float32)
        pixels = np.zeros((n, k, 2), np.float32)
        twist = np.zeros((n, hc.NUM_TWISTS), np.float32)
        twist_confidence = np.zeros((n, hc.NUM_TWISTS), np.float32)
        betas = np.zeros((0, hc.NUM_BETAS))
        rows = np.flatnonzero(found)
        for start in range(0, len(rows), self.batch_size):
            batch = rows[start:start + self.batch_size]
            crops = crop_box(boxes[batch])
            outputs = self._run(crop_images([images[i] for i in batch], crops))
            uvd, phi, shape, camera, score = (outputs[name] for name in OUTPUT_NAMES)
            centres = np.array([[images[i].shape[1] / 2, images[i].shape[0] / 2] for i in batch])
            keypoints[batch] = crop_to_metric(uvd, camera, crops, centres)
            pixels[batch] = crop_to_image(uvd, crops)
            confidence[batch] = np.clip(score, 0.0, 1.0)
            twist[batch], twist_confidence[batch] = twist_from_phi(phi)
            betas = np.concatenate([betas, shape])
        clip_betas = np.median(betas, axis=0) if len(betas) else np.zeros(hc.NUM_BETAS)
        return KeypointFrames(self.keypoint_names, keypoints, confidence, pixels, found, twist=twist,
                              twist_confidence=twist_confidence, betas=clip_betas)

    def _track_boxes(self, images: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Boxes for each frame; a miss takes the last box found, up to MAX_BOX_REUSE frames on."""
        boxes, found = self._boxes(images)
        boxes, found = np.array(boxes, dtype=np.float64).reshape(len(images), 4), np.array(found, dtype=bool)
        for i in range(len(images)):
            if found[i] and np.all(boxes[i, 2:] - boxes[i, :2] > 1.0) and np.isfinite(boxes[i]).all():
                self._last_box, self._box_age = boxes[i].copy(), 0
            elif self._last_box is not None and self._box_age < MAX_BOX_REUSE:
                boxes[i], found[i] = self._last_box, True
                self._box_age += 1
            else:
                found[i] = False
        return boxes, found

    def _run(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        try:
            values = self._session.run(list(OUTPUT_NAMES), {INPUT_NAME: crops})
        except Exception as error:  # noqa: BLE001 - onnxruntime's own exception types are not public
            raise RegressorError(f"{self.name} failed on {self.provider}: {error}") from error
        return dict(zip(OUTPUT_NAMES, values))

    def reset(self) -> None:
        """Forget the tracked person and its box, before frames of a new clip."""
        self._last_box, self._box_age = None, 0
        self._boxes.reset()

    def close(self) -> None:
        """Free the session and the box source; calling it again does nothing."""
        if self._session is not None:
            self._session = None
            self._boxes.close()
