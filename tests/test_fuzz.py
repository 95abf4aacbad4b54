"""Property tests: any request line and any corruption of a motion file gets our own error, nothing else."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ikol_engine.motion import read_motion, write_motion
from ikol_engine.motion.file import MotionFileError
from ikol_engine.protocol import BadRequest, Request, encode_event, parse_request
from tests.test_motion_file import T, random_motion

REQUEST_TYPES = ["analyze", "refine", "cancel", "info", "shutdown", "dance", ""]
REQUEST_KEYS = ["id", "type", "video", "output", "motion", "options", "solve", "body", "target", "device",
                "end_s", "stride", "smoothing", "iterations", "ouput"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.sampled_from(REQUEST_KEYS) | st.text(max_size=8),
                                                               inner, max_size=5),
    max_leaves=20)

# Request-shaped objects reach far deeper into the parser than random text does.
request_objects = st.fixed_dictionaries(
    {"type": st.sampled_from(REQUEST_TYPES)},
    optional={key: json_values for key in REQUEST_KEYS if key != "type"}).map(json.dumps)

request_lines = (
    request_objects
    | json_values.map(json.dumps)
    | st.text(max_size=200)
    | st.binary(max_size=200)
    | st.builds(lambda n, c: c * n, st.integers(10_000, 200_000), st.sampled_from(["a", "é", "\u2028", "{"]))
)


def _refusal_is_one_event_line(error: BadRequest) -> None:
    line = encode_event(error.request_id, "error", message=str(error))
    assert line.endswith("\n") and "\n" not in line[:-1] and line.isascii()
    assert json.loads(line)["event"] == "error"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request_lines)
def test_any_line_parses_or_is_refused_with_bad_request(line: str | bytes) -> None:
    try:
        request = parse_request(line)
    except BadRequest as error:
        _refusal_is_one_event_line(error)
    else:
        assert isinstance(request, Request)


@pytest.fixture(scope="module")
def motion_bytes(tmp_path_factory) -> bytes:
    path = write_motion(tmp_path_factory.mktemp("motion") / "m.npz", random_motion(seed=3))
    return path.read_bytes()


corruptions = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0, 1), st.just(b"")),
    st.tuples(st.just("overwrite"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("flip"), st.floats(0, 1), st.integers(1, 255).map(lambda b: bytes([b]))),
)


def _corrupted(data: bytes, kind: str, where: float, payload: bytes) -> bytes:
    if not data:  # an earlier truncation left nothing to change
        return data
    at = min(int(where * len(data)), len(data) - 1)
    if kind == "truncate":
        return data[:at]
    if kind == "overwrite":
        return data[:at] + payload + data[at + len(payload):]
    if kind == "insert":
        return data[:at] + payload + data[at:]
    return data[:at] + bytes([data[at] ^ payload[0]]) + data[at + 1:]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(corruptions, min_size=1, max_size=3))
def test_a_corrupted_motion_file_reads_or_raises_motion_file_error(motion_bytes: bytes, tmp_path: Path,
                                                                    changes) -> None:
    data = motion_bytes
    for kind, where, payload in changes:
        data = _corrupted(data, kind, where, payload)
    path = tmp_path / "corrupt.npz"
    path.write_bytes(data)
    try:
        motion = read_motion(path)
    except MotionFileError as error:
        assert str(path) in str(error)
    else:
        # A change that lands in slack bytes (zip comments, padding) can leave a file that still reads whole.
        assert motion.rotations.shape[0] == T


def test_the_corruption_test_reaches_inside_the_archive(motion_bytes: bytes, tmp_path: Path) -> None:
    """Guard for the property above: one flipped byte inside a member's data must be caught, not just bad headers."""
    path = tmp_path / "m.npz"
    path.write_bytes(motion_bytes)
    with zipfile.ZipFile(path) as archive:
        member = archive.getinfo("rotations.npy")
    flipped = _corrupted(motion_bytes, "flip", (member.header_offset + 200) / len(motion_bytes), b"\x40")
    path.write_bytes(flipped)
    with pytest.raises(MotionFileError, match="corrupt|unreadable|CRC|unit quaternions"):
        read_motion(path)


@pytest.mark.parametrize(("flag", "words"), [(0x1, "encrypted"), (0x20, "patched")])
def test_a_member_flagged_encrypted_or_patched_is_our_error(motion_bytes: bytes, tmp_path: Path, flag: int,
                                                            words: str) -> None:
    """Found by the property above on a fresh clone: one bit of a central-directory entry's
    flags makes zipfile refuse that member with RuntimeError or NotImplementedError."""
    data = bytearray(motion_bytes)
    entry = data.rfind(b"PK\x01\x02")  # the last member's central-directory entry
    data[entry + 8] |= flag  # its general-purpose flags, low byte
    path = tmp_path / "flagged.npz"
    path.write_bytes(bytes(data))
    with pytest.raises(MotionFileError) as refused:
        read_motion(path)
    assert str(path) in str(refused.value) and words in str(refused.value)


def test_a_damaged_array_header_is_our_error(motion_bytes: bytes, tmp_path: Path) -> None:
    """Found by the property above on a fresh clone: a bracket flipped into an .npy header
    made numpy's header parser raise SyntaxError."""
    at = motion_bytes.index(b"'shape': (50, 24, 4)")  # the rotations' header
    path = tmp_path / "header.npz"
    path.write_bytes(motion_bytes[:at - 1] + b"[" + motion_bytes[at:])
    with pytest.raises(MotionFileError) as refused:
        read_motion(path)
    assert str(path) in str(refused.value)
