"""The extension zip: built, accepted by Blender's validator, installed into bpy, converting a video.

The add-on under test is the installed copy (``bl_ext.user_default.ikol_mocap``) running
the engine vendored inside it, not the checkout.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import bpy
import addon_utils  # Blender's module, importable once bpy is imported
import pytest

import ikol_engine
from ikol_engine import samples

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "bl_ext.user_default.ikol_mocap"


def load_build_addon():
    spec = importlib.util.spec_from_file_location("build_addon", ROOT / "build_addon.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    archive = tmp_path_factory.mktemp("dist") / "ikol_mocap.zip"
    result = subprocess.run([sys.executable, "build_addon.py", "-o", str(archive)], cwd=ROOT, capture_output=True,
                            text=True, timeout=300)
    return archive, result


@pytest.fixture(scope="module")
def installed(built):
    """The built zip installed and enabled in this bpy; uninstalled afterwards."""
    archive, _ = built
    assert bpy.ops.extensions.package_install_files(filepath=str(archive), repo="user_default",
                                                    enable_on_install=True) == {"FINISHED"}
    addon = importlib.import_module(PACKAGE)
    for submodule in ("engine.process", "engine.link"):  # reached below as attributes of the package
        importlib.import_module(f"{PACKAGE}.{submodule}")
    yield addon
    # Disabled first: bpy 4.2 as a module crashes at exit (a Python UI type freed after
    # Python's end) when the uninstall itself disables an add-on with operators.
    addon_utils.disable(PACKAGE, default_set=True)
    repos = bpy.context.preferences.extensions.repos
    index = next(i for i, repo in enumerate(repos) if repo.module == "user_default")
    bpy.ops.extensions.package_uninstall(repo_directory=repos[index].directory, repo_index=index, pkg_id="ikol_mocap")
    assert PACKAGE not in bpy.context.preferences.addons


def test_build_validates_and_lays_out_the_zip(built):
    archive, result = built
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(archive)
    assert "blender_ext.py validate: Success" in result.stderr
    names = zipfile.ZipFile(archive).namelist()
    for name in ("blender_manifest.toml", "engine_requirements.txt", "__init__.py", "batch.py", "engine/process.py",
                 "engine/setup.py", "scene/importer.py", "ui/preferences.py",
                 "vendor/ikol_engine/cli.py", "vendor/ikol_engine/motion/file.py",
                 "vendor/ikol_engine/body/data/default_body.npz"):
        assert name in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert not [name for name in names if name.startswith(("ikol_blender/", "tests/"))]


def test_validator_is_blenders_and_rejects_a_bad_manifest(tmp_path):
    build_addon = load_build_addon()
    validator = build_addon.blender_validator()
    major, minor = bpy.app.version[:2]
    assert validator is not None and f"{major}.{minor}" in validator.parts
    manifest = (ROOT / "blender_manifest.toml").read_text().replace('type = "add-on"', 'type = "plug-in"')
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as bad:
        bad.writestr("blender_manifest.toml", manifest)
        bad.writestr("__init__.py", "")
    with pytest.raises(build_addon.ValidationError, match="type"):
        build_addon.validate(archive, validator)


def test_installed_addon_is_enabled_with_its_preferences_and_command(installed):
    assert addon_utils.check(PACKAGE)[1]
    assert Path(installed.__file__).parent.parent.name == "user_default"
    preferences = bpy.context.preferences.addons[PACKAGE].preferences
    assert preferences.bl_rna.properties["engine_python"].subtype == "FILE_PATH"
    assert installed._cli_registration is not None


def test_installed_addon_runs_its_vendored_engine(installed):
    engine = installed.engine.process.resolve_engine(sys.executable)
    vendor = Path(installed.__file__).parent / "vendor"
    assert engine.source == vendor
    probe = subprocess.run([str(engine.python), "-c", "import ikol_engine; print(ikol_engine.__file__)"],
                           env=engine.environment(), cwd=ROOT, capture_output=True, text=True, check=True)
    # From the repository root, where the checkout's engine would be found first otherwise.
    assert Path(probe.stdout.strip()) == vendor / "ikol_engine" / "__init__.py"
    assert Path(ikol_engine.__file__).parent != vendor / "ikol_engine"


def test_conversion_through_the_installed_addon(installed, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv(installed.engine.process.ENVIRONMENT_VARIABLE, raising=False)
    preferences = bpy.context.preferences.addons[PACKAGE].preferences
    video, output = samples.demo_video(), tmp_path / "out"
    convert = installed._cli_registration.function
    # The preference comes before this very Python: a wrong one is reported, not skipped.
    preferences.engine_python = str(tmp_path / "no-python")
    assert convert(["convert", str(video), "-o", str(output)]) == 2
    assert f"engine Python {tmp_path / 'no-python'} is not an executable file" in capsys.readouterr().err
    environments = []
    original = installed.engine.process.Engine.environment

    def recorded(engine):
        environments.append(original(engine))
        return environments[-1]

    monkeypatch.setattr(installed.engine.process.Engine, "environment", recorded)
    preferences.engine_python = sys.executable
    try:
        code = convert(["convert", str(video), "-o", str(output), "--end", "0.4", "--fbx"])
    finally:
        preferences.engine_python = ""
    assert code == 0, capsys.readouterr().err
    assert sorted(path.name for path in output.iterdir()) == ["demo.blend", "demo.fbx", "demo.ikol.json", "demo.npz"]
    vendor = str(Path(installed.__file__).parent / "vendor")
    assert environments and all(env["PYTHONPATH"].split(os.pathsep)[0] == vendor for env in environments)
    motion = installed.engine.link.read_motion(output / "demo.npz")
    assert len(motion.frame_indices) == 12
    bpy.ops.wm.open_mainfile(filepath=str(output / "demo.blend"))
    (armature,) = [obj for obj in bpy.data.objects if obj.type == "ARMATURE"]
    # The body's 24 bones and, the hands analysed by default, SMPL-H's 30 fingers.
    assert motion.has_fingers and len(armature.data.bones) == len(motion.joint_names) + 30 == 54
    bpy.ops.wm.read_homefile(use_empty=True, use_factory_startup=True)
