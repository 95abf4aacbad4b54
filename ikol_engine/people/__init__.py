"""Every person in a video, tracked, and the one to follow: detection, tracking, crops.

Pure numpy + OpenCV + LiteRT (for BlazePose's own person-detection model from the mediapipe
wheel); no torch, no bpy. :mod:`.detector` finds people per frame, :mod:`.tracker` links
them into :class:`Track` s with ids from 1 (:mod:`.scan` runs both over a video, or
frame by frame ahead of the regressor: :mod:`.lookahead`), and :mod:`.boxes`
interpolates a track's box between detections; :mod:`.selection` applies ``--person``,
:mod:`.follow` keeps the regressor on the chosen person, and
:mod:`.overview` describes people and draws a numbered contact sheet.
"""
from .boxes import follow_boxes
from .detector import Detections, PersonDetector
from .overview import contact_sheet, describe, write_contact_sheet
from .selection import PeopleError, PersonChoice, parse_person, people_table, select_people
from .tracker import Track, Tracker, TrackerOptions, track_detections

__all__ = [
    "Detections",
    "PeopleError",
    "PersonChoice",
    "PersonDetector",
    "Track",
    "Tracker",
    "TrackerOptions",
    "contact_sheet",
    "describe",
    "follow_boxes",
    "parse_person",
    "people_table",
    "select_people",
    "track_detections",
    "write_contact_sheet",
]
