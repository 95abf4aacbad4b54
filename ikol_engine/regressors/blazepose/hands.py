"""Hand landmarks from video: MediaPipe Hands run on a square crop around each of the
body's hands, 21 landmarks per hand per frame.

The body (BlazePose's image landmarks) says where each hand is and whose it is;
MediaPipe Hands finds the hand's landmarks inside that crop, and they are mapped back to
the full frame's pixels. A hand belongs to the side whose crop it came from, and is
dropped when its wrist lands too far from the body's wrist (or nearer the other one),
so the hands can never trade sides against the body. MediaPipe's own handedness label
decides nothing: it assumes a mirrored selfie image, and a crop of a hand alone is easy
to misread; it is only recorded, as a check (:attr:`HandFrames.label_agrees`).

Like the pose models, the hand models ship in the mediapipe wheel (both complexities);
they are checked for before MediaPipe is started, so a stripped install is reported
with the missing file's name rather than failing inside MediaPipe's graph.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import cv2
import mediapipe as mp
import numpy as np

from ..base import Regressor, RegressorError
from .hand_landmarks import (
    BODY_ELBOWS, BODY_HAND_POINTS, BODY_WRISTS, HAND_WRIST, NUM_HAND_LANDMARKS, SIDES,
)
from .landmarks import LANDMARK_NAMES
from .regressor import _mediapipe_root

__all__ = ["HAND_COMPLEXITY_NAMES", "CropBox", "HandFrames", "HandLandmarker", "cut_crop", "hand_crop_box",
           "required_hand_model_files"]

#: Model complexity -> the suffix of its palm detection and hand landmark models.
HAND_COMPLEXITY_NAMES: dict[int, str] = {0: "lite", 1: "full"}

# Each crop is resized to this many pixels a side. MediaPipe squeezes the whole crop to
# its palm detector's 192x192 input, so a crop at least that big loses nothing there;
# the landmark model then reads the hand's own box from the crop at 224x224. A hand
# filmed at a few dozen pixels gains no detail from a bigger crop: on the Sports2D demo
# crops of 192, 256 and 384 found the same hands to within 3 of 159 frames a side.
CROP_SIZE = 256
# A crop's side is this many forearm lengths (elbow to wrist, in pixels): a hand spans
# about 0.75 of its forearm, and the palm detector wants room around it.
CROP_PER_FOREARM = 3.0
# Foreshortened forearms look short; below this side (frame pixels) a crop would cut
# the hand off, so it is never smaller, and a tiny hand is upscaled instead.
MIN_CROP_PX = 64.0
# The body's hand points (wrist, knuckles) average to the palm's centre; the hand's own
# centre, fingers included, lies about this many forearm lengths further along the forearm.
CENTRE_PUSH = 0.2
# A hand whose wrist landmark lies further than this fraction of the crop's side from
# the body's wrist is some other hand (or none), not this side's.
MAX_WRIST_OFFSET = 0.25


def required_hand_model_files(model_complexity: int) -> tuple[Path, Path]:
    """Paths of the palm detection and hand landmark models a complexity needs.

    Raises:
        ValueError: the complexity is not 0 or 1.
    """
    if model_complexity not in HAND_COMPLEXITY_NAMES:
        raise ValueError(
            f"model_complexity must be one of {sorted(HAND_COMPLEXITY_NAMES)}, got {model_complexity!r}"
        )
    name = HAND_COMPLEXITY_NAMES[model_complexity]
    modules = _mediapipe_root() / "modules"
    return (
        modules / "palm_detection" / f"palm_detection_{name}.tflite",
        modules / "hand_landmark" / f"hand_landmark_{name}.tflite",
    )


def _check_hand_model_files(model_complexity: int) -> None:
    """Raise RegressorError naming each missing hand model file."""
    missing = [path for path in required_hand_model_files(model_complexity) if not path.is_file()]
    if missing:
        lines = "\n".join(f"  {path}  (copy {path.name} into {path.parent})" for path in missing)
        raise RegressorError(
            f"MediaPipe Hands {HAND_COMPLEXITY_NAMES[model_complexity]} "
            f"(model_complexity={model_complexity}) needs model files that the installed "
            f"mediapipe lacks:\n{lines}\n"
            "They ship in the mediapipe wheel (pip install --force-reinstall mediapipe)."
        )


@dataclass(frozen=True)
class CropBox:
    """A square of the frame, cut out and resized to ``size`` x ``size`` pixels.

    Coordinates are continuous pixels, x right, y down, with (0, 0) the top-left corner
    of the top-left pixel, as BlazePose's image landmarks are; the box may reach
    outside the frame.

    Attributes:
        x0, y0: the box's top-left corner in frame pixels.
        side: the box's edge in frame pixels.
        size: the crop image's edge in pixels.
    """

    x0: float
    y0: float
    side: float
    size: int

    @property
    def scale(self) -> float:
        """Frame pixels per crop pixel."""
        return self.side / self.size

    def to_frame(self, crop_xy: np.ndarray) -> np.ndarray:
        """Map (..., 2) crop pixels to (..., 2) float32 frame pixels."""
        return (np.asarray(crop_xy, np.float64) * self.scale + (self.x0, self.y0)).astype(np.float32)

    def sampling_matrix(self) -> np.ndarray:
        """(2, 3) affine map from a crop pixel's index to the frame position it samples.

        An index ``j`` names the pixel whose centre lies at ``j + 0.5``; OpenCV samples
        the frame at indices too, hence the half-pixel shifts on both sides.
        """
        s = self.scale
        return np.array([
            [s, 0.0, self.x0 + 0.5 * s - 0.5],
            [0.0, s, self.y0 + 0.5 * s - 0.5],
        ])


def hand_crop_box(body_pixels: np.ndarray, side: int, size: int = CROP_SIZE) -> CropBox:
    """The square to look for one side's hand in, from the body's image landmarks.

    Args:
        body_pixels: (33, 2) BlazePose image landmarks of one frame, frame pixels.
        side: 0 for the person's left hand, 1 for the right.
        size: edge of the resized crop, pixels.
    """
    hand_points = body_pixels[list(BODY_HAND_POINTS[side])].astype(np.float64)
    wrist = body_pixels[BODY_WRISTS[side]].astype(np.float64)
    forearm = wrist - body_pixels[BODY_ELBOWS[side]]
    length = float(np.linalg.norm(forearm))
    along = forearm / length if length > 0 else np.zeros(2)
    edge = max(CROP_PER_FOREARM * length, MIN_CROP_PX)
    centre = hand_points.mean(axis=0) + CENTRE_PUSH * length * along
    return CropBox(float(centre[0] - edge / 2), float(centre[1] - edge / 2), edge, size)


def cut_crop(image: np.ndarray, box: CropBox) -> np.ndarray:
    """The (size, size, 3) uint8 crop of an (H, W, 3) uint8 image, black outside the frame.

    Bilinear, as MediaPipe's own resizing is, whether the box is enlarged or shrunk.
    """
    return cv2.warpAffine(
        image, box.sampling_matrix(), (box.size, box.size),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0),
    )


@dataclass
class HandFrames:
    """Hand landmarks for T frames, in video order; side order (left, right), the
    person's own.

    Attributes:
        image_keypoints: (T, 2, 21, 2) float32 frame pixels, x right, y down, landmarks
            in :data:`~.hand_landmarks.HAND_LANDMARK_NAMES` order; zeros where no hand.
        world_keypoints: (T, 2, 21, 3) float32 metres, MediaPipe's world landmarks: origin
            at the hand's approximate centre, x and y along the image's (right, down: the
            crops are not rotated), z away from the camera (it rises with MediaPipe's
            image-landmark depth); zeros where no hand.
        confidence: (T, 2, 21) float32 in 0..1: the body's wrist confidence for every
            landmark of a hand found (MediaPipe Hands reports no per-landmark score, and
            a hand it returns has passed its own presence threshold), 0 where none.
        label_agrees: (T, 2) bool, where a hand was found: MediaPipe's handedness label,
            read for an unmirrored camera, names the same side; False where no hand.

    Arrays are converted to the dtypes above; shapes that disagree raise ValueError.
    """

    image_keypoints: np.ndarray
    world_keypoints: np.ndarray
    confidence: np.ndarray
    label_agrees: np.ndarray

    def __post_init__(self) -> None:
        self.image_keypoints = np.asarray(self.image_keypoints, np.float32)
        self.world_keypoints = np.asarray(self.world_keypoints, np.float32)
        self.confidence = np.asarray(self.confidence, np.float32)
        self.label_agrees = np.asarray(self.label_agrees, bool)
        t, s, k = len(self.confidence), len(SIDES), NUM_HAND_LANDMARKS
        expected = {
            "image_keypoints": (self.image_keypoints, (t, s, k, 2)),
            "world_keypoints": (self.world_keypoints, (t, s, k, 3)),
            "confidence": (self.confidence, (t, s, k)),
            "label_agrees": (self.label_agrees, (t, s)),
        }
        for label, (array, shape) in expected.items():
            if array.shape != shape:
                raise ValueError(f"{label} has shape {array.shape}, expected {shape} (T={t})")

    def __len__(self) -> int:
        return len(self.confidence)

    @property
    def found(self) -> np.ndarray:
        """(T, 2) bool: a hand was found on that side."""
        return self.confidence.max(axis=-1) > 0

    @classmethod
    def empty(cls, frames: int) -> HandFrames:
        """No hand in any of ``frames`` frames."""
        s, k = len(SIDES), NUM_HAND_LANDMARKS
        return cls(np.zeros((frames, s, k, 2)), np.zeros((frames, s, k, 3)),
                   np.zeros((frames, s, k)), np.zeros((frames, s), bool))

    @classmethod
    def concatenate(cls, parts: Sequence[HandFrames]) -> HandFrames:
        """Join results of consecutive chunks of one clip, in the given order.

        Raises:
            ValueError: no parts.
        """
        if not parts:
            raise ValueError("nothing to concatenate: no HandFrames given")
        return cls(*(np.concatenate([getattr(part, label) for part in parts])
                     for label in ("image_keypoints", "world_keypoints", "confidence", "label_agrees")))


def _check_body_arrays(images: Sequence[np.ndarray], body_pixels: np.ndarray,
                       body_confidence: np.ndarray) -> None:
    """Raise ValueError unless the body arrays are (T, 33, 2) and (T, 33) for T images."""
    t, r = len(images), len(LANDMARK_NAMES)
    for label, array, shape in (("body_pixels", body_pixels, (t, r, 2)),
                                ("body_confidence", body_confidence, (t, r))):
        if array.shape[1:] != shape[1:]:
            raise ValueError(f"{label} must be (T, {', '.join(map(str, shape[1:]))}) BlazePose "
                             f"landmarks, got shape {array.shape}")
        if len(array) != t:
            raise ValueError(f"{label} has {len(array)} frames but there are {t} images")


def _label_side(handedness: object) -> int:
    """The side MediaPipe's handedness names, for an unmirrored camera.

    MediaPipe labels hands as seen in a mirror (a selfie view), so its "Left" is the
    person's right hand in an ordinary camera's image.
    """
    label = handedness.classification[0].label  # type: ignore[attr-defined]
    return SIDES.index("right" if label == "Left" else "left")


def _belongs_to_side(hand_wrist: np.ndarray, body_pixels: np.ndarray, side: int, box: CropBox) -> bool:
    """Whether a hand whose wrist landmark is at (2,) frame pixels is the body's hand on
    ``side``, given (33, 2) body pixels: near that side's wrist for the crop's size, and
    nearer it than the other side's (both hands can share a crop)."""
    own, other = (float(np.linalg.norm(hand_wrist - body_pixels[BODY_WRISTS[s]])) for s in (side, 1 - side))
    return own <= MAX_WRIST_OFFSET * box.side and own < other


