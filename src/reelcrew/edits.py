"""The user's edits to a production's stage files (script.json, seo.json, prompts.json), validated and adopted.

The stage files are the user's to edit; the ledger holds the copy every later stage reads. Before `assemble`,
`resume`, `retry` or a re-`run` works on a production, each stage file is compared with the ledger's copy.
One that differs is checked as the writers' answers are (the pydantic model, then the crew's own rules) and
adopted: the ledger's stage output is replaced and an `edit` event names the file and the fields. An invalid
edit is an InputError (exit 2) naming the file, the field and the problem, raised before anything is written.

Money is sacred here too. A change to what a clip is made from (its prompt text, duration, seed ...: what
enters the clip key) is adopted only while that clip has not been submitted; for a clip already paid, in
flight, failed or filtered it is held back with the `reelcrew retry P --clip N` command that makes it anew.
Subtitles, narration and the title only change the cut, so a re-cut after them pays nothing.
"""

from __future__ import annotations

import json
import logging
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from reelcrew.brief import brief
from reelcrew.errors import InputError
from reelcrew.files import write_json_atomic
from reelcrew.models import ClipStatus, Production, PromptList, Script, SeoPackage, VideoClip, VideoPrompt
from reelcrew.settings import Settings
from reelcrew.store import Store
from reelcrew.video.registry import backend_name

log = logging.getLogger("reelcrew.edits")
Notify = Callable[[str], None]
STAGE_MODELS: dict[str, type[BaseModel]] = {"script": Script, "seo": SeoPackage, "prompts": PromptList}
# what a clip is made from: VideoPrompt.clip_key hashes these; a change makes a new (paid) clip
CLIP_FIELDS = ("prompt", "negative_prompt", "duration", "aspect_ratio", "resolution", "seed", "variant")
# Readable captions: at most 20 characters a second (the common subtitling guideline for adults), a wide
# (CJK) character counting as two. The writers' YAML asks for 18 words or 30 hanzi per 8 s scene, well within.
CAPTION_CHARS_PER_SECOND = 20
FIX = "correct it in {path} (or delete the file to get the ledger's copy back) and run again; nothing was changed"


@dataclass
class StageEdit:
    """One stage file that differs from the ledger: what the ledger will hold, and what the file should say."""

    stage: str
    path: Path
    fields: list[str]  # dotted pydantic locs of what changed (e.g. prompts.0.subtitle)
    value: BaseModel  # the ledger's new copy
    on_disk: BaseModel | None = None  # rewrite the file with this (a propagated subtitle), None: leave it


@dataclass
class EditPlan:
    """What adopting a production's edited stage files will do; nothing is written until `apply`."""

    production: Production
    edits: list[StageEdit] = field(default_factory=list)
    held: list[str] = field(default_factory=list)  # clip changes kept out, each with the command that applies it


def stage_file(folder: Path, stage: str) -> Path:
    return folder / f"{stage}.json"


def find_edits(settings: Settings, store: Store, prod: Production, folder: Path,
               allow_new_clips: Iterable[int] = ()) -> EditPlan:
    """Compare the production's stage files with the ledger and check every edit; raises InputError (exit 2).

    `allow_new_clips`: scene indexes whose clip may be made anew from an edited prompt (`reelcrew retry`)."""
    saved = {stage: model.model_validate_json(data) for stage, model in STAGE_MODELS.items()
             if (data := store.stage(prod.id, stage)) is not None}
    wanted = {stage: _read(stage_file(folder, stage), STAGE_MODELS[stage]) for stage in saved
              if stage_file(folder, stage).exists()}
    edited = {stage for stage, value in wanted.items() if value is not None and _dump(value) != _dump(saved[stage])}
    plan = EditPlan(prod)
    if not edited:
        return plan
    inputs = brief(prod.topic, prod.language, prod.scenes, prod.aspect_ratio, prod.style, settings.clip_seconds,
                   settings.resolution)
    script = _candidate("script", saved, wanted, edited)
    if "script" in edited:
        assert isinstance(script, Script)
        _check_script(script, saved["script"], inputs, stage_file(folder, "script"))
    prompts = _candidate("prompts", saved, wanted, edited)
    if isinstance(prompts, PromptList) and isinstance(script, Script):
        old_script = saved["script"]
        assert isinstance(old_script, Script)
        prompts = _propagate_narration(old_script, script, saved["prompts"], prompts)
        if _dump(prompts) != _dump(saved["prompts"]):
            edited.add("prompts")
        if edited & {"script", "prompts"}:
            _check_prompts(prompts, script, inputs, settings, stage_file(folder, "prompts"), saved["prompts"])
    for stage in ("script", "seo", "prompts"):
        if stage not in edited:
            continue
        value = prompts if stage == "prompts" else wanted[stage]
        assert value is not None
        path = stage_file(folder, stage)
        on_disk = value if stage == "prompts" and _dump(value) != _dump(wanted.get(stage)) else None
        if isinstance(value, PromptList):
            value = _hold_paid_clips(settings, store, prod, path, saved["prompts"], value, set(allow_new_clips),
                                     plan.held)
        fields = changed_fields(_dump(saved[stage]), _dump(value))
        if fields:
            plan.edits.append(StageEdit(stage, path, fields, value, on_disk))
        elif on_disk is not None:  # nothing new for the ledger, but the file must show the propagated subtitle
            plan.edits.append(StageEdit(stage, path, [], value, on_disk))
    return plan


