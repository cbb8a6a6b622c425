"""One Settings object: environment and `.env` first, then `config/pipeline.yaml`, then defaults.

Field names are the environment variable names (case-insensitive), so the seed's
`VEO3_*` settings keep their names and meaning. Nested sections (subtitles, watermark,
...) are tuned in `config/pipeline.yaml`.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict

from reelcrew import defaults
from reelcrew.errors import ConfigError

DEFAULT_CONFIG = defaults.config_file()
DEFAULT_CREWS_DIR = defaults.crews_dir()
SECRET_FIELDS = {"gemini_api_key", "google_api_key", "reelcrew_alert_webhook"}


class SubtitleStyle(BaseModel):
    font: str | None = Field(None, description="font file; empty = found by fontconfig for the script's language")
    size: int = Field(48, ge=8, le=200, description="pixels at 720p; scaled with the output height")
    color: str = "#FFFFFF"
    stroke_color: str = "#000000"
    stroke_width: int = Field(2, ge=0, le=12)
    box_color: str | None = Field("#00000080", description="background box RGBA hex, or empty for none")
    position: Literal["bottom", "top", "middle"] = "bottom"
    margin_16x9: float = Field(0.06, description="safe margin as a share of the height, landscape")
    margin_9x16: float = Field(0.14, description="safe margin as a share of the height, portrait (UI overlays)")
    max_width: float = Field(0.86, gt=0.2, le=1.0, description="share of the frame width a line may use")
    max_lines: int = Field(2, ge=1, le=4, description="lines per caption before it is split in time")
    style: Literal["static", "karaoke", "pop"] = Field(
        "static", description="static: the whole caption; karaoke: its words light up in turn; pop: one word at a time")
    highlight_color: str = Field("#FFD21F", description="karaoke: colour of the words already spoken")


class WatermarkStyle(BaseModel):
    text: str | None = "reelcrew"
    image: str | None = Field(None, description="PNG logo; used instead of text when set")
    corner: Literal["top-left", "top-right", "bottom-left", "bottom-right"] = "top-right"
    margin: int = 24
    scale: float = Field(0.12, gt=0, le=1, description="logo width as a share of the frame width")
    opacity: float = Field(0.6, ge=0, le=1)


class TransitionStyle(BaseModel):
    kind: str = Field("none", description="none, crossfade (= fade) or an xfade kind from assemble/transitions.py")
    duration: float = Field(0.5, ge=0, le=2)
    by_mood: dict[str, str] = Field(default_factory=dict, description="a scene's mood -> its incoming transition")

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, kind: str) -> str:
        from reelcrew.assemble.transitions import lookup

        lookup(kind)
        return kind

    @field_validator("by_mood")
    @classmethod
    def _known_kinds(cls, by_mood: dict[str, str]) -> dict[str, str]:
        from reelcrew.assemble.transitions import lookup

        for kind in by_mood.values():
            lookup(kind)
        return {mood.lower(): kind for mood, kind in by_mood.items()}


class CardStyle(BaseModel):
    title: bool = Field(False, description="a card with the SEO title over the first seconds")
    title_seconds: float = Field(2.0, gt=0, le=10)
    end: bool = Field(False, description="a card with the channel name and logo over the last seconds")
    end_seconds: float = Field(2.5, gt=0, le=10)
    channel: str | None = Field(None, description="channel name on the end card")
    logo: str | None = Field(None, description="PNG logo on the end card")
    background: str = Field("#000000C0", description="card background RGBA hex (over the video)")
    color: str = "#FFFFFF"
    size: int = Field(64, ge=8, le=300, description="title text pixels at 720p")


class MusicStyle(BaseModel):
    file: str | None = None
    volume: float = Field(0.25, ge=0, le=2)
    fade: float = Field(1.0, ge=0)
    normalize_loudness: bool = False


class RenderStyle(BaseModel):
    preset: str = "veryfast"
    crf: int = Field(23, ge=0, le=51)
    fps: int = 24
    fit: Literal["cover", "contain"] = "cover"
    audio_rate: int = 48000
    thumbnail_title: bool = Field(True, description="draw the SEO title on thumbnail.jpg")
    edit: str | None = Field(None, description="package.module:function called with the moviepy composition")
    engine: Literal["auto", "moviepy"] = Field(
        "auto", description="auto: the streaming ffmpeg path when the composition allows it; moviepy: always moviepy")

    @field_validator("edit", mode="before")
    @classmethod
    def _empty_edit_is_none(cls, value: Any) -> Any:
        return None if value == "" else value


class SloBound(BaseModel):
    """One service level objective: the value must stay within [min, max]; `target` is what we aim at."""

    min: float | None = None
    max: float | None = None
    target: float


class SloTargets(BaseModel):
    """The seed's SLOs for long asynchronous AI tasks (a Veo operation; a clip's download and validation),
    computed by `reelcrew slo` from the ledger (docs/observability.md gives each definition)."""

    sla_seconds: float = Field(300, gt=0, description="an operation done within this many seconds meets the SLA")
    completion_rate: SloBound = SloBound(min=0.95, target=0.98)
    avg_wait_seconds: SloBound = SloBound(max=300, target=180)
    timeout_rate: SloBound = SloBound(max=0.02, target=0.01)
    sla_compliance: SloBound = SloBound(min=0.9, target=0.95)
    file_success_rate: SloBound = SloBound(min=0.98, target=0.995)
    avg_processing_seconds: SloBound = SloBound(max=60, target=30)


class Settings(BaseSettings):
    # env_ignore_empty: `REELCREW_LLM=` in a copied .env means "not set", not an invalid value
    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False, populate_by_name=True,
                                      env_ignore_empty=True)

    # writers
    reelcrew_llm: Literal["gemini", "mock"] = "gemini"
    gemini_model: str = "gemini-3.5-flash"
    gemini_temperature: float | None = Field(
        None, ge=0, le=2, description="empty = the model's default (1.0 for Gemini 3, which Google advises keeping)")
    gemini_api_key: SecretStr | None = None
    google_api_key: SecretStr | None = None
    google_genai_use_vertexai: bool = False
    google_cloud_project: str | None = None
    google_cloud_location: str = "us-central1"
    google_vertex_express: bool = Field(False, description="Vertex with an API key (express mode) instead of the "
                                        "project's credentials; express mode serves generateContent, not Veo")
    llm_max_repairs: int = Field(2, ge=0, le=5)
    gemini_rpm: int = Field(60, ge=1, description="writers' Gemini requests per minute, shared through the ledger")
    seo_grounding: bool = Field(False, description="the SEO agent first asks Gemini with Google Search for what "
                                "people search around the topic now; sources go in seo.json (a paid search per "
                                "query, in the estimate); real writers only: the mock writers never search")

    # production defaults
    language: str = "auto"
    scenes: int = Field(6, ge=1, le=30)
    aspect_ratio: Literal["16:9", "9:16"] = "16:9"
    resolution: Literal["720p", "1080p"] = "720p"
    clip_seconds: int = 8
    style: str = "cinematic, natural light, consistent characters"

    # video generation (the seed's names)
    veo3_model: str = "veo-3.1-fast-generate-001"
    # Veo request parameters, checked per backend and model before anything is spent (registry.option_problems)
    veo3_generate_audio: bool = Field(True, description="false: silent clips (Vertex only: the Gemini API always "
                                      "makes sound), e.g. when music is laid over the cut")
    veo3_enhance_prompt: bool | None = Field(None, description="Veo's own prompt rewriting; unset = the service's "
                                             "default")
    veo3_person_generation: Literal["allow_all", "allow_adult", "dont_allow"] | None = Field(
        None, description="which people Veo may draw; unset = the service's default")
    veo3_sample_count: int = Field(1, ge=1, le=4, description="videos Veo makes per clip (Vertex AI: up to 4; the "
                                   "Gemini API: 1); each is billed, the quality check picks the clip")
    veo3_keep_samples: bool = Field(True, description="with VEO3_SAMPLE_COUNT > 1, keep the samples not chosen "
                                    "beside the clip (clips/clip-01.sample-2.mp4); false deletes them")
    veo3_mock_mode: bool = False
    veo3_mock_latency: float = Field(0.0, ge=0)
    veo3_mock_failure_rate: float = Field(0.0, ge=0, le=1)
    veo3_mock_quota_rate: float = Field(0.0, ge=0, le=1)
    veo3_mock_filter_rate: float = Field(0.0, ge=0, le=1)  # share of requests the mock safety filter refuses
    veo3_mock_seed: int = 0
    veo3_mock_filter_word: str = Field("", description="the mock's safety filter: a prompt with this word comes "
                                       "back filtered (rehearses an edit-and-retry); empty = never")
    reelcrew_mock_writer_latency: float = Field(0.0, ge=0, description="mock writers: seconds per answer "
                                                "(rehearses slow writers, e.g. two runs of one topic at once)")
    reelcrew_writers_concurrency: int = Field(2, ge=1, description="productions whose writers run at once in "
                                              "the local runner (under the writers' own quota)")
    reelcrew_render_concurrency: int = Field(1, ge=1, description="finals rendered at once in the local runner")
    reelcrew_clips_in_order: bool = Field(False, description="a production's clips one after another (each "
                                          "submit follows the previous clip's end): the hook of a continuity mode")
    continuity: Literal["none", "last_frame", "references", "extend"] = Field(
        "none", description="how a production's clips hold together: none (each clip from its prompt alone); "
        "last_frame (clip N+1 starts from clip N's last frame, clips in order); references (up to 3 asset images "
        "sent with every clip); extend (one continuous shot grown by Veo's extension)")
    # continuity: references and extend (reelcrew.video.continuity_refs)
    reference_images: list[Path] = Field(default_factory=list, description="continuity references: up to 3 images "
                                         "(people or objects) sent with every clip as asset references; "
                                         "`reelcrew run --reference-image PATH` (repeatable)")
    reference_images_dir: Path | None = Field(None, description="continuity references per production: a folder "
                                              "with one sub-folder per topic slug (as in the production id, e.g. "
                                              "`a-day-of-a-cat/`) holding that production's images")
    extend_billing: Literal["output", "added"] = Field(
        "output", description="continuity extend: what an extension is priced at in the estimate, budgets and cost "
        "ledger: `output` (the whole grown video, the safe upper bound) or `added` (the 7 s it adds); Google's "
        "pages do not say which (docs/continuity-references-extend.md)")
    reelcrew_slot_live_seconds: float = Field(3.0, gt=0, description="a clip waiting for a Veo slot keeps its "
                                              "place in the ledger's line (prompts ready first, served first) "
                                              "while it asked within this many seconds")
    veo3_max_retries: int = Field(3, ge=0)
    qc: Literal["flag", "regenerate", "off"] = Field(
        "flag", description="clip quality checks after download (black, frozen, silent): flag them in the manifest, "
        "status and API; or also regenerate the clip (a new paid variant, in the estimate); or off")
    qc_max_regenerations: int = Field(1, ge=0, le=3, description="qc: regenerate makes a flagged scene again at "
                                      "most this many times")
    veo3_rephrase_attempts: int = Field(2, ge=0, le=5, description="a prompt Veo's safety filter refused (free) is "
                                        "rewritten by the Maker this many times at most; 0 = never")
    veo3_quota_reset_interval: float = Field(3600, ge=0)
    veo3_consecutive_failure_threshold: int = Field(3, ge=1)
    veo3_retry_wait_base: float = Field(30, ge=0)
    veo3_quota_wait_time: float = Field(300, ge=0)
    veo3_debug_mode: bool = False
    veo3_max_concurrent: int = Field(2, ge=1)
    veo3_rpm: int = Field(10, ge=1)
    veo3_rate_window_seconds: float = Field(60, gt=0, description="the window VEO3_RPM counts in; tests shorten it")
    veo3_rpd: int = Field(0, ge=0, description="0 = no daily cap of our own")
    gcs_output_bucket: str | None = None
    polling_interval: float = Field(15, ge=0)
    operation_timeout: float = Field(1800, gt=0)
    download_timeout: float = Field(300, gt=0, description="seconds for one download attempt")
    download_retry_window: float = Field(1800, ge=0, description="seconds a failing download is retried "
                                         "(back-off from POLLING_INTERVAL) before the clip is marked failed")
    submit_timeout: float = Field(60, gt=0)

    # pipeline
    reelcrew_output_dir: Path = Path("output")
    reelcrew_db: str | None = None
    reelcrew_state_dir: Path | None = Field(None, description="the machine's ledger, rate bucket and receipts "
                                                                "journal (default: the user data folder)")
    reelcrew_daily_budget_usd: float | None = Field(None, ge=0)
    reelcrew_broker: str | None = Field(None, description="redis://...: run through Celery workers (reelcrew worker) "
                                                          "and share the rate gate across machines in Redis")
    reelcrew_task_retries: int = Field(5, ge=0, description="Celery: retries (with back-off) of a task that failed "
                                       "transiently, before it lands in the dead letters")
    reelcrew_reconcile_seconds: float = Field(30, gt=0, description="Celery beat: seconds between reconcile passes")
    reelcrew_lost_after_seconds: float = Field(90, gt=0, description="Celery: a step this overdue, with no live "
                                               "worker running it, is sent again by the reconciler")
    reelcrew_backup_dir: Path | None = Field(None, description="where `reelcrew backup` writes (default: a backups "
                                                                "folder beside the ledger)")
    reelcrew_backup_keep: int = Field(14, ge=1, description="backups kept by `reelcrew backup`; older ones are removed")
    crews_dir: Path = DEFAULT_CREWS_DIR
    # where clips and finals live for every worker (reelcrew.artifacts): empty = the output folder (no copies)
    reelcrew_artifacts: str | None = Field(None, description="artifact store: empty = the output folder; "
                                           "s3://bucket/prefix = an S3-compatible store (AWS_* variables)")
    reelcrew_artifacts_endpoint: str | None = Field(None, description="S3 endpoint URL for MinIO and other "
                                                    "S3-compatible stores (default: AWS_ENDPOINT_URL, else AWS)")
    reelcrew_cache_dir: Path | None = Field(None, description="where a worker keeps clips fetched from the store "
                                            "(default: the user cache folder)")
    reelcrew_cache_max_mb: int = Field(2048, ge=0, description="fetched copies kept up to this size (oldest go "
                                       "first)")
    reelcrew_cache_max_age_hours: float = Field(24, ge=0, description="fetched copies older than this are removed")

    # observability (reelcrew.alerts, reelcrew.slo)
    reelcrew_alert_webhook: SecretStr | None = Field(None, description="Slack-compatible webhook URL for alerts "
                                                     "(breaker, daily quota, budget, failed production, SLO)")
    reelcrew_alert_interval: float = Field(900, ge=0, description="seconds: each kind of alert at most once per "
                                                                 "interval")
    reelcrew_slo_check_seconds: float = Field(300, ge=0, description="seconds between `reelcrew serve`'s SLO "
                                              "checks (the slo_broken alert without cron); 0 = off")
    reelcrew_slo_check_window: str = Field("24h", pattern=r"^\s*\d+(\.\d+)?\s*[smhdw]?\s*$",
                                           description="how far back serve's SLO check looks: 24h, 30m, 7d or seconds")
    slo: SloTargets = SloTargets()

    # assembly and prices (config/pipeline.yaml)
    subtitles: SubtitleStyle = SubtitleStyle()
    watermark: WatermarkStyle = WatermarkStyle()
    transitions: TransitionStyle = TransitionStyle()
    music: MusicStyle = MusicStyle()
    render: RenderStyle = RenderStyle()
    cards: CardStyle = CardStyle()
    prices: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="Veo: USD per second by model and resolution (`<res>_video_only`: Vertex "
                                          "AI's price for silent clips); "
                                          "writers: input_per_mtok/output_per_mtok USD per million tokens")
    subtitle_missing_glyphs: Literal["drop", "refuse"] = Field(
        "drop", description="characters no installed font can draw (emoji ...) in burned-in captions and titles: "
                            "drop them with a warning (kept in the .srt and metadata), or refuse before any spend")

    _config_file: Path | None = PrivateAttr(None)  # the settings file these came from (named in fixes)
    _overrides: set[str] = PrivateAttr(default_factory=set)  # fields set on the command line

    @field_validator("veo3_model")
    @classmethod
    def _model_served_by_backend(cls, model: str, info: ValidationInfo) -> str:
        """VEO3_MODEL must be one the chosen backend (gemini, vertex or mock) declares in the registry
        (both switches are declared above this field, so `info.data` holds them)."""
        from reelcrew.video.registry import backend_name, model_limits

        model_limits(model, backend_name(SimpleNamespace(**info.data)))  # UnknownModel lists the known ones
        return model

    @field_validator("reelcrew_daily_budget_usd", "gcs_output_bucket", "reelcrew_db", "google_cloud_project",
                     "gemini_temperature", "reelcrew_state_dir", "reelcrew_backup_dir", "reelcrew_broker",
                     "reelcrew_artifacts", "reelcrew_artifacts_endpoint", "reelcrew_cache_dir", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("reelcrew_artifacts")
    @classmethod
    def _artifact_store_url(cls, url: str | None) -> str | None:
        """Only two kinds: the output folder (empty or `local`) and `s3://bucket[/prefix]`."""
        if url is None or url == "local":
            return None
        from reelcrew.artifacts import parse_s3_url

        parse_s3_url(url)  # ValueError names the expected shape
        return url

    @field_validator("gemini_api_key", "google_api_key", "reelcrew_alert_webhook", mode="before")
    @classmethod
    def _empty_key_is_none(cls, value: Any) -> Any:
        return None if value in ("", None) else value

    # -- derived -----------------------------------------------------------------
    @property
    def mock_llm(self) -> bool:
        return self.reelcrew_llm == "mock"

    @property
    def gemini_model_id(self) -> str:
        """The model id Google knows: CrewAI's `gemini/` and `google/` prefixes are accepted and dropped."""
        model = self.gemini_model
        for prefix in ("gemini/", "google/"):
            model = model.removeprefix(prefix)
        return model

    @property
    def state_dir(self) -> Path:
        """One per user and machine (platformdirs' user data dir, so a test that sets HOME gets its own)."""
        if self.reelcrew_state_dir:
            return self.reelcrew_state_dir.expanduser().resolve()
        from platformdirs import user_data_dir

        return Path(user_data_dir("reelcrew", appauthor=False))

    @property
    def db_url(self) -> str:
        """The ledger: REELCREW_DB (a file or a URL), else `reelcrew.db` in the state folder."""
        if self.reelcrew_db:
            return self.reelcrew_db if "://" in self.reelcrew_db else f"sqlite:///{Path(self.reelcrew_db).resolve()}"
        return f"sqlite:///{self.state_dir / 'reelcrew.db'}"

    @property
    def cache_dir(self) -> Path:
        """Clips fetched from the artifact store: REELCREW_CACHE_DIR, else platformdirs' user cache folder."""
        if self.reelcrew_cache_dir:
            return self.reelcrew_cache_dir.expanduser().resolve()
        from platformdirs import user_cache_dir

        return Path(user_cache_dir("reelcrew", appauthor=False)) / "artifacts"

    @property
    def journal_path(self) -> Path:
        """The receipts journal: beside a SQLite ledger, in the state folder for a database server."""
        if self.db_url.startswith("sqlite:///"):
            ledger = Path(self.db_url.removeprefix("sqlite:///"))
            return ledger.with_name(ledger.stem + ".receipts.jsonl")
        return self.state_dir / "receipts.jsonl"

    @property
    def backup_dir(self) -> Path:
        """REELCREW_BACKUP_DIR, else `backups/` beside a SQLite ledger (the state folder for a database server)."""
        if self.reelcrew_backup_dir:
            return self.reelcrew_backup_dir.expanduser().resolve()
        if self.db_url.startswith("sqlite:///"):
            return Path(self.db_url.removeprefix("sqlite:///")).parent / "backups"
        return self.state_dir / "backups"

    def api_key(self) -> str | None:
        key = self.google_api_key or self.gemini_api_key
        return key.get_secret_value() if key else None

    def vertex_auth(self) -> Literal["project", "express"]:
        """How to reach Vertex AI: the project's credentials (ADC), or an API key only when asked for.

        CrewAI (and the SDK, when handed the key) pick an API key found in the environment over the project: Veo
        then goes to express mode, which does not serve `predictLongRunning`. So a project wins unless
        GOOGLE_VERTEX_EXPRESS=true says otherwise.
        """
        if self.google_vertex_express:
            if not self.api_key():
                raise ConfigError("GOOGLE_VERTEX_EXPRESS=true needs an API key (Vertex express mode)",
                                  "set GOOGLE_API_KEY (or GEMINI_API_KEY), or unset GOOGLE_VERTEX_EXPRESS to use "
                                  "GOOGLE_CLOUD_PROJECT with application default credentials")
            return "express"
        if not self.google_cloud_project:
            raise ConfigError("Vertex AI mode (GOOGLE_GENAI_USE_VERTEXAI=true) needs GOOGLE_CLOUD_PROJECT",
                              "set GOOGLE_CLOUD_PROJECT and GOOGLE_CLOUD_LOCATION and run `gcloud auth "
                              "application-default login`; or set GOOGLE_VERTEX_EXPRESS=true to use an API key "
                              "(express mode: generateContent only, not Veo); or use --mock to rehearse offline")
        return "project"

    def price_per_second(self, model: str, resolution: str) -> float:
        """USD per second of video on the chosen backend (0 for the mock), from the backend registry."""
        from reelcrew.video.registry import price_per_second

        return price_per_second(self, model, resolution)

    @classmethod
    def settings_customise_sources(cls, settings_cls, init_settings, env_settings, dotenv_settings,
                                   file_secret_settings):
        return (init_settings, env_settings, dotenv_settings, _YAML_SOURCE(settings_cls))


