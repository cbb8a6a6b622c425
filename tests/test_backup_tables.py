"""Backups and `ledger import` cover every table of the ledger (issue 12/13 leftovers): a table added to the schema
and forgotten by the counts or the import fails here, and a ledger with a row in every table comes through a
backup's counts and an import (SQLite into SQLite or PostgreSQL) whole."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import Boolean, Float, Integer, insert

from reelcrew.store import COPIED_AS_IS, IMPORTED_BY_RULE, NOT_IMPORTED, TABLE_LABELS, Store, meta
from tests.cli_helpers import cli_in_process
from tests.video_helpers import ledger


def test_every_table_of_the_schema_is_counted_and_imported_or_left_out_for_a_reason():
    tables = set(meta.tables) - {"schema_info"}
    assert set(TABLE_LABELS) == tables, "a table is missing from store.TABLE_LABELS (backup counts, import)"
    copied = {table.name for table in COPIED_AS_IS}
    ruled = [copied, set(IMPORTED_BY_RULE), set(NOT_IMPORTED)]
    assert set().union(*ruled) == tables | {"schema_info"}, "a table has no import rule in store.py"
    assert sum(len(names) for names in ruled) == len(tables) + 1, "a table has two import rules"
    assert len(set(TABLE_LABELS.values())) == len(TABLE_LABELS)


def _fill_every_table(store: Store, mark: str) -> None:
    """One row in every table (beside schema_info), each value made up from its column's type."""
    now = time.time()
    with store._write() as conn:
        for table in meta.sorted_tables:
            if table.name == "schema_info":
                continue
            row = {}
            for column in table.columns:
                if column is table.autoincrement_column:
                    continue  # numbered by the database
                if isinstance(column.type, Boolean):
                    row[column.name] = False
                elif isinstance(column.type, Float):
                    row[column.name] = now
                elif isinstance(column.type, Integer):
                    row[column.name] = 1
                else:
                    row[column.name] = f"{mark}-{table.name}-{column.name}"
            if table.name == "dead_letters":
                row["arguments"] = json.dumps({"production_id": "p"})
            conn.execute(insert(table).values(**row))


@pytest.mark.usefixtures("ledger_db")
def test_a_backup_counts_and_ledger_import_copies_every_table(tmp_path):
    from reelcrew.service.backup import backup
    from reelcrew.settings import load_settings

    old = Store(f"sqlite:///{tmp_path / 'old.db'}", journal=tmp_path / "old.jsonl")
    _fill_every_table(old, "old")
    made = backup(load_settings(reelcrew_output_dir=tmp_path / "out"), old)
    assert made.counts == {label: 1 for label in TABLE_LABELS.values()}  # counted in the copy itself
    old.close()

    here = ledger()  # SQLite in the test's state folder, or PostgreSQL
    counts = here.import_ledger(str(tmp_path / "old.db"))
    imported = {TABLE_LABELS[name] for name in TABLE_LABELS if name not in NOT_IMPORTED}
    assert {label for label, n in counts.items() if n == 1} == imported
    assert here.counts() == {label: int(label in imported) for label in TABLE_LABELS.values()}
    assert [chain["runner"] for chain in here.task_chains()] == [None]  # a runner of the old ledger runs nothing
    assert here.dead_letters(include_retried=True)[0]["arguments"] == {"production_id": "p"}
    again = here.import_ledger(str(tmp_path / "old.db"))
    assert not any(again.values()), again  # nothing twice
    assert here.counts() == {label: int(label in imported) for label in TABLE_LABELS.values()}


def test_the_import_command_prints_the_newer_tables_too(tmp_path):
    old = Store(f"sqlite:///{tmp_path / 'old.db'}", journal=tmp_path / "old.jsonl")
    _fill_every_table(old, "old")
    old.close()
    result = cli_in_process("ledger", "import", str(tmp_path / "old.db"))
    assert result.returncode == 0, result.stderr
    for label in ("dead letters", "task chains", "artifacts", "submit attempts", "operations", "alerts sent",
                  "follow-ups", "tokens"):
        assert f"1 {label}" in result.stderr
    assert "0 quota states" not in result.stderr and "quota states" not in result.stderr
