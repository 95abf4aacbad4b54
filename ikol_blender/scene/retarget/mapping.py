"""Which target bone follows which SMPL joint: built-in maps, detection, JSON files.

Pure Python (no bpy). A mapping is a dict ``{SMPL joint name: target bone name}``;
SMPL joints left out drive nothing, and target bones no joint names stay at rest. The
joints are SMPL's 24 and SMPL-H's 30 finger joints (``left_index1`` .. ``right_thumb3``,
:data:`FINGER_JOINT_NAMES`). Every built-in map names the fingers of its rig; a rig
without them (many characters have none) keeps only the body's pairs, and a map fits
a rig by its body bones alone.

Built-in maps, by the rigs they fit:

* ``rigify``: the rig Rigify generates from its human metarig, through its FK controls
  (``torso`` carries the pelvis and the root motion; ``hips``, ``chest`` and the FK
  spine below the pivot stay put). The Action also keys the limbs' IK/FK switches to FK
  (see :mod:`.apply`), so the deforming bones follow these controls. The fingers drive
  the finger controls (``f_index.01.L`` .. ``thumb.03.R``), whose deforming bones follow
  while the fingers' master controls stay at rest.
* ``rigify_metarig``: Rigify's human metarig itself (``spine``, ``thigh.L``, ...).
* ``mixamo``: Mixamo characters (``mixamorig:Hips``, ``mixamorig:LeftHandIndex1``, ...),
  any ``prefix:`` before the names.
* ``ue5``: the Unreal Engine 5 Mannequin (``pelvis``, ``spine_01``..``spine_05``,
  ``index_01_l``, ...).
* ``smplx``: the SMPL/SMPL-X Blender add-on's rig, which uses SMPL's names as ours does.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from ...engine.link import HAND_JOINT_NAMES, atomic_path

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "Pelvis", "L_Hip", "R_Hip", "Spine1", "L_Knee", "R_Knee", "Spine2", "L_Ankle",
    "R_Ankle", "Spine3", "L_Foot", "R_Foot", "Neck", "L_Collar", "R_Collar", "Head",
    "L_Shoulder", "R_Shoulder", "L_Elbow", "R_Elbow", "L_Wrist", "R_Wrist", "L_Hand",
    "R_Hand",
)
#: SMPL-H's finger joints, left hand then right, each finger from the knuckle out (a thumb
#: from its base at the wrist): ``left_index1`` .. ``right_thumb3``.
FINGER_JOINT_NAMES: tuple[str, ...] = HAND_JOINT_NAMES
#: Every joint a mapping may name.
JOINT_NAMES: tuple[str, ...] = SMPL_JOINT_NAMES + FINGER_JOINT_NAMES
ROOT_JOINT = "Pelvis"
FILE_FORMAT = "ikol-retarget-mapping"
FILE_VERSION = 1
# Below this share of its bones present, a built-in map is not taken to fit a rig.
MIN_COVERAGE = 0.6


class MappingError(ValueError):
    """A mapping that cannot be used: unknown joint or bone, malformed file."""


def _sided(pattern: dict[str, str], left: str, right: str) -> dict[str, str]:
    """Expands ``{"L_X": "name{side}"}`` entries into both sides."""
    mapping = {}
    for joint, bone in pattern.items():
        if joint.startswith("L_"):
            mapping[joint] = bone.format(side=left)
            mapping["R_" + joint[2:]] = bone.format(side=right)
        else:
            mapping[joint] = bone
    return mapping


def _fingers(pattern: str, sides: tuple[str, str], fingers: Mapping[str, str] = {}) -> dict[str, str]:
    """Every finger joint's bone: ``pattern`` with ``{side}`` (left's, right's), ``{finger}``
    (SMPL-H's name, or as ``fingers`` renames it) and ``{number}`` (1..3, from the knuckle out)."""
    mapping = {}
    for joint in FINGER_JOINT_NAMES:
        side, finger = joint.split("_")  # "left", "index1"
        name, number = finger[:-1], finger[-1]
        mapping[joint] = pattern.format(side=sides[0] if side == "left" else sides[1], finger=fingers.get(name, name),
                                        number=number)
    return mapping


# The metarig's finger bones; the generated rig's finger controls have the same names.
_RIGIFY_FINGERS = _fingers("{finger}.0{number}{side}", (".L", ".R"), {
    "index": "f_index", "middle": "f_middle", "pinky": "f_pinky", "ring": "f_ring"})

RIGIFY = _sided({
    # Rigify's FK spine splits at the hips/chest pivot: spine_fk.001 and spine_fk below it
    # are a reversed chain carrying the pelvis and legs, so turning them would move the
    # hips off the root's path. SMPL's lumbar Spine1 stays with the pelvis; Spine2 and
    # Spine3 (world rotations, which include Spine1's turn) drive the two bones above.
    "Pelvis": "torso", "Spine2": "spine_fk.002", "Spine3": "spine_fk.003",
    "Neck": "neck", "Head": "head",
    "L_Hip": "thigh_fk{side}", "L_Knee": "shin_fk{side}", "L_Ankle": "foot_fk{side}", "L_Foot": "toe_fk{side}",
    "L_Collar": "shoulder{side}", "L_Shoulder": "upper_arm_fk{side}", "L_Elbow": "forearm_fk{side}",
    "L_Wrist": "hand_fk{side}",
}, ".L", ".R") | _RIGIFY_FINGERS

RIGIFY_METARIG = _sided({
    "Pelvis": "spine", "Spine1": "spine.001", "Spine2": "spine.002", "Spine3": "spine.003",
    "Neck": "spine.004", "Head": "spine.006",
    "L_Hip": "thigh{side}", "L_Knee": "shin{side}", "L_Ankle": "foot{side}", "L_Foot": "toe{side}",
    "L_Collar": "shoulder{side}", "L_Shoulder": "upper_arm{side}", "L_Elbow": "forearm{side}",
    "L_Wrist": "hand{side}",
}, ".L", ".R") | _RIGIFY_FINGERS

MIXAMO = _sided({
    "Pelvis": "Hips", "Spine1": "Spine", "Spine2": "Spine1", "Spine3": "Spine2", "Neck": "Neck", "Head": "Head",
    "L_Hip": "{side}UpLeg", "L_Knee": "{side}Leg", "L_Ankle": "{side}Foot", "L_Foot": "{side}ToeBase",
    "L_Collar": "{side}Shoulder", "L_Shoulder": "{side}Arm", "L_Elbow": "{side}ForeArm", "L_Wrist": "{side}Hand",
}, "Left", "Right") | _fingers("{side}Hand{finger}{number}", ("Left", "Right"), {
    "index": "Index", "middle": "Middle", "pinky": "Pinky", "ring": "Ring", "thumb": "Thumb"})

UE5 = _sided({
    # Five spine bones for SMPL's three: the ones between stay straight on their parents.
    "Pelvis": "pelvis", "Spine1": "spine_01", "Spine2": "spine_03", "Spine3": "spine_05",
    "Neck": "neck_01", "Head": "head",
    "L_Hip": "thigh{side}", "L_Knee": "calf{side}", "L_Ankle": "foot{side}", "L_Foot": "ball{side}",
    "L_Collar": "clavicle{side}", "L_Shoulder": "upperarm{side}", "L_Elbow": "lowerarm{side}",
    "L_Wrist": "hand{side}",
}, "_l", "_r") | _fingers("{finger}_0{number}{side}", ("_l", "_r"))

SMPLX = {name: name for name in JOINT_NAMES}

BUILT_IN: dict[str, dict[str, str]] = {
    "rigify": RIGIFY, "rigify_metarig": RIGIFY_METARIG, "mixamo": MIXAMO, "ue5": UE5, "smplx": SMPLX,
}
# Maps whose bone names often come with an exporter's "prefix:" (Mixamo's "mixamorig:").
_PREFIXED = frozenset({"mixamo"})


def coverage(mapping: Mapping[str, str], bone_names: Iterable[str]) -> float:
    """Share (0..1) of ``mapping``'s body bones that are among ``bone_names``.

    The fingers' bones count not: a character without fingers fits its map as well.
    """
    present = set(bone_names)
    body = [bone for joint, bone in mapping.items() if joint not in FINGER_JOINT_NAMES]
    return sum(bone in present for bone in body) / max(1, len(body))


def finger_note(chosen: Mapping[str, str], keyed: Mapping[str, str]) -> str:
    """How a retarget treated the fingers, for its report.

    Args:
        chosen: the mapping asked for (a built-in one already fitted to the target's bones).
        keyed: the pairs keyed (see :func:`.apply.keyed_pairs`).
    """
    fingers = sum(joint in FINGER_JOINT_NAMES for joint in keyed)
    if fingers:
        return f"{fingers} of them fingers"
    if any(joint in FINGER_JOINT_NAMES for joint in chosen):
        return "fingers skipped: the IKOL rig has none"
    return "fingers skipped: the target has no mapped finger bones"


def with_prefix(mapping: Mapping[str, str], prefix: str) -> dict[str, str]:
    """``mapping`` with ``prefix`` put before every target bone name."""
    return {joint: prefix + bone for joint, bone in mapping.items()}


def built_in(name: str, bone_names: Iterable[str] = ()) -> dict[str, str]:
    """The built-in map ``name``, fitted to a rig's bone-name prefix where it has one.

    Raises:
        MappingError: no built-in map has that name.
    """
    if name not in BUILT_IN:
        raise MappingError(f"unknown mapping {name!r}; built-in mappings: {', '.join(BUILT_IN)}")
    mapping = BUILT_IN[name]
    if name not in _PREFIXED:
        return dict(mapping)
    names = list(bone_names)
    prefixes = {""} | {bone[:bone.index(":") + 1] for bone in names if ":" in bone}
    return max((with_prefix(mapping, prefix) for prefix in sorted(prefixes)),
               key=lambda candidate: coverage(candidate, names))


def detect_mapping(bone_names: Iterable[str]) -> tuple[str, dict[str, str]]:
    """The built-in map that best fits a rig, by the share of its bones the rig has.

    Ties go to the map with more bones (Rigify's generated rig also holds the metarig's
    names as ``ORG-`` bones, never bare, so the two do not tie).

    Returns:
        The map's name and the map, less the fingers the rig has no bones for.
    Raises:
        MappingError: no built-in map has at least :data:`MIN_COVERAGE` of its bones.
    """
    names = list(bone_names)
    fitted = {name: built_in(name, names) for name in BUILT_IN}
    scores = {name: (coverage(mapping, names), len(mapping)) for name, mapping in fitted.items()}
    best = max(scores, key=scores.get)
    if scores[best][0] < MIN_COVERAGE:
        found = ", ".join(f"{name} {100 * score[0]:.0f}%" for name, score in scores.items())
        raise MappingError(f"no built-in mapping fits this armature (bones found: {found}); use a custom mapping")
    present = set(names)
    return best, {joint: bone for joint, bone in fitted[best].items()
                  if joint not in FINGER_JOINT_NAMES or bone in present}


def validate(mapping: Mapping[str, str], bone_names: Iterable[str] | None = None) -> dict[str, str]:
    """Checks a mapping and returns it as a plain dict.

    Args:
        mapping: SMPL joint name -> target bone name.
        bone_names: the target armature's bones; None to check only the SMPL side.
    Raises:
        MappingError: an unknown SMPL joint, a target bone the armature lacks, a bone
            named for two joints, a name that is not a non-empty string, or no pair at all.
    """
    if not isinstance(mapping, Mapping):
        raise MappingError(f"a mapping must be an object of SMPL joint -> bone name, not {type(mapping).__name__}")
    if not mapping:
        raise MappingError("the mapping is empty: name at least one SMPL joint and its target bone")
    present = None if bone_names is None else set(bone_names)
    seen: dict[str, str] = {}
    for joint, bone in mapping.items():
        if joint not in JOINT_NAMES:
            raise MappingError(f"unknown SMPL joint {joint!r} in the mapping; SMPL joints: "
                               f"{', '.join(SMPL_JOINT_NAMES)}, and the fingers' {', '.join(FINGER_JOINT_NAMES)}")
        if not isinstance(bone, str) or not bone:
            raise MappingError(f"the target bone of {joint} must be a non-empty name, not {bone!r}")
        if present is not None and bone not in present:
            raise MappingError(f"the armature has no bone {bone!r} (mapped from {joint})")
        if bone in seen:
            raise MappingError(f"bone {bone!r} is mapped from both {seen[bone]} and {joint}")
        seen[bone] = joint
    return dict(mapping)


def load_mapping(path: str | Path, bone_names: Iterable[str] | None = None) -> dict[str, str]:
    """Reads a mapping file written by :func:`save_mapping` and validates it.

    Raises:
        MappingError: the file is unreadable, not such a file, or its mapping is invalid
            (see :func:`validate`); the message names the file.
    """
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MappingError(f"{path}: cannot read a mapping ({error})") from None
    if not isinstance(document, dict) or document.get("format") != FILE_FORMAT:
        raise MappingError(f"{path}: not an IKOL mapping file (no \"format\": \"{FILE_FORMAT}\")")
    if document.get("version") != FILE_VERSION:
        raise MappingError(f"{path}: mapping file version {document.get('version')!r}; this IKOL reads {FILE_VERSION}")
    try:
        return validate(document.get("bones"), bone_names)
    except MappingError as error:
        raise MappingError(f"{path}: {error}") from None


def save_mapping(path: str | Path, mapping: Mapping[str, str]) -> Path:
    """Validates ``mapping`` and writes it as JSON, atomically; returns the path."""
    mapping = validate(mapping)
    document = {"format": FILE_FORMAT, "version": FILE_VERSION,
                "bones": {joint: mapping[joint] for joint in JOINT_NAMES if joint in mapping}}
    path = Path(path)
    with atomic_path(path) as temp:
        temp.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return path
