"""What a worker could not write to the budget store, kept in a file until it can.

While the store is unreachable a worker's allotments (allotments.py) keep in memory what
its calls spent and the settles that failed, and retry them at every exchange. This
journal puts that state in the state directory after each failed exchange (every 0.5 s
while the store is down), so a worker that stops or dies during an outage does not take it with it: a
worker of the same gateway that starts later (or any of them, every ORPHAN_SCAN_S) finds
the journal of a holder that is gone and writes it to the store in that holder's name.

Exactly once: the store's exchange takes a holder's spend as its running total (Redis
keeps what each holder already added; SQLite's transaction is all or nothing) and a
deferred settle by its reservation (one already settled is not settled again), so a
journal written twice, or written for an exchange whose reply was lost, adds nothing
twice. A journal's owner holds an flock on `pending-<holder>.lock` while it lives; only a
journal whose lock can be taken is adopted. The file names carry no secret: the store is
named by a digest of its URL or path.

A worker also keeps a live journal (live_journal.py), memory-mapped and written as it
goes: its counters' spend since the last exchange and its calls in flight. It holds the
lock from its start, so a worker killed with the store up leaves it too: its taker logs
the calls it had in flight (`on_lost_calls`) and writes its spend, which hands its
allotment back at once rather than when its lease ends.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import os
import time
from dataclasses import dataclass

from .base import Exchange
from .live_journal import LiveJournal, forget_calls, read_live

log = logging.getLogger("extproc.journal")

ORPHAN_SCAN_S = 10.0
_PREFIX = "pending-"


def store_digest(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:16]


@dataclass(slots=True)
class Orphan:
    """A gone holder's journal, taken (its lock held) until the store has it all."""
    holder: str
    items: list[Exchange]
    path: str
    lock_fd: int
    lost_calls: list[tuple[dict, float]] = ()    # calls it had in flight: (identity, started)


