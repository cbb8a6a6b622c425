"""The writers' room: Scriptwriter, SEO and Maker crews, each configured by YAML under `crews/`."""

from reelcrew.brief import LANGUAGE_NAMES, brief
from reelcrew.crews.maker import make_prompts, rephrase_prompt
from reelcrew.crews.scriptwriter import write_script
from reelcrew.crews.seo import write_seo

__all__ = ["write_script", "write_seo", "make_prompts", "rephrase_prompt", "brief", "LANGUAGE_NAMES"]
