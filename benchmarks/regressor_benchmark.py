"""Frames per second of the paper's regressor (HybrIK's ResNet-34) at batch 1, 16 and 64.

The network is randomly initialised (its speed does not depend on the weights), exported
with ``ikol_engine.regressors.hybrik.export`` and timed on onnxruntime's CPU provider and, where a
GPU really works, its CUDA provider; torch on the CPU (and CUDA where present) for
comparison. Network only: from the normalised 256x256 crops to the five outputs. The
crop preparation is timed on its own per frame (OpenCV warp and normalisation).
Writes benchmarks/results/regressor.json and regressor.md.

Usage: python benchmarks/regressor_benchmark.py [--batches 1 16 64] [--seconds 20]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime
import torch

from ikol_engine import __version__
from ikol_engine.regressors.hybrik import HybrIKNetwork
from ikol_engine.regressors.hybrik import conventions as hc
from ikol_engine.regressors.hybrik.crop import crop_box, crop_images
from ikol_engine.regressors.hybrik.export import export_network
from ikol_engine.regressors.hybrik.network import INPUT_NAME
from ikol_engine.regressors.hybrik.onnx_regressor import CPU, CUDA, create_session

RESULTS = Path(__file__).resolve().parent / "results"


def rate(run, batch: int, budget_s: float) -> dict:
    """Frames/s of ``run`` (one batch per call): one warm-up call, then calls until the budget (at least 3)."""
    run()
    times = []
    while len(times) < 3 or sum(times) < budget_s:
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    best, median = min(times), float(np.median(times))
    return {"batch": batch, "runs": len(times), "frames_per_s": batch / median, "best_frames_per_s": batch / best}


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument("--seconds", type=float, default=20.0, help="time budget per row")
    args = parser.parse_args()

    network = HybrIKNetwork().eval()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as scratch:
        path = export_network(network, Path(scratch) / "regressor.onnx").path
        sessions = {CPU: create_session(path, "cpu")[0]}
        session, provider = create_session(path, "auto")
        if provider == CUDA:
            sessions[CUDA] = session
        generator = torch.Generator().manual_seed(0)
        for batch in args.batches:
            images = torch.randn(batch, 3, hc.INPUT_SIZE, hc.INPUT_SIZE, generator=generator)
            feed = {INPUT_NAME: images.numpy()}
            for name, sess in sessions.items():
                row = rate(lambda: sess.run(None, feed), batch, args.seconds)
                rows.append({"backend": "onnxruntime", "provider": name, **row})
                print(rows[-1], flush=True)
            devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
            for device in devices:
                model, data = network.to(device), images.to(device)

                def run() -> None:
                    with torch.inference_mode():
                        model(data)
                    if device == "cuda":
                        torch.cuda.synchronize()

                rows.append({"backend": "torch", "provider": device, **rate(run, batch, args.seconds)})
                print(rows[-1], flush=True)
            network.to("cpu")

    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (1080, 1920, 3), dtype=np.uint8) for _ in range(16)]
    boxes = crop_box(np.tile([[800.0, 200.0, 1100.0, 900.0]], (16, 1)))
    crop = rate(lambda: crop_images(frames, boxes), 16, min(args.seconds, 5.0))
    machine = {"cpu": cpu_name(), "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
               "torch": torch.__version__, "onnxruntime": onnxruntime.__version__, "engine": __version__,
               "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
               "onnxruntime_providers": onnxruntime.get_available_providers()}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "regressor.json").write_text(json.dumps(
        {"machine": machine, "rows": rows, "crop_1080p_frames_per_s": crop["frames_per_s"]}, indent=2) + "\n")
    (RESULTS / "regressor.md").write_text(markdown(rows, machine, crop["frames_per_s"]))
    print((RESULTS / "regressor.md").read_text())


def markdown(rows: list[dict], machine: dict, crop_rate: float) -> str:
    lines = [f"Machine: {machine['cpu']}, {machine['cpu_count']} CPU threads"
             + (f", GPU {machine['gpu']}" if machine["gpu"] else ", no GPU")
             + f"; torch {machine['torch']}, onnxruntime {machine['onnxruntime']}.",
             "HybrIK ResNet-34 regressor (256x256 crop in; heatmaps 29x64x64x64, soft-argmax, heads out), "
             "random weights. Median over runs.", "",
             "| backend | provider | batch | frames/s |", "|---|---|---:|---:|"]
    lines += [f"| {r['backend']} | {r['provider']} | {r['batch']} | {r['frames_per_s']:.1f} |" for r in rows]
    lines += ["", f"Crop and normalisation of a 1920x1080 frame (OpenCV, one thread): {crop_rate:.0f} frames/s."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
