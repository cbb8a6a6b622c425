"""Claims keep their leases fresh while their work runs: one heartbeat thread per process.

A claim (of a clip, or of a production's stages) is held by an owner id (`files.new_owner()`) until
`lease_until`. On this host a dead owner's claims are taken over at once (its pid is gone); on
another host only when the lease expires. So leases are short and renewed here, every third of
their length, for as long as the work that holds them is registered.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger("reelcrew.leases")


class Heartbeat:
    """Renews the leases of every registered owner every `ttl / 3` seconds until stopped."""

    def __init__(self, store, ttl: float):
        self.store, self.ttl = store, ttl
        self._owners: set[str] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def hold(self, owner: str) -> None:
        with self._lock:
            self._owners.add(owner)
            if self._thread is None:  # the thread runs only while some claim is held
                self._thread = threading.Thread(target=self._beat, name="lease-heartbeat", daemon=True)
                self._thread.start()

    def drop(self, owner: str) -> None:
        with self._lock:
            self._owners.discard(owner)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _beat(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            with self._lock:
                owners = list(self._owners)
                if not owners:
                    self._thread = None
                    return
            if owners:
                try:
                    self.store.renew_leases(owners, self.ttl)
                except Exception as exc:  # a missed beat is survivable: the lease is three beats long
                    log.warning("lease renewal failed: %s", exc)
