"""Veo backends behind one small interface: Gemini API, Vertex AI, and the mock.

Like httpx's transports, the generator only ever talks to `VeoBackend`; tests swap the
server (a fake Google on 127.0.0.1), never our code. Submits are sent exactly once by the
SDK (its own retries stay off): whether to try again is the generator's decision.
"""

from __future__ import annotations

import errno
import logging
import os
import random
import time
import urllib.parse
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from reelcrew.google_auth import genai_client
from reelcrew.models import VideoPrompt
from reelcrew.settings import Settings
from reelcrew.video.errors import (
    BackendError,
    CredentialsRefused,
    OperationNotFound,
    OutcomeUnknown,
    QuotaExceeded,
    Rejected,
    Unavailable,
    VideoGone,
)
from reelcrew.video.registry import backend_spec, sample_count

if TYPE_CHECKING:
    from reelcrew.video.continuity_refs import ClipInputs

log = logging.getLogger("reelcrew.video")


@dataclass
class Outcome:
    """What a poll found. `video` is the backend's handle for download (kept in memory only).

    With VEO3_SAMPLE_COUNT > 1, `samples` holds every video Veo made (the first is `video`) and `samples_filtered`
    how many its safety filter withheld (not billed), with `withheld` naming the reason."""

    done: bool
    error: str | None = None
    filtered: str | None = None
    video: Any = None
    uri: str | None = None
    samples: list[Any] = field(default_factory=list)
    samples_filtered: int = 0
    withheld: str | None = None

    def sample(self, number: int) -> Outcome:
        """The outcome as if Veo had made only sample `number` (1-based): what `download` fetches."""
        video = self.samples[number - 1] if self.samples else self.video
        return Outcome(done=True, video=video, uri=getattr(video, "uri", None) or self.uri)


class VeoBackend(ABC):
    """Raises only `reelcrew.video.errors` (BackendError and its kinds); `name` is its registry entry's."""

    name: str = "veo"

    @abstractmethod
    def submit(self, prompt: VideoPrompt, model: str, inputs: ClipInputs | None = None) -> str:
        """Send one paid request; return the operation name (the receipt). `inputs`: what a continuity mode
        sends besides the prompt (reference images, the video an extension grows).

        Raises QuotaExceeded, Rejected, Unavailable, CredentialsRefused or OutcomeUnknown."""

    @abstractmethod
    def poll(self, operation_name: str) -> Outcome: ...

    @abstractmethod
    def download(self, outcome: Outcome, dest: Path, prompt: VideoPrompt, inputs: ClipInputs | None = None
                 ) -> None: ...


