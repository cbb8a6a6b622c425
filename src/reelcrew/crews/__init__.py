"""The writers' room: Scriptwriter, SEO and Maker crews, each configured by YAML under `crews/`."""

from reelcrew.crews.maker import make_prompts
from reelcrew.crews.scriptwriter import write_script
from reelcrew.crews.seo import write_seo

__all__ = ["write_script", "write_seo", "make_prompts", "brief"]

LANGUAGE_NAMES = {"en": "English", "zh": "Simplified Chinese (简体中文)", "zh-tw": "Traditional Chinese (繁體中文)",
                  "ja": "Japanese", "ko": "Korean", "es": "Spanish", "fr": "French", "de": "German", "pt": "Portuguese"}


def brief(topic: str, language: str, scenes: int, aspect_ratio: str, style: str, clip_seconds: int, resolution: str) -> dict:
    """The placeholders every crew's YAML may use."""
    return {"topic": topic, "language": language, "language_name": LANGUAGE_NAMES.get(language.lower(), language),
            "scenes": scenes, "aspect_ratio": aspect_ratio, "style": style, "clip_seconds": clip_seconds,
            "resolution": resolution}
