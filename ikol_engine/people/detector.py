"""Every person in a frame, from BlazePose's own person detector run through LiteRT.

The model is ``pose_detection.tflite`` from the installed mediapipe wheel, the detector
MediaPipe Pose runs before its landmark model; here it is run directly so that all its
detections are kept rather than only the most confident. It is an SSD on a 224x224
letterboxed RGB input in -1..1 with 2254 anchors (28x28x2 at stride 8, 14x14x2 at stride
16, 7x7x6 at stride 32), each predicting 12 values: box centre x, y and size w, h, then
four keypoints (x, y): hip centre, a point whose distance from the hip centre is the
radius of a circle around the whole body, shoulder centre, and the same for the upper
body. Offsets are in input pixels relative to the anchor centre; scores are logits.

The box the model predicts is a small one around the head; the person box used here is the
square around the full-body circle given by keypoints 0 and 1, which is also what MediaPipe
crops for the landmark model.

Small people
------------
Letterboxing a wide frame into 224 pixels leaves a person a third of the frame tall only
some 40 input pixels, and the model then misses people or merges two into one oversized
circle. :class:`PersonDetector` therefore runs the model on square tiles instead: level 1
tiles are as tall as the frame (for a landscape frame) and spread across its width, each
further level's tiles are :data:`LEVEL_SHRINK` times smaller, and neighbouring tiles
overlap by a third. The tiles' detections are merged by weighted non-maximum suppression.
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

__all__ = [
    "AROUND_SCALE",
    "INPUT_SIZE",
    "KEYPOINT_NAMES",
    "LEVEL_SHRINK",
    "Detections",
    "PersonDetector",
    "body_boxes",
    "box_iou",
    "decode",
    "letterbox",
    "model_path",
    "ssd_anchors",
    "tile_windows",
    "weighted_nms",
]

INPUT_SIZE = 224
#: The detector's four keypoints, in output order.
KEYPOINT_NAMES = ("hip_centre", "body_scale", "shoulder_centre", "upper_body_scale")
_STRIDES = (8, 16, 32, 32, 32)
_MIN_SCALE, _MAX_SCALE = 0.1484375, 0.75
_SCORE_CLIP = 100.0
#: Window side ratio between consecutive tile levels.
LEVEL_SHRINK = 1.6
#: Side of the window :meth:`PersonDetector.around` looks through, over the box's side.
AROUND_SCALE = 1.6


def model_path() -> Path:
    """The person-detection model inside the installed mediapipe package.

    Found without importing mediapipe, whose import is slow and not needed here.

    Raises:
        FileNotFoundError: mediapipe is not installed.
    """
    spec = importlib.util.find_spec("mediapipe")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("mediapipe is not installed; its wheel carries the person detector")
    return Path(spec.origin).resolve().parent / "modules" / "pose_detection" / "pose_detection.tflite"


@dataclass(frozen=True)
class Detections:
    """The people found in one image, in image pixels, most confident first.

    Attributes:
        boxes: (N, 4) float, [x0, y0, x1, y1]: the square around each body's circle.
        scores: (N,) float in 0..1.
        keypoints: (N, 4, 2) float, x, y of :data:`KEYPOINT_NAMES`.
    """

    boxes: np.ndarray
    scores: np.ndarray
    keypoints: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)

    @classmethod
    def empty(cls) -> Detections:
        """No detections, with the array shapes kept."""
        return cls(np.zeros((0, 4)), np.zeros(0), np.zeros((0, 4, 2)))


def ssd_anchors() -> np.ndarray:
    """Anchor centres of the detector, normalised to 0..1 of the input.

    Consecutive layers with the same stride share one grid; every layer contributes two
    anchors per cell (aspect ratio 1 and the interpolated scale). With a fixed anchor size
    all anchors are 1x1, so only the centres matter and the scales drop out.

    Returns:
        (2254, 2) float32, x, y, in the model's output order.
    """
    centres = []
    layer = 0
    while layer < len(_STRIDES):
        stride = _STRIDES[layer]
        per_cell = 0
        while layer < len(_STRIDES) and _STRIDES[layer] == stride:
            per_cell += 2
            layer += 1
        cells = -(-INPUT_SIZE // stride)
        grid = (np.arange(cells, dtype=np.float32) + 0.5) / cells
        y, x = np.meshgrid(grid, grid, indexing="ij")
        cell_centres = np.stack([x.ravel(), y.ravel()], axis=1)
        centres.append(np.repeat(cell_centres, per_cell, axis=0))
    return np.concatenate(centres)


def letterbox(image: np.ndarray, size: int = INPUT_SIZE) -> tuple[np.ndarray, float, np.ndarray]:
    """Scale an image into a square input, centred, padded with black.

    Bilinear, as MediaPipe's own OpenCV converter feeds its models: area averaging took
    4 ms for a frame-high tile of the 1768x994 sample where the model run takes 7 to 13,
    and the scan of the sample detected its jumper in 107 runs with bilinear, 101 with area.

    Args:
        image: (H, W, 3) uint8 RGB.

    Returns:
        tensor: (1, size, size, 3) float32 in -1..1;
        scale: input pixels per image pixel;
        offset: (2,) input-pixel position of the image's top-left corner.
        An input pixel p maps to the image pixel (p - offset) / scale.
    """
    height, width = image.shape[:2]
    scale = size / max(height, width)
    new_w, new_h = max(1, round(width * scale)), max(1, round(height * scale))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = (size - new_w) // 2, (size - new_h) // 2
    canvas = np.zeros((size, size, 3), np.uint8)
    canvas[top : top + new_h, left : left + new_w] = resized
    tensor = canvas.astype(np.float32) * (2.0 / 255.0) - 1.0
    return tensor[None], scale, np.array([left, top], np.float64)


def decode(
    raw_boxes: np.ndarray, raw_scores: np.ndarray, anchors: np.ndarray, min_score: float
) -> tuple[np.ndarray, np.ndarray]:
    """Turn raw model outputs into candidates above a score, in normalised input units.

    Args:
        raw_boxes: (A, 12) the model's regression output.
        raw_scores: (A,) or (A, 1) logits.
        anchors: (A, 2) anchor centres from :func:`ssd_anchors`.

    Returns:
        points: (K, 6, 2) per candidate: head-box centre, head-box size, then the four
            keypoints, all in 0..1 of the input;
        scores: (K,) sigmoid scores.
    """
    logits = np.clip(raw_scores.reshape(-1).astype(np.float64), -_SCORE_CLIP, _SCORE_CLIP)
    scores = 1.0 / (1.0 + np.exp(-logits))
    keep = scores >= min_score
    values = raw_boxes[keep].reshape(-1, 6, 2) / INPUT_SIZE
    centre = anchors[keep][:, None, :]
    values[:, 0:1] += centre
    values[:, 2:] += centre
    return values.astype(np.float64), scores[keep].astype(np.float64)


def body_boxes(keypoints: np.ndarray) -> np.ndarray:
    """The square around each body's circle: centre keypoint 0, radius to keypoint 1.

    Args:
        keypoints: (N, 4, 2) in any pixel units.

    Returns:
        (N, 4) [x0, y0, x1, y1] in the same units.
    """
    centre = keypoints[:, 0]
    radius = np.linalg.norm(keypoints[:, 1] - keypoints[:, 0], axis=1, keepdims=True)
    return np.concatenate([centre - radius, centre + radius], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` with every box in ``b``.

    Args:
        a: (N, 4), b: (M, 4) [x0, y0, x1, y1].

    Returns:
        (N, M) in 0..1 (0 where both boxes are empty).
    """
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=2)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0.0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def weighted_nms(
    boxes: np.ndarray, scores: np.ndarray, keypoints: np.ndarray, iou_threshold: float
) -> Detections:
    """Merge overlapping candidates into one detection each, as MediaPipe's weighted NMS does.

    The best remaining candidate claims every remaining one overlapping it by more than
    ``iou_threshold``; the detection is their score-weighted mean box and keypoints with
    the best one's score.

    Args:
        boxes: (K, 4), scores: (K,), keypoints: (K, 4, 2), any pixel units.
    """
    order = np.argsort(-scores, kind="stable")
    boxes, scores, keypoints = boxes[order], scores[order], keypoints[order]
    iou = box_iou(boxes, boxes)
    remaining = np.ones(len(scores), bool)
    kept_boxes, kept_scores, kept_points = [], [], []
    for best in range(len(scores)):
        if not remaining[best]:
            continue
        group = remaining & (iou[best] > iou_threshold)
        group[best] = True
        remaining &= ~group
        weights = scores[group] / scores[group].sum()
        kept_boxes.append(weights @ boxes[group])
        kept_points.append(np.tensordot(weights, keypoints[group], axes=1))
        kept_scores.append(scores[best])
    if not kept_scores:
        return Detections.empty()
    return Detections(np.array(kept_boxes), np.array(kept_scores), np.array(kept_points))


