"""`VideoGenerationTool`: the quota-aware generator as a CrewAI tool for agents that render clips themselves.

It never raises into CrewAI (a raising tool is re-run up to six times in ReAct mode, each time a paid
submit): every problem comes back as a `ToolFailure` the agent can read. Clips go through the same
ledger, gates and receipts as the pipeline, so a clip the agent asks for twice is paid once.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from crewai.tools import BaseTool, ToolFailure
from pydantic import BaseModel, Field, PrivateAttr

from reelcrew.models import ClipStatus, VideoPrompt
from reelcrew.video.registry import backend_name


class VideoArgs(BaseModel):
    prompt: str = Field(..., description="The Veo prompt: subject, action, setting, camera, lighting, audio")
    index: int = Field(1, ge=1, description="Clip number within the production (1-based)")
    duration: Literal[4, 6, 8] = Field(8, description="Seconds")
    aspect_ratio: Literal["16:9", "9:16"] = "16:9"
    resolution: Literal["720p", "1080p"] = "720p"
    negative_prompt: str = ""
    seed: int | None = Field(None, ge=0, le=4294967295)


class VideoGenerationTool(BaseTool):
    name: str = "generate_video_clip"
    description: str = ("Generate one video clip with Google Veo from a prompt and return the file path. "
                        "Quota-aware; a clip already generated is returned without paying again.")
    args_schema: type[BaseModel] = VideoArgs
    production_id: str = "tool"
    _settings: Any = PrivateAttr()
    _store: Any = PrivateAttr()
    _generator: Any = PrivateAttr()

    def __init__(self, settings, store, generator, production_id: str = "tool", **kwargs):
        super().__init__(production_id=production_id, **kwargs)
        self._settings, self._store, self._generator = settings, store, generator

    def _run(self, prompt: str, index: int = 1, duration: int = 8, aspect_ratio: str = "16:9",
             resolution: str = "720p", negative_prompt: str = "", seed: int | None = None) -> str | ToolFailure:
        from reelcrew.video.generator import ClipJob

        try:
            request = VideoPrompt(index=index, scene_index=index, prompt=prompt, negative_prompt=negative_prompt,
                                  duration=duration, aspect_ratio=aspect_ratio, resolution=resolution, seed=seed)
            request.check_against(self._settings.veo3_model, backend_name(self._settings))
            clip = self._store.ensure_clip(self.production_id, request, self._settings.veo3_model)
            dest = Path(self._settings.reelcrew_output_dir) / self.production_id / "clips" / f"clip-{index:02d}.mp4"
            clip = self._generator.run([ClipJob(clip.key, dest)])[0]
        except Exception as exc:  # never into CrewAI: the agent reads what went wrong
            return ToolFailure(message=f"clip {index} not generated: {exc}", retryable=False)
        if clip.status == ClipStatus.done:
            return json.dumps({"status": "done", "path": str(dest), "duration": clip.duration, "clip": index})
        return ToolFailure(message=f"clip {index} {clip.status.value}: {clip.error}",
                           code=clip.status.value, retryable=clip.status == ClipStatus.paused)
