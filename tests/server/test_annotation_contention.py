"""50 annotators at once against a real server: no item gets more than `overlap` distinct annotators,
nobody labels an item twice, and every item completes, though some annotators release, skip, or walk
away holding a lease."""

from __future__ import annotations

import random
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from prodloop.server import create_api_key
from prodloop.store.schema import labels, queue_items
from tests.conftest import LiveServer, auth

ANNOTATORS = 50
ITEMS = 120
OVERLAP = 3
LEASE_SECONDS = 10
#: Annotators who label a few items, then walk away holding a lease (every tenth).
LEAVERS = frozenset(range(0, ANNOTATORS, 10))
OPTIONS = ("billing", "refund", "bug", "other")
SCHEMA = {
    "name": "contention",
    "fields": [{"name": "intent", "type": "categorical", "options": list(OPTIONS)}],
}


def answer(item_id: int) -> dict[str, Any]:
    # Everyone gives the same answer for an item, so that items complete as done, not review.
    return {"intent": OPTIONS[item_id % len(OPTIONS)]}


def work(client: httpx.Client, key: str, seed: int, mischief: bool) -> Counter[tuple[str, int]]:
    """Lease and label until nothing is left. With ``mischief``, sometimes release or skip the item;
    an annotator in LEAVERS labels a few items and then leaves its last lease unlabelled. Returns how
    often each call got each status."""
    statuses: Counter[tuple[str, int]] = Counter()
    rng = random.Random(seed)
    headers = auth(key)
    labelled = 0
    while True:
        leased = client.post("/api/v1/queues/contention/lease", headers=headers)
        statuses["lease", leased.status_code] += 1
        if leased.status_code != 200:
            return statuses
        item = leased.json()["item"]["id"]
        if mischief and seed in LEAVERS and labelled >= 2:
            return statuses  # walks away: the lease runs out by itself
        roll = rng.random() if mischief else 1.0
        if roll < 0.06:
            response = client.post(f"/api/v1/items/{item}/release", headers=headers)
            statuses["release", response.status_code] += 1
        elif roll < 0.12:
            response = client.post(f"/api/v1/items/{item}/skip", json={"reason": "unsure"}, headers=headers)
            statuses["skip", response.status_code] += 1
        else:
            response = client.post(
                f"/api/v1/items/{item}/labels", json={"value": answer(item)}, headers=headers
            )
            statuses["label", response.status_code] += 1
            labelled += 1


def run_annotators(url: str, keys: list[str], mischief: bool) -> Counter[tuple[str, int]]:
    statuses: Counter[tuple[str, int]] = Counter()
    limits = httpx.Limits(max_connections=ANNOTATORS, max_keepalive_connections=ANNOTATORS)
    with (
        httpx.Client(base_url=url, timeout=60, limits=limits) as client,
        ThreadPoolExecutor(max_workers=ANNOTATORS) as pool,
    ):
        jobs = [pool.submit(work, client, key, n, mischief) for n, key in enumerate(keys)]
        for job in jobs:
            statuses += job.result()
    return statuses


def test_fifty_annotators_at_once(
    engine: sa.Engine,
    live_server: LiveServer,
    admin_key: str,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    from prodloop.annotation import leases

    admin = httpx.Client(base_url=live_server.url, headers=auth(admin_key), timeout=60)
    request.addfinalizer(admin.close)
    assert admin.post("/api/v1/schemas", json=SCHEMA).status_code == 201
    queue = {
        "name": "contention",
        "schema": "contention@1",
        "overlap": OVERLAP,
        "lease_seconds": LEASE_SECONDS,
    }
    assert admin.post("/api/v1/queues", json=queue).status_code == 201
    rows = [{"id": f"item-{n}", "input": f"question {n}", "priority": n % 5} for n in range(ITEMS)]
    assert admin.post("/api/v1/queues/contention/items", json={"items": rows}).json()["added"] == ITEMS
    keys = [create_api_key(engine, "default", "annotator", name=f"annotator-{n}") for n in range(ANNOTATORS)]

    began = time.monotonic()
    first = run_annotators(live_server.url, keys, mischief=True)
    # Leavers hold leases that have not expired: the items they hold are not complete yet, unless
    # the machine is so slow that the leases ran out during the first phase.
    held = admin.get("/api/v1/queues/contention").json()["progress"]
    if time.monotonic() - began < LEASE_SECONDS - 1:
        assert held["leased_now"] > 0 and held["complete"] is False

    # Time passes beyond the lease: the leavers' items go back to the queue by themselves.
    ahead = (LEASE_SECONDS + 1) * 1_000_000_000
    monkeypatch.setattr(leases, "time", SimpleNamespace(time_ns=lambda: time.time_ns() + ahead))
    stayers = [key for n, key in enumerate(keys) if n not in LEAVERS]
    second = run_annotators(live_server.url, stayers, mischief=False)
    admin_progress = admin.get("/api/v1/queues/contention").json()["progress"]

    statuses = first + second
    unexpected = {call: n for call, n in statuses.items() if call[1] not in (200, 201, 204)}
    assert unexpected == {}, f"unexpected answers: {unexpected}"
    assert statuses["label", 201] == ITEMS * OVERLAP
    assert statuses["release", 200] > 0 and statuses["skip", 200] > 0

    with engine.connect() as connection:
        per_item = connection.execute(
            sa.select(
                labels.c.item_id, sa.func.count(), sa.func.count(sa.distinct(labels.c.annotator_id))
            ).group_by(labels.c.item_id)
        ).all()
        items = connection.execute(
            sa.select(queue_items.c.id, queue_items.c.status, queue_items.c.n_labels)
        ).all()
    assert len(per_item) == ITEMS
    too_many = [(item, people) for item, _, people in per_item if people > OVERLAP]
    assert too_many == [], "items labelled by more than `overlap` distinct annotators"
    twice = [(item, n, people) for item, n, people in per_item if n != people]
    assert twice == [], "an annotator labelled an item twice"
    assert {people for _, _, people in per_item} == {OVERLAP}
    assert {(status, n) for _, status, n in items} == {("done", OVERLAP)}
    assert admin_progress["complete"] is True and admin_progress["labels_needed"] == 0
    assert admin_progress["done"] == ITEMS
