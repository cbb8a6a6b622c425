"""Cancel a production: nothing new is submitted for it; operations already at Veo finish and are recorded.

A minimal cancel for `reelcrew serve` (the "outcomes" work may grow it): the status is set first, and the
ledger's clip claim refuses any new submit for a cancelled production in the same transaction that would
have taken it (`Store.claim_clip`), so a running batch stops paying for it without being interrupted."""

from __future__ import annotations

from reelcrew.errors import InputError
from reelcrew.models import TERMINAL_STATUSES, ProductionStatus
from reelcrew.service.ledger import require_production
from reelcrew.store import Store


def cancel(store: Store, production_id: str, actor: str = "cli") -> bool:
    """Mark the production cancelled (False when it had already ended: done, failed, cancelled...)."""
    prod = require_production(store, production_id)
    if prod.status in TERMINAL_STATUSES:
        if prod.status == ProductionStatus.cancelled:
            return False
        raise InputError(f"production {production_id} is already {prod.status.value}",
                         "only a production that has not ended can be cancelled")
    store.set_production_status(production_id, ProductionStatus.cancelled, None, f"cancelled by {actor}")
    store.log_action("cancelled", f"cancelled by {actor}: in-flight operations finish, nothing new is submitted",
                     actor, production_id)
    return True


def is_cancelled(store: Store, production_id: str) -> bool:
    prod = store.production(production_id)
    return bool(prod and prod.status == ProductionStatus.cancelled)
