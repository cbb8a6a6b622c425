"""The typed results of the service layer (`reelcrew.service`): what the CLI formats and the web API will serialise.

A leaf module (pydantic only), so the pipeline and the faces can import it without importing each other."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, computed_field


class ProductionSummary(BaseModel):
    """One production as a user sees it. `status` is a `ProductionStatus` value, or `interrupted` (derived: the
    owner of a `running` production is dead); `stage` is where it is: the first stage without output, or `final`."""

    id: str
    topic: str
    status: str
    stage: str
    failed_stage: str | None = None
    error: str | None = None
    clips_done: int = 0
    clips_filtered: int = 0
    clips_failed: int = 0
    clips_paused: int = 0
    cost_usd: float = 0.0
    llm_answers: int = 0
    final: str | None = None
    final_artifact: str | None = None  # where the final lives for every worker: `s3://…` or the local path
    folder: str = ""
    note: str | None = None  # e.g. rendered, or being rendered, by another process
    # `incomplete`: the script's scenes missing from the final, and the commands that bring them back
    scenes_missing: list[int] = Field(default_factory=list)
    retry_commands: list[str] = Field(default_factory=list)
    stopped_after: str | None = None  # `paused` by `--until STAGE`: the stage it stopped after
    continuity: str = "none"  # how its clips hold together (none, last_frame, ...), recorded when it was planned

    def as_dict(self) -> dict:
        return self.model_dump(mode="json")


class ClipReport(BaseModel):
    index: int
    status: str
    operation: str | None = None
    error: str | None = None
    retries: int = 0
    possible_duplicate: bool = False
    artifact: str | None = None  # where its bytes live: `s3://…` or the local path
    sha256: str | None = None
    qc: dict | None = None  # the quality check of its file (reelcrew.video.qc); None until checked
    starts_from: int | None = None  # continuity last_frame: the clip whose last frame it starts from


class ProductionReport(ProductionSummary):
    clips: list[ClipReport] = Field(default_factory=list)


class StatusReport(BaseModel):
    productions: list[ProductionReport]


class Estimate(BaseModel):
    """What a run would pay for: the clips still to make and the writers' tokens still to spend."""

    clips: int = 0
    seconds: float = 0.0  # seconds of video Veo will make and bill: every sample of every clip
    video_usd: float = 0.0
    writers_usd: float = 0.0
    qc_regenerations_usd: float = 0.0  # `qc: regenerate`: the most the quality check's new variants can add
    grounding_usd: float = 0.0  # SEO_GROUNDING: the SEO's Google Search call (tokens and search fee) still to make
    rewrites_usd: float = 0.0  # the most the Maker's rewrites of filtered prompts can cost (VEO3_REPHRASE_ATTEMPTS)
    samples_per_clip: int = 1  # VEO3_SAMPLE_COUNT: videos per clip, each billed
    price_column: str = "audio"  # the price used: `audio`, or `video_only` (silent clips on Vertex AI)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def usd(self) -> float:
        return round(self.video_usd + self.writers_usd + self.qc_regenerations_usd + self.grounding_usd
                     + self.rewrites_usd, 4)

    @computed_field  # type: ignore[prop-decorator]
    @property
    def lines(self) -> list[tuple[str, float]]:
        """What the total is made of, one line per kind of spend that costs something (the CLI, the API, the UI)."""
        named = [("Veo clips", self.video_usd), ("quality-check regenerations (at most)", self.qc_regenerations_usd),
                 ("writers' tokens", self.writers_usd), ("SEO search grounding", self.grounding_usd),
                 ("rewrites of filtered prompts (at most)", self.rewrites_usd)]
        return [(name, usd) for name, usd in named if usd]


class ApprovalPolicy(BaseModel):
    """How a paid run gets its yes: `--yes`, a question (`ask`), and a hard cap (`--budget-usd`).

    `announce` is told the estimate first (the CLI prints it); with neither `yes` nor `ask` nothing is approved."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    yes: bool = False
    budget_usd: float | None = None
    budget_name: str = "--budget-usd"  # what the cap is called in the refusal (a web token's daily budget, say)
    budget_fix: str = "raise --budget-usd, cut --scenes, or use a cheaper VEO3_MODEL"
    ask: Callable[[Estimate], bool] | None = None
    announce: Callable[[Estimate], None] | None = None


class Approval(BaseModel):
    estimate: Estimate
    approved_by: str  # "--yes", "prompt", or "free" (mock mode, nothing to pay)


class RepairReport(BaseModel):
    fixed: list[str] = Field(default_factory=list)
    needs_you: list[str] = Field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.fixed and not self.needs_you


class CostReport(BaseModel):
    total_usd: float
    production: dict[str, float]
    day: dict[str, float]
    model: dict[str, float]
    possible_extra_charges: int


class AssembleResult(BaseModel):
    output: Path
    subtitles: Path
    duration: float
    render_path: str = "fast"  # which renderer made it: the streaming ffmpeg path or moviepy's writer


class BackupResult(BaseModel):
    """One `reelcrew backup`: the archive, its checksum file, and what its manifest recorded."""

    path: Path
    checksum: Path
    bytes: int
    seconds: float
    database: str  # sqlite | postgresql
    schema_version: int
    counts: dict[str, int]
    media_files: int = 0
    rotated: list[Path] = Field(default_factory=list)  # older backups removed by REELCREW_BACKUP_KEEP


class RecoveryReport(RepairReport):
    """`reelcrew restore` and `reelcrew repair --ledger`: what was put back, and from where."""

    backup: Path | None = None  # the backup restored (None: rebuilt in place)
    safety_copy: Path | None = None  # the ledger as it was before, kept
    counts: dict[str, int] = Field(default_factory=dict)  # rows in the ledger afterwards
    reattached: int = 0  # clips that have a receipt and will be polled, never resubmitted
    media_restored: int = 0


class PruneReport(BaseModel):
    removed: list[Path] = Field(default_factory=list)
    kept: list[str] = Field(default_factory=list)  # why something old was not removed
    freed_bytes: int = 0
    dry_run: bool = False