class Journal:
    def __init__(self, directory: str, holder: str, store_name: str, live: bool = False) -> None:
        """`live`: keep a live journal from now (a worker's; its lock taken at once)."""
        self.directory = directory
        self.holder = holder
        self.store = store_digest(store_name)
        self.path = os.path.join(directory, f"{_PREFIX}{holder.replace(':', '-')}.json")
        self._lock_fd: int | None = None
        self._written = 0.0             # monotonic time of the last write (0: no file)
        self._scanned = -ORPHAN_SCAN_S
        self._failing = False
        self.live: LiveJournal | None = None
        if live:
            try:
                self._lock()
                self.live = LiveJournal(self.path[:-len(".json")] + ".live", holder, self.store)
            except OSError as error:
                log.error("the live journal of calls in flight could not be made (%s): %s", self.path, error)

    def _lock(self) -> None:
        if self._lock_fd is None:
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
            fd = os.open(self.path[:-len(".json")] + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                raise
            self._lock_fd = fd

    # --- this worker's own -------------------------------------------------------

    def write(self, items: list[Exchange]) -> None:
        """Replaces the journal with `items` (what the store has not had yet)."""
        try:
            self._lock()
            body = json.dumps({"holder": self.holder, "store": self.store,
                               "items": [_item(item) for item in items]})
            temporary = self.path + ".tmp"
            with open(os.open(temporary, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600), "w") as file:
                file.write(body)
            os.replace(temporary, self.path)
            self._written = time.monotonic()
            self._failing = False
        except OSError as error:
            if not self._failing:         # once until a write succeeds (it is tried every 0.5 s)
                log.error("the journal of spend the store has not had could not be written (%s): %s",
                          self.path, error)
            self._failing = True

    def clear(self) -> None:
        """The store has everything: no journal."""
        if not self._written:
            return
        self._written = 0.0
        _unlink(self.path)

    def close(self) -> None:
        """The holder is done and the store has everything: no file is left behind."""
        if self._lock_fd is not None and not self._written:
            if self.live is not None:
                self.live.close(unlink=True)
                self.live = None
            _unlink(self.path[:-len(".json")] + ".lock")
        self.release()

    def release(self) -> None:
        """Lets a successor adopt what is left (the holder is done: it closed)."""
        if self.live is not None:
            self.live.close(unlink=False)
            self.live = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            self._written = 0.0

    # --- gone holders' ----------------------------------------------------------

    def orphans(self, known: set[str], now: bool = False) -> list[Orphan]:
        """Journals of this store whose holders are gone, taken (their lock held); every
        ORPHAN_SCAN_S at most, unless `now`. `known`: holders already taken."""
        clock = time.monotonic()
        if clock - self._scanned < ORPHAN_SCAN_S and not now:
            return []
        self._scanned = clock
        return gone_holders(self.directory, self.store, known, self.path)

    @staticmethod
    def let_go(orphan: Orphan) -> None:
        os.close(orphan.lock_fd)

    @staticmethod
    def adopted(orphan: Orphan) -> None:
        """The store has all of a gone holder's journal: it goes."""
        _unlink(orphan.path)
        _unlink(orphan.path[:-len(".json")] + ".live")
        _unlink(orphan.path[:-len(".json")] + ".lock")
        os.close(orphan.lock_fd)


def gone_holders(directory: str, store: str, known: set[str], own: str = "") -> list[Orphan]:
    """The journals (and live journals) in `directory` of this store's holders that are
    gone, taken: their lock held until Journal.adopted or let_go."""
    try:
        stems = {n.rsplit(".", 1)[0] for n in os.listdir(directory)
                 if n.startswith(_PREFIX) and n.endswith((".json", ".live"))}
    except OSError:
        return []
    found = []
    for stem in sorted(stems):
        path = os.path.join(directory, stem + ".json")
        if path == own:
            continue
        orphan = _take(path, store, known)
        if orphan is not None:
            found.append(orphan)
    return found


def _take(path: str, store: str, known: set[str]) -> Orphan | None:
    """A gone holder's journal: what its failed exchanges left (`.json`), its counters as
    they stood when it died and its calls in flight (`.live`), the live spend winning (it
    is the later); None while its holder lives, or when taken already."""
    stem = path[:-len(".json")]
    if not (os.path.exists(path) or os.path.exists(stem + ".live")):
        return None
    try:
        fd = os.open(stem + ".lock", os.O_CREAT | os.O_RDWR, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)      # held: its owner lives
        if not (os.path.exists(path) or os.path.exists(stem + ".live")):
            _unlink(stem + ".lock")                         # taken meanwhile: no lock file left
            raise ValueError("taken")
        holder, items, calls = "", {}, []
        if os.path.exists(path):
            with open(path) as file:
                body = json.load(file)
            if body.get("store") != store:
                raise ValueError("another store's")
            holder = body["holder"]
            items = {i["counter"]: Exchange(i["counter"], i["limit"], i["window_end"], i["spent"], i["total"],
                                            0.0, 0.0, tuple((rid, amount) for rid, amount in i["settles"]))
                     for i in body["items"]}
        if os.path.exists(stem + ".live"):
            holder, live_store, counters, calls, reservations = read_live(stem + ".live")
            if live_store != store:
                raise ValueError("another store's")
            for counter, limit, window_end, spent, total in counters:
                settles = items[counter].settles if counter in items else ()
                items[counter] = Exchange(counter, limit, window_end, spent, total, 0.0, 0.0, settles)
            # Its calls' reservations in the store, freed (settled at nothing: the call is
            # lost), unless a settle of theirs that failed is kept above (it wins).
            kept = {rid for item in items.values() for rid, _ in item.settles}
            for rid, reserved in reservations:
                for counter, limit, window_end in reserved if rid not in kept else ():
                    item = items.get(counter) or Exchange(counter, limit, window_end, 0.0, 0.0, 0.0, 0.0)
                    items[counter] = dataclasses.replace(item, settles=(*item.settles, (rid, 0.0)))
        if not holder or holder in known:
            raise ValueError("taken")
        return Orphan(holder, list(items.values()), path, fd, calls)
    except (OSError, ValueError, KeyError, TypeError):
        os.close(fd)
        return None


def calls_logged(orphan: Orphan) -> None:
    """A gone holder's calls in flight are logged: never again, whoever takes it next."""
    forget_calls(orphan.path[:-len(".json")] + ".live")
    orphan.lost_calls = []


def _item(item: Exchange) -> dict:
    return {"counter": item.counter, "limit": item.limit, "window_end": item.window_end,
            "spent": item.spent, "total": item.total, "settles": [list(s) for s in item.settles]}


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
