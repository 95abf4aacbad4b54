import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))

from ikol_engine.body import BodyModel  # noqa: E402


@pytest.fixture(scope="session")
def body() -> BodyModel:
    """The bundled default body, the one users get without an SMPL licence."""
    return BodyModel()


@pytest.fixture
def generator() -> torch.Generator:
    return torch.Generator().manual_seed(1234)