class _Hand(NamedTuple):
    """One hand MediaPipe found in a crop."""

    image_xy: np.ndarray  # (21, 2) frame pixels
    world_xyz: np.ndarray  # (21, 3) metres about the hand's centre
    label_side: int  # the side MediaPipe's handedness label names (see _label_side)


class HandLandmarker:
    """MediaPipe Hands on a crop around each of the body's hands, frame after frame.

    Each crop is searched afresh (MediaPipe's static image mode), so results do not
    depend on which frames came before: not on chunking, nor on a frame stride.

    Args:
        model_complexity: 0 (lite) or 1 (full); both ship with mediapipe.
        min_detection_confidence: palm detector score needed to accept a hand (0..1).
        min_tracking_confidence: hand presence score needed to keep a hand (0..1).
        min_body_confidence: a side is skipped (no hand) in frames where the body's
            wrist confidence is below this (0..1).

    Raises:
        ValueError: complexity not 0 or 1, or a confidence outside 0..1.
        RegressorError: a model file is missing (the message names it).
    """

    def __init__(
        self,
        model_complexity: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
        min_body_confidence: float = 0.5,
    ) -> None:
        for label, value in (
            ("min_detection_confidence", min_detection_confidence),
            ("min_tracking_confidence", min_tracking_confidence),
            ("min_body_confidence", min_body_confidence),
        ):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{label} must lie in 0..1, got {value}")
        _check_hand_model_files(model_complexity)
        self.name = f"mediapipe-hands-{HAND_COMPLEXITY_NAMES[model_complexity]}"
        self.min_body_confidence = min_body_confidence
        # Static image mode, measured against tracking mode on the Sports2D demo's first
        # 159 frames: in video order tracking found fewer left hands (43 vs 49) and as
        # many right ones (100), at 24 rather than 35 ms a frame, but it starts each
        # frame from the hand's box in the previous crop, which is stale once the crop
        # has moved: given every third frame (a frame stride) it found 17% fewer right
        # hands, in shuffled order 28% fewer. Static mode cannot lose track, and needs
        # no per-side state.
        self._hands: mp.solutions.hands.Hands | None = mp.solutions.hands.Hands(
            static_image_mode=True,
            max_num_hands=1,
            model_complexity=model_complexity,
            min_detection_confidence=min_detection_confidence,
            min_tracking_confidence=min_tracking_confidence,
        )

    def __call__(self, images: Sequence[np.ndarray], body_pixels: np.ndarray,
                 body_confidence: np.ndarray) -> HandFrames:
        """Find both hands in each image.

        Args:
            images: T images, each (H, W, 3) uint8 RGB, in video order.
            body_pixels: (T, 33, 2) BlazePose image landmarks, frame pixels
                (:attr:`KeypointFrames.image_keypoints`).
            body_confidence: (T, 33) BlazePose landmark confidence in 0..1, 0 where no
                person was found (:attr:`KeypointFrames.confidence`).

        Returns:
            :class:`HandFrames` with T frames.

        Raises:
            ValueError: an image is not (H, W, 3) uint8, or the body arrays' shapes or
                frame counts disagree with the images.
            RegressorError: closed, or MediaPipe failed.
        """
        if self._hands is None:
            raise RegressorError(f"{self.name} hand landmarker is closed")
        Regressor.check_images(images)
        body_pixels, body_confidence = np.asarray(body_pixels), np.asarray(body_confidence)
        _check_body_arrays(images, body_pixels, body_confidence)
        result = HandFrames.empty(len(images))
        for i, image in enumerate(images):
            for side in range(len(SIDES)):
                wrist_confidence = min(float(body_confidence[i, BODY_WRISTS[side]]), 1.0)
                # Above 0 even when the threshold is 0: a found hand's confidence is this.
                if wrist_confidence <= 0 or wrist_confidence < self.min_body_confidence:
                    continue
                hand = self._find_hand(image, body_pixels[i], side, i)
                if hand is None:
                    continue
                result.image_keypoints[i, side] = hand.image_xy
                result.world_keypoints[i, side] = hand.world_xyz
                result.confidence[i, side] = wrist_confidence
                result.label_agrees[i, side] = hand.label_side == side
        return result

    def _find_hand(self, image: np.ndarray, body_pixels: np.ndarray, side: int, i: int) -> _Hand | None:
        """The hand in one side's crop of image ``i``, given its (33, 2) body pixels, or
        None if MediaPipe finds none or the one it finds is not that side's."""
        box = hand_crop_box(body_pixels, side)
        try:
            found = self._hands.process(cut_crop(image, box))  # type: ignore[union-attr]
        except RuntimeError as exc:
            raise RegressorError(f"{self.name} failed on image {i}: {exc}") from exc
        if not found.multi_hand_landmarks:
            return None
        # Landmarks come normalised to the crop's width and height, which are both its size.
        crop_xy = np.array([(p.x, p.y) for p in found.multi_hand_landmarks[0].landmark]) * box.size
        image_xy = box.to_frame(crop_xy)
        if not _belongs_to_side(image_xy[HAND_WRIST], body_pixels, side, box):
            return None
        world_xyz = np.array([(p.x, p.y, p.z) for p in found.multi_hand_world_landmarks[0].landmark])
        return _Hand(image_xy, world_xyz, _label_side(found.multi_handedness[0]))

    def reset(self) -> None:
        """Nothing carries over between frames (each crop is searched afresh); there so
        the landmarker is used as a regressor is, before a new clip."""

    def close(self) -> None:
        """Shut down MediaPipe's graph; calling it again does nothing."""
        if self._hands is not None:
            self._hands.close()
            self._hands = None

    def __enter__(self) -> HandLandmarker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
