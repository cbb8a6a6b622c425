"""Deterministic, topic-aware writing for mock mode.

Mock mode is a product feature: users rehearse the whole pipeline offline. So the mock
writes sensible, different scripts for different topics (and Chinese for a Chinese
topic) instead of one canned answer. Everything is derived from a hash of the inputs,
so the same topic always gives the same script.
"""

from __future__ import annotations

import hashlib
import random
import re

from reelcrew.models import Chapter, Character, PromptList, Scene, Script, SeoPackage, VideoPrompt

CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")
STOPWORDS = set("a an the of and or to in on for is are was how why what who made make do does with about from by "
                "at it its".split())


def is_chinese(text: str) -> bool:
    return bool(CJK.search(text))


def _rng(*parts: object) -> random.Random:
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).hexdigest()
    return random.Random(int(digest[:16], 16))


ZH_QUESTION_WORDS = ("是怎么", "是如何", "为什么", "为何", "怎么", "如何", "是什么", "的秘密")


def zh_subject(topic: str) -> str:
    """The thing a Chinese question is about: 茶是怎么制作的 → 茶, 熊猫为什么爱吃竹子 → 熊猫."""
    text = topic.strip("？?！!。 ")
    cut = min((text.find(w) for w in ZH_QUESTION_WORDS if text.find(w) > 0), default=-1)
    return text[:cut] if cut > 0 else text


def keywords(topic: str) -> list[str]:
    if is_chinese(topic):
        return [zh_subject(topic)]
    words = [w for w in re.findall(r"[A-Za-z0-9']+", topic.lower()) if w not in STOPWORDS]
    return words or [topic.strip()]


EN_BEATS = [
    "Everything about {t} begins with one small moment.",
    "Up close, the details of {t} tell their own story.",
    "Step by step, {t} starts to take shape.",
    "Skilled hands make {t} look easy.",
    "Time and patience are the secret of {t}.",
    "Here is what most people never see about {t}.",
    "Light, colour and texture bring {t} to life.",
    "Every choice along the way changes {t}.",
    "The tools are simple; the craft behind {t} is not.",
    "A tiny mistake here would change all of {t}.",
]
ZH_BEATS = [
    "关于{t}的一切，都从一个小小的瞬间开始。",
    "凑近看，{t}的细节自己会讲故事。",
    "一步一步，{t}慢慢成形。",
    "熟练的双手让{t}看起来毫不费力。",
    "时间和耐心，是{t}的秘诀。",
    "这是大多数人从没见过的{t}。",
    "光线、色彩和质感，让{t}活了起来。",
    "每一个选择，都在改变{t}。",
    "工具很简单，{t}背后的手艺却不简单。",
    "这里出一点差错，{t}就全变了。",
]
SETTINGS = ["a sunlit workshop", "a misty hillside at dawn", "a busy city street", "a quiet kitchen",
            "a wooden table by a window", "an old market", "a bright studio", "a riverside at dusk"]
# The cast bible's characters: (English name, Chinese name, the look repeated verbatim in every prompt).
CAST = [
    ("Mei", "小梅", "a woman in her late twenties with a short black bob, round glasses, a mustard-yellow knit sweater "
                   "and a blue linen apron"),
    ("Old Chen", "老陈", "a wiry man in his seventies with close-cropped silver hair, a thin white beard, "
                        "a faded indigo work jacket and brown leather sandals"),
    ("Leo", "小乐", "a ten-year-old boy with curly brown hair, freckles, a red hooded jacket and green rubber boots"),
    ("Ana", "安娜", "a tall woman in her forties with long auburn hair in a low braid, a cream wool coat and a grey "
                   "scarf"),
]
PALETTES = ["warm amber and deep teal, soft contrast", "muted sage green and cream, gentle film grain",
            "rich terracotta and navy, crisp contrast", "pastel peach and sky blue, airy highlights"]
SUBJECTS = ["a young woman in a blue apron", "an old craftsman with silver hair", "a curious boy in a red jacket",
            "a pair of weathered hands", "a friendly host in a green sweater"]
CAMERAS = ["slow dolly-in, 35mm lens", "overhead top-down shot", "handheld close-up, shallow depth of field",
           "wide establishing shot, slow pan right", "macro shot, rack focus", "low-angle tracking shot"]
LIGHTS = ["soft golden-hour light", "diffused window light", "warm practical lamps", "crisp morning light",
          "moody side light with gentle haze"]
SOUNDS = ["soft ambient room tone", "gentle acoustic guitar", "birdsong and a light breeze",
          "quiet clinking and footsteps", "low cinematic drone", "crackling fire and soft wind"]


