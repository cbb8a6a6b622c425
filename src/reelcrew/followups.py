"""Scenes made again by the pipeline itself once a round of clips settles: filtered prompts rewritten, and clips
the quality check flagged regenerated (when the `qc` setting says `regenerate`).

Filtered prompts rewritten: a clip Veo's safety filter refused gets a second (and third) wording.

A safety-filtered generation is free (`raiMediaFilteredReasons`, no video, no charge), so trying again with
other words costs one writers' call, not a clip. After the clips of a run settle, every clip that came back
`filtered` is handed to the Maker with the filter's reason; the Maker rewrites the prompt keeping the scene's
meaning and the cast bible (crews/maker/tasks.yaml, `rephrase_prompt`). The new prompt is a new request, so a
new clip key: the production's scene is linked to it, the prompts stage (ledger and prompts.json) says it, and
the rewrite is recorded (`clip_followups` and a `rephrased` event, both in the manifest), up to
VEO3_REPHRASE_ATTEMPTS times per scene.

What is never rewritten: a paid failure (only `filtered` clips are: nothing was charged), a prompt a person
wrote (edited through the API or prompts.json, or given to `reelcrew retry --prompt`: their words are kept,
and `retry` runs the prompt as it stands), and a rewrite the writers could not make (the clip stays filtered,
with the reason in an event).

Quality regenerations: a done clip whose quality check (reelcrew.video.qc) found a problem is made again as a
new variant of the same prompt (`variant` + 1: a new clip key, a new paid request), at most
QC_MAX_REGENERATIONS times per scene; the estimate shows that worst case before approval
(pipeline.estimate_clips) and the budgets are checked at each claim as for any clip. The scene keeps the
variant whose check passed, or the last one made.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from reelcrew.errors import ReelcrewError
from reelcrew.files import write_json_atomic
from reelcrew.models import ClipStatus, Production, PromptList, VideoClip, VideoPrompt
from reelcrew.video.continuity_refs import clip_options
from reelcrew.video.registry import backend_spec

if TYPE_CHECKING:
    from reelcrew.pipeline import Pipeline
    from reelcrew.video.generator import ClipJob

log = logging.getLogger("reelcrew.rephrase")
FILTER_PREFIX = "safety filter: "  # how the generator words a filtered clip's error


def follow_ups(pipeline: Pipeline, jobs: list[tuple[Production, ClipJob, VideoClip]], written: dict[str, tuple],
               retry_clips: set[tuple[str, int]]) -> list[tuple[Production, ClipJob, VideoClip]]:
    """The jobs that generate the rewritten prompts of this round's filtered clips (empty when none is due)."""
    from reelcrew.video.generator import ClipJob

    s, store = pipeline.settings, pipeline.store
    rehearsal = not backend_spec(s).paid
    out: list[tuple[Production, ClipJob, VideoClip]] = []
    for prod, job, _ in jobs:
        clip = store.clip(job.key)
        prompts: PromptList | None = written.get(prod.id, (None, None, None))[2]
        if prompts is None:
            continue
        options = clip_options(s, store, prod.id, prompts.prompts, clip.model, rehearsal)  # continuity inputs too
        # the scene's planned request: a clip made from a first frame (continuity last_frame) is its prompt's too
        bare = clip.prompt.model_copy(update={"first_frame": None})
        index = next((p.index for p in prompts.prompts
                      if p.clip_key(clip.model, rehearsal=rehearsal, **options[p.index])
                      in (job.key, bare.clip_key(clip.model, rehearsal=rehearsal, **options[p.index]))), None)
        if index is None or (prod.id, index) in retry_clips:
            continue
        new_job = None
        if clip.status == ClipStatus.filtered and not store.prompt_edited_by_user(prod.id, index):
            attempt = len(store.followups(prod.id, index, "rephrase")) + 1
            if attempt <= s.veo3_rephrase_attempts:
                new_job = _rewrite(pipeline, prod, written[prod.id], index, clip, attempt)
        elif clip.status == ClipStatus.done and s.qc == "regenerate" and clip.qc and clip.qc.get("ok") is False:
            attempt = len(store.followups(prod.id, index, "regenerate")) + 1
            if attempt <= s.qc_max_regenerations:
                new_job = _regenerate(pipeline, prod, prompts, index, clip, attempt)
        if new_job is not None:
            out.append((prod, ClipJob(new_job.key, job.dest), new_job))
    for prod in {p.id: p for p, _, _ in out}.values():
        pipeline.write_manifest(prod)  # the new keys and prompts on disk before their first submit
    return out


