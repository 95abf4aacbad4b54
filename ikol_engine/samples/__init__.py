"""Real data no one here made, for tests, benchmarks and the demo: the sample video and
DeepMimic mocap fetched from PyPI wheels (:mod:`.downloads`, re-exported here), the mocap
turned into SMPL motion (:mod:`.deepmimic`), and random plausible poses and shapes
(:mod:`.synthetic`)."""
from __future__ import annotations

from .downloads import (
    DEEPMIMIC_CLIPS, DEEPMIMIC_REQUIREMENT, SPORTS2D_REQUIREMENT, cache_dir, deepmimic_motion, demo_video,
    fetch_wheel_members,
)

__all__ = ["DEEPMIMIC_CLIPS", "DEEPMIMIC_REQUIREMENT", "SPORTS2D_REQUIREMENT", "cache_dir", "deepmimic_motion",
           "demo_video", "fetch_wheel_members"]
