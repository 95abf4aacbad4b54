"""HybrIK's published ResNet-34 regressor (the network IKOL's paper puts before its IK layer):
the torch module, checkpoint loading, ONNX export, and crop and output conventions."""
from __future__ import annotations

from .checkpoint import CheckpointError, load_checkpoint
from .network import INPUT_NAME, OUTPUT_NAMES, HybrIKNetwork

__all__ = ["INPUT_NAME", "OUTPUT_NAMES", "CheckpointError", "HybrIKNetwork", "load_checkpoint"]
