"""Runs the stages for a batch of productions: script → seo → prompts → clips → final.

Each stage's output is persisted (ledger row and JSON file) before the next starts and is
skipped when already there: that is how a re-run resumes. Clips of every production share
the same gates. One production failing never stops the others. Nothing here knows HTTP or ffmpeg.

A run claims each production (its own owner id, a renewed lease) before writing or rendering it;
a production rendered already, or being rendered by another live process, is left alone and its
summary says where the final is. Each production's files go to the folder recorded at its first claim.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelcrew import mock_writer
from reelcrew.errors import BudgetError, ConfigError, InputError, ReelcrewError
from reelcrew.files import new_owner, write_json_atomic
from reelcrew.leases import Heartbeat
from reelcrew.models import ClipStatus, Production, ProductionStatus, PromptList, Script, SeoPackage, frame_size
from reelcrew.results import Estimate
from reelcrew.settings import Settings
from reelcrew.storage import StorageError, as_storage_error
from reelcrew.store import Store
from reelcrew.video.registry import backend_name, backend_spec, model_limits
from reelcrew.writer_quota import WritersPaused

log = logging.getLogger("reelcrew.pipeline")
STAGES = ["script", "seo", "prompts", "clips", "final"]
PRODUCTION_LEASE = 120.0  # seconds; renewed every 40 s while this process works on the production


def estimate_clips(settings: Settings, clips: list[tuple[str, float, str]]) -> Estimate:
    """The price of clips to make, each given as (model, seconds, resolution)."""
    seconds = sum(duration for _, duration, _ in clips)
    usd = sum(duration * settings.price_per_second(model, res) for model, duration, res in clips)
    return Estimate(clips=len(clips), seconds=seconds, video_usd=round(usd, 4))


def resolve_language(topic: str, language: str) -> str:
    if language and language != "auto":
        return language
    return "zh" if mock_writer.is_chinese(topic) else "en"


def production_id(topic: str, language: str, scenes: int, aspect: str, style: str) -> str:
    """Stable for the same request, so running the same command again resumes it. From user input, never LLM text."""
    digest = hashlib.sha256(f"{topic}\x1f{language}\x1f{scenes}\x1f{aspect}\x1f{style}".encode()).hexdigest()[:8]
    slug = re.sub(r"[^a-z0-9]+", "-", topic.lower()).strip("-")[:32].strip("-")
    return f"{slug}-{digest}" if slug else f"p-{digest}"


def read_topics(topics: list[str], topics_file: Path | None) -> list[str]:
    out = [t.strip() for t in topics]
    if topics_file is not None:
        try:
            text = Path(topics_file).read_text(encoding="utf-8-sig")
        except FileNotFoundError:
            raise InputError(f"topics file {topics_file} does not exist",
                             "check the path given to --topics-file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"topics file {topics_file} cannot be read: {exc}",
                             "make it a readable UTF-8 text file, one topic a line") from None
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
        if not lines:
            raise InputError(f"topics file {topics_file} has no topics",
                             "write one topic a line (lines starting # are skipped)")
        out += lines
    if not out:
        raise InputError("no topic given", 'pass --topic "your topic" or --topics-file FILE')
    if any(not t for t in out):
        raise InputError("a topic is empty", 'give every --topic some text, e.g. --topic "how tea is made"')
    return list(dict.fromkeys(out))


class _LazyCrews:
    def __getattr__(self, name: str):
        import reelcrew.crews

        return getattr(reelcrew.crews, name)


@dataclass
class Progress:
    """Hooks a face (the CLI's progress bars, later the API's events) uses to follow a run; all optional."""

    plan: Callable[[str, int], None] = lambda what, total: None  # "stages" or "clips", and how many
    stage: Callable[[str, str], None] = lambda pid, stage: None
    clip: Callable[[Any], None] = lambda clip: None


def _approve_all(estimate: Estimate) -> None:
    """The default approval step: none (tests and library callers that pass no policy)."""


@dataclass
class Pipeline:
    settings: Settings
    store: Store
    progress: Progress = field(default_factory=Progress)
    budget_usd: float | None = None
    # the approval step before the first paid submit: raises BudgetError to submit nothing (service.approve)
    approve: Callable[[Estimate], Any] = _approve_all
    _llm: Any = None
    _folders: dict[str, Path] = field(default_factory=dict)
    _notes: dict[str, str] = field(default_factory=dict)

    @property
    def out(self) -> Path:
        return self.settings.reelcrew_output_dir

    def folder(self, pid: str) -> Path:
        """Where the production's files are: the folder recorded in the ledger, else `<output dir>/<id>`."""
        if pid not in self._folders:
            prod = self.store.production(pid)
            if not (prod and prod.folder):
                return self.out / pid
            self._folders[pid] = Path(prod.folder)
        return self._folders[pid]

    def llm(self):
        if self._llm is None:
            from reelcrew.llm import build_llm
            from reelcrew.writer_quota import WriterQuota

            self.writer_quota = None if self.settings.mock_llm else WriterQuota(self.store, self.settings)
            self._llm = build_llm(self.settings, self.writer_quota)
        return self._llm

    # -- planning ------------------------------------------------------------------------------
    def plan(self, topics: list[str]) -> list[Production]:
        s = self.settings
        durations = model_limits(s.veo3_model, backend_name(s)).durations
        if s.clip_seconds not in durations:
            raise ConfigError(f"clip length {s.clip_seconds}s is not supported by {s.veo3_model}",
                              f"set clip_seconds to one of {durations}")
        if s.resolution == "1080p" and s.clip_seconds != 8:
            raise ConfigError("1080p clips must be 8 s long", "set clip_seconds: 8 or resolution: 720p")
        prods = []
        for topic in topics:
            language = resolve_language(topic, s.language)
            pid = production_id(topic, language, s.scenes, s.aspect_ratio, s.style)
            prod = Production(id=pid, topic=topic, language=language, scenes=s.scenes, aspect_ratio=s.aspect_ratio,
                              style=s.style)
            self.store.upsert_production(prod)
            prods.append(self.store.production(pid) or prod)
        return prods

    def brief(self, prod: Production) -> dict:
        from reelcrew.brief import brief

        s = self.settings
        return brief(prod.topic, prod.language, prod.scenes, prod.aspect_ratio, prod.style, s.clip_seconds,
                     s.resolution)

    # -- the writers' stages ------------------------------------------------------------------------
    def _stage(self, prod: Production, stage: str, model, make: Callable[[], Any]):
        saved = self.store.stage(prod.id, stage)
        folder = self.folder(prod.id)
        if saved is not None:
            self.progress.stage(prod.id, f"{stage} (saved)")
            value = model.model_validate_json(saved)
        else:
            self.progress.stage(prod.id, stage)
            quota = getattr(self, "writer_quota", None)
            if quota is not None:
                quota.production_id = prod.id  # its tokens are this production's cost
            result = make()
            value = result.value
            self.store.save_stage(prod.id, stage, value.model_dump_json(), result.answers)
            self.store.log("stage", f"{stage} written in {result.answers} LLM answer(s)", prod.id, stage=stage)
        path = folder / f"{stage}.json"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            write_json_atomic(path, value.model_dump(mode="json"))
        return value

    def write(self, prod: Production, until: str) -> tuple[Script, SeoPackage | None, PromptList | None]:
        """The writers' stages; CrewAI (3 s to import) is only loaded when a stage is not saved yet."""
        s, b = self.settings, self.brief(prod)
        crews = _LazyCrews()
        script = self._stage(prod, "script", Script,
                             lambda: crews.write_script(self.llm(), b, s.crews_dir, s.llm_max_repairs))
        if until == "script":
            return script, None, None
        seo = self._stage(prod, "seo", SeoPackage,
                          lambda: crews.write_seo(self.llm(), b, script, s.crews_dir, s.llm_max_repairs))
        if until == "seo":
            return script, seo, None
        prompts = self._stage(prod, "prompts", PromptList,
                              lambda: crews.make_prompts(self.llm(), b, script, s.veo3_model, s.crews_dir,
                                                         s.llm_max_repairs))
        return script, seo, prompts

    # -- the batch ----------------------------------------------------------------------------------
    def run(self, prods: list[Production], until: str = "final", retry_clips: set[tuple[str, int]] | None = None
            ) -> dict[str, str]:
        """Run the stages; returns a note per production this run left alone (rendered, or held elsewhere)."""
        heartbeat = Heartbeat(self.store, PRODUCTION_LEASE)
        try:
            mine = self._claim(prods, until, heartbeat)
            self._run(mine, until, retry_clips)
        finally:
            heartbeat.stop()
        return dict(self._notes)

    def _claim(self, prods: list[Production], until: str, heartbeat: Heartbeat) -> list[Production]:
        """The productions this run works on: not rendered yet, and not held by another live process."""
        mine = []
        start = os.getpid() % len(prods) if prods else 0  # concurrent runs of one batch start at different places
        for prod in prods[start:] + prods[:start]:
            if until == "final" and self._rendered(prod.id):
                self._notes[prod.id] = f"already rendered: {self.folder(prod.id) / 'final.mp4'}"
                continue
            owner = new_owner()
            claim = self.store.claim_production(prod.id, owner, PRODUCTION_LEASE, self.out.resolve() / prod.id)
            if not claim.granted:
                where = Path(claim.folder or self.out / prod.id) / "final.mp4"
                self._notes[prod.id] = f"being rendered by another process ({claim.holder}); its final will be {where}"
                continue
            assert claim.folder is not None  # a granted claim always records its folder
            self._folders[prod.id] = Path(claim.folder)
            heartbeat.hold(owner)
            mine.append(prod)
        return sorted(mine, key=prods.index)

    def _rendered(self, pid: str) -> bool:
        prod = self.store.production(pid)
        return bool(prod and prod.status == ProductionStatus.done and self.store.stage(pid, "final")
                    and (self.folder(pid) / "final.mp4").exists())

    def _run(self, prods: list[Production], until: str, retry_clips: set[tuple[str, int]] | None) -> None:
        written: dict[str, tuple] = {}
        if until == "final":  # pre-flight: a typo in render.edit costs nothing (ConfigError, before any spend)
            from reelcrew.assemble.hooks import load_edit

            load_edit(self.settings.render.edit)
        self.progress.plan("stages", len(prods) * (STAGES.index(until) + 1))
        for prod in prods:
            try:
                written[prod.id] = self.write(prod, until)
            except ReelcrewError as exc:
                if isinstance(exc, ConfigError | StorageError):  # the same for every production: stop the batch
                    raise
                stage = next((st for st in STAGES if self.store.stage(prod.id, st) is None), "script")
                status = ProductionStatus.paused if isinstance(exc, WritersPaused) else ProductionStatus.failed
                self.store.set_production_status(prod.id, status, stage, str(exc))
                self.store.log("failed", str(exc), prod.id, stage=stage)
        if until in ("clips", "final"):
            self._clips(prods, written, retry_clips or set())
        if until == "final":
            for prod in prods:
                if prod.id in written:
                    self._final(prod, *written[prod.id])
        for prod in prods:
            current = self.store.production(prod.id)
            assert current is not None  # prods come from the ledger, which never deletes one
            if prod.id in written and current.status == ProductionStatus.running:
                self.store.set_production_status(prod.id, ProductionStatus.done)

    def _clip_jobs(self, prods, written, retry_clips):
        from reelcrew.video.generator import ClipJob

        jobs = []
        for prod in prods:
            if prod.id not in written or written[prod.id][2] is None:
                continue
            for prompt in written[prod.id][2].prompts:
                prompt.check_against(self.settings.veo3_model, backend_name(self.settings))
                clip = self.store.ensure_clip(prod.id, prompt, self.settings.veo3_model)
                dest = self.folder(prod.id) / "clips" / f"clip-{prompt.index:02d}.mp4"
                jobs.append((prod, ClipJob(clip.key, dest, (prod.id, prompt.index) in retry_clips), clip))
        return jobs

    def estimate(self, jobs) -> Estimate:
        todo = [clip for _, job, clip in jobs if clip.status != ClipStatus.done or job.retry_final]
        return estimate_clips(self.settings, [(c.model, c.prompt.duration, c.prompt.resolution) for c in todo])

    def _clips(self, prods, written, retry_clips) -> None:
        from reelcrew.video.backends import make_backend
        from reelcrew.video.generator import Budget, ClipGenerator
        from reelcrew.video.quota import RateGate

        jobs = self._clip_jobs(prods, written, retry_clips)
        if not jobs:
            return
        self.progress.plan("clips", len(jobs))
        s = self.settings
        estimate = self.estimate(jobs)
        paid = backend_spec(s).paid
        if estimate.clips and paid:
            try:
                self.approve(estimate)
            except BudgetError as exc:
                for pid in {p.id for p, _, _ in jobs}:
                    self.store.set_production_status(pid, ProductionStatus.awaiting_approval, "clips", exc.problem)
                raise
        backend = make_backend(s)
        gate = RateGate(self.store, s.veo3_rpm, s.veo3_rpd, s.veo3_rate_window_seconds) if paid else None
        budget = Budget(run_usd=self.budget_usd, daily_usd=s.reelcrew_daily_budget_usd)
        for prod in {p.id: p for p, _, _ in jobs}.values():
            self.progress.stage(prod.id, "clips")
            self.store.log("stage", "clips", prod.id, stage="clips")
        generator = ClipGenerator(s, self.store, backend, gate, budget, on_change=self.progress.clip)
        generator.run([job for _, job, _ in jobs])
        for prod in {p.id: p for p, _, _ in jobs}.values():
            self._settle_clips(prod)

    def _settle_clips(self, prod: Production) -> None:
        clips = self.store.production_clips(prod.id)
        failed = [c for c in clips if c.status in (ClipStatus.failed, ClipStatus.ambiguous)]
        paused = [c for c in clips if c.status in (ClipStatus.paused, ClipStatus.pending, ClipStatus.submitting,
                                                   ClipStatus.submitted, ClipStatus.downloading)]
        if failed:
            detail = "; ".join(f"clip {c.index}: {c.error}" for c in failed[:3])
            self.store.set_production_status(prod.id, ProductionStatus.failed, "clips", detail)
        elif paused:
            detail = next((c.error for c in paused if c.error), "clips not finished")
            self.store.set_production_status(prod.id, ProductionStatus.paused, "clips",
                                             f"{len(paused)} clip(s) waiting: {detail}. "
                                             "Run `reelcrew resume` to continue.")
        self.write_manifest(prod)

    def write_manifest(self, prod: Production) -> None:
        clips = self.store.production_clips(prod.id)
        receipts = {key: [{"operation": r["operation_name"], "outcome": r["outcome"], "at": r["at"],
                           "possible_duplicate": bool(r["possible_duplicate"])} for r in rows]
                    for key, rows in self.store.production_receipts(prod.id).items()}
        folder = self.folder(prod.id)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "manifest.json", {
            "production": prod.model_dump(mode="json"), "model": self.settings.veo3_model,
            "backend": backend_name(self.settings),
            "clips": [{"index": c.index, "key": c.key, "status": c.status.value,
                       "prompt": c.prompt.model_dump(mode="json"),
                       "operation_name": c.operation_name, "video_uri": c.video_uri, "file": c.path, "sha256": c.sha256,
                       "duration": c.duration, "retries": c.retries, "error": c.error, "cost_usd": c.cost_usd,
                       "possible_duplicate": c.possible_duplicate, "submits": receipts.get(c.key, [])} for c in clips],
            "cost_usd": round(sum(c.cost_usd for c in clips), 4)})

    def _final(self, prod: Production, script: Script, seo: SeoPackage | None, prompts: PromptList | None) -> None:
        from reelcrew.assemble import CutClip, assemble_production

        current = self.store.production(prod.id)
        assert current is not None  # prod comes from the ledger, which never deletes one
        if current.status in (ProductionStatus.failed, ProductionStatus.paused) or prompts is None:
            return
        clips = self.store.production_clips(prod.id)
        usable = [c for c in clips if c.status == ClipStatus.done]
        if not usable:
            self.store.set_production_status(prod.id, ProductionStatus.failed, "final", "no clip could be generated")
            return
        folder = self.folder(prod.id)
        self.progress.stage(prod.id, "final")
        width, height = frame_size(prod.aspect_ratio, self.settings.resolution)
        moods = {scene.index: scene.mood.strip().lower() for scene in script.scenes}
        by_mood = self.settings.transitions.by_mood
        cut = [CutClip(path=folder / "clips" / f"clip-{c.index:02d}.mp4", caption=c.prompt.subtitle,
                       transition=by_mood.get(moods.get(c.prompt.scene_index, ""))) for c in usable]
        facts = {"production": prod.model_dump(mode="json"), "model": self.settings.veo3_model,
                 "clips_skipped": [{"index": c.index, "status": c.status.value, "reason": c.error}
                                   for c in clips if c.status != ClipStatus.done],
                 "cost_usd": round(sum(c.cost_usd for c in clips), 4), "rendered_at": time.time()}
        try:
            result = assemble_production(folder, cut, self.settings, width, height, seo, facts, script, prod)
        except (StorageError, OSError) as exc:  # a full or read-only disk stops the batch: the next one needs it too
            storage = as_storage_error(exc, folder, f"the final's files (srt, thumbnail, metadata) in {folder}")
            if storage is None:
                raise
            with suppress(StorageError):  # the ledger may be on the same disk
                self.store.set_production_status(prod.id, ProductionStatus.failed, "final", str(storage))
            raise storage from exc
        except ReelcrewError as exc:
            self.store.set_production_status(prod.id, ProductionStatus.failed, "final", str(exc))
            return
        self.store.save_stage(prod.id, "final", {"file": result["final"], "duration": result["duration"]})
        self.store.log("final", f"final.mp4 {result['duration']:.2f}s", prod.id, stage="final")