class GenaiBackend(VeoBackend):
    """Real Veo through google-genai, on the Gemini API (API key) or Vertex AI."""

    def __init__(self, settings: Settings):
        from google.genai import types

        self.types = types
        self.settings = settings
        self.vertex = settings.google_genai_use_vertexai
        http = types.HttpOptions(timeout=int(settings.submit_timeout * 1000))
        self.client = genai_client(settings, http)  # a Vertex project wins over a stray API key
        self.name = backend_spec(settings).name
        if self.vertex and settings.google_vertex_express:
            log.warning("GOOGLE_VERTEX_EXPRESS=true: Veo goes to Vertex express mode (API key), whose reference "
                        "lists generateContent methods only, not predictLongRunning; unset it to use the project")

    def submit(self, prompt: VideoPrompt, model: str, inputs: ClipInputs | None = None) -> str:
        try:
            return self._submit(prompt, model, inputs)
        except BackendError:
            raise
        except Exception as exc:
            raise translate_submit_error(exc) from exc

    def _submit(self, prompt: VideoPrompt, model: str, inputs: ClipInputs | None = None) -> str:
        t = self.types
        accepts = backend_spec(self.settings).models[model].accepts
        config: dict[str, Any] = dict(number_of_videos=sample_count(self.settings), duration_seconds=prompt.duration,
                                      aspect_ratio=prompt.aspect_ratio, resolution=prompt.resolution,
                                      http_options=t.HttpOptions(timeout=int(self.settings.submit_timeout * 1000)))
        if prompt.negative_prompt:
            config["negative_prompt"] = prompt.negative_prompt
        # fields the Gemini API refuses are declared per backend in the registry
        if "generate_audio" in accepts:
            config["generate_audio"] = self.settings.veo3_generate_audio
        if "enhance_prompt" in accepts and self.settings.veo3_enhance_prompt is not None:
            config["enhance_prompt"] = self.settings.veo3_enhance_prompt
        if "person_generation" in accepts and self.settings.veo3_person_generation:
            config["person_generation"] = self.settings.veo3_person_generation
        if "seed" in accepts and prompt.seed is not None:
            config["seed"] = prompt.seed
        if "output_gcs_uri" in accepts and self.settings.gcs_output_bucket:
            bucket = self.settings.gcs_output_bucket.removeprefix("gs://").rstrip("/")
            config["output_gcs_uri"] = f"gs://{bucket}/reelcrew/"
        config.update(self._first_frame_config(prompt))
        source: dict[str, Any] = {"prompt": prompt.prompt, **self._first_frame(prompt)}
        if inputs:
            source.update(self._continuity(inputs, config))
        op = self.client.models.generate_videos(model=model, source=t.GenerateVideosSource(**source),
                                                config=t.GenerateVideosConfig(**config))
        if not op.name:
            raise OutcomeUnknown("Veo accepted the request but returned no operation name")
        return op.name

    def _first_frame(self, prompt: VideoPrompt) -> dict[str, Any]:
        """The source's first frame when the prompt has one (image-to-video: continuity last_frame)."""
        t = self.types
        if prompt.first_frame is None:
            return {}
        from reelcrew.continuity import frame_bytes

        try:
            image = t.Image(image_bytes=frame_bytes(prompt.first_frame), mime_type=prompt.first_frame.mime_type)
        except ValueError as exc:  # before anything is sent: the next step makes the frame again
            raise Unavailable(f"{exc}; nothing was sent") from None
        return {"image": image}

    def _first_frame_config(self, prompt: VideoPrompt) -> dict[str, Any]:
        """The Gemini API takes image-to-video with personGeneration allow_adult only (veo-api.md 5.2)."""
        if prompt.first_frame is not None and not self.vertex:
            return {"person_generation": "allow_adult"}
        return {}

    def _continuity(self, inputs: ClipInputs, config: dict[str, Any]) -> dict[str, Any]:
        """The SDK fields of continuity references and extend: asset reference images in the config; the video an
        extension grows as the source (its Gemini API uri, or a gs:// uri or its bytes on Vertex AI)."""
        t = self.types
        if inputs.reference_images:
            config["reference_images"] = [
                t.VideoGenerationReferenceImage(image=t.Image(image_bytes=image.path.read_bytes(),
                                                              mime_type=image.mime), reference_type="asset")
                for image in inputs.reference_images]
        video = inputs.source_video
        if video is None:
            return {}
        if video.uri:
            return {"video": t.Video(uri=video.uri, mime_type="video/mp4")}
        assert video.path is not None  # continuity_refs gives a uri or a local copy
        return {"video": t.Video(video_bytes=video.path.read_bytes(), mime_type="video/mp4")}

    def poll(self, operation_name: str) -> Outcome:
        from google.genai import errors

        t = self.types
        try:
            op = self.client.operations.get(
                t.GenerateVideosOperation(name=operation_name),
                config=t.GetOperationConfig(
                    http_options=t.HttpOptions(timeout=int(self.settings.download_timeout * 1000))))
        except errors.ClientError as exc:
            if exc.code == 404:  # asking again cannot bring it back
                raise OperationNotFound(f"{exc.code} {exc.status}: {exc.message}") from exc
            raise
        if not op.done:
            return Outcome(done=False)
        if op.error:
            return Outcome(done=True, error=f"Veo operation error {op.error.get('code')}: {op.error.get('message')}")
        response = op.response or op.result
        videos = list(response.generated_videos or []) if response else []
        if not videos:
            reasons = list(response.rai_media_filtered_reasons or []) if response else []
            if response and (response.rai_media_filtered_count or reasons):
                return Outcome(done=True, filtered="; ".join(reasons) or "filtered by Veo's safety filters")
            return Outcome(done=True, error="Veo finished the operation but returned no video")
        video = videos[0].video
        withheld = int(response.rai_media_filtered_count or 0)  # some samples filtered (not billed), some made
        why = "; ".join(response.rai_media_filtered_reasons or []) or "filtered by Veo's safety filters"
        return Outcome(done=True, video=video, uri=video.uri, samples=[v.video for v in videos],
                       samples_filtered=withheld, withheld=why if withheld else None)

    def download(self, outcome: Outcome, dest: Path, prompt: VideoPrompt, inputs: ClipInputs | None = None
                 ) -> None:
        """One attempt, bounded by DOWNLOAD_TIMEOUT (the client's own timeout is SUBMIT_TIMEOUT)."""
        from google.genai import errors

        t = self.types
        video = outcome.video
        if getattr(video, "video_bytes", None):
            data = video.video_bytes
        elif not self.vertex:
            timeout_ms = int(self.settings.download_timeout * 1000)
            config = t.DownloadFileConfig(http_options=t.HttpOptions(timeout=timeout_ms))
            try:
                data = self.client.files.download(file=video, config=config)
            except errors.ClientError as exc:
                if exc.code in (403, 404):  # the Gemini API deleted it (kept 2 days): no retry can fetch it
                    hint = "; if the API key changed since the submit, restore it first" if exc.code == 403 else ""
                    raise VideoGone(f"{exc.code} {exc.status}: {exc.message}{hint}") from exc
                raise
        elif video.uri and video.uri.startswith("gs://"):
            data = _gcs_download(video.uri, self.settings.download_timeout)
        else:
            raise RuntimeError(f"no way to download {video.uri!r}")
        from reelcrew.storage import true_causes

        with true_causes(dest, f"the downloaded clip {dest.name}", len(data)):  # a full disk says how much it needs
            dest.write_bytes(data)


