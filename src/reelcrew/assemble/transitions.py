"""The transition library: ffmpeg `xfade` kinds with the audio curves that go with them.

One place to add a kind: a row in TRANSITIONS. The video side is ffmpeg's own `xfade` (both render
paths decode through it, so a transition looks the same whichever path renders the cut); the audio side
is a pair of `afade`/`acrossfade` curves, outgoing then incoming.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Transition:
    xfade: str  # ffmpeg xfade transition name
    out_curve: str = "tri"  # afade curve of the outgoing clip's sound
    in_curve: str = "tri"  # afade curve of the incoming clip's sound


TRANSITIONS: dict[str, Transition] = {
    "fade": Transition("fade"),
    "fadeblack": Transition("fadeblack", "exp", "exp"),  # dips through black: the sound dips too
    "fadewhite": Transition("fadewhite", "exp", "exp"),
    "dissolve": Transition("dissolve"),
    "wipeleft": Transition("wipeleft", "qsin", "qsin"),
    "wiperight": Transition("wiperight", "qsin", "qsin"),
    "wipeup": Transition("wipeup", "qsin", "qsin"),
    "wipedown": Transition("wipedown", "qsin", "qsin"),
    "slideleft": Transition("slideleft", "qsin", "qsin"),
    "slideright": Transition("slideright", "qsin", "qsin"),
    "slideup": Transition("slideup", "qsin", "qsin"),
    "slidedown": Transition("slidedown", "qsin", "qsin"),
    "smoothleft": Transition("smoothleft", "hsin", "hsin"),
    "smoothright": Transition("smoothright", "hsin", "hsin"),
    "circleopen": Transition("circleopen", "hsin", "hsin"),
    "circleclose": Transition("circleclose", "hsin", "hsin"),
    "radial": Transition("radial", "hsin", "hsin"),
    "pixelize": Transition("pixelize"),
    "zoomin": Transition("zoomin", "hsin", "hsin"),
}
ALIASES = {"crossfade": "fade"}  # the setting's name before the library existed


def transition_names() -> list[str]:
    return ["none", *ALIASES, *TRANSITIONS]


def lookup(kind: str | None) -> Transition | None:
    """The transition for a setting value; None for a plain cut."""
    if not kind or kind == "none":
        return None
    name = ALIASES.get(kind, kind)
    if name not in TRANSITIONS:
        raise ValueError(f"unknown transition {kind!r}; use one of: {', '.join(transition_names())}")
    return TRANSITIONS[name]