def apply(store: Store, plan: EditPlan) -> list[str]:
    """Adopt the plan: files first (a propagated subtitle), then the ledger's copies and `edit` events in one
    transaction. Returns the lines to show the user."""
    for edit in plan.edits:
        if edit.on_disk is not None:
            write_json_atomic(edit.path, edit.on_disk.model_dump(mode="json"))
    adopted = {edit.stage: edit.value.model_dump_json() for edit in plan.edits if edit.fields}
    messages = {edit.stage: f"edited {edit.path.name}: {', '.join(edit.fields)}" for edit in plan.edits if edit.fields}
    if adopted:
        store.adopt_stage_edits(plan.production.id, adopted, messages)
    lines = [f"{plan.production.id}: adopted the {message}" for message in messages.values()]
    return lines + [f"{plan.production.id}: {note}" for note in plan.held]


def adopt_edits(settings: Settings, store: Store, prods: Iterable[Production], folder_of: Callable[[Production], Path],
                allow_new_clips: set[tuple[str, int]] | None = None, notify: Notify = log.info) -> list[EditPlan]:
    """Check every production's edited stage files first (any invalid one: InputError, nothing written), then
    adopt them all; each adoption and each held-back clip change is told through `notify`."""
    allowed = allow_new_clips or set()
    plans = [find_edits(settings, store, prod, folder_of(prod), {i for pid, i in allowed if pid == prod.id})
             for prod in prods]
    for plan in plans:
        for line in apply(store, plan):
            notify(line)
    return plans


# -- reading and comparing -------------------------------------------------------------------------------
def _read(path: Path, model: type[BaseModel]) -> BaseModel | None:
    """The stage file as its model, or an InputError naming the file, the field and the problem."""
    fix = FIX.format(path=path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except UnicodeDecodeError as exc:
        raise InputError(f"{path} is not UTF-8 text ({exc.reason} at byte {exc.start})", fix) from None
    except OSError as exc:
        raise InputError(f"{path} cannot be read ({exc.strerror})", "make it readable, or delete it") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(f"{path} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}", fix) from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InputError(f"{path}: " + explain(exc), fix) from None


def explain(exc: ValidationError) -> str:
    """Pydantic's errors as `field loc: message` (the loc dotted, list positions from 0), the first six."""
    parts = []
    for err in exc.errors()[:6]:
        loc = ".".join(str(p) for p in err["loc"]) or "(the whole file)"
        parts.append(f"field {loc}: {err['msg']}")
    return "; ".join(parts)


def _dump(value: BaseModel | None) -> Any:
    return value.model_dump(mode="json") if value is not None else None


def changed_fields(old: Any, new: Any, loc: str = "") -> list[str]:
    """The dotted locs where two JSON values differ (a list of another length counts as the list itself)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in [*old, *(k for k in new if k not in old)]:
            out += changed_fields(old.get(key), new.get(key), f"{loc}.{key}" if loc else str(key))
        return out
    if isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        return [f for i, (a, b) in enumerate(zip(old, new, strict=True)) for f in changed_fields(a, b, f"{loc}.{i}")]
    return [] if old == new else [loc or "(the whole file)"]


def _candidate(stage: str, saved: dict, wanted: dict, edited: set[str]) -> BaseModel | None:
    return wanted[stage] if stage in edited else saved.get(stage)


# -- the crews' rules ------------------------------------------------------------------------------------
def _check_script(script: Script, old: BaseModel, inputs: dict, path: Path) -> None:
    from reelcrew.crews.scriptwriter import SPEC

    try:
        SPEC.check(script, inputs)
    except ValueError as exc:
        raise InputError(f"{path}: {exc}", FIX.format(path=path)) from None
    assert isinstance(old, Script)
    before = {s.index: s.narration for s in old.scenes}
    for i, scene in enumerate(script.scenes):
        if scene.narration != before.get(scene.index):
            _check_caption(scene.narration, scene.duration, path, f"scenes.{i}.narration")


def _check_prompts(prompts: PromptList, script: Script, inputs: dict, settings: Settings, path: Path,
                   old: BaseModel) -> None:
    from reelcrew.crews.maker import _checker

    try:
        _checker(script, settings.veo3_model)(prompts, inputs)
        for prompt in prompts.prompts:
            prompt.check_against(settings.veo3_model, backend_name(settings))
    except ValueError as exc:
        raise InputError(f"{path}: {exc}", FIX.format(path=path)) from None
    assert isinstance(old, PromptList)
    before = {p.index: p.subtitle for p in old.prompts}
    for i, prompt in enumerate(prompts.prompts):
        if prompt.subtitle != before.get(prompt.index):
            _check_caption(prompt.subtitle, prompt.duration, path, f"prompts.{i}.subtitle")


def _check_caption(text: str, seconds: float, path: Path, loc: str) -> None:
    """A caption must be readable in its scene's time (wide characters count twice)."""
    width = sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text.strip())
    limit = int(CAPTION_CHARS_PER_SECOND * seconds)
    if width > limit:
        raise InputError(f"{path}: field {loc}: {width} characters is too long to read in {seconds:g} s "
                         f"(at most {limit}; a Chinese, Japanese or Korean character counts as 2)",
                         f"shorten it in {path} and run again; nothing was changed")


