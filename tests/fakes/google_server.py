"""A fake Google (Gemini API, Vertex AI on a project or in express mode, generateContent, an OAuth token
endpoint) on 127.0.0.1 for the real google-genai SDK.

Speaks the real wire formats and error bodies, serves real MP4 bytes, and is scripted per test:
latency, quota windows (per-minute / per-day / bare 429s), 503s on submit and poll, submits that are
accepted but answered late, safety filters, operation errors, never-finishing operations,
redirected / expired / truncated downloads, unknown models. It counts accepted submits and the
operations in flight so tests can prove no clip was paid twice and no limit was crossed.

Vertex project paths (`/v1beta1/projects/P/locations/L/publishers/google/models/M:...`) demand a bearer token
that the fake's own `/token` endpoint issued, for a JWT signed by a service account from `service_account()`,
as google-auth does it; every request is logged in `requests` (path and which credential it carried).
Videos are rendered when a submit is accepted, in background threads, once per distinct clip for the
whole test session; an operation reports done only when its video is ready (as Veo does). So a poll or a
download only sends bytes already in memory: a slow render, on a busy machine, looks like Veo latency
and can never make a download time out.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections import Counter, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from reelcrew.models import VideoPrompt
from reelcrew.video.mockclip import render_mock_clip

MODELS = {"veo-3.1-generate-001", "veo-3.1-fast-generate-001", "veo-3.1-lite-generate-001",
          "veo-3.1-generate-preview", "veo-3.1-fast-generate-preview", "gemini-3.5-flash"}
THOUGHT_SIGNATURE = base64.b64encode(b"fake-thought-signature").decode()  # opaque to clients, as Google's are
HELD = -2.0  # a submit's "delay" that means: answer when the test sets `FakeGoogle.held`
NO_VIDEO_MARKERS = ("NEVERDONE", "UNSAFE", "FAILOP")  # prompts whose operation never yields a video


class VideoRenders:
    """Each distinct clip's MP4 bytes, rendered once per process in the background and kept for reuse.

    A module-level cache: the suite asks for the same shapes in many tests (the same prompts, durations
    and aspects), and rendering is the fake's only slow work.
    """

    def __init__(self, workers: int = 2):
        self._lock = threading.Lock()
        self._renders: dict[tuple, Future] = {}
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="fake-render")
        self._dir = Path(tempfile.mkdtemp(prefix="fake-google-"))

    def start(self, shape: tuple) -> Future:
        """The render of this shape, started now unless it was already started or done."""
        with self._lock:
            if shape not in self._renders:
                self._renders[shape] = self._pool.submit(self._render, shape)
            return self._renders[shape]

    def _render(self, shape: tuple) -> bytes:
        prompt, duration, aspect, resolution, audio, *bad = shape
        dest = self._dir / f"{uuid.uuid4().hex}.mp4"
        try:
            wanted = VideoPrompt(index=1, scene_index=1, prompt=prompt, duration=duration, aspect_ratio=aspect,
                                 resolution=resolution)
            if bad and bad[0]:
                render_bad_clip(wanted, bad[0], dest)
            else:
                render_mock_clip(wanted, dest, audio=audio)
            return dest.read_bytes()
        finally:
            dest.unlink(missing_ok=True)


RENDERS = VideoRenders()


def render_bad_clip(prompt: VideoPrompt, kind: str, dest: Path) -> None:
    """A clip Veo gets wrong without an error, of the asked shape and length, with sound: `black` (all black)
    or `frozen` (one still picture)."""
    from reelcrew.media import run_ffmpeg
    from reelcrew.models import frame_size

    width, height = frame_size(prompt.aspect_ratio, prompt.resolution)
    colour = {"black": "black", "frozen": "0x4a6a8a"}[kind]
    run_ffmpeg(["-f", "lavfi", "-i", f"color=c={colour}:s={width}x{height}:r=24:d={prompt.duration}",
                "-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=48000:duration={prompt.duration}",
                "-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a", "64k",
                "-ac", "2", "-shortest", "-movflags", "+faststart", "-f", "mp4", str(dest)], f"a {kind} clip")


def video_shape(prompt: str, params: dict) -> tuple:
    """What makes one clip's bytes differ from another's (a silent clip, generateAudio false, has no audio)."""
    return (prompt, int(params.get("durationSeconds", 8)), params.get("aspectRatio", "16:9"),
            params.get("resolution", "720p"), params.get("generateAudio", True) is not False)


class QuietServer(ThreadingHTTPServer):
    """A client killed mid-request (kill -9 tests) resets its connection: Google's side shrugs, so does the fake.
    socketserver would print that traceback on stderr, where a CLI run in the test's own process reads it."""

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


