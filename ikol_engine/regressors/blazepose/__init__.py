"""BlazePose (MediaPipe Pose): the regressor, its landmark table and swap rules, and its
map to the IK's targets and twist."""
from __future__ import annotations

from .landmarks import LANDMARK_NAMES
from .layout import BLAZEPOSE_LAYOUT
from .regressor import BlazePoseRegressor

__all__ = ["BLAZEPOSE_LAYOUT", "LANDMARK_NAMES", "BlazePoseRegressor"]