def tile_windows(width: int, height: int, levels: int) -> list[tuple[int, int, int]]:
    """Square windows covering the frame at ``levels`` scales.

    Level 1 windows are as large as the frame's short side (one window for a square
    frame); each further level shrinks them by :data:`LEVEL_SHRINK`. Neighbouring windows of a level overlap by at least a
    third of their side, so a person cut by one window's edge is whole in the next.

    Returns:
        [(x0, y0, side), ...], coarse levels first.
    """
    windows = []
    for level in range(levels):
        side = round(min(width, height) / LEVEL_SHRINK**level)
        xs = _starts(width, side)
        ys = _starts(height, side)
        windows += [(x, y, side) for y in ys for x in xs]
    return windows


def _starts(length: int, side: int) -> list[int]:
    """Start positions of windows of ``side`` along ``length``, overlapping by >= side / 3."""
    if side >= length:
        return [0]
    count = 1 + int(np.ceil((length - side) / (side * 2 / 3)))
    return [int(s) for s in np.linspace(0, length - side, count).round()]


class PersonDetector:
    """BlazePose's person detector over the whole frame and its square tiles.

    Args:
        min_score: candidates below this sigmoid score are dropped (0..1); 0.5 and the
            0.3 below are the values MediaPipe Pose uses with this model.
        iou_threshold: candidates overlapping more than this are merged (0..1).
        levels: tile levels to run, from the frame's short side down (see
            :func:`tile_windows`); 1 runs the model once per short-side square.
        num_threads: CPU threads for the interpreter.

    Raises:
        ValueError: a threshold outside 0..1, or levels below 1.
        FileNotFoundError: the model is missing from the mediapipe installation.
    """

    def __init__(
        self,
        min_score: float = 0.5,
        iou_threshold: float = 0.3,
        levels: int = 2,
        num_threads: int = 1,
    ) -> None:
        for name, value in (("min_score", min_score), ("iou_threshold", iou_threshold)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value!r}")
        if levels < 1:
            raise ValueError(f"levels must be >= 1, got {levels!r}")
        path = model_path()
        if not path.is_file():
            raise FileNotFoundError(f"person-detection model missing: {path}")
        self.min_score = min_score
        self.iou_threshold = iou_threshold
        self.levels = levels
        self._interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        outputs = {d["shape"][-1]: d["index"] for d in self._interpreter.get_output_details()}
        self._boxes_out, self._scores_out = outputs[12], outputs[1]
        self._anchors = ssd_anchors()

    def _candidates(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Candidates in one image: (K, 4, 2) keypoints in its pixels and (K,) scores."""
        tensor, scale, offset = letterbox(image)
        self._interpreter.set_tensor(self._input, tensor)
        self._interpreter.invoke()
        raw_boxes = self._interpreter.get_tensor(self._boxes_out)[0]
        raw_scores = self._interpreter.get_tensor(self._scores_out)[0]
        points, scores = decode(raw_boxes, raw_scores, self._anchors, self.min_score)
        keypoints = (points[:, 2:] * INPUT_SIZE - offset) / scale
        return keypoints, scores

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect the people in one frame, over all of it (every tile of every level).

        Args:
            image: (H, W, 3) uint8 RGB.

        Raises:
            ValueError: not an (H, W, 3) uint8 image.
        """
        height, width = _checked_size(image)
        return self._in_windows(image, tile_windows(width, height, self.levels))

    def around(self, image: np.ndarray, boxes: np.ndarray) -> Detections:
        """Detect the people near known boxes only: one window per box, :data:`AROUND_SCALE`
        times its side (at least the model's input, at most the frame's short side), moved
        inside the frame. A tracker knows where its people are about to be, and a window
        sized to a person sees them at the scale the model likes, for one model run each
        instead of the whole tiling's.

        Args:
            image: (H, W, 3) uint8 RGB.
            boxes: (K, 4) [x0, y0, x1, y1] pixels.
        """
        height, width = _checked_size(image)
        windows = []
        for x0, y0, x1, y1 in np.asarray(boxes, dtype=np.float64).reshape(-1, 4):
            side = int(np.clip(AROUND_SCALE * max(x1 - x0, y1 - y0), INPUT_SIZE, min(width, height)))
            left = int(np.clip(round((x0 + x1 - side) / 2), 0, width - side))
            top = int(np.clip(round((y0 + y1 - side) / 2), 0, height - side))
            windows.append((left, top, side))
        return self._in_windows(image, windows)

    def _in_windows(self, image: np.ndarray, windows: list[tuple[int, int, int]]) -> Detections:
        """The candidates of every square window (x0, y0, side), merged."""
        if not windows:
            return Detections.empty()
        all_points, all_scores = [], []
        for x0, y0, side in windows:
            points, scores = self._candidates(image[y0 : y0 + side, x0 : x0 + side])
            # A hip centre outside the window is the model extrapolating past its input;
            # the window that does contain those hips sees the person better.
            inside = np.all((points[:, 0] >= 0) & (points[:, 0] <= side), axis=1)
            all_points.append(points[inside] + np.array([x0, y0], np.float64))
            all_scores.append(scores[inside])
        keypoints = np.concatenate(all_points)
        scores = np.concatenate(all_scores)
        if len(scores) == 0:
            return Detections.empty()
        return weighted_nms(body_boxes(keypoints), scores, keypoints, self.iou_threshold)


def _checked_size(image: np.ndarray) -> tuple[int, int]:
    """(height, width) of an (H, W, 3) uint8 image.

    Raises:
        ValueError: anything else.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    return image.shape[0], image.shape[1]
