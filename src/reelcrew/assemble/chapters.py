"""Chapters from the actual cut, not from the writers' plan.

The SEO crew writes its chapters before any clip exists, timed by the script's scene lengths. The cut can
differ: a filtered or failed scene is left out, transitions overlap neighbours, clips come back shorter.
So each planned chapter is tied to the scene it was planned on and re-timed to where that scene really is
in the final; a chapter whose scenes are all missing is dropped, and none starts past the end of the video.
"""

from __future__ import annotations

from dataclasses import dataclass

from reelcrew.models import Chapter, Script


@dataclass(frozen=True)
class ScenePlace:
    """Where a scene is in the final: `start` is where it takes over (mid-transition), `end` where it ends."""

    scene: int
    start: float
    end: float


def seconds(mm_ss: str) -> int:
    minutes, _, secs = mm_ss.partition(":")
    return int(minutes) * 60 + int(secs)


def mm_ss(value: float) -> str:
    whole = int(value)
    return f"{whole // 60:02d}:{whole % 60:02d}"


def planned_starts(script: Script) -> dict[int, int]:
    """Each scene's start in the planned video (scenes end to end at their script lengths)."""
    starts, t = {}, 0
    for scene in script.scenes:
        starts[scene.index] = t
        t += scene.duration
    return starts


def planned_scene(at: int, starts: dict[int, int]) -> int:
    """The scene playing at `at` seconds of the planned video."""
    return max((index for index, start in starts.items() if start <= at), default=min(starts))


def cut_chapters(planned: list[Chapter], script: Script | None, places: list[ScenePlace],
                 duration: float) -> list[Chapter]:
    """The planned chapters moved to their scenes' places in the cut.

    A chapter covers the scenes from its own up to the next chapter's; it starts at the first of them
    that is in the cut, or is dropped when none is. The first chapter starts at 00:00 (YouTube needs
    that); chapters falling on the same second, or at or past `duration`, are dropped."""
    if not planned or not places:
        return []
    where = {place.scene: place.start for place in places}
    if script is not None:
        starts = planned_starts(script)
        firsts = [planned_scene(seconds(chapter.start), starts) for chapter in planned]
        order = sorted(starts)
    else:  # no script to time them by: the n-th chapter is the n-th scene
        order = sorted(where)
        firsts = order[:len(planned)]
    out: list[Chapter] = []
    for n, (chapter, first) in enumerate(zip(planned, firsts, strict=False)):
        following = firsts[n + 1] if n + 1 < len(firsts) else None
        covered = [s for s in order if s >= first and (following is None or s < following or s == first)]
        present = [where[s] for s in covered if s in where]
        if not present:
            continue
        start = 0.0 if not out else present[0]
        if start >= duration or (out and int(start) <= seconds(out[-1].start)):
            continue
        out.append(Chapter(start=mm_ss(start), title=chapter.title))
    return out