class _YamlHolder:
    """Carries the parsed pipeline.yaml into pydantic-settings' source chain (below env and .env)."""

    data: dict[str, Any] = {}

    def __call__(self, settings_cls: type[BaseSettings]) -> PydanticBaseSettingsSource:
        return InitSettingsSource(settings_cls, init_kwargs=dict(self.data))


_YAML_SOURCE = _YamlHolder()


def read_yaml_config(path: Path) -> dict[str, Any]:
    """The settings file as a mapping; a folder, a binary file or broken YAML is a ConfigError naming the file.

    The YAML error names the line and column only, never the line's text: it may hold a key."""
    if not path.exists():
        raise ConfigError(f"config file {path} does not exist",
                          "create it (copy config/pipeline.yaml) or pass --config")
    if path.is_dir():
        raise ConfigError(f"settings file {path} is a folder, not a file",
                          "pass --config the path of a YAML file (a copy of config/pipeline.yaml)")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"settings file {path} cannot be read ({exc.strerror})",
                          f"make {path} readable or pass --config another file") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = None
    if text is None or "\x00" in text:
        raise ConfigError(f"settings file {path} is not a text file (binary, or not UTF-8)",
                          "pass --config a YAML text file (a copy of config/pipeline.yaml)")
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(exc)}", f"fix the YAML syntax in {path}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must be a mapping of settings, got {type(data).__name__}", f"fix {path}")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """What PyYAML found wrong and where, without the quoted line (which may hold a secret)."""
    if isinstance(exc, yaml.MarkedYAMLError):
        mark = exc.problem_mark or exc.context_mark
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return f"{exc.problem or exc.context or 'syntax error'}{where}"
    return type(exc).__name__


def load_settings(config_path: Path | None = None, **overrides: Any) -> Settings:
    """Build the effective settings; a bad value is a ConfigError naming the variable and the fix.

    A settings file other than the shipped one is laid over the shipped defaults, so a partial file changes
    only what it sets; an empty value in it means "not set". Unknown keys and languages are reported."""
    from reelcrew import config_check

    path = Path(config_path or os.environ.get("REELCREW_CONFIG") or DEFAULT_CONFIG)
    given = read_yaml_config(path)
    config_check.report_unknown(given, path)
    data = config_check.without_unset(given, Settings)
    if path.resolve() != DEFAULT_CONFIG.resolve() and DEFAULT_CONFIG.is_file():
        data = config_check.merged(read_yaml_config(DEFAULT_CONFIG), data)
    _YAML_SOURCE.data = data
    given_flags = {k: v for k, v in overrides.items() if v is not None}
    try:
        settings = Settings(**given_flags)
    except ValidationError as exc:
        raise config_check.invalid(exc, path, set(given_flags)) from None
    settings._config_file = path
    settings._overrides = set(given_flags)
    config_check.report_language(settings.language)
    return settings


def setting_sources(settings: Settings, config_path: Path | None = None) -> dict[str, str]:
    """Where each effective value came from, for `reelcrew config show`."""
    from dotenv import dotenv_values

    dotenv = {k.lower() for k in dotenv_values(".env")} if Path(".env").exists() else set()
    yaml_keys = set(_YAML_SOURCE.data)
    env = {k.lower() for k in os.environ}
    out = {}
    for name in Settings.model_fields:
        out[name] = ("env" if name in env else ".env" if name in dotenv
                     else "pipeline.yaml" if name in yaml_keys else "default")
    return out


def masked(settings: Settings) -> dict[str, Any]:
    """Settings as plain data with secrets masked: safe to print or log."""
    data = settings.model_dump(mode="json")
    for name in SECRET_FIELDS:
        value = getattr(settings, name)
        data[name] = "**** (set)" if value else None
    return data


def env_template_from_fields() -> str:
    """A `.env` template made from the settings themselves, for installs that carry no `.env.example`."""
    lines = ["# reelcrew settings: fill in what you need; an empty value means unset. Never commit this file."]
    for name, field in Settings.model_fields.items():
        if isinstance(field.default, BaseModel) or name in ("prices", "crews_dir"):
            continue  # sections and prices are tuned in config/pipeline.yaml
        if field.description:
            lines.append(f"# {field.description}")
        default = "" if name in SECRET_FIELDS or field.default is None else field.default
        lines.append(f"{name.upper()}={default}")
    return "\n".join(lines) + "\n"
