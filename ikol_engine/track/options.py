"""The settings of everything after the regressor (the Refine panel's), and the stage's error."""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from ..common.devices import check_device_name
from ..ik.contacts import ContactThresholds
from ..skeleton.groups import group_weights
from .camera import MAX_FOV_DEG, MIN_FOV_DEG
from .filtering import OneEuroParams

#: progress(stage, done, total), called as a long step advances.
Progress = Callable[[str, int, int], None]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class TrackError(ValueError):
    """The keypoints cannot give a motion (no person anywhere, bad settings)."""


@dataclass(frozen=True)
class SolveOptions:
    """Everything after the regressor that the user can tune (the Refine panel's settings).

    Attributes:
        iterations: Gauss-Newton steps per IK pass.
        smoothing: temporal smoothing strength, 0 (off) to about 3; scales both the
            keypoint filter's cutoff and the IK's temporal term.
        beta: the one-euro filter's speed coefficient (higher: less lag in fast moves).
        torso, arms, legs, head: keypoint group weights.
        twist_weight: multiplies the confidence of the twists seen in hands, feet, head.
        max_gap_s: dropouts up to this long are interpolated; longer ones are held.
        fov_deg: the camera's horizontal field of view, 1 to 170 degrees; None: estimated
            from the clip (see :func:`~.camera.clip_camera` on how well).
        focal_mm, sensor_mm: the lens's focal length and the sensor's width, mm (35 mm
            film is 36 mm wide), for a camera whose lens is known; a focal length
            given replaces ``fov_deg``.
        reprojection: weight of the keypoints' image positions in the IK against their
            metric 3D ones (0: 3D only, the person placed by a separate pinhole fit).
        foot_lock: how hard a resting foot point is held where it rests (0: free).
        contact_speed: m/s, contact_image_speed: body heights per second in the image,
            contact_height: m above the floor; a foot point slower and lower than these
            starts a contact (see :class:`~ikol_engine.ik.contacts.ContactThresholds`).
        keep_contacts: refine with the motion file's own contacts (e.g. edited in
            Blender) instead of detecting them again.
        level_floor: turn the scene so that the floor found under the feet is y = 0.
        hands: solve the fingers where the clip has hand landmarks and the body has
            finger joints (False: the body alone).
        device: "auto", "cpu", "cuda" or "cuda:N" (spelling checked here; whether it
            exists, by :func:`~ikol_engine.common.devices.resolve_device`).

    Every value is checked on construction, so a bad setting is refused before any
    frame of a video is decoded.
    """

    iterations: int = 5
    smoothing: float = 1.0
    beta: float = 0.5
    torso: float = 1.0
    arms: float = 1.0
    legs: float = 1.0
    head: float = 1.0
    twist_weight: float = 1.0
    max_gap_s: float = 0.5
    fov_deg: float | None = 60.0
    focal_mm: float | None = None
    sensor_mm: float = 36.0
    reprojection: float = 2.0
    foot_lock: float = 100.0
    contact_speed: float = 0.35
    contact_image_speed: float = 0.12
    contact_height: float = 0.05
    keep_contacts: bool = False
    level_floor: bool = True
    hands: bool = True
    device: str = "auto"

    def __post_init__(self) -> None:
        if not isinstance(self.iterations, int) or isinstance(self.iterations, bool) or not 0 <= self.iterations <= 100:
            raise TrackError(f"iterations must be an integer from 0 to 100, got {self.iterations!r}")
        for name in ("smoothing", "beta", "twist_weight", "max_gap_s", "torso", "arms", "legs", "head",
                     "reprojection", "foot_lock", "contact_speed", "contact_image_speed", "contact_height"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < math.inf:
                raise TrackError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.fov_deg is not None and not (_is_number(self.fov_deg) and MIN_FOV_DEG <= self.fov_deg <= MAX_FOV_DEG):
            raise TrackError(f"field of view must be between {MIN_FOV_DEG:g} and {MAX_FOV_DEG:g} degrees, "
                             f"got {self.fov_deg!r}")
        for name in ("focal_mm", "sensor_mm"):
            value = getattr(self, name)
            if (value is not None or name == "sensor_mm") and not (_is_number(value) and 0 < value < math.inf):
                raise TrackError(f"{name} must be a finite number of millimetres > 0, got {value!r}")
        if self.focal_mm is not None:
            lens_fov = math.degrees(2 * math.atan(self.sensor_mm / (2 * self.focal_mm)))
            if not MIN_FOV_DEG <= lens_fov <= MAX_FOV_DEG:
                raise TrackError(f"a {self.focal_mm:g} mm lens on a {self.sensor_mm:g} mm sensor sees {lens_fov:.2f} "
                                 f"degrees; the field of view must be between {MIN_FOV_DEG:g} and {MAX_FOV_DEG:g}")
        for name in ("level_floor", "keep_contacts", "hands"):
            if not isinstance(getattr(self, name), bool):
                raise TrackError(f"{name} must be true or false, got {getattr(self, name)!r}")
        try:
            group_weights(self.torso, self.arms, self.legs, self.head)
            check_device_name(self.device)
        except ValueError as error:
            raise TrackError(str(error)) from None

    def contact_thresholds(self) -> ContactThresholds:
        return ContactThresholds(image_speed=self.contact_image_speed, speed=self.contact_speed,
                                 height=self.contact_height)

    def filter_params(self) -> OneEuroParams | None:
        """Keypoint filter: smoothing 1 cuts still poses at 1.5 Hz; stronger is lower."""
        return None if self.smoothing == 0 else OneEuroParams(min_cutoff=1.5 / self.smoothing, beta=self.beta)

    @property
    def reference_weight(self) -> float:
        """m^2 of keypoint error worth a rad^2 of rotation away from the smoothed pose.

        It grows with the image keypoints' weight, which the temporal term has to hold
        against as it holds against the metric ones: with a fixed weight the image
        keypoints made the poses jerkier (Sports2D's pose jitter 16.6 m/s^2 against 14.5).
        """
        return 2e-3 * self.smoothing * (1 + self.reprojection)

