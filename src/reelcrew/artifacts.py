"""Where clips and finals live for every worker: the local output folder (the default) or an S3-compatible store.

With one machine the output folder is the store and nothing is copied: a reference is the file's own path. With
several (`REELCREW_ARTIFACTS=s3://bucket/prefix`) every validated clip and every final is put in the bucket, and
the ledger keeps its reference and sha256, so a render worker on another machine fetches the clips it needs into
its own cache (platformdirs' user cache folder), checked against the ledger's checksum and renamed into place only
when it matches. The cache is cleaned by age and size after each render and by `reelcrew prune`.

Objects are written with one PutObject (S3 makes an object visible only once it is complete) that carries the
file's SHA-256 (`ChecksumSHA256`, verified by S3 and MinIO) and our hex digest in its metadata; a put is checked
afterwards with a HEAD, and skipped when an equal object is there already (a redelivered task pays no upload).
A store that cannot be reached or refuses us is an `ArtifactError` (a StorageError: exit 2, the batch stops,
receipts stay) naming the store's URL (secrets masked) and the fix; the pre-flight checks it before any spend.
"""

from __future__ import annotations

import base64
import logging
import os
import threading
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from reelcrew.files import leftover_part, part_path, sha256_file, temp_tag
from reelcrew.storage import StorageError

log = logging.getLogger("reelcrew.artifacts")
# what a render stores beside its clips
FINAL_FILES = ("final.mp4", "final.srt", "final.ass", "thumbnail.jpg", "metadata.json", "manifest.json")
CLIENT_TIMEOUTS = dict(connect_timeout=5, read_timeout=120)


class ArtifactError(StorageError):
    """The artifact store cannot be reached, refuses us, or holds bytes that fail their checksum."""

    def __init__(self, problem: str, fix: str, cause: str = "unreachable"):
        super().__init__(problem, fix, cause, Path("."))


@dataclass(frozen=True)
class Stored:
    """Where an artifact's bytes live (`s3://…` or a local path) and what they are."""

    ref: str
    sha256: str
    size: int


