"""What a batch run wrote for one video, so that a rerun can skip it: ``STEM.ikol.json``.

The manifest records the SHA-256 of the video the engine analysed (as the motion file
records it), the settings that shape the outputs, and the SHA-256 of every output. A
video is up to date when its manifest exists, the settings are the same, every output
is still there with the recorded hash, and the video's hash is unchanged. The device is
not a setting here: it says where the work runs, not what comes out, so a batch redone
on a cluster's GPUs after a CPU run skips what is done.

Written atomically and last, after every output of the video: a manifest never names a
file that was not completely written.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .engine.link import atomic_path

SUFFIX = ".ikol.json"
_VERSION = 1


def manifest_path(output: Path, video: Path) -> Path:
    return output / f"{video.stem}{SUFFIX}"


def settings(analyze_options: dict[str, Any], exports: Sequence[str], with_preview: bool,
             retarget: dict[str, Any] | None = None) -> dict[str, Any]:
    """The settings a rerun must match: engine options (device left out), exports, preview,
    and the rig retargeted onto, if any."""
    engine = {key: value for key, value in analyze_options.items() if key != "device"}
    return {"engine": engine, "exports": sorted(exports), "preview": with_preview, "retarget": retarget}


def write_manifest(output: Path, video: Path, video_sha256: str, run_settings: dict[str, Any],
                   outputs: Sequence[Path]) -> Path:
    """Records a finished video; ``outputs`` are files in ``output``."""
    document = {"version": _VERSION, "video": video.name, "video_sha256": video_sha256, "settings": run_settings,
                "outputs": {path.name: file_sha256(path) for path in outputs}}
    path = manifest_path(output, video)
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path


def is_up_to_date(output: Path, video: Path, run_settings: dict[str, Any]) -> bool:
    """True when the outputs of ``video`` in ``output`` are complete and made with ``run_settings``."""
    try:
        document = json.loads(manifest_path(output, video).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(document, dict) or document.get("version") != _VERSION \
            or document.get("settings") != run_settings or not isinstance(document.get("outputs"), dict):
        return False
    # Cheap checks first: the video is hashed only when every output still matches.
    for name, digest in document["outputs"].items():
        if file_sha256(output / name, missing="") != digest:
            return False
    return file_sha256(video, missing="") == document.get("video_sha256")


def file_sha256(path: Path, missing: str | None = None) -> str:
    """Hex SHA-256 of a file; ``missing`` if given and the file cannot be read."""
    try:
        with open(path, "rb") as stream:
            return hashlib.file_digest(stream, "sha256").hexdigest()
    except OSError:
        if missing is None:
            raise
        return missing
