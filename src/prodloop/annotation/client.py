"""A Python client for annotators and model judges, over the annotation REST API.

A model judge is an annotator of kind ``model`` with a key of its own (``prodloop annotator create NAME
--kind model``, or ``POST /api/v1/annotators``). With that key it pulls items and labels them like anyone
else; its labels count in agreement, gold accuracy and aggregation as the judge's::

    with AnnotatorClient("http://localhost:8000", judge_key) as client:
        client.label_queue("support-intent", lambda item: {"intent": classify(item.input)})

``transport=`` takes any httpx transport, so tests and notebooks can call an app in-process.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from prodloop.capture.sdk import _raise_for_error
from prodloop.errors import Conflict, ProdloopError


class JudgeFailed(ProdloopError):
    """The judge given to :meth:`AnnotatorClient.label_queue` raised; the item's lease was given back.
    The judge's own exception is the ``__cause__``."""

    status = 500
    code = "judge_failed"


@dataclass(frozen=True)
class LeasedItem:
    """An item leased to the caller: what an annotator sees of it (never others' labels, never whether
    it is gold), the schema version to label it with (``name@version``) and when the lease expires."""

    id: int
    queue: str
    schema: str
    lease_expires_at: datetime
    trace_id: str | None = None
    priority: int = 0
    input: Any = None
    output: Any = None
    context: Any = None
    metadata: dict[str, Any] = field(default_factory=dict)
    suggestion: Any = None

    @classmethod
    def from_response(cls, document: Mapping[str, Any]) -> LeasedItem:
        """From the body of ``POST /api/v1/queues/{queue}/lease``."""
        item = document["item"]
        return cls(
            id=int(item["id"]),
            queue=str(item["queue"]),
            schema=str(document["schema"]),
            lease_expires_at=datetime.fromisoformat(document["lease"]["expires_at"]),
            trace_id=item.get("trace_id"),
            priority=int(item.get("priority") or 0),
            input=item.get("input"),
            output=item.get("output"),
            context=item.get("context"),
            metadata=dict(item.get("metadata") or {}),
            suggestion=item.get("suggestion"),
        )


def _judge_name(judge: Callable[..., Any]) -> str:
    return str(getattr(judge, "__qualname__", None) or type(judge).__name__)


class AnnotatorClient:
    """Lease, label, skip, release and escalate items as the annotator behind ``key``.

    Errors come back as :class:`~prodloop.errors.ProdloopError` subclasses carrying the server's
    message and detail (a label that breaks the schema is a ``ValidationFailed`` naming the field).
    """

    def __init__(
        self,
        base_url: str,
        key: str,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
    ) -> None:
        self._http = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers={"Authorization": f"Bearer {key}"},
            transport=transport,
            timeout=timeout,
        )

    def __enter__(self) -> AnnotatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _post(self, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        response = self._http.post(path, json=body) if body is not None else self._http.post(path)
        _raise_for_error(response)
        return response

    # the annotator's loop
    def lease(self, queue: str | int) -> LeasedItem | None:
        """Lease the caller's next item of ``queue`` (by name or id), or None when nothing is left for
        it. Holding an unexpired lease in the queue already gives that item again, lease renewed."""
        response = self._post(f"/api/v1/queues/{quote(str(queue), safe='')}/lease")
        if response.status_code == 204:
            return None
        return LeasedItem.from_response(response.json())

    def submit(self, item_id: int, value: Mapping[str, Any]) -> dict[str, Any]:
        """Label a leased item: one value per schema field. Returns ``{"label": …}``."""
        return self._post(f"/api/v1/items/{int(item_id)}/labels", {"value": dict(value)}).json()  # type: ignore[no-any-return]

    def skip(self, item_id: int, reason: str | None = None) -> dict[str, Any]:
        """Give the item back and never be offered it again; others still label it."""
        return self._post(f"/api/v1/items/{int(item_id)}/skip", {"reason": reason}).json()  # type: ignore[no-any-return]

    def release(self, item_id: int) -> dict[str, Any]:
        """Give a leased item back unlabelled (the caller may be offered it again)."""
        return self._post(f"/api/v1/items/{int(item_id)}/release").json()  # type: ignore[no-any-return]

    def escalate(self, item_id: int, note: str, field: str | None = None) -> dict[str, Any]:
        """Flag an item for a reviewer with a note (about one schema field, or the whole item)."""
        body = {"note": note, "field": field}
        return self._post(f"/api/v1/items/{int(item_id)}/escalate", body).json()  # type: ignore[no-any-return]

    def correct(self, label_id: int, value: Mapping[str, Any], reason: str) -> dict[str, Any]:
        """Correct one of the caller's labels: returns the new version that supersedes it."""
        body = {"value": dict(value), "reason": reason}
        return self._post(f"/api/v1/labels/{int(label_id)}/corrections", body).json()  # type: ignore[no-any-return]

    def history(self, item_id: int) -> dict[str, Any]:
        """Every label version of an item with who, when and why (an annotator sees only their own)."""
        response = self._http.get(f"/api/v1/items/{int(item_id)}/history")
        _raise_for_error(response)
        return response.json()  # type: ignore[no-any-return]

    def label_queue(
        self,
        queue: str | int,
        judge: Callable[[LeasedItem], Mapping[str, Any] | None],
        *,
        limit: int | None = None,
    ) -> int:
        """Lease, judge and submit until the queue has nothing left for the caller (or ``limit`` items,
        labelled or skipped, have been handled); returns how many items were labelled.

        ``judge`` gets each :class:`LeasedItem` and returns the label value, or None to skip the item.
        When the judge raises, the item's lease is given back (so another annotator can take it at
        once) and :class:`JudgeFailed` is raised from the judge's exception. When the server refuses
        the label (a value that breaks the schema), the lease is given back too and the server's error
        is raised as it is. A label refused because the lease expired and others took the item is
        dropped, and the run goes on with the next item.
        """
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be at least 0, got {limit}")
        handled = labelled = 0
        while limit is None or handled < limit:
            item = self.lease(queue)
            if item is None:
                break
            try:
                value = judge(item)
            except Exception as exc:
                self._release_quietly(item.id)
                raise JudgeFailed(
                    f"judge {_judge_name(judge)} failed on item {item.id} of queue {item.queue!r}: "
                    f"{type(exc).__name__}: {exc}; the item was given back to the queue",
                    {"item": item.id, "queue": item.queue, "error": f"{type(exc).__name__}: {exc}"},
                ) from exc
            except BaseException:
                self._release_quietly(item.id)
                raise
            if value is None:
                self.skip(item.id, "the judge gave no label")
            else:
                try:
                    self.submit(item.id, value)
                except Conflict as exc:
                    # The lease ran out while the judge thought and others took the item: nothing is
                    # lost, the queue has moved on, and so does the run.
                    if "expired" not in exc.message:
                        self._release_quietly(item.id)
                        raise
                    handled += 1
                    continue
                except BaseException:
                    self._release_quietly(item.id)
                    raise
                labelled += 1
            handled += 1
        return labelled

    def _release_quietly(self, item_id: int) -> None:
        """Give a lease back while another error is on its way out: that error is the one to report."""
        try:
            self.release(item_id)
        except (ProdloopError, httpx.HTTPError):
            pass
