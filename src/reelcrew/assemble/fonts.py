"""Finds a font that can draw every character of the captions, before anything is rendered.

Pillow has no glyph fallback: a font without hanzi draws tofu boxes. So coverage is
checked against the font's character map, and a caption no installed font can draw is
reported up front with the fix, never rendered as boxes.
"""

from __future__ import annotations

import glob
import logging
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from reelcrew.assemble.cmap_cache import CmapCache
from reelcrew.errors import AssemblyError

log = logging.getLogger("reelcrew.assemble")


@dataclass(frozen=True)
class Font:
    path: str
    index: int = 0  # face inside a .ttc collection


@lru_cache(maxsize=64)
def _cmap(path: str, index: int) -> frozenset[int]:
    cached = _disk_cmaps().get(path, index)
    if cached is not None:
        return cached
    from fontTools.ttLib import TTFont

    kwargs = {"fontNumber": index} if path.lower().endswith((".ttc", ".otc")) else {}
    with TTFont(path, lazy=True, **kwargs) as font:
        cmap = frozenset(font.getBestCmap() or {})
    _disk_cmaps().put(path, index, cmap)
    return cmap


@lru_cache(maxsize=1)
def _disk_cmaps() -> CmapCache:
    from platformdirs import user_cache_dir

    return CmapCache(Path(user_cache_dir("reelcrew")) / "font-cmaps.json")


def missing_glyphs(font: Font, text: str) -> list[str]:
    cmap = _cmap(font.path, font.index)
    return sorted({ch for ch in text if not ch.isspace() and ord(ch) not in cmap})


def _candidates(lang_hint: str) -> list[Font]:
    """The installed fonts, best first (fc-list runs once per process and hint, not once per caption)."""
    return list(_listed_candidates(lang_hint))


@lru_cache(maxsize=4)
def _listed_candidates(lang_hint: str) -> tuple[Font, ...]:
    found: list[Font] = []
    if shutil.which("fc-list"):
        for pattern in (f":lang={lang_hint}", ""):
            out = subprocess.run(["fc-list", pattern, "file", "index"] if pattern else ["fc-list", "file", "index"],
                                 capture_output=True, text=True).stdout
            for line in sorted(out.splitlines()):
                path, _, rest = line.partition(":")
                index = int(rest.split("=")[-1]) if "index=" in rest else 0
                if path.lower().endswith((".ttf", ".ttc", ".otf")):
                    found.append(Font(path.strip(), index))
    for path in sorted(glob.glob("/usr/share/fonts/**/*.tt[fc]", recursive=True)):
        found.append(Font(path, 0))
    # Prefer Chinese faces of CJK collections and regular weights.
    def rank(font: Font) -> tuple:
        name = Path(font.path).name.lower()
        return ("wqy" not in name and "cjk" not in name, "bold" in name or "mono" in name, font.index, name)
    return tuple(sorted(dict.fromkeys(found), key=rank))


def find_font(text: str, configured: str | None = None) -> Font:
    """A font covering all of `text`: the configured one, else the best installed match."""
    if configured:
        path = Path(configured).expanduser()
        if not path.exists():
            raise AssemblyError(f"subtitle font {path} does not exist", "fix subtitles.font in config/pipeline.yaml")
        font = Font(str(path), 0)
        missing = missing_glyphs(font, text)
        if missing:
            raise AssemblyError(f"subtitle font {path.name} cannot draw {''.join(missing[:12])!r}",
                                "choose a font that covers the captions' language in subtitles.font, or leave it empty")
        return font
    hint = "zh" if any("\u3400" <= ch <= "\u9fff" for ch in text) else "en"
    best_missing = None
    for font in _candidates(hint):
        try:
            missing = missing_glyphs(font, text)
        except Exception:
            continue
        if not missing:
            return font
        if best_missing is None or len(missing) < len(best_missing):
            best_missing = missing
    shown = "".join((best_missing or sorted(set(text)))[:12])
    cjk = any(is_cjk(ch) for ch in (best_missing or text))
    raise AssemblyError(f"no single installed font can draw all of these caption characters: {shown!r}",
                        ("install a CJK font (Debian: apt-get install fonts-wqy-microhei or fonts-noto-cjk; "
                         "`make setup` does it) or " if cjk else "install a font that has them, or ")
                        + "set subtitles.font to a font file that has them")


def is_cjk(ch: str) -> bool:
    return "\u2e80" <= ch <= "\u9fff" or "\uac00" <= ch <= "\ud7af" or "\uf900" <= ch <= "\ufaff" \
        or "\uff00" <= ch <= "\uffef" or "\U00020000" <= ch <= "\U0003134f"


@lru_cache(maxsize=1)
def _installed_coverage() -> frozenset[int]:
    """Every code point some installed font can draw (read once per process, only when a text needs it)."""
    covered: set[int] = set()
    with _disk_cmaps().batch():
        for font in _candidates("en"):
            try:
                covered |= _cmap(font.path, font.index)
            except Exception:
                continue
    return frozenset(covered)


def undrawable(text: str) -> list[str]:
    """The characters of `text` that no installed font has (emoji, usually), in order of first appearance.

    Pillow cannot fall back from one font to another, and colour emoji fonts are bitmaps it cannot scale,
    so these are dropped from burned-in text by the SUBTITLE_MISSING_GLYPHS policy (or refused up front)."""
    out = []
    for ch in dict.fromkeys(text):
        if ch.isspace():
            continue
        if ord(ch) not in _installed_coverage():
            out.append(ch)
    return out


@dataclass(frozen=True)
class Fitted:
    """A font for a text and the characters dropped from it because no installed font has them."""

    font: Font
    dropped: frozenset[str] = frozenset()

    def drawn(self, text: str) -> str:
        """`text` as it is burned in: dropped characters removed, spaces they leave behind tidied."""
        if not self.dropped:
            return text
        kept = "".join(ch for ch in text if ch not in self.dropped)
        return "\n".join(" ".join(line.split()) for line in kept.split("\n")).strip()


def fit_text(text: str, configured: str | None = None, what: str = "captions") -> Fitted:
    """A font for `text` after dropping what no installed font can draw (logged: the pre-flight already warned
    the user or refused, by policy, before anything was paid)."""
    try:
        return Fitted(find_font(text, configured))
    except AssemblyError:
        missing = undrawable(text)
        if not missing:
            raise
    log.warning("%s: no installed font can draw %r; dropped from the burned-in text (kept in the .srt and "
                "metadata)", what, "".join(missing))
    dropped = frozenset(missing)
    return Fitted(find_font("".join(ch for ch in text if ch not in dropped), configured), dropped)