def write_script(topic: str, language: str, scenes: int, clip_seconds: int, style: str) -> Script:
    rng = _rng("script", topic, language, scenes)
    zh = language.startswith("zh")
    t = topic.strip().rstrip("?？!！。.")
    subject_words = zh_subject(topic) if zh else t
    beats = (ZH_BEATS if zh else EN_BEATS)[:]
    rng.shuffle(beats)
    rng.choice(SUBJECTS)  # drawn as before the bible, so the draws after it (setting, beats, cameras) stay the same
    place = rng.choice(SETTINGS)
    cast = [Character(name=zh_name if zh else name, look=look) for name, zh_name, look in rng.sample(CAST, 2)]
    palette = rng.choice(PALETTES)
    subject = " and ".join(c.name for c in cast)
    out = []
    for i in range(scenes):
        if i == 0:
            line = f"你有没有想过，{t}？" if zh else f"Ever wondered about {t}? Watch this."
        elif i == scenes - 1 and scenes > 1:
            line = f"现在你知道{t}了吧？下次见！" if zh else f"And that is {t}. Now you know the whole story."
        else:
            line = beats[(i - 1) % len(beats)].format(t=subject_words)
        visual = (f"{subject} in {place}: {', '.join(keywords(topic))}, moment {i + 1} of {scenes}; "
                  f"{rng.choice(CAMERAS)}")
        out.append(Scene(index=i + 1, narration=line, visual=visual, duration=clip_seconds))
    title = f"{t}：一分钟看懂" if zh else f"{t[:1].upper()}{t[1:]}: the whole story"
    hook = f"{t}，比你想象的更有意思。" if zh else f"{t[:1].upper()}{t[1:]} is more surprising than you think."
    return Script(title=title[:100], hook=hook, language="zh" if zh else language, scenes=out, characters=cast,
                  setting=place, palette=palette)


def write_seo(script: Script, topic: str) -> SeoPackage:
    zh = script.language.startswith("zh")
    words = keywords(topic)
    chapters, start = [], 0
    for scene in script.scenes:
        chapters.append(Chapter(start=f"{start // 60:02d}:{start % 60:02d}", title=scene.narration[:40]))
        start += scene.duration
    if zh:
        tags = [*words, "科普", "短视频", "涨知识", "一分钟"]
        hashtags = [f"#{w}" for w in words] + ["#科普", "#涨知识"]
        description = f"{script.hook}{len(script.scenes)}个画面，带你看懂{topic}。喜欢就点赞关注！"
    else:
        tags = [*words, topic.lower(), "explainer", "how it works", "shorts"]
        hashtags = [f"#{w}" for w in words] + ["#explained", "#shorts"]
        description = f"{script.hook} In {len(script.scenes)} short scenes we show {topic}. Subscribe for more."
    return SeoPackage(title=script.title[:100], description=description, tags=list(dict.fromkeys(tags)),
                      hashtags=hashtags, chapters=chapters)


def bible_text(script: Script) -> str:
    """The cast and style bible as prompt words: every character's look, the setting and the palette, verbatim."""
    parts = [f"{c.name}: {c.look}." for c in script.characters]
    if script.setting:
        parts.append(f"Setting: {script.setting}.")
    if script.palette:
        parts.append(f"Palette: {script.palette}.")
    return " ".join(parts)


def write_prompts(script: Script, style: str, aspect_ratio: str, resolution: str) -> PromptList:
    rng = _rng("prompts", script.title, style)
    subject = next((s for s in SUBJECTS if s in script.scenes[0].visual), rng.choice(SUBJECTS))
    bible = bible_text(script)
    prompts = []
    for scene in script.scenes:
        r = _rng("scene", script.title, scene.index)
        if bible:  # the cast and style bible, repeated word for word so every clip draws the same people
            prompt = (f"{style}. {scene.visual}. {bible} "
                      f"Camera: {r.choice(CAMERAS)}. Lighting: {r.choice(LIGHTS)}. Audio: {r.choice(SOUNDS)}, "
                      f"no dialogue.")
        else:  # a script from before the bible
            prompt = (f"{style}. {scene.visual}. The same {subject} appears throughout, same wardrobe and colour "
                      f"palette. Camera: {r.choice(CAMERAS)}. Lighting: {r.choice(LIGHTS)}. "
                      f"Audio: {r.choice(SOUNDS)}, no dialogue.")
        prompts.append(VideoPrompt(
            index=scene.index, scene_index=scene.index, prompt=prompt,
            negative_prompt="text overlays, watermark, blurry, distorted faces, extra fingers",
            duration=scene.duration, aspect_ratio=aspect_ratio, resolution=resolution,
            seed=int(hashlib.sha256(f"{script.title}{scene.index}".encode()).hexdigest()[:8], 16),
            subtitle=scene.narration))
    return PromptList(prompts=prompts)


def rephrase(prompt: str, script: Script, scene: Scene | None, style: str, attempt: int) -> str:
    """A filtered prompt in plainer, more general words, keeping the bible and the scene's place in the story.

    Deterministic, so the rewrite-after-filter flow can be rehearsed offline: the first attempt replaces the
    scene's own description (where a filtered word usually is) with a calm, general wording; a later attempt
    also drops the style words and names a static camera."""
    names = " and ".join(c.name for c in script.characters) or "the main subject"
    place = script.setting or "a quiet, ordinary place"
    where = f"scene {scene.index} of {len(script.scenes)}" if scene else "one scene"
    bible = bible_text(script)
    general = f"A calm, everyday moment with {names} in {place}, {where} of a gentle short film."
    if attempt <= 1:
        words = [f"{style}.", general, bible, "Camera: slow, steady wide shot. Lighting: soft natural light.",
                 "Audio: quiet ambience, no dialogue."]
    else:
        words = [general, bible, "Camera: static wide shot. Lighting: even daylight. Audio: soft room tone."]
    return " ".join(w for w in words if w)
