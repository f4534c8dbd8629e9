"""Guardrail findings shared across workers and replicas, through the budget store.

Each worker remembers the findings of the texts its guardrails read (guardrails/known.py),
so an agent's history, resent every turn, is read once. A session's turns land on any
worker of any replica, though: one that has not seen the session would read its whole
history again, and past `max_scan_chars` of it refuse the turn. So a worker publishes the
findings of the long texts it read (in the store: SQLite for the workers of one host,
Redis across replicas; keyed by a digest of the text and of the guardrail's rules, never
holding the text), and a worker facing much text it does not know asks the store first.
"""

from __future__ import annotations

import logging
import time

from ...guardrails.known import Lookup, decode_findings, encode_findings, known_findings, learn
from ...observability import metrics
from ...pipeline.call import Call
from ...store import StoreUnavailable, maybe_await

log = logging.getLogger("extproc.guardrails")

FINDINGS_KIND = "guardrail_findings"
# Unknown text below this is read here: the store's round trip would cost more than the read.
LOOKUP_CHARS = 65_536
# Texts shorter than this are not published (a question, a short answer: cheap to read again).
PUBLISH_CHARS = 4_096
# How long the store keeps a text's findings: an agent session's length, and then some.
KEEP_S = 86_400


class Published:
    """The findings this call's guardrails made of long texts, to publish once it is answered."""
    __slots__ = ("entries", "fetched")

    def __init__(self) -> None:
        self.entries: list[tuple[str, str]] = []
        self.fetched: set[bytes] = set()


class SharedFindings:
    def __init__(self, store) -> None:
        self.store = store

    async def fetch(self, call: Call, lookup: Lookup) -> list[tuple[bytes, int]]:
        """The long texts of a guardrail's `lookup` this worker did not know, after asking the
        store when that is much (what it taught is in `lookup` then)."""
        # Shorter texts are never published, so the store cannot know them.
        missing = lookup.unknown(min_chars=PUBLISH_CHARS)
        if self.store is None or sum(length for _, length in missing) < LOOKUP_CHARS:
            return missing
        try:
            found = await maybe_await(self.store.get_records(FINDINGS_KIND, [key.hex() for key, _ in missing]))
        except StoreUnavailable as error:
            metrics.child(metrics.store_errors, "findings").inc()
            log.warning("store unavailable for guardrail findings (request %s): %s", call.request_id, error)
            return missing
        fetched = call.own(Published).fetched
        for name, value in found.items():
            findings = decode_findings(value)
            if findings is not None:
                key = bytes.fromhex(name)
                learn(key, findings)
                fetched.add(key)
        if fetched:
            lookup.learned()
        return missing

    def read(self, call: Call, missing: list[tuple[bytes, int]]) -> None:
        """After the guardrail's check: what it now knows of the long texts it did not."""
        if self.store is None:
            return
        published = call.own(Published)
        for key, length in missing:
            if length >= PUBLISH_CHARS and key not in published.fetched:
                findings = known_findings(key)
                if findings is not None:
                    published.entries.append((key.hex(), encode_findings(findings)))

    def publish(self, call: Call):
        """None when the call found nothing to share, else an awaitable of the write."""
        published = call.owned(Published)
        if published is None or not published.entries:
            return None
        return self._publish(call, published)

    async def _publish(self, call: Call, published: Published) -> None:
        try:
            await maybe_await(self.store.put_records(FINDINGS_KIND, published.entries, time.time() + KEEP_S))
        except StoreUnavailable as error:
            metrics.child(metrics.store_errors, "findings").inc()
            log.warning("store unavailable for guardrail findings (request %s): %s", call.request_id, error)
