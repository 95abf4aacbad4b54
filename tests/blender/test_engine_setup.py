"""Set Up Engine and Check Engine: real venvs and pip runs, offline.

pip only ever sees local packages made here (``--no-index``): a tiny wheel built with
zipfile, and a source folder whose in-tree build backend hangs, to cancel pip while it
installs. The base Python of each venv is this test's own.
"""
from __future__ import annotations

import base64
import hashlib
import importlib.util
import subprocess
import sys
import time
import tomllib
import zipfile
from pathlib import Path
from types import SimpleNamespace

import bpy
import addon_utils  # Blender's module, importable once bpy is imported
import pytest
import torch

from ikol_blender import settings
from ikol_blender.engine import setup as engine_setup
from ikol_blender.engine.setup import EngineSetup, Phase, Step
from ikol_blender.ui import engine_operators, preferences

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "ikoltiny"
TIMEOUT_S = 120.0
HEADERS = [f"[{number}/4] {step.value}" for number, step in enumerate(Step, 1)]


def pyproject_dependencies() -> list[str]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def tiny_wheel(folder: Path) -> Path:
    """``ikoltiny-1.0``, a pure-Python wheel holding ``VALUE = 42``."""
    folder.mkdir(parents=True, exist_ok=True)
    info = f"{PACKAGE}-1.0.dist-info"
    files = {f"{PACKAGE}/__init__.py": "VALUE = 42\n",
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {PACKAGE}\nVersion: 1.0\n",
             f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for name, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(text.encode())}")
    files[f"{info}/RECORD"] = "\n".join([*record, f"{info}/RECORD,,"]) + "\n"
    wheel = folder / f"{PACKAGE}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return wheel


def hanging_package(folder: Path, marker: Path) -> Path:
    """A source folder whose build backend writes its pid to ``marker`` and then hangs."""
    folder.mkdir(parents=True)
    (folder / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "hanging_backend"\n'
                                           'backend-path = ["."]\n\n[project]\nname = "ikol-hanging"\n'
                                           'version = "1.0"\n')
    (folder / "hanging_backend.py").write_text(
        "import os, pathlib, time\n\n"
        "def _hang(*args, **kwargs):\n"
        f"    pathlib.Path({str(marker)!r}).write_text(str(os.getpid()))\n"
        "    time.sleep(600)\n\n"
        "build_wheel = prepare_metadata_for_build_wheel = _hang\n")
    return folder


def missing_tiny(python: Path) -> list[str]:
    probe = f"import importlib.util; print('' if importlib.util.find_spec({PACKAGE!r}) else {PACKAGE!r})"
    return subprocess.run([str(python), "-c", probe], capture_output=True, text=True, check=True).stdout.split()


def tiny_value(python: Path) -> str:
    return subprocess.run([str(python), "-c", f"import {PACKAGE}; print({PACKAGE}.VALUE)"], capture_output=True,
                          text=True, check=True).stdout.strip()


def finish(setup: EngineSetup, on_tick=None) -> list[str]:
    """Polls a started setup to its end as the operator's timer does; returns its log lines."""
    lines = []
    deadline = time.monotonic() + TIMEOUT_S
    while not setup.finished:
        assert time.monotonic() < deadline, "the setup took too long"
        lines += setup.poll(0.05)
        if on_tick is not None:
            on_tick(setup)
    return lines


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie has ended; only its parent has not collected it


@pytest.fixture(scope="module")
def wheels(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("wheels")
    tiny_wheel(folder)
    return folder


@pytest.fixture(scope="module")
def installed(tmp_path_factory, wheels):
    """A successful setup of the tiny package: (setup, log lines, (step, fraction) per poll)."""
    venv = tmp_path_factory.mktemp("engine") / "venv"
    setup = EngineSetup(Path(sys.executable), venv, [f"{PACKAGE}==1.0"], ["--no-index", "--find-links", str(wheels)],
                        verify=missing_tiny)
    states = []
    setup.start()
    lines = finish(setup, lambda s: states.append((s.step, s.fraction)))
    return setup, lines, states


# ---- requirements ------------------------------------------------------------------------

def test_requirements_are_pyprojects_dependencies():
    assert engine_setup.engine_requirements() == pyproject_dependencies()
    # From a checkout nothing is vendored: the checkout itself goes into the venv too.
    assert engine_setup.install_packages() == [*pyproject_dependencies(), "-e", str(ROOT)]


def test_zip_carries_the_requirements_file(tmp_path):
    spec = importlib.util.spec_from_file_location("build_addon", ROOT / "build_addon.py")
    build_addon = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build_addon)
    archive = build_addon.build(tmp_path / "ikol_mocap.zip")
    installed = tmp_path / "installed"
    with zipfile.ZipFile(archive) as extension:
        extension.extractall(installed, [name for name in extension.namelist()
                                         if name == "engine_requirements.txt" or name.startswith("vendor/")])
    text = (installed / "engine_requirements.txt").read_text()
    assert engine_setup.parse_requirements(text) == pyproject_dependencies()
    assert engine_setup.engine_requirements(installed) == pyproject_dependencies()
    # Installed, the engine is vendored: pip gets the requirements only.
    assert engine_setup.install_packages(installed) == pyproject_dependencies()


