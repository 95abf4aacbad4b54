"""The IKOL inverse-kinematics layer."""
from .contacts import contact_targets, detect_contacts
from .focal import estimate_focal
from .shape import DistanceFit, fit_shape, shape_fit_report
from .solver import IKResult, default_body, solve
from .world_terms import FOOT_KEYPOINTS, PinholeCamera, foot_clearance

__all__ = ["FOOT_KEYPOINTS", "DistanceFit", "IKResult", "PinholeCamera", "contact_targets", "default_body", "detect_contacts",
           "estimate_focal", "fit_shape", "foot_clearance", "shape_fit_report", "solve"]
