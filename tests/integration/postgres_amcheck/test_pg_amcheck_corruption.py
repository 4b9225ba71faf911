"""Real corruption: index files overwritten while the cluster is down, found by pg_amcheck after it starts again.

One stop/start for the whole file: ``ledger_broken`` gets a key of its primary key replaced by a smaller one in the
middle of a leaf page (keys out of order), ``ledger_lost`` gets keys of a plain index replaced by their successors
(order kept, but those rows no longer have an entry: only heapallindexed sees it).
"""

from __future__ import annotations

import struct
import typing as t
from pathlib import Path

import pytest

from amcheck_cluster import Cluster
from amcheck_helpers import Amcheck, create_service_db

LEDGER = """
CREATE TABLE ledger (id bigint PRIMARY KEY, ref bigint NOT NULL);
CREATE INDEX ledger_ref_idx ON ledger (ref);
INSERT INTO ledger SELECT 7000000000 + g * 7, 9000000000 + g * 11 FROM generate_series(1, 3000) g;
"""


def key_bytes(value: int) -> bytes:
    return struct.pack("<q", value)


def replace_once(path: Path, old: int, new: int) -> None:
    """Overwrite the only occurrence of the 8-byte key ``old`` in the relation file with ``new``."""
    data = bytearray(path.read_bytes())
    offsets = [i for i in range(len(data)) if data.startswith(key_bytes(old), i)]
    assert len(offsets) == 1, f"key {old} is in {path} {len(offsets)} times (a page boundary): pick another"
    data[offsets[0]:offsets[0] + 8] = key_bytes(new)
    path.write_bytes(bytes(data))


def index_file(cluster: Cluster, db: str, index: str) -> Path:
    (relative,) = cluster.execute("SELECT pg_relation_filepath(%s::regclass)", db, (index,))[0]
    return cluster.data / relative


@pytest.fixture(scope="module")
def damaged(cluster: Cluster) -> t.Iterator[dict[str, str]]:
    dbs = {"broken": create_service_db(cluster, amcheck=True), "lost": create_service_db(cluster, amcheck=True)}
    for db in dbs.values():
        cluster.execute(LEDGER, db)
    files = {"broken": index_file(cluster, dbs["broken"], "ledger_pkey"), "lost": index_file(cluster, dbs["lost"], "ledger_ref_idx")}
    cluster.stop()  # the shutdown checkpoint writes every page to its file
    try:
        replace_once(files["broken"], 7000000000 + 1500 * 7, 7000000000 + 3 * 7)
        for row in range(400, 2800, 300):  # several lost entries: heapallindexed's Bloom filter misses one only rarely
            replace_once(files["lost"], 9000000000 + row * 11, 9000000000 + (row + 1) * 11)
    finally:
        cluster.start()
    yield dbs
    for db in dbs.values():
        cluster.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def test_corrupt_index_fails_the_module_naming_it(amcheck: Amcheck, damaged: dict[str, str]) -> None:
    db = damaged["broken"]
    result = amcheck(db)

    assert result["failed"] is True
    assert result["msg"].startswith(f"amcheck found corruption in database '{db}': index public.ledger_pkey (table public.ledger): "
                                    'item order invariant violated for index "ledger_pkey"')
    assert [c["index"] for c in result["corrupt"]] == ["public.ledger_pkey"]
    assert result["corrupt"][0]["sqlstate"] == "XX002" and result["corrupt"][0]["detail"]
    assert "public.ledger_ref_idx" in result["indexes"] and "public.customers_pkey" in result["indexes"]
    assert [c["index"] for c in result["checks"] if not c["ok"]] == ["public.ledger_pkey"], "every other index is checked, intact"

    in_check_mode = amcheck(db, check=True)
    assert in_check_mode["failed"] is True and in_check_mode["corrupt"] == result["corrupt"]


def test_lost_index_entries_are_found_with_heapallindexed(amcheck: Amcheck, damaged: dict[str, str]) -> None:
    db = damaged["lost"]
    structure_only = amcheck(db)
    assert structure_only["rc"] == 0, "the index structure itself is intact"

    result = amcheck(db, heapallindexed=True)

    assert result["failed"] is True
    assert [c["index"] for c in result["corrupt"]] == ["public.ledger_ref_idx"]
    assert 'lacks matching index tuple within index "ledger_ref_idx"' in result["corrupt"][0]["message"]
    assert "index public.ledger_ref_idx (table public.ledger)" in result["msg"]
