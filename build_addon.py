"""Builds the installable Blender extension zip: manifest, add-on, and the engine vendored inside.

Usage: python build_addon.py [-o dist/ikol_mocap-VERSION.zip]

The zip is checked with Blender's own extension validator (``blender_ext.py validate``,
shipped inside the bpy package) when bpy is installed, and is only put in place if it passes.
"""
from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

from ikol_engine.common.atomic_file import atomic_path

ROOT = Path(__file__).resolve().parent
#: The engine's pinned requirements at the zip's root, for Set Up Engine and for `pip install -r`.
REQUIREMENTS_NAME = "engine_requirements.txt"
SKIP_PARTS = {"__pycache__", ".pytest_cache"}
SKIP_SUFFIXES = {".pyc", ".pyo"}


class ValidationError(Exception):
    """Blender's validator rejected the zip."""


def _sources(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*")
                  if p.is_file() and not SKIP_PARTS & set(p.parts) and p.suffix not in SKIP_SUFFIXES)


def engine_requirements() -> str:
    """The requirements file's text: pyproject.toml's dependencies, one a line."""
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    header = "# The IKOL engine's pinned requirements (from pyproject.toml): pip install -r engine_requirements.txt\n"
    return header + "".join(f"{requirement}\n" for requirement in dependencies)


def blender_validator() -> Path | None:
    """``blender_ext.py`` of the installed bpy, found without importing bpy (slow), or None."""
    spec = importlib.util.find_spec("bpy")
    if spec is None or not spec.submodule_search_locations:
        return None
    found = sorted(Path(spec.submodule_search_locations[0]).glob("*/scripts/addons_core/bl_pkg/cli/blender_ext.py"))
    return found[-1] if found else None


def validate(archive: Path, validator: Path) -> str:
    """Runs Blender's validator (plain Python suffices) on ``archive``; returns its report."""
    result = subprocess.run([sys.executable, str(validator), "validate", str(archive)], capture_output=True,
                            text=True)
    report = (result.stdout + result.stderr).strip()
    if result.returncode != 0:
        raise ValidationError(report)
    return report


def build(output: Path | None = None, validator: Path | None = None) -> Path:
    """Writes the zip (validated with ``validator`` if given) and returns its path."""
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    output = output or ROOT / "dist" / f"{manifest['id']}-{manifest['version']}.zip"
    with atomic_path(output) as partial:
        with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(ROOT / "blender_manifest.toml", "blender_manifest.toml")
            archive.writestr(REQUIREMENTS_NAME, engine_requirements())
            for path in _sources(ROOT / "ikol_blender"):
                archive.write(path, path.relative_to(ROOT / "ikol_blender").as_posix())
            # The engine travels inside the add-on so it can start without a checkout.
            for path in _sources(ROOT / "ikol_engine"):
                archive.write(path, "vendor/" + path.relative_to(ROOT).as_posix())
        if validator is not None:
            print(f"build_addon: {validator.name} validate: {validate(partial, validator)}", file=sys.stderr)
    return output


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="zip to write")
    args = parser.parse_args()
    validator = blender_validator()
    if validator is None:
        print("build_addon: bpy is not installed, so Blender's extension validator was not run", file=sys.stderr)
    try:
        output = build(args.output, validator)
    except ValidationError as error:
        print(f"build_addon: Blender's extension validator rejected the zip:\n{error}", file=sys.stderr)
        return 1
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
