"""The IKOL inverse-kinematics layer."""
from .shape import fit_shape
from .solver import IKResult, default_body, solve

__all__ = ["IKResult", "default_body", "fit_shape", "solve"]
