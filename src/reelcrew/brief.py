"""The placeholders every crew's YAML may use (outside crews/, so it imports without CrewAI)."""

LANGUAGE_NAMES = {"en": "English", "zh": "Simplified Chinese (简体中文)", "zh-tw": "Traditional Chinese (繁體中文)",
                  "ja": "Japanese", "ko": "Korean", "es": "Spanish", "fr": "French", "de": "German", "pt": "Portuguese"}


def brief(topic: str, language: str, scenes: int, aspect_ratio: str, style: str, clip_seconds: int,
          resolution: str) -> dict:
    return {"topic": topic, "language": language, "language_name": LANGUAGE_NAMES.get(language.lower(), language),
            "scenes": scenes, "aspect_ratio": aspect_ratio, "style": style, "clip_seconds": clip_seconds,
            "resolution": resolution}