FILTER_REASON = ("Veo could not generate 1 videos based on the prompt provided. You will not be charged for this "
                 "request. Try rephrasing the prompt. Support codes: 42237218")


def quota_error_body(window: str, retry_delay: str | None) -> dict:
    """A 429 body as Google sends it: QuotaFailure names the window, RetryInfo the delay."""
    details: list[dict] = [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
        "quotaMetric": "generativelanguage.googleapis.com/predict_long_running_requests",
        "quotaId": f"PredictLongRunningRequestsPer{window}PerProjectPerModel",
        "quotaDimensions": {"location": "global", "model": "veo"}, "quotaValue": "10"}]}]
    if retry_delay:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": retry_delay})
    return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                      "message": "You exceeded your current quota, please check your plan and billing details.",
                      "details": details}}


@dataclass
class Script:
    latency: float = 0.0  # seconds from submit to done
    quota_limit: int | None = None  # accepted submits per quota window; beyond it: 429
    quota_window: float = 60.0
    quota_kind: str = "PerMinute"  # PerMinute | PerDay | bare
    retry_delay: str | None = "0.05s"
    # "503", "429", "429-day", "429-bare", "late", "500", "reset", "held" (accepted, answered once `held` is set)
    submit_faults: deque = field(default_factory=deque)
    poll_faults: deque = field(default_factory=deque)  # "503", "429", "500", "404" (operation unknown)
    download_faults: deque = field(default_factory=deque)  # "truncate", "redirect", "expired", "500", "slow"
    late_seconds: float = 3.0  # how late a "late" submit and a "slow" download answer
    text_answers: deque = field(default_factory=deque)  # str answers, int status codes for errors, or "reset"
    text_quota_kind: str = "PerMinute"  # the QuotaFailure window of a 429 text answer: PerMinute | PerDay | bare
    # a generateContent with the Google Search tool: the queries "run" and the pages "read" (groundingMetadata)
    search_queries: list = field(default_factory=lambda: ["how tea is made", "tea processing steps 2026"])
    search_sources: list = field(default_factory=lambda: [
        ("https://vertexaisearch.cloud.google.com/grounding-api-redirect/tea-1", "tea.example.org"),
        ("https://vertexaisearch.cloud.google.com/grounding-api-redirect/tea-2", "Tea processing - Wikipedia")])
    # a prompt containing a key comes back as a bad video of that kind ("black" or "frozen"; "black-once" and
    # "frozen-once": only its first accepted submit, as a retake by Veo can come out right): quality checks
    bad_videos: dict = field(default_factory=dict)  # "black-first"/"frozen-first": only sample 1 of each request
    # Vertex `sampleCount` > 1: a prompt containing a key gets that many of its samples withheld by the safety filter
    filtered_samples: dict = field(default_factory=dict)


