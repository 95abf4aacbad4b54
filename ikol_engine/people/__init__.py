"""Every person in a video, tracked, and the one to follow: detection, tracking, crops.

Pure numpy + OpenCV + LiteRT (for BlazePose's own person-detection model from the mediapipe
wheel); no torch, no bpy. :mod:`.detector` finds people per frame, :mod:`.tracker` links
them into :class:`Track` s with ids from 1, :mod:`.selection` applies ``--person``,
:mod:`.crop` gives the region to hand the landmark model and maps landmarks back, and
:mod:`.overview` describes people and draws a numbered contact sheet.
"""
from .crop import crop_image, crop_regions, crop_to_image, follow_boxes, image_to_crop
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
    "crop_image",
    "crop_regions",
    "crop_to_image",
    "describe",
    "follow_boxes",
    "image_to_crop",
    "parse_person",
    "people_table",
    "select_people",
    "track_detections",
    "write_contact_sheet",
]