class ArtifactStore(Protocol):
    kind: str

    @property
    def where(self) -> str: ...  # what messages call it (secrets masked)

    def put(self, path: Path, name: str, sha256: str | None = None) -> Stored: ...
    def fetch(self, ref: str, sha256: str | None) -> Path: ...
    def exists(self, ref: str) -> bool: ...
    def delete(self, ref: str) -> None: ...
    def check(self) -> None: ...


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket[/prefix]` → (bucket, prefix without slashes); ValueError says the expected shape."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc or "@" in parts.netloc or parts.query:
        raise ValueError("REELCREW_ARTIFACTS is empty (the output folder) or s3://bucket/prefix "
                         "(credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, never the URL)")
    return parts.netloc, parts.path.strip("/")


def masked(url: str | None) -> str:
    """A URL safe to print: a password (or a whole userinfo) in it is replaced by ****."""
    if not url:
        return ""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"****@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


# -- the local output folder ------------------------------------------------------------------------------------
class LocalFolder:
    """Today's behaviour: the files stay where the pipeline wrote them; a reference is the resolved path."""

    kind = "local"
    where = "the output folder"

    def put(self, path: Path, name: str, sha256: str | None = None) -> Stored:
        return Stored(str(Path(path).resolve()), sha256 or sha256_file(path), Path(path).stat().st_size)

    def fetch(self, ref: str, sha256: str | None) -> Path:
        path = Path(ref)
        if not path.exists():
            raise ArtifactError(f"{ref} is missing", "`reelcrew repair` fetches a clip again from its operation",
                                "missing")
        if sha256 and sha256_file(path) != sha256:
            raise ArtifactError(f"{ref} does not match its checksum in the ledger",
                                "`reelcrew repair` fetches a clip again from its operation", "corrupt")
        return path

    def exists(self, ref: str) -> bool:
        return Path(ref).exists()

    def delete(self, ref: str) -> None:
        Path(ref).unlink(missing_ok=True)

    def check(self) -> None:
        """The output folders are checked by the pre-flight's own `output_folders`."""


# -- S3 and S3-compatible stores ---------------------------------------------------------------------------------
class S3Store:
    """An S3 bucket (or MinIO, or any S3-compatible server) under a prefix, through boto3."""

    kind = "s3"

    def __init__(self, url: str, endpoint: str | None, cache: Path):
        self.url = url.rstrip("/")
        self.bucket, self.prefix = parse_s3_url(url)
        self.endpoint = endpoint or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        self.cache = cache
        self._client: Any = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return self.url + (f" at {masked(self.endpoint)}" if self.endpoint else "")

    @property
    def client(self) -> Any:
        """One boto3 client per store (clients are thread-safe); made on first use, so a local run never imports
        boto3."""
        with self._lock:
            if self._client is None:
                import boto3
                from botocore.config import Config

                region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
                config = Config(retries={"max_attempts": 3, "mode": "standard"}, **CLIENT_TIMEOUTS,
                                s3={"addressing_style": "path"} if self.endpoint else None)
                self._client = boto3.client("s3", endpoint_url=self.endpoint, region_name=region, config=config)
            return self._client

    def key_of(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def ref_of(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def _key(self, ref: str) -> str:
        bucket, key = parse_s3_url(ref)
        if bucket != self.bucket:
            raise ArtifactError(f"{ref} is in another bucket than the artifact store {self.where}",
                                "set REELCREW_ARTIFACTS to the store the ledger's references point at", "refused")
        return key

    def put(self, path: Path, name: str, sha256: str | None = None) -> Stored:
        """Upload once: an object with this name and checksum already there is kept (a redelivered task)."""
        path = Path(path)
        digest = sha256 or sha256_file(path)
        size = path.stat().st_size
        key = self.key_of(name)
        with self._errors(f"putting {path.name} into"):
            if self._holds(key, digest, size):
                return Stored(self.ref_of(key), digest, size)
            with open(path, "rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=key, Body=body, Metadata={"sha256": digest},
                                       ChecksumSHA256=base64.b64encode(bytes.fromhex(digest)).decode())
            if not self._holds(key, digest, size):
                raise ArtifactError(f"the artifact store {self.where} did not keep {key} as sent",
                                    "check the store's health; the next run puts it again", "refused")
        return Stored(self.ref_of(key), digest, size)

    def _holds(self, key: str, digest: str, size: int) -> bool:
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return head.get("ContentLength") == size and head.get("Metadata", {}).get("sha256") == digest

    def fetch(self, ref: str, sha256: str | None) -> Path:
        """The object in this worker's cache, checked against `sha256` (the ledger's); fetched at most twice."""
        key = self._key(ref)
        dest = self.cache / self.bucket / key
        if dest.exists() and (not sha256 or sha256_file(dest) == sha256):
            os.utime(dest)  # recently used: the cache cleaner removes the oldest first
            return dest
        dest.parent.mkdir(parents=True, exist_ok=True)
        got = None
        for _attempt in range(2):  # a second try covers bytes damaged on the way; a bad object fails twice
            tmp = part_path(dest)
            try:
                with self._errors(f"fetching {key} from"):
                    self.client.download_file(self.bucket, key, str(tmp))
                got = sha256_file(tmp)
                if not sha256 or got == sha256:
                    os.replace(tmp, dest)
                    return dest
            finally:
                tmp.unlink(missing_ok=True)
        raise ArtifactError(f"{ref} in the artifact store does not match the ledger's checksum "
                            f"(sha256 {got}, the ledger says {sha256}): refused",
                            "the clip is fetched again from its Veo operation by the next run (never paid twice); "
                            "a final is rendered again by `reelcrew assemble`", "corrupt")

    def exists(self, ref: str) -> bool:
        from botocore.exceptions import ClientError

        with self._errors("looking into"):
            try:
                self.client.head_object(Bucket=self.bucket, Key=self._key(ref))
            except ClientError as exc:
                if _code(exc) in ("404", "NoSuchKey", "NotFound"):
                    return False
                raise
        return True

    def delete(self, ref: str) -> None:
        with self._errors("deleting from"):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(ref))

    def check(self) -> None:
        """Before any spend: the bucket is there, and we may write and delete in it (a probe object)."""
        probe = self.key_of(f".reelcrew-probe-{temp_tag()}")
        with self._errors("checking"):
            self.client.head_bucket(Bucket=self.bucket)
            self.client.put_object(Bucket=self.bucket, Key=probe, Body=b"ok")
            self.client.delete_object(Bucket=self.bucket, Key=probe)

    def _errors(self, doing: str) -> AbstractContextManager[None]:
        return _s3_errors(self, doing)


@contextmanager
def _s3_errors(store: S3Store, doing: str) -> Iterator[None]:
    """Turns boto3's exceptions into an ArtifactError naming the store (masked) and the fix."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, PartialCredentialsError

    where = store.where
    try:
        yield
    except (NoCredentialsError, PartialCredentialsError):
        raise ArtifactError(f"no credentials for the artifact store {where}",
                            "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile) on every worker",
                            "refused") from None
    except ClientError as exc:
        code = _code(exc)
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and doing == "checking"):
            raise ArtifactError(f"the bucket {store.bucket} of the artifact store {where} does not exist",
                                f"create it (`aws s3 mb s3://{store.bucket}` or MinIO's console), or fix "
                                "REELCREW_ARTIFACTS", "refused") from None
        if code in ("404", "NoSuchKey", "NotFound"):
            raise ArtifactError(f"an object is missing from the artifact store {where} while {doing} it",
                                "the clip is fetched again from its Veo operation by the next run (never paid "
                                "twice); `reelcrew assemble` renders a final again", "missing") from None
        if code in ("403", "AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "Forbidden"):
            raise ArtifactError(f"the artifact store {where} refused our credentials ({code}) while {doing} it",
                                "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY and that they may read, write "
                                "and delete in the bucket", "refused") from None
        raise ArtifactError(f"the artifact store {where} answered {code} while {doing} it",
                            "check the store's health and REELCREW_ARTIFACTS, then run again", "refused") from None
    except BotoCoreError as exc:
        raise ArtifactError(f"cannot reach the artifact store {where} while {doing} it ({type(exc).__name__})",
                            "start the S3 server, or fix REELCREW_ARTIFACTS_ENDPOINT / AWS_ENDPOINT_URL, then run "
                            "again (receipts are kept: nothing is paid twice)") from None


def _code(exc: Any) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


# -- the hooks the pipeline and the generator call -------------------------------------------------------------
_STORES: dict[tuple, ArtifactStore] = {}
_STORES_LOCK = threading.Lock()


def store_for(settings: Any) -> ArtifactStore:
    """The settings' store, one per (URL, endpoint, cache) in a process."""
    url = settings.reelcrew_artifacts
    if not url:
        return LocalFolder()
    ident = (url, settings.reelcrew_artifacts_endpoint, settings.cache_dir)
    with _STORES_LOCK:
        if ident not in _STORES:
            _STORES[ident] = S3Store(url, settings.reelcrew_artifacts_endpoint, settings.cache_dir)
        return _STORES[ident]


def put_clip(settings: Any, key: str, path: Path, sha256: str) -> str:
    """A validated clip into the store (named by its clip key: one object however many productions use it)."""
    return store_for(settings).put(path, f"clips/{key}{Path(path).suffix or '.mp4'}", sha256).ref


def local_clip(settings: Any, clip: Any, wanted: Path | None = None) -> Path | None:
    """A local copy of a done clip: `wanted` or its recorded path when the file is there and matches its checksum,
    else the store's object fetched into this worker's cache; None when neither has it."""
    for candidate in (wanted, Path(clip.path) if clip.path else None):
        if candidate is not None and candidate.exists() and (not clip.sha256 or sha256_file(candidate) == clip.sha256):
            return candidate
    ref = getattr(clip, "artifact", None)
    if not ref or not ref.startswith("s3://"):
        return None
    path = store_for(settings).fetch(ref, clip.sha256)
    log.info("clip %s fetched from %s", clip.key, ref, extra={"production_id": clip.production_id,
                                                              "clip_index": clip.index})
    return path


def put_final(settings: Any, pid: str, folder: Path) -> dict[str, Stored]:
    """The final and its side files into the store, under `productions/<id>/` (the local paths by default)."""
    store = store_for(settings)
    return {name: store.put(folder / name, f"productions/{pid}/{name}")
            for name in FINAL_FILES if (folder / name).exists()}


def check(settings: Any) -> None:
    """The pre-flight's question: can this worker reach the store and write in it?"""
    store_for(settings).check()


# -- the worker's cache --------------------------------------------------------------------------------------------
@dataclass
class CacheCleaning:
    removed: list[Path]
    freed_bytes: int


def clean_cache(settings: Any, dry_run: bool = False, now: float | None = None,
                max_age: float | None = None) -> CacheCleaning:
    """Fetched copies older than REELCREW_CACHE_MAX_AGE_HOURS (or `max_age` seconds, `reelcrew prune`'s age when
    shorter) go, then the oldest until the cache fits in REELCREW_CACHE_MAX_MB. Only the cache folder is touched:
    the output folder and the store never are (a store's objects are shared by every worker: its lifecycle rules
    expire them)."""
    root = settings.cache_dir
    if not root.is_dir():
        return CacheCleaning([], 0)
    now = time.time() if now is None else now
    files = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        if path.name.startswith(".") and path.name.endswith(".part") and not leftover_part(path):
            continue  # another process is fetching it right now
        try:
            stat = path.stat()
        except OSError:  # removed meanwhile (another worker's cleaning)
            continue
        files.append((stat.st_mtime, stat.st_size, path))
    files.sort()
    max_age = min(settings.reelcrew_cache_max_age_hours * 3600, max_age if max_age is not None else float("inf"))
    budget = settings.reelcrew_cache_max_mb * 2**20
    total = sum(size for _, size, _ in files)
    removed, freed = [], 0
    for mtime, size, path in files:
        if now - mtime <= max_age and total <= budget:
            continue
        if not dry_run:
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # a cache that cannot be cleaned never fails a render
                log.warning("could not remove %s from the cache: %s", path, exc)
                continue
        removed.append(path)
        freed += size
        total -= size
    return CacheCleaning(removed, freed)
