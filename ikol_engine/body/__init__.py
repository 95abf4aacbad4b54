"""Body models in SMPL's layout: the bundled default body or a user's SMPL file."""
from .model import BodyModel
from .model_file import DEFAULT_BODY_PATH, BodyModelError

__all__ = ["BodyModel", "BodyModelError", "DEFAULT_BODY_PATH"]
