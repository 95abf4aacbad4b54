"""Builds the installable Blender extension zip: manifest, add-on, and the engine vendored inside.

Usage: python build_addon.py [-o dist/ikol_mocap-VERSION.zip]
"""
from __future__ import annotations

import argparse
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent
SKIP_PARTS = {"__pycache__"}


def _sources(package: Path) -> list[Path]:
    return sorted(p for p in package.rglob("*") if p.is_file() and not SKIP_PARTS & set(p.parts))


def build(output: Path | None = None) -> Path:
    """Writes the zip and returns its path."""
    manifest = tomllib.loads((ROOT / "blender_manifest.toml").read_text())
    output = output or ROOT / "dist" / f"{manifest['id']}-{manifest['version']}.zip"
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_suffix(".zip.partial")
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.write(ROOT / "blender_manifest.toml", "blender_manifest.toml")
        for path in _sources(ROOT / "ikol_blender"):
            archive.write(path, path.relative_to(ROOT / "ikol_blender").as_posix())
        # The engine travels inside the add-on so it can start without a checkout.
        for path in _sources(ROOT / "ikol_engine"):
            archive.write(path, "vendor/" + path.relative_to(ROOT).as_posix())
    partial.replace(output)
    return output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, help="zip to write")
    print(build(parser.parse_args().output))


if __name__ == "__main__":
    main()
