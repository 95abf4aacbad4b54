"""Which person to follow: ``--person auto|ID|X,Y|all`` parsed and applied to the tracks.

* ``auto``: the person present longest (most detected frames); ties go to the larger mean
  box, i.e. the person nearer the camera.
* ``ID``: the track with that id (ids are those :mod:`.tracker` gives, from 1).
* ``X,Y``: the person whose box contains pixel (X, Y) in the first frame anyone is tracked
  in; where several boxes do, the smallest. Boxes are squares around the whole body
  circle, so a large box reaches well past its person's outline, and the smallest box
  holding the point is the one drawn tightest around it.
* ``all``: every track, in id order.

A pick that matches nobody raises :class:`PeopleError` listing the people found.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tracker import Track

__all__ = ["PeopleError", "PersonChoice", "parse_person", "people_table", "select_people"]


class PeopleError(ValueError):
    """No person matches the choice, or the choice cannot be read; the message lists people."""


@dataclass(frozen=True)
class PersonChoice:
    """A parsed ``--person`` value.

    Attributes:
        mode: "auto", "id", "point" or "all".
        track_id: for "id".
        point: (x, y) pixels, for "point".
    """

    mode: str
    track_id: int | None = None
    point: tuple[float, float] | None = None

    def __str__(self) -> str:
        if self.mode == "id":
            return str(self.track_id)
        if self.mode == "point":
            return f"{self.point[0]:g},{self.point[1]:g}"
        return self.mode


def parse_person(text: str) -> PersonChoice:
    """Read ``auto``, ``all``, an id (``2``) or a pixel (``640,360``).

    Raises:
        PeopleError: anything else, or an id below 1.
    """
    value = text.strip().lower()
    if value in ("auto", "all"):
        return PersonChoice(value)
    try:
        if "," in value:
            x, y = (float(part) for part in value.split(","))
            if not (np.isfinite(x) and np.isfinite(y)):
                raise ValueError
            return PersonChoice("point", point=(x, y))
        track_id = int(value)
    except ValueError:
        raise PeopleError(
            f"--person must be auto, all, a person id (1, 2, ...) or a pixel X,Y; got {text!r}"
        ) from None
    if track_id < 1:
        raise PeopleError(f"person ids start at 1; got {track_id}")
    return PersonChoice("id", track_id=track_id)


def people_table(tracks: list[Track]) -> str:
    """One line per track: id, frame span and count, mean box; for error messages."""
    if not tracks:
        return "  (nobody was detected)"
    lines = []
    for track in tracks:
        box = np.mean(track.boxes, axis=0).round().astype(int)
        lines.append(
            f"  person {track.id}: frames {track.first_frame}-{track.last_frame} "
            f"({len(track.frames)} detected), mean box [{box[0]}, {box[1]}, {box[2]}, {box[3]}]"
        )
    return "\n".join(lines)


def select_people(tracks: list[Track], choice: PersonChoice) -> list[Track]:
    """The tracks a choice picks: one track, or all of them for ``all``.

    Raises:
        PeopleError: no track, an unknown id, or a pixel inside nobody's box.
    """
    if not tracks:
        raise PeopleError(f"--person {choice}: nobody was detected in the video")
    if choice.mode == "all":
        return sorted(tracks, key=lambda t: t.id)
    if choice.mode == "auto":
        return [max(tracks, key=lambda t: (len(t.frames), t.mean_area, -t.id))]
    if choice.mode == "id":
        picked = [t for t in tracks if t.id == choice.track_id]
        if picked:
            return picked
        raise PeopleError(f"--person {choice}: no person has id {choice.track_id}; found:\n"
                          f"{people_table(tracks)}")
    return [_at_point(tracks, choice)]


def _at_point(tracks: list[Track], choice: PersonChoice) -> Track:
    """The smallest box containing the point in the first frame any track is seen."""
    first = min(t.first_frame for t in tracks)
    x, y = choice.point
    containing = []
    for track in tracks:
        if track.first_frame != first:
            continue
        x0, y0, x1, y1 = track.boxes[0]
        if x0 <= x <= x1 and y0 <= y <= y1:
            containing.append(((x1 - x0) * (y1 - y0), track.id, track))
    if not containing:
        raise PeopleError(
            f"--person {choice}: pixel ({x:g}, {y:g}) is inside nobody's box in frame {first}, "
            f"the first anyone is tracked in; found:\n{people_table(tracks)}"
        )
    return min(containing, key=lambda item: item[:2])[2]