def test_torch_build_chooses_pytorchs_index():
    assert engine_setup.torch_index_arguments("default") == []
    assert engine_setup.torch_index_arguments("cu128") == ["--extra-index-url",
                                                           "https://download.pytorch.org/whl/cu128"]


# ---- the runner ----------------------------------------------------------------------------

def test_setup_makes_a_working_venv(installed):
    setup, lines, states = installed
    assert setup.phase is Phase.SUCCEEDED, setup.message
    assert setup.message == f"engine Python ready: {setup.python}"
    assert [line for line in lines if line in HEADERS] == HEADERS
    assert f"Successfully installed {PACKAGE}-1.0" in lines
    seen = [step for step in dict.fromkeys(step for step, _ in states) if step is not None]
    assert Step.INSTALL in seen and seen == sorted(seen, key=list(Step).index)
    fractions = [fraction for _, fraction in states]
    assert fractions == sorted(fractions) and setup.fraction == 1.0
    assert tiny_value(setup.python) == "42"
    assert not setup.staging.exists()
    assert sorted(path.name for path in setup.venv.parent.iterdir()) == ["setup.log", "venv"]
    log = setup.log_file.read_text()
    assert all(header in log for header in HEADERS) and log.endswith(setup.message + "\n")


def test_cancel_mid_install_keeps_the_previous_venv(installed, tmp_path):
    previous, _, _ = installed
    marker = tmp_path / "backend.pid"
    setup = EngineSetup(Path(sys.executable), previous.venv, [str(hanging_package(tmp_path / "hanging", marker))],
                        ["--no-index"], verify=missing_tiny)
    setup.start()
    deadline = time.monotonic() + TIMEOUT_S
    while not marker.exists():  # pip is now running the package's build backend
        assert time.monotonic() < deadline and not setup.finished, setup.message
        setup.poll(0.05)
    setup.poll()
    assert setup.step is Step.INSTALL and setup.staging.is_dir()
    setup.cancel()
    finish(setup)
    assert setup.phase is Phase.CANCELLED
    assert setup.message == "engine setup cancelled; the previous engine Python is unchanged"
    assert not setup.staging.exists()
    assert tiny_value(previous.python) == "42"
    # pip's own child went with it: cancelling ends the whole process group.
    backend = int(marker.read_text())
    deadline = time.monotonic() + 10
    while alive(backend) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive(backend)


@pytest.mark.parametrize("case", ["pip", "verify"])
def test_failure_ends_failed_and_keeps_the_previous_venv(installed, wheels, case):
    previous, _, _ = installed
    if case == "pip":  # offline, so pip finds nothing by that name
        setup = EngineSetup(Path(sys.executable), previous.venv, ["ikol-no-such-package"], ["--no-index"],
                            verify=missing_tiny)
        expected = ("Installing the engine's packages failed (exit 1): "
                    "ERROR: No matching distribution found for ikol-no-such-package")
    else:  # pip succeeds, yet the new Python lacks a module the engine needs
        setup = EngineSetup(Path(sys.executable), previous.venv, [f"{PACKAGE}==1.0"],
                            ["--no-index", "--find-links", str(wheels)], verify=lambda python: ["torch"])
        expected = "the new environment lacks torch after installing"
    setup.start()
    finish(setup)
    assert setup.phase is Phase.FAILED
    assert setup.message == expected
    assert not setup.staging.exists()
    assert tiny_value(previous.python) == "42"


