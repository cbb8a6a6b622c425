"""Runs the stages for a batch of productions: script → seo → prompts → clips → final.

Each stage's output is persisted (ledger row and JSON file) before the next starts and is
skipped when already there: that is how a re-run resumes. Clips of every production share
the same gates. One production failing never stops the others. Nothing here knows HTTP or ffmpeg.

A run claims each production (its own owner id, a renewed lease) before writing or rendering it;
a production rendered already, or being rendered by another live process, is left alone and its
summary says where the final is. Each production's files go to the folder recorded at its first claim.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reelcrew import artifacts, continuity, followups, grounding, mock_writer
from reelcrew.errors import BudgetError, ConfigError, InputError, ReelcrewError
from reelcrew.files import new_owner, write_json_atomic
from reelcrew.identity import (  # noqa: F401 (production_id: API)
    ProductionMode,
    continuity_in_id,
    identity_fields,
    production_id,
)
from reelcrew.leases import Heartbeat
from reelcrew.models import ClipStatus, Production, ProductionStatus, PromptList, Script, SeoPackage, frame_size
from reelcrew.results import Estimate
from reelcrew.settings import Settings
from reelcrew.storage import StorageError, as_storage_error
from reelcrew.store import Store
from reelcrew.video.continuity_refs import (
    billed_seconds,
    check_prompt,
    clip_options,
    in_order,
    plan_references,
    record_references,
)
from reelcrew.video.registry import backend_name, backend_spec, model_limits, price_column, sample_count
from reelcrew.writer_quota import WritersPaused, rewrite_estimate_usd

log = logging.getLogger("reelcrew.pipeline")
STAGES = ["script", "seo", "prompts", "clips", "final"]
MAX_TOPIC_CHARS = 200  # a subject, not a script: longer ones are refused (never cut: a cut changes the meaning)
SETTLED_CLIPS = (ClipStatus.done, ClipStatus.filtered, ClipStatus.failed, ClipStatus.ambiguous)  # no Veo call left
PRODUCTION_LEASE = 120.0  # seconds; renewed every 40 s while this process works on the production


def estimate_clips(settings: Settings, clips: list[tuple[str, float, str]]) -> Estimate:
    """The price of clips to make, each given as (model, seconds, resolution): every sample of a clip is billed
    (VEO3_SAMPLE_COUNT), at the price column that applies (silent clips on Vertex AI: video-only)."""
    samples = sample_count(settings)
    seconds = samples * sum(duration for _, duration, _ in clips)
    usd = samples * sum(duration * settings.price_per_second(model, res) for model, duration, res in clips)
    # qc: regenerate may make each clip again (a new paid variant): its worst case is in the estimate
    again = settings.qc_max_regenerations if settings.qc == "regenerate" else 0
    # a filtered prompt is free, its rewrite by the Maker is not: VEO3_REPHRASE_ATTEMPTS per clip at most
    column = price_column(settings, clips[0][0]) if clips else "audio"
    return Estimate(clips=len(clips), seconds=seconds, video_usd=round(usd, 4),
                    qc_regenerations_usd=round(usd * again, 4),
                    rewrites_usd=round(rewrite_estimate_usd(settings, len(clips)), 4),
                    samples_per_clip=samples, price_column=column)


def resolve_language(topic: str, language: str) -> str:
    if language and language != "auto":
        return language
    return "zh" if mock_writer.is_chinese(topic) else "en"


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
    for topic in out:
        if len(topic) > MAX_TOPIC_CHARS:
            raise InputError(f"a topic is {len(topic)} characters long ({topic[:40]!r}...); the limit is "
                             f"{MAX_TOPIC_CHARS}", "give the subject in a sentence or two; how it is told belongs "
                             "in STYLE or crews/scriptwriter/tasks.yaml (nothing was started)")
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
    recut: bool = False  # `assemble`: render the final again even where one was rendered (it stays until replaced)
    _llm: Any = None
    _before: dict[str, Production] = field(default_factory=dict)  # each claimed production as it was before
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
        continuity.check(s)  # a mode not built yet, or one the backend and model refuse: before anything is written
        prods = []
        recorded = identity_fields(s)  # resolution, clip length, model and mode: part of what a production is
        for topic in topics:
            language = resolve_language(topic, s.language)
            references = plan_references(s, topic)  # continuity references: checked, hashed into the id
            pid = production_id(topic, language, s.scenes, s.aspect_ratio, s.style, resolution=s.resolution,
                                clip_seconds=s.clip_seconds, model=s.veo3_model,
                                rehearsal=ProductionMode.of(s).rehearsal, continuity=continuity_in_id(s),
                                references=references.identity)
            prod = Production(id=pid, topic=topic, language=language, scenes=s.scenes, aspect_ratio=s.aspect_ratio,
                              style=s.style, **recorded)
            self.store.upsert_production(prod)
            record_references(self.store, pid, self.folder(pid), references)
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
            self.llm()  # builds the writers' quota now: a stage after a saved one must charge this production too
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
        seo = self._stage(prod, "seo", SeoPackage, lambda: grounding.write_seo(self, prod, b, script))
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
        mine: list[Production] = []
        try:
            self._preflight(prods, until)
            mine = self._claim(prods, until, heartbeat)
            self._run(mine, until, retry_clips)
        except Exception as exc:  # a config error (or a bug) ends the run: say so, never leave it `running`
            try:
                self._settle_after_error(mine, exc)
            except Exception as during:  # e.g. the ledger's disk is full: the first error is the one to report
                log.warning("could not record why the run stopped: %s", during)
            raise
        finally:
            heartbeat.stop()
        return dict(self._notes)

    def _settle_after_error(self, prods: list[Production], exc: Exception) -> None:
        """Productions this run still holds when an error stops it are `failed` with the stage and the cause
        (`awaiting_approval` for a budget refusal), so `status` never calls a live decision `interrupted`.
        A finished production whose re-cut could not start (a setting, a key) is given back as it was: done
        stays done with its final."""
        if isinstance(exc, ReelcrewError):
            cause = exc.problem + (f" (fix: {exc.fix})" if exc.fix else "")
        else:
            cause = f"{type(exc).__name__}: {exc}"
        for prod in prods:
            current, before = self.store.production(prod.id), self._before.get(prod.id)
            if current is None or current.status != ProductionStatus.running:
                continue
            if (isinstance(exc, ReelcrewError) and not isinstance(exc, BudgetError) and before is not None
                    and before.status in (ProductionStatus.done, ProductionStatus.incomplete)):
                self.store.set_production_status(prod.id, before.status, before.failed_stage, before.error)
                self.store.log("recut_refused", cause, prod.id, stage="final")
                continue
            stage = stage_reached(self.store, prod.id)
            status = ProductionStatus.awaiting_approval if isinstance(exc, BudgetError) else ProductionStatus.failed
            self.store.set_production_status(prod.id, status, stage, cause)
            self.store.log("failed", cause, prod.id, stage=stage)

    def _claim(self, prods: list[Production], until: str, heartbeat: Heartbeat, owner: str | None = None
               ) -> list[Production]:
        """The productions this run works on: not rendered yet, and not held by another live process.
        Each gets its own owner id, or `owner` for all (a task runner's context, reelcrew.tasks)."""
        mine = []
        start = os.getpid() % len(prods) if prods else 0  # concurrent runs of one batch start at different places
        for prod in prods[start:] + prods[:start]:
            if until == "final" and not self.recut and self._rendered(prod.id):
                self._notes[prod.id] = f"already rendered: {self.folder(prod.id) / 'final.mp4'}"
                continue
            claimer = owner or new_owner()
            self._before[prod.id] = self.store.production(prod.id) or prod
            claim = self.store.claim_production(prod.id, claimer, PRODUCTION_LEASE, self.out.resolve() / prod.id)
            if not claim.granted and claim.status == ProductionStatus.cancelled:
                self._notes[prod.id] = f"cancelled: left alone (`reelcrew retry {prod.id}` starts it again)"
                continue
            if not claim.granted:
                where = Path(claim.folder or self.out / prod.id) / "final.mp4"
                self._notes[prod.id] = f"being rendered by another process ({claim.holder}); its final will be {where}"
                continue
            assert claim.folder is not None  # a granted claim always records its folder
            self._folders[prod.id] = Path(claim.folder)
            heartbeat.hold(claimer)
            mine.append(prod)
        return sorted(mine, key=prods.index)

    def _cancelled(self, pid: str) -> bool:
        current = self.store.production(pid)
        return current is not None and current.status == ProductionStatus.cancelled

    def _preflight(self, prods: list[Production], until: str) -> None:
        """Settings and files the run will need, before any claim or spend (ConfigError: exit 2, ledger as it was)."""
        from reelcrew.preflight import check_start

        todo = [p for p in prods if not (until == "final" and self._rendered(p.id))]
        if todo:
            check_start(self.settings, until, {p.language for p in todo}, [self.folder(p.id) for p in todo])

    def _check_texts(self, prods: list[Production], written: dict[str, tuple]) -> None:
        """The pre-flight's second moment: the written captions and title against the fonts, before any submit."""
        from reelcrew.preflight import Texts, check_texts

        s = self.settings
        for prod in prods:
            _, seo, prompts = written.get(prod.id, (None, None, None))
            if prompts is None:
                continue
            title = seo.title if seo is not None and (s.render.thumbnail_title or s.cards.title) else None
            try:
                check_texts(s, Texts(prod.id, [p.subtitle for p in prompts.prompts], title))
            except ConfigError as exc:
                self.store.set_production_status(prod.id, ProductionStatus.failed, "clips", exc.problem)
                raise

    def _rendered(self, pid: str) -> bool:
        """Done, or incomplete (rendered with a scene missing: `reelcrew retry` is what changes it)."""
        prod = self.store.production(pid)
        return bool(prod and prod.status in (ProductionStatus.done, ProductionStatus.incomplete)
                    and self.store.stage(pid, "final") and (self.folder(pid) / "final.mp4").exists())

    def _run(self, prods: list[Production], until: str, retry_clips: set[tuple[str, int]] | None) -> None:
        written: dict[str, tuple] = {}
        self.progress.plan("stages", len(prods) * (STAGES.index(until) + 1))
        for prod in prods:
            if self._cancelled(prod.id):  # cancelled meanwhile (`reelcrew cancel`): nothing more is written
                continue
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
            self._check_texts(prods, written)  # before the first submit
            self._clips(prods, written, retry_clips or set())
        if until == "final":
            for prod in prods:
                if prod.id in written:
                    self._final(prod, *written[prod.id])
        for prod in prods:
            current = self.store.production(prod.id)
            assert current is not None  # prods come from the ledger, which never deletes one
            if prod.id in written and current.status == ProductionStatus.running:
                if until == "final":
                    self.store.set_production_status(prod.id, ProductionStatus.done)
                else:  # a deliberate stop: resumable, and it says where it stopped
                    self.store.set_production_status(prod.id, ProductionStatus.paused, until, until_note(until))

    def _clip_jobs(self, prods, written, retry_clips):
        from reelcrew.video.generator import ClipJob

        jobs = []
        for prod in prods:
            if prod.id not in written or written[prod.id][2] is None:
                continue
            rehearsal = not backend_spec(self.settings).paid
            options = clip_options(self.settings, self.store, prod.id, written[prod.id][2].prompts,
                                   self.settings.veo3_model, rehearsal)  # continuity inputs enter the keys
            for prompt in written[prod.id][2].prompts:
                prompt.check_against(self.settings.veo3_model, backend_name(self.settings))
                check_prompt(self.settings, prompt)
                clip = self.store.ensure_clip(prod.id, prompt, self.settings.veo3_model, rehearsal=rehearsal,
                                              options=options[prompt.index])
                dest = self.folder(prod.id) / "clips" / f"clip-{prompt.index:02d}.mp4"
                jobs.append((prod, ClipJob(clip.key, dest, (prod.id, prompt.index) in retry_clips), clip))
        return jobs

    def estimate(self, jobs) -> Estimate:
        todo = [clip for _, job, clip in jobs if clip.status != ClipStatus.done or job.retry_final]
        return estimate_clips(self.settings, [(c.model, billed_seconds(self.settings, c.index, c.prompt.duration),
                                               c.prompt.resolution) for c in todo])

    def _clips(self, prods, written, retry_clips) -> None:
        from reelcrew.video.backends import LazyBackend, make_backend
        from reelcrew.video.generator import Budget, ClipGenerator
        from reelcrew.video.quota import RateGate

        if self.settings.continuity == "last_frame":  # a clip's key is known once the one before it rests
            raise ConfigError("continuity last_frame needs the task runner, not Pipeline.run",
                              "run it through reelcrew.service.run (`reelcrew run`)")
        jobs = self._clip_jobs(prods, written, retry_clips)
        if not jobs:
            return
        self.progress.plan("clips", len(jobs))
        s = self.settings
        # the backend first: a missing key is an error (exit 2) before anyone is asked to approve a spend
        if any(clip.status not in SETTLED_CLIPS or job.retry_final for _, job, clip in jobs):
            backend = make_backend(s)
        else:  # every clip is settled: a re-cut needs no keys (unless a file vanished and must be fetched again)
            backend = LazyBackend(lambda: make_backend(s), backend_spec(s).name)
        estimate = self.estimate(jobs)
        paid = backend_spec(s).paid
        if estimate.clips and paid:
            try:
                self.approve(estimate)
            except BudgetError as exc:
                for pid in {p.id for p, _, _ in jobs}:
                    self.store.set_production_status(pid, ProductionStatus.awaiting_approval, "clips", exc.problem)
                raise
        gate = (RateGate(self.store, s.veo3_rpm, s.veo3_rpd, s.veo3_rate_window_seconds, broker=s.reelcrew_broker)
                if paid else None)
        budget = Budget(run_usd=self.budget_usd, daily_usd=s.reelcrew_daily_budget_usd)
        for prod in {p.id: p for p, _, _ in jobs}.values():
            self.progress.stage(prod.id, "clips")
            self.store.log("stage", "clips", prod.id, stage="clips")
            self.write_manifest(prod)  # keys and prompts on disk before the first submit: `restore` replays it
        generator = ClipGenerator(s, self.store, backend, gate, budget, on_change=self.progress.clip)
        if in_order(s):  # continuity: each clip after the one before it (its last frame, the video it extends)
            for _, job, _ in jobs:
                generator.run([job])
        else:
            generator.run([job for _, job, _ in jobs])
        settled = jobs
        while settled := followups.follow_ups(self, settled, written, retry_clips):  # rewrites, QC regenerations
            generator.run([job for _, job, _ in settled])
        for prod in {p.id: p for p, _, _ in jobs}.values():
            self._settle_clips(prod)

    def _settle_clips(self, prod: Production) -> None:
        """An ambiguous clip (Veo may have made it) fails the production until `repair` or `retry` decides;
        a failed or filtered clip does not: the final is cut without its scene and the production is
        `incomplete`, naming the scene and the retry command (`_final`)."""
        clips = self.store.production_clips(prod.id)
        failed = [c for c in clips if c.status == ClipStatus.ambiguous]
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
        again: dict[int, list[dict]] = {}  # scenes made again: rewritten prompts, QC regenerations (followups)
        for row in self.store.followups(prod.id):
            again.setdefault(row["idx"], []).append({k: row[k] for k in ("kind", "attempt", "reason", "from_key",
                                                                         "to_key", "prompt", "at")})
        folder = self.folder(prod.id)
        folder.mkdir(parents=True, exist_ok=True)
        write_json_atomic(folder / "manifest.json", {
            "production": prod.model_dump(mode="json"), "model": self.settings.veo3_model,
            "backend": backend_name(self.settings),
            "clips": [{"index": c.index, "key": c.key, "status": c.status.value,
                       "prompt": c.prompt.model_dump(mode="json"),
                       "operation_name": c.operation_name, "video_uri": c.video_uri, "file": c.path, "sha256": c.sha256,
                       "duration": c.duration, "retries": c.retries, "error": c.error, "cost_usd": c.cost_usd,
                       "possible_duplicate": c.possible_duplicate, "submits": receipts.get(c.key, []),
                       "qc": c.qc, "followups": again.get(c.index, [])} for c in clips],
            "cost_usd": round(sum(c.cost_usd for c in clips), 4)})

    def _final(self, prod: Production, script: Script, seo: SeoPackage | None, prompts: PromptList | None) -> None:
        """Cut the final from the clips that exist. A scene whose clip was filtered or failed is left out and
        the production is `incomplete` (not `done`), naming the scene and the command that brings it back."""
        from reelcrew.assemble import CutClip, assemble_production

        current = self.store.production(prod.id)
        assert current is not None  # prod comes from the ledger, which never deletes one
        if current.status in (ProductionStatus.failed, ProductionStatus.paused, ProductionStatus.cancelled) \
                or prompts is None:
            return
        self.store.delete_stage(prod.id, "final")  # from here on an earlier cut is not this production's final
        clips = self.store.production_clips(prod.id)
        usable = [c for c in clips if c.status == ClipStatus.done]
        missing = [c for c in clips if c.status != ClipStatus.done]
        if not usable:
            self.store.set_production_status(prod.id, ProductionStatus.failed, "final", "no clip could be generated")
            return
        folder = self.folder(prod.id)
        self.progress.stage(prod.id, "final")
        width, height = frame_size(prod.aspect_ratio, self.settings.resolution)
        moods = {scene.index: scene.mood.strip().lower() for scene in script.scenes}
        by_mood = self.settings.transitions.by_mood
        subtitles = {p.index: p.subtitle for p in prompts.prompts}  # the prompts stage: where an edited subtitle lands
        cut = [CutClip(path=artifacts.local_clip(self.settings, c, folder / "clips" / f"clip-{c.index:02d}.mp4")
                       or folder / "clips" / f"clip-{c.index:02d}.mp4",
                       caption=subtitles.get(c.index, c.prompt.subtitle),
                       transition=by_mood.get(moods.get(c.prompt.scene_index, ""))) for c in usable]
        facts = {"production": prod.model_dump(mode="json"), "model": self.settings.veo3_model,
                 "clips_skipped": [{"index": c.index, "scene": c.prompt.scene_index, "status": c.status.value,
                                    "reason": c.error} for c in missing],
                 "cost_usd": round(sum(c.cost_usd for c in clips), 4), "rendered_at": time.time()}
        started = time.monotonic()  # render seconds per second of output: a metric (reelcrew.metrics)
        try:
            result = assemble_production(folder, cut, self.settings, width, height, seo, facts, script, prod,
                                         scenes=[c.prompt.scene_index for c in usable])
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
        self.store.record_artifacts(prod.id, artifacts.put_final(self.settings, prod.id, folder))
        artifacts.clean_cache(self.settings)
        self.store.save_stage(prod.id, "final", {"file": result["final"], "duration": result["duration"],
                                                 "scenes_missing": [c.prompt.scene_index for c in missing],
                                                 "render_seconds": round(time.monotonic() - started, 3)})
        self.store.log("final", f"final.mp4 {result['duration']:.2f}s", prod.id, stage="final")
        if missing:
            why = incomplete_note(prod.id, missing, self.settings.veo3_mock_mode)
            self.store.set_production_status(prod.id, ProductionStatus.incomplete, None, why)
            self.store.log("incomplete", why, prod.id, stage="final")


def until_note(stage: str) -> str:
    """The `error` of a production a `--until` run stopped: how `status` tells a deliberate stop from a pause."""
    return f"{UNTIL_PREFIX} {stage} (--until {stage}): run `reelcrew resume` or run again without --until to finish"


UNTIL_PREFIX = "stopped after"


def stopped_by_until(status: ProductionStatus, failed_stage: str | None, error: str | None) -> str | None:
    """The stage a `--until` run stopped after, or None for any other state."""
    if status == ProductionStatus.paused and failed_stage in STAGES and (error or "").startswith(UNTIL_PREFIX):
        return failed_stage
    return None


def retry_command(pid: str, clip_index: int, filtered: bool, mock: bool) -> str:
    """What the user types to bring a missing scene back; a filtered prompt needs new words (the same is refused)."""
    command = f"reelcrew retry {pid} --clip {clip_index}"
    if mock:
        command += " --mock"
    return command + (' --prompt "<reworded prompt>"' if filtered else "")


def incomplete_note(pid: str, missing: list, mock: bool) -> str:
    """The cause of `incomplete`: each missing scene, why, and its retry command."""
    parts = []
    for clip in missing:
        why = "safety-filtered" if clip.status == ClipStatus.filtered else "failed"
        command = retry_command(pid, clip.index, clip.status == ClipStatus.filtered, mock)
        parts.append(f"scene {clip.prompt.scene_index} missing (clip {clip.index} {why}): run `{command}`")
    return "; ".join(parts)


def stage_reached(store: Store, pid: str) -> str:
    """The stage a production was in when a run stopped: the first writer stage without output, then
    `clips` while a clip is unsettled, then `final`."""
    for stage in ("script", "seo", "prompts"):
        if store.stage(pid, stage) is None:
            return stage
    clips = store.production_clips(pid)
    settled = (ClipStatus.done, ClipStatus.filtered, ClipStatus.failed)
    return "final" if clips and all(c.status in settled for c in clips) else "clips"