# -- what follows from an edit ---------------------------------------------------------------------------
def _propagate_narration(old_script: Script, script: Script, old_prompts: BaseModel, prompts: PromptList
                         ) -> PromptList:
    """An edited narration becomes its scene's subtitle (the Maker copies it so), unless that subtitle was
    edited too: then the subtitle the user wrote wins."""
    assert isinstance(old_prompts, PromptList)
    narration = {s.index: s.narration for s in script.scenes}
    was = {s.index: s.narration for s in old_script.scenes}
    old_subtitle = {p.index: p.subtitle for p in old_prompts.prompts}
    out = prompts.model_copy(deep=True)
    for prompt in out.prompts:
        scene = prompt.scene_index
        if scene in narration and narration[scene] != was.get(scene) and prompt.subtitle == old_subtitle.get(
                prompt.index):
            prompt.subtitle = narration[scene]
    return out


def _hold_paid_clips(settings: Settings, store: Store, prod: Production, path: Path, old: BaseModel,
                     new: PromptList, allowed: set[int], held: list[str]) -> PromptList:
    """The prompts the ledger takes: a changed clip request is kept out while its clip was submitted, paid,
    failed or filtered (unless `allowed`), with a note saying how to make it anew."""
    assert isinstance(old, PromptList)
    model = settings.veo3_model
    before = {p.index: p for p in old.prompts}
    clips = {c.index: c for c in store.production_clips(prod.id)}
    out = new.model_copy(deep=True)
    for pos, prompt in enumerate(out.prompts):
        previous = before.get(prompt.index)
        if previous is None or prompt.clip_key(model) == previous.clip_key(model):
            continue
        clip = clips.get(prompt.index)
        if clip is None or prompt.index in allowed or not _started(clip):
            continue
        kept = prompt.model_copy(update={name: getattr(previous, name) for name in CLIP_FIELDS})
        out.prompts[pos] = kept if kept.clip_key(model) == previous.clip_key(model) else previous.model_copy(
            update={"subtitle": prompt.subtitle})
        held.append(_held_note(path, prod.id, prompt, clip))
    return out


def _started(clip: VideoClip) -> bool:
    """Submitted at least once: its request is paid, in flight, or settled (failed, filtered)."""
    return clip.status != ClipStatus.pending and not (clip.status == ClipStatus.paused and not clip.operation_name)


def _held_note(path: Path, pid: str, prompt: VideoPrompt, clip: VideoClip) -> str:
    retry = f"`reelcrew retry {pid} --clip {prompt.index}`"
    if clip.status == ClipStatus.done:
        state = "is already made" + (f" and paid (${clip.cost_usd:.2f})" if clip.cost_usd else "") + ", so it is kept"
        then = f"to make it anew from the edited prompt (a new paid clip), run {retry}"
    elif clip.status in (ClipStatus.failed, ClipStatus.filtered):
        state = f"is {clip.status.value}; `resume` and `assemble` do not make it again"
        then = f"to make it from the edited prompt, run {retry}"
    elif clip.status == ClipStatus.ambiguous:
        state = "has a submit Veo may have accepted (and charged), so it is kept"
        then = f"{retry} makes it anew from the edited prompt when you decide"
    else:
        state = f"is in flight at Veo ({clip.status.value}) and will be charged, so it is kept"
        then = f"once it is done, {retry} makes it anew from the edited prompt (a new paid clip)"
    return f"{path.name}: prompt {prompt.index}'s request changed, but clip {prompt.index} {state}; {then}"