class Layout:
    """Stands in for a UILayout (none exists in background mode): records what is drawn."""

    def __init__(self, calls: list) -> None:
        self.calls = calls

    def __getattr__(self, name: str):
        def draw(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            return Layout(self.calls)
        return draw


def test_preferences_draw_the_running_setup_and_the_check(monkeypatch, tmp_path):
    setup = EngineSetup(Path(sys.executable), tmp_path / "venv", [])
    setup.phase, setup.step, setup.fraction = Phase.RUNNING, Step.INSTALL, 0.5  # as polls leave it mid-install
    setup.log.extend(f"pip line {number}" for number in range(20))
    monkeypatch.setattr(engine_operators, "SETUP", setup)
    monkeypatch.setattr(engine_operators, "CHECK", engine_operators.EngineCheck(
        python="/engine/python", result={"torch": "2.13.0", "device": "cuda:0", "gpu": "NVIDIA H100"}))
    calls = []
    preferences.IKOLPreferences.draw(SimpleNamespace(layout=Layout(calls)), bpy.context)
    progress = [kwargs for name, _, kwargs in calls if name == "progress"]
    assert progress == [{"factor": 0.5, "type": "BAR", "text": "Installing the engine's packages 50%"}]
    assert ("operator", ("ikol.cancel_engine_setup",), {"icon": "CANCEL"}) in calls
    labels = [kwargs["text"] for name, _, kwargs in calls if name == "label"]
    assert [label for label in labels if label.startswith("pip line")] == [f"pip line {n}" for n in range(8, 20)]
    assert {"Engine Python: /engine/python", "Device: cuda:0", "GPU: NVIDIA H100"} <= set(labels)


# ---- the operators -------------------------------------------------------------------------

@pytest.fixture
def enabled():
    """The add-on enabled from the checkout, so its preferences exist; yields them."""
    addon_utils.enable("ikol_blender", default_set=True, handle_error=None)
    try:
        yield bpy.context.preferences.addons["ikol_blender"].preferences
    finally:
        addon_utils.disable("ikol_blender", default_set=True)


def test_setup_operator_refuses_without_online_access(enabled, monkeypatch, tmp_path):
    monkeypatch.setattr(settings, "online_access", lambda: False)
    monkeypatch.setattr(settings, "engine_folder", lambda: tmp_path)
    before = engine_operators.SETUP
    with pytest.raises(RuntimeError, match="Allow Online Access in Preferences > System > Network"):
        bpy.ops.ikol.setup_engine()
    assert engine_operators.SETUP is before and list(tmp_path.iterdir()) == []


def test_setup_operator_runs_in_place_in_background(enabled, monkeypatch, tmp_path, wheels, capsys):
    monkeypatch.setattr(settings, "online_access", lambda: True)
    monkeypatch.setattr(settings, "engine_folder", lambda: tmp_path)
    monkeypatch.setattr(engine_setup, "install_packages", lambda: [f"{PACKAGE}==1.0"])
    monkeypatch.setattr(engine_setup, "missing_engine_modules", missing_tiny)
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # pip's environment settings reach the operator's pip
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    assert bpy.app.background
    assert bpy.ops.ikol.setup_engine() == {"FINISHED"}
    python = engine_setup.venv_python(tmp_path / "venv")
    assert enabled.engine_python == str(python)
    assert tiny_value(python) == "42"
    out = capsys.readouterr().out
    assert all(header in out for header in HEADERS)
    assert f"IKOL engine Python ready: {python}" in out


def test_a_setup_outlives_its_operator(enabled, installed, monkeypatch, tmp_path, capsys):
    """Blender ends a modal operator when its window closes or a file loads; an app timer takes over."""
    monkeypatch.setattr(engine_operators, "SETUP", EngineSetup(Path(sys.executable), tmp_path / "venv", []))
    assert engine_operators._poll_detached_setup() == engine_operators._TICK_S  # not finished: polled again
    finished, _, _ = installed
    monkeypatch.setattr(engine_operators, "SETUP", finished)
    assert engine_operators._poll_detached_setup() is None
    assert enabled.engine_python == str(finished.python)
    assert capsys.readouterr().out.endswith(f"IKOL engine Python ready: {finished.python}\n")


def test_check_engine_in_background_shows_device_and_versions(enabled):
    enabled.engine_python, enabled.device = sys.executable, "cpu"
    assert bpy.ops.ikol.check_engine() == {"FINISHED"}
    check = engine_operators.CHECK
    assert not check.running and not check.error
    assert check.result["device"] == "cpu" and check.result["torch"] == torch.__version__
    assert check.result["gpu"] is None
    lines = check.lines()
    assert lines[0] == f"Engine Python: {sys.executable}"
    assert f"torch {torch.__version__}, mediapipe " in lines[2]
    assert lines[3:] == ["Device: cpu", "GPU: none in use"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a torch without CUDA")
def test_check_engine_shows_the_engines_refusal(enabled):
    enabled.engine_python, enabled.device = sys.executable, "cuda"
    with pytest.raises(RuntimeError, match="CUDA"):
        bpy.ops.ikol.check_engine()
    check = engine_operators.CHECK
    assert not check.running and check.result is None
    assert check.lines() == [check.error] and "CUDA" in check.error


def test_check_engine_names_a_bad_engine_python(enabled, tmp_path):
    enabled.engine_python = str(tmp_path / "no-python")
    with pytest.raises(RuntimeError, match="is not an executable file"):
        bpy.ops.ikol.check_engine()
    message = f"IKOL engine: engine Python {tmp_path / 'no-python'} is not an executable file"
    assert engine_operators.CHECK.lines() == [message]