def translate_submit_error(exc: BaseException) -> BackendError:
    """google-genai, google-auth and httpx exceptions of a submit, in our words (see video/errors.py)."""
    import google.auth.exceptions
    import httpx
    from google.genai import errors

    from reelcrew.video.quota import classify_429

    if isinstance(exc, errors.ClientError):
        if exc.code == 429:
            signal = classify_429(exc.details)
            window = "unknown" if signal.kind == "bare" else signal.kind
            return QuotaExceeded(window, signal.retry_after, f"429 {exc.status}: {exc.message}")
        return Rejected(exc.code, exc.message or str(exc), exc.status)
    if isinstance(exc, errors.ServerError):
        if exc.code == 503 or exc.status == "UNAVAILABLE":  # an explicit "not now": nothing was created
            return Unavailable(f"Veo unavailable on submit ({exc.code}): {exc.message}")
        return OutcomeUnknown(f"server error {exc.code} on submit: {exc.message}")
    if isinstance(exc, google.auth.exceptions.GoogleAuthError):  # no token, so nothing reached Veo
        reason = f"Vertex AI credentials did not work ({type(exc).__name__}: {exc})"
        return Unavailable(reason) if getattr(exc, "retryable", False) else CredentialsRefused(reason)
    if isinstance(exc, httpx.ConnectError) and connection_refused(exc):
        # refused at connect(): not one byte of the request left this machine
        return Unavailable(f"connection refused on submit, nothing was sent ({exc})")
    if isinstance(exc, (httpx.TimeoutException, httpx.TransportError)):
        return OutcomeUnknown(f"submit {type(exc).__name__}: {exc}")
    return OutcomeUnknown(f"submit {type(exc).__name__}: {exc}")


def connection_refused(exc: BaseException) -> bool:
    """True when the connection was refused (ECONNREFUSED): the request was never sent, so a retry is safe."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError) or getattr(current, "errno", None) == errno.ECONNREFUSED:
            return True
        current = current.__cause__ or current.__context__
    return False


def _gcs_download(uri: str, timeout: float) -> bytes:
    """Fetch a gs:// object with application default credentials (Vertex writes there when GCS_OUTPUT_BUCKET is set)."""
    import google.auth
    import google.auth.transport.requests
    import httpx

    bucket, _, name = uri.removeprefix("gs://").partition("/")
    creds, _ = google.auth.default(scopes=["https://www.googleapis.com/auth/devstorage.read_only"])
    creds.refresh(google.auth.transport.requests.Request())
    base = os.environ.get("REELCREW_GCS_BASE_URL", "https://storage.googleapis.com")
    url = f"{base}/storage/v1/b/{bucket}/o/{urllib.parse.quote(name, safe='')}?alt=media"
    response = httpx.get(url, headers={"Authorization": f"Bearer {creds.token}"}, timeout=timeout,
                         follow_redirects=True)
    response.raise_for_status()
    return response.content


