"""IKOL Mocap, the Blender extension (Blender 4.2+).

Imports only bpy, numpy and the standard library; the engine runs in its own Python
as a subprocess (see :mod:`.engine.process`, :mod:`.engine.client`). Registers the
preferences, the operators (File > Import > Video Motion (IKOL), Refine IK), the IKOL
sidebar tab and the command line ``blender -c ikol convert VIDEO... -o OUT_DIR``.
"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import bpy

from .ui import engine_operators, operators, panels, preferences, retarget_ops

CLI_COMMAND = "ikol"
_USAGE = f"usage: blender -c {CLI_COMMAND} convert VIDEO... -o OUT_DIR [options]  (convert --help for the options)"


class CliRegistration(NamedTuple):
    """What ``register_cli_command`` was given and gave back (an opaque handle)."""

    handle: Any
    function: Callable[[Sequence[str]], int]


_cli_registration: CliRegistration | None = None


def cli_command(argv: Sequence[str]) -> int:
    """``blender -c ikol ...``: returns the process's exit code."""
    if argv and argv[0] == "convert":
        from . import batch  # imported on use, so registering at every Blender start stays light

        return batch.main(argv[1:], prog=f"blender -c {CLI_COMMAND} convert")
    if list(argv[:1]) in (["-h"], ["--help"]):
        print(_USAGE)
        return 0
    print(_USAGE, file=sys.stderr)
    return 2


def register() -> None:
    global _cli_registration
    preferences.register()
    engine_operators.register()
    operators.register()
    panels.register()
    retarget_ops.register()
    _cli_registration = CliRegistration(bpy.utils.register_cli_command(CLI_COMMAND, cli_command), cli_command)


def unregister() -> None:
    global _cli_registration
    if _cli_registration is not None:
        bpy.utils.unregister_cli_command(_cli_registration.handle)
        _cli_registration = None
    retarget_ops.unregister()
    panels.unregister()
    operators.unregister()
    engine_operators.unregister()
    preferences.unregister()
