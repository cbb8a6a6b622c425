"""The service layer: plan, estimate, approve, run, status, retry, repair, cost and assemble as library
functions with typed results (`reelcrew.results`). The CLI (`reelcrew.cli`) and the coming web API are faces
over these: they parse and format, nothing more. The pipeline underneath stays the stage runner."""

from reelcrew.service.ledger import import_ledger, open_store, require_production
from reelcrew.service.productions import (
    adopt_edits,
    approve,
    cancel,
    estimate,
    exit_code,
    plan,
    prepare_retry,
    retry,
    run,
    status,
    summarize,
    unfinished,
)
from reelcrew.service.upkeep import assemble_files, cost, repair

__all__ = ["adopt_edits", "approve", "assemble", "assemble_files", "cancel", "cost", "estimate", "exit_code",
           "import_ledger", "open_store", "plan", "prepare_retry", "repair", "require_production", "retry", "run",
           "status", "summarize", "unfinished"]


def assemble(settings, production_id=None, *, clips=(), captions=(), aspect="16:9", output=None, progress=None,
             store=None):
    """Re-cut without paying again: a production from its clips (its final is rendered anew), or loose files."""
    from pathlib import Path

    from reelcrew.identity import require_same_mode

    if production_id:
        store = store or open_store(settings)
        prod = require_production(store, production_id)
        adopt_edits(settings, [prod], store)  # an invalid edit raises here, before the final is dropped
        require_same_mode(settings, prod)
        return run(settings, [prod], progress=progress, store=store, recut=True)
    return assemble_files(settings, list(clips), list(captions), aspect, Path(output or "out.mp4"))
