"""Which of a regressor's detections are a person: not noise that a detector took for one.

A person detector finds "people" in random noise now and then. Measured with BlazePose
on 62 clips of uniform noise (30 frames each, 32x32 to 640x360): 73 of 1,860 frames
had a "person", with mean keypoint confidence 0.16-0.72 (as high as real people's) but
never more than 46 pixels across, in runs of one to a few frames. The Sports2D demo's
people (1768x994) measured 207-516 pixels across and 0.67-0.98 mean confidence, in
runs of 25 frames and more. So, for any regressor, a detection counts only where

* the person spans at least :data:`MIN_PERSON_PX` pixels (its keypoints' box, the
  larger side): fewer pixels hold no pose any regressor can read, whatever the image's
  size (a fraction of the image does not separate: noise "people" filled up to 40% of
  their tiny frames, the demo's people 12-29% of theirs);
* its mean keypoint confidence is at least :data:`MIN_MEAN_CONFIDENCE`;
* it lasts, among such frames, at least :data:`MIN_RUN_S` (and two frames): a person
  is in view for longer than a blink; a clip shorter than that needs it to last the
  whole clip.
"""
from __future__ import annotations

import math

import numpy as np

from ..observations import Observations
from .cleanup import gap_runs

MIN_PERSON_PX = 80.0
MIN_MEAN_CONFIDENCE = 0.4
MIN_RUN_S = 0.2


def person_frames(observed: Observations) -> np.ndarray:
    """(T,) the frames whose detection is a plausible person (see the module docstring)."""
    detected = np.asarray(observed.detected, dtype=bool)
    image = np.asarray(observed.image, dtype=np.float64)
    span = (image.max(axis=1) - image.min(axis=1)).max(axis=1) if image.size else np.zeros(len(detected))
    confident = np.asarray(observed.confidence, dtype=np.float64).mean(axis=1) >= MIN_MEAN_CONFIDENCE
    plausible = detected & (span >= MIN_PERSON_PX) & confident
    shortest = min(len(detected), max(2, math.ceil(MIN_RUN_S * observed.fps)))
    for start, end in gap_runs(~plausible):  # the runs of plausible frames
        if end - start < shortest:
            plausible[start:end] = False
    return plausible