class FakeGoogle:
    def __init__(self, script: Script | None = None):
        self.script = script or Script()
        self.lock = threading.Lock()
        self.ops: dict[str, dict] = {}
        self.accepted = 0
        self.accepted_by_prompt: Counter = Counter()
        self.submit_attempts = 0
        self.attempt_times: list[float] = []
        self.polls = 0
        self.downloads = 0
        self.max_in_flight = 0
        self.accept_times: list[float] = []
        # every accepted video request: when, its prompt, its first frame (decoded image bytes, or None), parameters
        self.video_requests: list[dict] = []
        self.text_requests: list[dict] = []
        # continuity references and extend: what each accepted submit carried (reference images, source video)
        self.continuity: list[dict] = []
        self.text_models: list[str] = []  # the model named in each generateContent URL
        self.requests: list[dict] = []  # method, path, token (bearer), api_key (x-goog-api-key sent)
        self.tokens_issued: list[str] = []
        self._signers: dict[str, object] = {}  # service-account email → its public key
        self.closing = threading.Event()  # set on stop: releases "late" submits still holding their answer
        self.held = threading.Event()  # set by a test: releases "held" submits (accepted, answer held until then)
        self.httpd = QuietServer(("127.0.0.1", 0), self._handler())
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    start = __enter__

    def stop(self):
        self.__exit__()

    # -- state ---------------------------------------------------------------------------------
    def in_flight(self, now: float) -> int:
        return sum(1 for op in self.ops.values() if not self.is_done(op, now))

    @staticmethod
    def is_done(op: dict, now: float) -> bool:
        """Done once its latency has passed and its video (if it makes one) is rendered."""
        if op["never"] or now < op["done_at"]:
            return False
        return all(render.done() for render in op.get("renders") or ([op["render"]] if op["render"] else []))

    @staticmethod
    def video_bytes(op: dict) -> bytes:
        """Only asked for once the operation is done, so the render has finished: no waiting here."""
        return op["render"].result(timeout=0)

    def _submit(self, model: str, body: dict, vertex: bool, scope: str = "") -> tuple[int, dict, float]:
        s = self.script
        with self.lock:
            self.submit_attempts += 1
            self.attempt_times.append(time.time())
            if model not in MODELS:
                return 404, {"error": {"code": 404, "status": "NOT_FOUND",
                                       "message": f"models/{model} is not found or is no longer available."}}, 0
            instance = (body.get("instances") or [{}])[0]
            params = body.get("parameters") or {}
            prompt = instance.get("prompt", "")
            if not vertex and any(k in params for k in ("seed", "generateAudio", "storageUri", "fps")):
                return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT",
                                       "message": "Gemini API does not take seed/generateAudio/storageUri/fps"}}, 0
            image, refused = self._first_frame(instance, vertex)
            if refused:
                return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": refused}}, 0
            person = params.get("personGeneration")
            allowed = ("allow_all", "allow_adult", "dont_allow") if vertex else (
                ("allow_adult",) if image else ("allow_all",))  # the Gemini API: image-to-video is allow_adult only
            if person is not None and person not in allowed:
                kind = "image-to-video" if image else "text-to-video"
                return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                       f"personGeneration {person} is not supported for {kind} here"}}, 0
            if "enhancePrompt" in params and not isinstance(params["enhancePrompt"], bool):
                return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "enhancePrompt: bool"}}, 0
            samples = int(params.get("sampleCount", 1))
            if not 1 <= samples <= (4 if vertex else 1):  # Veo 3.x on the Gemini API makes one video a request
                return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                       f"sampleCount {samples} is out of range for this model"}}, 0
            if int(params.get("durationSeconds", 8)) not in (4, 6, 8):
                return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message":
                                       "The number value for `durationSeconds` is out of bound. Please provide a value "
                                       "between 4 and 8, inclusive."}}, 0
            refused, carried, grows = self._continuity_fields(instance, params, vertex)
            if refused:
                return 400, {"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": refused}}, 0
            fault = s.submit_faults.popleft() if s.submit_faults else None
            if fault == "503":
                return 503, {"error": {"code": 503, "status": "UNAVAILABLE",
                                       "message": "The model is overloaded. Please try again later."}}, 0
            if fault == "500":
                return 500, {"error": {"code": 500, "status": "INTERNAL", "message": "Internal error encountered."}}, 0
            if fault and fault.startswith("429"):
                kind = {"429": "PerMinute", "429-day": "PerDay", "429-bare": "bare"}[fault]
                return 429, self._quota_body(kind), 0
            now = time.time()
            if s.quota_limit is not None:
                recent = [t for t in self.accept_times if now - t < s.quota_window]
                if len(recent) >= s.quota_limit:
                    return 429, self._quota_body(s.quota_kind), 0
            self.accepted += 1
            self.accepted_by_prompt[prompt] += 1
            self.video_requests.append({"at": now, "prompt": prompt, "image": image, "params": params,
                                        "vertex": vertex})
            self.accept_times.append(now)
            op_id = uuid.uuid4().hex[:12]
            name = (f"{scope}publishers/google/models/{model}/operations/{op_id}" if vertex
                    else f"models/{model}/operations/{op_id}")
            makes_video = not any(marker in prompt for marker in NO_VIDEO_MARKERS)

            def shape_of(sample: int) -> tuple:
                shape = video_shape(prompt if sample == 1 else f"{prompt} (sample {sample})", params)
                if grows is not None:  # an extension answers with the whole grown video: the source + 7 s
                    shape = (shape[0], grows + 7, *shape[2:])
                return shape

            self.continuity.append({"prompt": prompt, **carried})
            withheld = min(samples, next((n for word, n in s.filtered_samples.items() if word in prompt), 0))
            renders = [RENDERS.start(shape_of(n) + (self._bad(prompt, n),)) for n in range(1, samples - withheld + 1)]
            self.ops[name] = {"model": model, "prompt": prompt, "params": params, "created": now,
                              "seconds": shape_of(1)[1],
                              "done_at": now + s.latency, "never": "NEVERDONE" in prompt, "file": op_id,
                              "vertex": vertex, "scope": scope, "withheld": withheld,
                              "render": renders[0] if makes_video and renders else None,
                              "renders": renders if makes_video else []}
            self.max_in_flight = max(self.max_in_flight, self.in_flight(now))
            delay = s.late_seconds if fault == "late" else -1 if fault == "reset" else HELD if fault == "held" else 0
        return 200, {"name": name}, delay

    @staticmethod
    def _first_frame(instance: dict, vertex: bool) -> tuple[bytes | None, str | None]:
        """The request's first frame (`instances[0].image`: `bytesBase64Encoded` + `mimeType`, as the SDK sends it on
        both backends) decoded, or the INVALID_ARGUMENT message for a malformed one."""
        image = instance.get("image")
        if image is None:
            return None, None
        if not isinstance(image, dict) or set(image) - {"bytesBase64Encoded", "mimeType", "gcsUri"}:
            return None, f"image: unknown fields {sorted(image) if isinstance(image, dict) else image!r}"
        if "gcsUri" in image and not vertex:
            return None, "image.gcsUri is not supported by the Gemini API"
        if image.get("mimeType") not in ("image/png", "image/jpeg"):
            return None, f"image.mimeType {image.get('mimeType')!r}: use image/png or image/jpeg"
        try:
            data = base64.b64decode(image.get("bytesBase64Encoded") or "", validate=True)
        except ValueError:
            return None, "image.bytesBase64Encoded is not base64"
        magic = b"\x89PNG\r\n\x1a\n" if image["mimeType"] == "image/png" else b"\xff\xd8\xff"
        if not data.startswith(magic):
            return None, f"image: the bytes are not a {image['mimeType']} picture"
        return data, None

    def _continuity_fields(self, instance: dict, params: dict, vertex: bool) -> tuple[str | None, dict, int | None]:
        """Checks `referenceImages` and an extension's `video` as Veo 3.1 does: (refusal, what was carried, the
        seconds of the video an extension grows). Reference images: at most 3, each `{image: {bytesBase64Encoded,
        mimeType}, referenceType}`, `asset` only on the Gemini API, 8 s clips. Extension: 720p; on the Gemini API
        `video.uri` of a video this fake generated (kept 2 days), on Vertex `video.bytesBase64Encoded` or
        `gcsUri`."""
        carried: dict = {}
        refs = instance.get("referenceImages")
        if refs is not None:
            if not isinstance(refs, list) or not 1 <= len(refs) <= 3:
                return "referenceImages takes 1 to 3 images", carried, None
            seen = []
            for ref in refs:
                image = ref.get("image") or {}
                kind = str(ref.get("referenceType", "")).lower()
                if kind != "asset" and not (vertex and kind == "style"):
                    return f"referenceType {ref.get('referenceType')!r} is not supported", carried, None
                if image.get("mimeType") not in ("image/png", "image/jpeg") or not image.get("bytesBase64Encoded"):
                    return "a reference image needs bytesBase64Encoded and a png or jpeg mimeType", carried, None
                data = base64.b64decode(image["bytesBase64Encoded"])
                seen.append({"sha256": hashlib.sha256(data).hexdigest(), "mime": image["mimeType"], "type": kind})
            if int(params.get("durationSeconds", 8)) != 8:
                return "referenceImages requires durationSeconds 8", carried, None
            carried["reference_images"] = seen
        video = instance.get("video")
        if video is None:
            return None, carried, None
        if params.get("resolution", "720p") != "720p":
            return "video extension supports 720p only", carried, None
        if vertex:
            if video.get("gcsUri"):
                carried["video"] = {"gcsUri": video["gcsUri"]}
                return None, carried, 8
            if not video.get("bytesBase64Encoded"):
                return "video needs bytesBase64Encoded or gcsUri", carried, None
            data = base64.b64decode(video["bytesBase64Encoded"])
            source = next((op for op in self.ops.values() if op["render"] is not None and op["render"].done()
                           and not op["render"].exception() and op["render"].result() == data), None)
            if source is None:
                return "the video to extend must be a Veo video", carried, None
            carried["video"] = {"sha256": hashlib.sha256(data).hexdigest(), "from": source["file"]}
            return None, carried, source["seconds"]
        uri = video.get("uri") or ""
        match = re.fullmatch(r"https://generativelanguage\.googleapis\.com/v1beta/files/([a-z0-9]+):download\?alt=media",
                             uri)
        source = next((op for op in self.ops.values() if match and op["file"] == match.group(1)), None)
        if source is None:
            return f"video.uri {uri!r} is not a video generated by Veo", carried, None
        if time.time() - source["created"] > 2 * 24 * 3600:
            return "the video to extend has expired", carried, None
        carried["video"] = {"uri": uri, "from": source["file"]}
        return None, carried, source["seconds"]

    def _bad(self, prompt: str, sample: int = 1) -> str:
        """The kind of bad video this submit of the prompt is scripted to get ("" for a good one); called after
        the submit is counted in `accepted_by_prompt`."""
        kind = next((kind for word, kind in self.script.bad_videos.items() if word in prompt), "")
        if kind.endswith("-first"):
            return kind.removesuffix("-first") if sample == 1 else ""
        if kind.endswith("-once"):
            return kind.removesuffix("-once") if self.accepted_by_prompt[prompt] == 1 else ""
        return kind

    def service_account(self, path: Path, project: str = "test-project") -> Path:
        """Write a service-account JSON with a throwaway RSA key whose token_uri is this fake's /token."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        email = f"reelcrew-test-{uuid.uuid4().hex[:6]}@{project}.iam.gserviceaccount.com"
        self._signers[email] = key.public_key()
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
        path.write_text(json.dumps({"type": "service_account", "project_id": project, "private_key_id": "k1",
                                    "private_key": pem, "client_email": email, "client_id": "1",
                                    "token_uri": f"{self.url}/token"}))
        return path

    def _token(self, form: dict) -> tuple[int, dict]:
        """OAuth 2.0 JWT-bearer grant: check the assertion's signature and audience, issue an access token."""
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        def b64(part: str) -> bytes:
            return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))

        try:
            header, claims, signature = form["assertion"].split(".")
            payload = json.loads(b64(claims))
            public = self._signers[payload["iss"]]
            public.verify(b64(signature), f"{header}.{claims}".encode(), padding.PKCS1v15(), hashes.SHA256())
            # google-auth addresses the assertion to Google's token endpoint, whatever token_uri says
            assert payload["aud"] in ("https://oauth2.googleapis.com/token", f"{self.url}/token")
            assert form["grant_type"] == "urn:ietf:params:oauth:grant-type:jwt-bearer"
        except (KeyError, ValueError, AssertionError, InvalidSignature) as exc:
            return 400, {"error": "invalid_grant", "error_description": f"bad assertion: {type(exc).__name__}"}
        token = f"ya29.fake-{uuid.uuid4().hex}"
        with self.lock:
            self.tokens_issued.append(token)
        return 200, {"access_token": token, "expires_in": 3600, "token_type": "Bearer"}

    def _quota_body(self, kind: str) -> dict:
        if kind == "bare":
            return {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED",
                              "message": "Resource has been exhausted (e.g. check quota)."}}
        return quota_error_body(kind, self.script.retry_delay if kind == "PerMinute" else None)

    def _operation(self, name: str) -> tuple[int, dict]:
        s = self.script
        with self.lock:
            self.polls += 1
            fault = s.poll_faults.popleft() if s.poll_faults else None
            if fault:
                code = int(fault)
                status = {503: "UNAVAILABLE", 429: "RESOURCE_EXHAUSTED", 404: "NOT_FOUND"}.get(code, "INTERNAL")
                message = "Operation not found." if code == 404 else "The service is currently unavailable."
                return code, {"error": {"code": code, "status": status, "message": message}}
            op = self.ops.get(name)
            if op is None:
                return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": f"operation {name} not found"}}
            if not self.is_done(op, time.time()):
                return 200, {"name": name, "done": False}
            if op["render"] is not None and op["render"].exception() is not None:
                return 200, {"name": name, "done": True,
                             "error": {"code": 13, "message": f"fake render failed: {op['render'].exception()}"}}
            if "UNSAFE" in op["prompt"] or (op.get("withheld") and not op.get("renders")):
                count = op.get("withheld") or 1
                payload = {"raiMediaFilteredCount": count, "raiMediaFilteredReasons": [FILTER_REASON]}
                return 200, {"name": name, "done": True, "response": (payload if op["vertex"] else {
                    "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                    "generateVideoResponse": payload})}
            if "FAILOP" in op["prompt"]:
                return 200, {"name": name, "done": True, "error": {"code": 13, "message": "internal"}}
            if op["vertex"]:
                videos = [{"bytesBase64Encoded": base64.b64encode(render.result(timeout=0)).decode(),
                           "mimeType": "video/mp4"} for render in op.get("renders") or [op["render"]]]
                response = {"@type": "type.googleapis.com/cloud.ai.large_models.vision.GenerateVideoResponse",
                            "videos": videos}
                if op.get("withheld"):  # some samples withheld by the safety filter (not billed), as Vertex says it
                    response.update(raiMediaFilteredCount=op["withheld"], raiMediaFilteredReasons=[FILTER_REASON])
                return 200, {"name": name, "done": True, "response": response}
            uri = f"https://generativelanguage.googleapis.com/v1beta/files/{op['file']}:download?alt=media"
            return 200, {"name": name, "done": True, "response": {
                "@type": "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse",
                "generateVideoResponse": {"generatedSamples": [{"video": {"uri": uri}}]}}}

    def _download(self, file_id: str) -> tuple[int, bytes | dict, dict]:
        with self.lock:
            self.downloads += 1
            op = next((o for o in self.ops.values() if o["file"] == file_id), None)
            fault = self.script.download_faults.popleft() if self.script.download_faults else None
        if op is None or fault == "expired":
            return 404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "File not found or expired."}}, {}
        if fault == "500":
            return 500, {"error": {"code": 500, "status": "INTERNAL", "message": "Internal error."}}, {}
        if fault == "redirect":
            return 302, b"", {"Location": f"/__blob/{file_id}"}
        if fault == "slow":  # a big file on a slow link: answers after late_seconds
            time.sleep(self.script.late_seconds)
        data = self.video_bytes(op)
        if fault == "truncate":
            return 200, data[: len(data) // 2], {}
        return 200, data, {}

    def _generate_content(self, model: str, body: dict) -> tuple[int, dict]:
        """Answers like a Gemini 3 thinking model: a thought-summary part, then the answer part carrying
        a `thoughtSignature` (which a client must send back if it replays this turn)."""
        with self.lock:
            self.text_requests.append(body)
            self.text_models.append(model)
            if model not in MODELS:
                return 404, {"error": {"code": 404, "status": "NOT_FOUND",
                                       "message": f"models/{model} is not found for API version v1beta"}}
            answer = self.script.text_answers.popleft() if self.script.text_answers else "{}"
        if answer == "reset":  # read, then the connection drops with no answer (was it run? the client cannot know)
            return -1, {}
        if isinstance(answer, int):
            return answer, (self._quota_body(self.script.text_quota_kind)
                            if answer == 429
                            else {"error": {"code": answer, "status": "UNAVAILABLE", "message": "overloaded"}})
        parts = [{"text": "Weighing the brief before answering.", "thought": True},
                 {"text": answer, "thoughtSignature": THOUGHT_SIGNATURE}]
        candidate: dict = {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        usage = {"promptTokenCount": 5, "candidatesTokenCount": 3, "totalTokenCount": 8}
        if any("googleSearch" in tool for tool in body.get("tools") or []):
            candidate["groundingMetadata"] = self._grounding_metadata(answer)
            usage.update(toolUsePromptTokenCount=40, totalTokenCount=48)  # the search results the model read
        return 200, {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model}

    def _grounding_metadata(self, answer: str) -> dict:
        """A Google Search grounding as Gemini 3 reports it (types.GroundingMetadata's wire names): the queries it
        ran (an empty one included, as Google sends them), the pages, and which part of the answer each supports."""
        queries = self.script.search_queries
        chunks = [{"web": {"uri": uri, "title": title}} for uri, title in self.script.search_sources]
        return {"webSearchQueries": [queries[0], "", *queries[1:]] if queries else [],
                "groundingChunks": chunks,
                "groundingSupports": [{"segment": {"startIndex": 0, "endIndex": min(len(answer), 40),
                                                   "text": answer[:40]},
                                       "groundingChunkIndices": list(range(len(chunks))),
                                       "confidenceScores": [0.9] * len(chunks)}] if chunks else [],
                "searchEntryPoint": {"renderedContent": "<div>search suggestions</div>"}}

    # -- HTTP ------------------------------------------------------------------------------------
    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, code: int, payload, headers: dict | None = None):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "video/mp4" if isinstance(payload, bytes) else "application/json")
                full = (headers or {}).pop("X-Full-Length", None)
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(full or len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _body(self) -> dict:
                length = int(self.headers.get("Content-Length") or 0)
                return json.loads(self.rfile.read(length) or b"{}")

            def _log(self, path: str) -> str | None:
                """Record which credentials came with the request; return the bearer token, if any."""
                auth = self.headers.get("Authorization") or ""
                token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else None
                with fake.lock:
                    fake.requests.append({"method": self.command, "path": path, "token": token,
                                          "api_key": bool(self.headers.get("x-goog-api-key"))})
                return token

            def do_POST(self):
                path = self.path.split("?")[0]
                token = self._log(path)
                if path == "/token":
                    length = int(self.headers.get("Content-Length") or 0)
                    form = dict(urllib.parse.parse_qsl(self.rfile.read(length).decode()))
                    return self._send(*fake._token(form))
                body = self._body()  # always read, or the next request on this connection starts mid-body
                m = re.fullmatch(r"/v1(?:beta1?)?/((?:projects/[^/]+/locations/[^/]+/)?)(?:publishers/google/)?"
                                 r"models/([^/:]+):(predictLongRunning|fetchPredictOperation|generateContent)", path)
                if not m:
                    return self._send(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": path}})
                scope, model, verb = m.groups()
                vertex = not path.startswith("/v1beta/")
                if scope and token not in fake.tokens_issued:  # a project path needs project credentials
                    return self._send(401, {"error": {"code": 401, "status": "UNAUTHENTICATED", "message":
                                                      "Request is missing required authentication credential. "
                                                      "Expected OAuth 2 access token."}})
                if verb == "predictLongRunning":
                    code, payload, delay = fake._submit(model, body, vertex, scope)
                    while delay == HELD and not (fake.held.wait(0.05) or fake.closing.is_set()):
                        pass  # accepted; the answer waits for the test (e.g. to fill the disk meanwhile)
                    if delay == HELD:
                        delay = 0
                    if delay < 0:  # "reset": accepted, then the connection drops before any answer
                        self.close_connection = True
                        return None
                    if delay:  # accepted, answered late (or never, if the test ends first)
                        fake.closing.wait(delay)
                    return self._send(code, payload)
                if verb == "fetchPredictOperation":
                    code, payload = fake._operation(body.get("operationName", ""))
                    return self._send(code, payload)
                code, payload = fake._generate_content(model, body)
                if code < 0:
                    self.close_connection = True
                    return None
                return self._send(code, payload)

            def do_GET(self):
                path = self.path.split("?")[0]
                self._log(path)
                m = (re.fullmatch(r"/v1beta/files/([a-z0-9]+):download", path)
                     or re.fullmatch(r"/__blob/([a-z0-9]+)", path))
                if m:
                    code, payload, headers = fake._download(m.group(1))
                    return self._send(code, payload, headers)
                m = re.fullmatch(r"/v1beta/(models/[^/]+/operations/[^/]+)", path)
                if m:
                    code, payload = fake._operation(m.group(1))
                    return self._send(code, payload)
                m = re.fullmatch(r"/v1beta1?/((?:publishers/google/)?models/([^/:]+))", path)
                if m and (m.group(2) in MODELS or m.group(2).startswith("gemini-")):  # models.get (`reelcrew doctor`)
                    return self._send(200, {"name": m.group(1), "displayName": m.group(2)})
                self._send(404, {"error": {"code": 404, "status": "NOT_FOUND", "message": path}})

        return Handler


if __name__ == "__main__":  # run it by hand: python -m tests.fakes.google_server
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--quota-limit", type=int, default=None)
    args = parser.parse_args()
    with FakeGoogle(Script(latency=args.latency, quota_limit=args.quota_limit)) as fake:
        print(f"GOOGLE_GEMINI_BASE_URL={fake.url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
