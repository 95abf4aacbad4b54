"""Write a file so that readers see either the old version or the whole new one.

Results are written to a temporary file beside the target and renamed onto it only once
complete. Ctrl-C or a crash part-way through a long run therefore never leaves a
half-written result at the target path, and a previous result there survives untouched.
The rename is atomic because the temporary file is in the same directory (so on the same
file system). A process killed outright (SIGKILL, a power cut) cannot delete its temporary
file; whoever started it removes it with :func:`remove_partial_files`.
"""
from __future__ import annotations

import contextlib
import os
import re
import secrets
from collections.abc import Iterator
from pathlib import Path

_PARTIAL = ".partial-"
_TOKEN_BYTES = 6


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yields a temporary path to write; on success it replaces ``path``.

    The temporary file is ``.NAME.partial-<random>SUFFIX`` in ``path``'s directory. It
    keeps ``path``'s final suffix because some writers (``np.savez``) append their own
    suffix to a name without it. On any exception, KeyboardInterrupt included, the
    temporary file is deleted and the exception re-raised; ``path`` is not touched. The
    parent directory is created if missing.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}{_PARTIAL}{secrets.token_hex(_TOKEN_BYTES)}{path.suffix}")
    try:
        yield temp
        # Data must be on disk before the rename, or a power cut could leave the new
        # name pointing at an empty file.
        _fsync_file(temp)
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_directory(path.parent)


def remove_partial_files(path: Path) -> list[Path]:
    """Deletes the temporary files :func:`atomic_path` left for ``path`` in a process that
    was killed before it could; returns them. For a folder (a run writing one file per
    person into it), those left for any file in it. Call it only once that process is
    gone: a live writer's temporary file looks the same."""
    path = Path(path)
    token = rf"{re.escape(_PARTIAL)}[0-9a-f]{{{2 * _TOKEN_BYTES}}}"
    if path.is_dir():
        folder, name = path, re.compile(rf"\..+{token}(\.[^.]+)?")
    else:
        folder, name = path.parent, re.compile(rf"\.{re.escape(path.name)}{token}{re.escape(path.suffix)}")
    try:
        leftovers = [folder / entry for entry in os.listdir(folder) if name.fullmatch(entry)]
    except OSError:  # no such folder: nothing was written there
        return []
    for leftover in leftovers:
        leftover.unlink(missing_ok=True)
    return leftovers


def _fsync_file(path: Path) -> None:
    with open(path, "rb+") as stream:
        os.fsync(stream.fileno())


def _fsync_directory(directory: Path) -> None:
    """Makes the rename itself durable; only POSIX can open a directory for this."""
    if os.name != "posix":
        return
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
