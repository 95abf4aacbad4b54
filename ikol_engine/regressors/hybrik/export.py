"""Writing the regressor as an ONNX model with a dynamic batch axis.

torch 2.13's default (dynamo) exporter needs ``onnxscript``; its TorchScript exporter
(``dynamo=False``) writes the graph itself but still imports the ``onnx`` package for a
last pass, so exporting needs ``onnx`` while running the model needs only onnxruntime.
``onnx`` 1.17.0 is the last release that works with mediapipe's protobuf 4: it is the
``export`` extra (``pip install 'ikol-mocap[export]'``, also in the ``test`` extra), and
:func:`export_network` says so when it is missing. The runtime set never needs it.

After writing, the file is run once with onnxruntime on the CPU and compared with torch,
so a bad export fails here rather than in the middle of an analysis.
"""
from __future__ import annotations

import importlib.util
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...common.atomic_file import atomic_path
from ..base import RegressorError
from . import conventions as hc
from .checkpoint import load_checkpoint
from .network import INPUT_NAME, OUTPUT_NAMES, HybrIKNetwork

#: ONNX opset of the export (onnxruntime 1.31 runs 7..23; the TorchScript exporter writes up to 20).
OPSET = 17
#: Largest difference between torch and onnxruntime the export check accepts.
EXPORT_TOLERANCE = 1e-4
MISSING_ONNX = ("exporting to ONNX needs the 'onnx' package, which the runtime set does not include: "
                "pip install 'ikol-mocap[export]' (or: pip install -r tools/requirements-export.txt)")


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export_network` wrote: the file and the largest torch/onnxruntime difference."""

    path: Path
    max_difference: float


def export_available() -> bool:
    """True where the ``onnx`` package the exporter needs is importable."""
    return importlib.util.find_spec("onnx") is not None


def metadata() -> dict[str, str]:
    """The conventions written into the ONNX file (checked and read by the backend)."""
    return {hc.FORMAT_KEY: hc.FORMAT, "ikol.conventions": json.dumps({
        "input_size": hc.INPUT_SIZE, "focal_length": hc.FOCAL_LENGTH, "depth_factor_m": hc.DEPTH_FACTOR_M,
        "box_scale": hc.BOX_SCALE, "mean": hc.MEAN, "std": hc.STD, "outputs": OUTPUT_NAMES})}


def export_network(network: HybrIKNetwork, output: str | Path, *, check_batch: int = 2) -> ExportReport:
    """Writes ``network`` as ONNX (opset :data:`OPSET`, dynamic batch), atomically.

    Args:
        network: the regressor; it is switched to eval mode.
        output: the .onnx file to write.
        check_batch: frames of random input for the torch/onnxruntime comparison.
    Raises:
        RegressorError: ``onnx`` missing (the message says how to install it), or the
            written model disagrees with torch by more than :data:`EXPORT_TOLERANCE`.
    """
    if not export_available():
        raise RegressorError(MISSING_ONNX)
    import onnx

    output = Path(output)
    network = network.eval()
    example = torch.zeros(1, 3, hc.INPUT_SIZE, hc.INPUT_SIZE)
    axes = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with atomic_path(output) as temp, warnings.catch_warnings():
        # The TorchScript exporter warns that it is the legacy one; it is chosen on purpose.
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(network, (example,), str(temp), dynamo=False, input_names=[INPUT_NAME],
                          output_names=list(OUTPUT_NAMES), dynamic_axes=axes, opset_version=OPSET)
        model = onnx.load(str(temp))
        for key, value in metadata().items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(temp))
        difference = _compare(network, temp, check_batch)
        if not difference <= EXPORT_TOLERANCE:  # raised inside: the partial file goes, any old one stays
            raise RegressorError(f"the exported model differs from torch by {difference:.3g} "
                                 f"(> {EXPORT_TOLERANCE}); {output} was not written")
    return ExportReport(output, difference)


def export_checkpoint(checkpoint: str | Path, output: str | Path) -> ExportReport:
    """Loads a released checkpoint (see :mod:`.checkpoint`) and exports it (see :func:`export_network`)."""
    if not export_available():  # before the (slow) load
        raise RegressorError(MISSING_ONNX)
    return export_network(load_checkpoint(checkpoint), output)


def _compare(network: HybrIKNetwork, path: Path, batch: int) -> float:
    """Largest absolute difference of all outputs, torch against onnxruntime's CPU provider."""
    import onnxruntime

    generator = torch.Generator().manual_seed(0)
    image = torch.randn(batch, 3, hc.INPUT_SIZE, hc.INPUT_SIZE, generator=generator)
    with torch.no_grad():
        expected = [t.numpy() for t in network(image)]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(OUTPUT_NAMES), {INPUT_NAME: image.numpy()})
    return max(float(np.max(np.abs(a - b))) for a, b in zip(expected, got))
