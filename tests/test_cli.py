"""The ikol-engine command line."""
import json
import subprocess
import sys
from pathlib import Path

from ikol_engine.cli import main

SCRIPT = Path(sys.executable).parent / "ikol-engine"


def test_info_reports_device_and_body(capsys):
    assert main(["info", "--device", "cpu"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["device"] == "cpu" and info["gpu"] is None
    assert info["vertices"] > 10_000 and info["num_betas"] == 88


def test_bad_device_is_an_error_not_a_traceback(capsys):
    assert main(["info", "--device", "tpu"]) == 2
    err = capsys.readouterr().err
    assert "unknown device 'tpu'" in err and "Traceback" not in err


def test_broken_body_file_is_named(tmp_path, capsys):
    broken = tmp_path / "SMPL_BROKEN.pkl"
    broken.write_bytes(b"\x80\x02}q\x00(X")
    assert main(["info", "--body", str(broken)]) == 2
    assert str(broken) in capsys.readouterr().err


def test_console_script_installed():
    done = subprocess.run([str(SCRIPT), "--version"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("ikol-engine ")
