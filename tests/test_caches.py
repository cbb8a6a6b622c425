"""The caches that spare each process work: fonts' character maps and mock clips. A cached answer must be
the answer a fresh computation gives, and a changed input must never be served an old answer."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from reelcrew.assemble.cmap_cache import CmapCache
from reelcrew.media import probe
from reelcrew.models import VideoPrompt
from reelcrew.video.mockclip import render_mock_clip

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
LIBERATION = Path("/usr/share/fonts/truetype/liberation/LiberationMono-Regular.ttf")


def fresh_cmap(path: Path) -> frozenset[int]:
    from fontTools.ttLib import TTFont

    with TTFont(str(path), lazy=True) as font:
        return frozenset(font.getBestCmap())


@pytest.mark.skipif(not (DEJAVU.exists() and LIBERATION.exists()), reason="needs DejaVu and Liberation fonts")
def test_a_cached_cmap_is_the_fonts_own_until_the_file_changes(tmp_path):
    font = tmp_path / "font.ttf"
    shutil.copyfile(DEJAVU, font)
    cache = CmapCache(tmp_path / "cache" / "font-cmaps.json")
    assert cache.get(str(font), 0) is None
    cache.put(str(font), 0, fresh_cmap(font))
    assert CmapCache(cache.file).get(str(font), 0) == fresh_cmap(font)  # another process reads the same map

    shutil.copyfile(LIBERATION, font)  # the same path, another font
    os.utime(font, ns=(1, 1))
    assert CmapCache(cache.file).get(str(font), 0) is None

    cache.file.write_text("{not json", encoding="utf-8")
    assert CmapCache(cache.file).get(str(font), 0) is None  # a corrupt cache is a miss, never an error
    CmapCache(cache.file).put(str(font), 0, fresh_cmap(font))
    assert json.loads(cache.file.read_text(encoding="utf-8"))["version"] == 1
    assert CmapCache(cache.file).get(str(font), 0) == fresh_cmap(font)


def test_a_process_with_the_cache_finds_what_a_process_without_it_finds(tmp_path):
    code = ("from reelcrew.assemble.fonts import undrawable, find_font; "
            "print(undrawable('tea \\u8336 \\U0001F600 \\u2603'), find_font('tea').path, find_font('\\u8336').path)")

    def run() -> str:
        env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                              check=True).stdout

    cold = run()
    assert (tmp_path / "cache" / "reelcrew" / "font-cmaps.json").exists()
    assert run() == cold


@pytest.mark.slow
def test_a_mock_clip_from_the_cache_is_the_clip_its_inputs_make(tmp_path, monkeypatch):
    prompt = VideoPrompt(index=1, scene_index=1, prompt="A teapot. A red teapot on a table", duration=4)
    render_mock_clip(prompt, tmp_path / "first.mp4")
    render_mock_clip(prompt, tmp_path / "again.mp4")
    assert (tmp_path / "again.mp4").read_bytes() == (tmp_path / "first.mp4").read_bytes()

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "empty-cache"))  # rendered anew: the same bytes
    render_mock_clip(prompt, tmp_path / "anew.mp4")
    assert (tmp_path / "anew.mp4").read_bytes() == (tmp_path / "first.mp4").read_bytes()

    longer = prompt.model_copy(update={"duration": 6})
    other = prompt.model_copy(update={"prompt": "A teapot. A blue teapot on a table"})
    vertical = prompt.model_copy(update={"aspect_ratio": "9:16"})
    for name, changed in (("longer", longer), ("other", other), ("vertical", vertical)):
        render_mock_clip(changed, tmp_path / f"{name}.mp4")
        assert (tmp_path / f"{name}.mp4").read_bytes() != (tmp_path / "first.mp4").read_bytes(), name
    assert probe(tmp_path / "longer.mp4").duration == pytest.approx(6, abs=0.1)
    assert (probe(tmp_path / "vertical.mp4").width, probe(tmp_path / "vertical.mp4").height) == (720, 1280)