def _rewrite(pipeline: Pipeline, prod: Production, written: tuple, index: int, clip: VideoClip,
             attempt: int) -> VideoClip | None:
    """One rewrite by the Maker; the new prompt saved and its clip row made. None when the writers could not."""
    from reelcrew import crews

    s, store = pipeline.settings, pipeline.store
    script, _, prompts = written
    reason = (clip.error or "filtered by Veo's safety filters").removeprefix(FILTER_PREFIX)
    position = next(i for i, p in enumerate(prompts.prompts) if p.index == index)
    old = prompts.prompts[position]
    llm = pipeline.llm()
    quota: Any = getattr(pipeline, "writer_quota", None)
    if quota is not None:
        quota.production_id = prod.id  # the rewrite's tokens are this production's cost
    try:
        result = crews.rephrase_prompt(llm, pipeline.brief(prod), script, old, reason, attempt, s.crews_dir,
                                       s.llm_max_repairs)
    except ReelcrewError as exc:  # the writers are paused or could not answer: the clip stays filtered
        store.log("rephrase_failed", f"clip {index}: the filtered prompt could not be rewritten: {exc}", prod.id,
                  index, "clips", attempt)
        return None
    new = old.model_copy(update={"prompt": result.value.prompt})
    fresh = _adopt(pipeline, prod, prompts, position, new, clip)
    store.record_followup(prod.id, index, "rephrase", attempt, clip.key, fresh.key, reason, new.prompt)
    log.info("clip %d of %s rewritten after the safety filter (attempt %d)", index, prod.id, attempt)
    return fresh


def _regenerate(pipeline: Pipeline, prod: Production, prompts: PromptList, index: int, clip: VideoClip,
                attempt: int) -> VideoClip:
    """The same prompt as a new variant (a new key: a new paid request), saved as the scene's prompt."""
    position = next(i for i, p in enumerate(prompts.prompts) if p.index == index)
    old = prompts.prompts[position]
    # another seed too: the same seed asks Veo (where it takes one) for the same video again
    seed = None if old.seed is None else (old.seed + 1) % 2**32
    new = old.model_copy(update={"variant": old.variant + 1, "seed": seed})
    fresh = _adopt(pipeline, prod, prompts, position, new, clip)
    reason = "; ".join((clip.qc or {}).get("problems", [])) or "quality check"
    pipeline.store.record_followup(prod.id, index, "regenerate", attempt, clip.key, fresh.key, reason, new.prompt)
    return fresh


def _adopt(pipeline: Pipeline, prod: Production, prompts: PromptList, position: int, new: VideoPrompt,
           clip: VideoClip) -> VideoClip:
    """The scene's new prompt saved (ledger and prompts.json agree) and its clip row made and linked."""
    prompts.prompts[position] = new
    pipeline.store.replace_stage(prod.id, "prompts", prompts.model_dump_json())
    folder = pipeline.folder(prod.id)
    folder.mkdir(parents=True, exist_ok=True)
    write_json_atomic(folder / "prompts.json", prompts.model_dump(mode="json"))
    rehearsal = not backend_spec(pipeline.settings).paid
    options = clip_options(pipeline.settings, pipeline.store, prod.id, prompts.prompts, clip.model, rehearsal)
    return pipeline.store.ensure_clip(prod.id, new, clip.model, rehearsal=rehearsal, options=options[new.index])