class MockBackend(VeoBackend):
    """Offline Veo for rehearsals: real clips, and trouble on demand.

    VEO3_MOCK_LATENCY seconds per operation, VEO3_MOCK_QUOTA_RATE of submits answered with a
    per-minute QuotaExceeded (retry after 1 s), VEO3_MOCK_FAILURE_RATE of operations ending in an
    error, VEO3_MOCK_FILTER_RATE of requests refused by a pretend safety filter (decided per request, so
    the same prompt is refused again, as Veo does, and a reworded one is a new roll), all decided from
    VEO3_MOCK_SEED so a rehearsal can be replayed exactly.
    """

    name = "mock"

    def __init__(self, settings: Settings):
        self.settings = settings
        self._attempts: dict[str, int] = {}
        self.accepted = 0

    def _roll(self, *parts: object) -> float:
        return random.Random("|".join(map(str, (self.settings.veo3_mock_seed, *parts)))).random()

    def submit(self, prompt: VideoPrompt, model: str, inputs: ClipInputs | None = None) -> str:
        key = prompt.clip_key(model)
        attempt = self._attempts.get(key, 0) + 1
        self._attempts[key] = attempt
        if self._roll("quota", key, attempt) < self.settings.veo3_mock_quota_rate:
            raise QuotaExceeded("minute", 1.0, "mock 429 (VEO3_MOCK_QUOTA_RATE)")
        self.accepted += 1
        word = self.settings.veo3_mock_filter_word.strip().lower()
        marker = "f" if word and word in prompt.prompt.lower() else ""  # VEO3_MOCK_FILTER_WORD: filtered when done
        return f"mock/operations/{key}-{attempt}{marker}-{int(time.time() * 1000)}"

    def poll(self, operation_name: str) -> Outcome:
        if not operation_name.startswith("mock/operations/"):  # a real operation: the mock never made it
            raise OperationNotFound(f"the mock backend has no operation {operation_name}")
        key_attempt, _, submitted_ms = operation_name.rpartition("/")[2].rpartition("-")
        if time.time() * 1000 < int(submitted_ms) + self.settings.veo3_mock_latency * 1000:
            return Outcome(done=False)
        if key_attempt.endswith("f"):
            return Outcome(done=True, filtered=f"mock safety filter: the prompt contains "
                                               f"{self.settings.veo3_mock_filter_word!r} (VEO3_MOCK_FILTER_WORD)")
        if self._roll("filter", key_attempt.rpartition("-")[0]) < self.settings.veo3_mock_filter_rate:
            return Outcome(done=True, filtered="mock safety filter (VEO3_MOCK_FILTER_RATE); you will not be charged")
        if self._roll("fail", key_attempt) < self.settings.veo3_mock_failure_rate:
            return Outcome(done=True, error="Veo operation error 13: mock failure (VEO3_MOCK_FAILURE_RATE)")
        count = sample_count(self.settings)  # VEO3_SAMPLE_COUNT: that many distinct clips, as Vertex makes them
        samples = [SimpleNamespace(uri=f"mock://{key_attempt}/{n}") for n in range(1, count + 1)] if count > 1 else []
        return Outcome(done=True, uri=f"mock://{key_attempt}", samples=samples)

    def download(self, outcome: Outcome, dest: Path, prompt: VideoPrompt, inputs: ClipInputs | None = None
                 ) -> None:
        from reelcrew.video.mockclip import render_mock_clip

        if inputs and inputs.source_video is not None:  # a mock extension: the source, grown by 7 s
            from reelcrew.video.mockclip import render_mock_extension

            render_mock_extension(prompt, inputs.source_video, dest, audio=self.settings.veo3_generate_audio)
            return
        overlays = [image.path for image in inputs.reference_images] if inputs else []
        render_mock_clip(_mock_sample(prompt, outcome.uri), dest, audio=self.settings.veo3_generate_audio,
                         overlays=overlays)


def _mock_sample(prompt: VideoPrompt, uri: str | None) -> VideoPrompt:
    """Sample 2, 3 ... of a mock request is another clip (its own colour and motion); sample 1 is the usual one."""
    number = int(uri.rpartition("/")[2]) if uri and uri.count("/") > 2 else 1
    return prompt if number == 1 else prompt.model_copy(update={"prompt": f"{prompt.prompt} (sample {number})"})


class LazyBackend(VeoBackend):
    """The backend, built on first use: a re-cut whose clips are all done needs neither keys nor a client."""

    def __init__(self, build: Callable[[], VeoBackend], name: str):
        self._build, self.name = build, name
        self._backend: VeoBackend | None = None

    def _real(self) -> VeoBackend:
        if self._backend is None:
            self._backend = self._build()
        return self._backend

    def submit(self, prompt: VideoPrompt, model: str, inputs: ClipInputs | None = None) -> str:
        return self._real().submit(prompt, model, inputs)

    def poll(self, operation_name: str) -> Outcome:
        return self._real().poll(operation_name)

    def download(self, outcome: Outcome, dest: Path, prompt: VideoPrompt, inputs: ClipInputs | None = None
                 ) -> None:
        self._real().download(outcome, dest, prompt, inputs)


_CLASSES: dict[str, Callable[[Settings], VeoBackend]] = {
    "gemini": GenaiBackend, "vertex": GenaiBackend, "mock": MockBackend}


def make_backend(settings: Settings) -> VeoBackend:
    """The backend these settings select; its `name` is the registry entry's."""
    spec = backend_spec(settings)
    backend = _CLASSES[spec.name](settings)
    backend.name = spec.name
    return backend
