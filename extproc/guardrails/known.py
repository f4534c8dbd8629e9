"""What earlier checks already found: each text's findings, by a digest of the text.

An agent resends its whole conversation every turn; the text of earlier turns was read
when it was new. A guardrail reads only the texts whose findings it does not know yet
(and the edges of their neighbours, where a value cut across two texts lies), and hands
every known text the findings it had then: its verdict and its redaction again, byte for
byte, at the cost of finding its digest (a resent text's is found by a compare, not
hashed again). Entries hold a digest of the text and the findings' spans, never the text
itself; they are keyed by the guardrail's digest (its type and rules), so a config
reloaded with other rules never meets a finding made under the old ones.

Seams are known too: a value cut across two texts lies in neither alone. Each seam read
is kept by the keys of the texts within SEAM characters of it, so two known texts met
side by side for the first time (a tool result read again after another text) have
their seam read, and a resent history has none to read. A known text keeps what was
found in it at any seam, so on every later turn it gets at least what a read of the
whole history finds (tests/test_known_findings.py holds that for any session).
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections import OrderedDict

import orjson

from . import Finding
from .joined import SEAM, find_in_texts

# Entries per worker: ~200 bytes each (a digest and a few spans); 200k entries ≈ 40 MB
# hold thousands of concurrent conversations of a hundred messages.
CAPACITY = 200_000



class KnownFindings:
    """A bounded LRU map (guardrail digest, text digest) → the text's findings."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.capacity = capacity
        self._entries: OrderedDict[bytes, tuple[Finding, ...]] = OrderedDict()
        self.enabled = True

    def get(self, key: bytes):
        found = self._entries.get(key)
        if found is not None:
            self._entries.move_to_end(key)
        return found

    def put(self, key: bytes, findings) -> None:
        self._entries[key] = tuple(findings)
        self._entries.move_to_end(key)
        while len(self._entries) > self.capacity:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


KNOWN = KnownFindings()
# EXTPROC_KNOWN_FINDINGS=0 makes every check read every text again (bench/long_session_envoy.py
# measures what remembering saves); nothing else should need it.
KNOWN.enabled = os.environ.get("EXTPROC_KNOWN_FINDINGS", "1") != "0"


class TextDigests:
    """Each text's digest, made once per request however many guardrails look it up (a
    long history's hashing is most of what a resent turn costs). Holds each text it
    hashed, so that an `id` stays the text's for as long as the object lives."""

    __slots__ = ("_by_id",)

    def __init__(self) -> None:
        self._by_id: dict[int, tuple[str, bytes]] = {}

    def of(self, text: str) -> bytes:
        entry = self._by_id.get(id(text))
        if entry is None:
            entry = self._by_id[id(text)] = (text, _digest(text))
        return entry[1]


# A resent text's digest is found again by its length and ends and a compare of the
# text whole (memcmp, ~10x faster than encoding and hashing it), as api/tokens.py finds
# its counts: the texts are held here, in the worker's memory only (the findings map and
# the store hold digests). Bounded by the characters kept; the oldest go first.
MEMO_MIN_CHARS = 512
MEMO_MAX_CHARS = 16_000_000
_ENDS = 48
_memo: dict[tuple[int, str, str], tuple[str, bytes]] = {}
_memo_chars = 0


def _digest(text: str) -> bytes:
    if len(text) < MEMO_MIN_CHARS:
        return _hash(text)
    key = (len(text), text[:_ENDS], text[-_ENDS:])
    kept = _memo.get(key)
    if kept is not None and kept[0] == text:
        return kept[1]
    digest = _hash(text)
    _keep(key, text, digest)
    return digest


def _hash(text: str) -> bytes:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=16).digest()


def _keep(key: tuple[int, str, str], text: str, digest: bytes) -> None:
    global _memo_chars
    if len(text) > MEMO_MAX_CHARS // 4:
        return
    replaced = _memo.pop(key, None)             # same length and ends, another text
    if replaced is not None:
        _memo_chars -= len(replaced[0])
    while _memo and _memo_chars + len(text) > MEMO_MAX_CHARS:
        _memo_chars -= len(_memo.pop(next(iter(_memo)))[0])
    _memo[key] = (text, digest)
    _memo_chars += len(text)


@functools.lru_cache(maxsize=64)
def _prefix(guardrail_digest: str) -> bytes:
    return guardrail_digest.encode() + b"\0"


def _key(guardrail_digest: str, text: str, digests: TextDigests | None = None) -> bytes:
    return _prefix(guardrail_digest) + (digests.of(text) if digests is not None else _digest(text))


def unknown(guardrail_digest: str, texts: list[str], known: KnownFindings = KNOWN,
            digests: TextDigests | None = None) -> list[tuple[bytes, int]]:
    """(key, length) of each text long enough to look up whose findings are not known here."""
    if not known.enabled:
        return []
    out = []
    for text in texts:
        if text:
            key = _key(guardrail_digest, text, digests)
            if known.get(key) is None:
                out.append((key, len(text)))
    return out


def known_findings(key: bytes, known: KnownFindings = KNOWN) -> tuple[Finding, ...] | None:
    return known.get(key)


def learn(key: bytes, findings: tuple[Finding, ...], known: KnownFindings = KNOWN) -> None:
    """Findings an earlier check made elsewhere (another worker, another replica)."""
    known.put(key, findings)


def encode_findings(findings: tuple[Finding, ...]) -> str:
    """Findings as a short string: each span and its label, never the text."""
    return orjson.dumps([[f.start, f.end, f.label] for f in findings]).decode()


def decode_findings(value: str) -> tuple[Finding, ...] | None:
    """The findings `encode_findings` wrote; None for a value that is not such a string."""
    try:
        items = orjson.loads(value)
        return tuple(Finding(int(start), int(end), str(label)) for start, end, label in items)
    except (orjson.JSONDecodeError, TypeError, ValueError):
        return None


def new_text_chars(guardrail_digest: str, texts: list[str], known: KnownFindings = KNOWN,
                   digests: TextDigests | None = None) -> int:
    """How many characters of `texts` no earlier check read (what max_scan_chars bounds)."""
    if not known.enabled:
        return sum(map(len, texts))
    return sum(len(text) for text in texts
               if text and known.get(_key(guardrail_digest, text, digests)) is None)


def find_known_or_new(detector, guardrail_digest: str, texts: list[str],
                      known: KnownFindings = KNOWN, complete: bool = True,
                      digests: TextDigests | None = None) -> list[list[Finding]]:
    """Each text's findings, the texts read as one conversation (joined.py), reading only
    the texts not known yet: each run of new texts is read with SEAM characters of the
    texts on either side, so a value cut across a known text and a new one is found.
    `complete`: the detector finds every value (a redacting rule must); False for one that
    may stop at its first finding (a blocking rule), whose clean texts are known only from
    a read that found nothing.

    Every text is looked up, however short: an agent's short texts (a question, a tool
    call's arguments) lie between long known ones, and each read again would be a run of
    its own, a read with its neighbours' edges (~40 us) where a lookup costs ~1 us. An
    empty text is known clean; it has no characters to hold a value."""
    if not known.enabled:
        return find_in_texts(detector, texts)
    keys: list[bytes | None] = []
    out: list[list[Finding]] = []
    seams: list[tuple[int, int]] = []       # two known texts side by side, never read so
    seam_keys: list[bytes] = []             # the seams this call reads
    last = -1                               # the last text that is not empty
    for text in texts:
        if not text:
            keys.append(None)
            out.append([])
            continue
        key = _key(guardrail_digest, text, digests)
        cached = known.get(key)
        keys.append(key)
        out.append(list(cached) if cached is not None else None)
    for i, key in enumerate(keys):
        if key is None:
            continue
        if last >= 0:
            if out[i] is None or out[last] is None:
                seam_keys.append(_seam(texts, keys, last, i))       # read with the new text
            else:
                seam = _seam(texts, keys, last, i)
                if known.get(seam) is None:
                    seam_keys.append(seam)
                    seams.append((last, i))
        last = i
    new = [i for i, found in enumerate(out) if found is None]
    if not new and not seams:
        return out
    if len(new) + texts.count("") == len(texts):    # nothing known: one read of it all
        found = find_in_texts(detector, texts)
        _remember(known, keys, found, range(len(texts)), complete, seam_keys)
        return found
    touched: set[int] = set()
    for run in _runs(texts, new):
        touched.update(_read_run(detector, texts, run, out))
    for before, after in seams:
        touched.update(_read_run(detector, texts, [], out, (before, after)))
    # A known neighbour that a value cut across the seam reaches keeps that finding too:
    # the same history resent gets it again, as a full read would find it.
    _remember(known, keys, out, new + sorted(touched.difference(new)), complete, seam_keys)
    return out


def _seam(texts: list[str], keys: list, before: int, after: int) -> bytes:
    """The key that marks the seam between two texts as read: the keys of the texts within
    SEAM characters of it on either side (one each, unless they are short), longer than
    a text's key, so never one."""
    if len(texts[before]) >= SEAM and len(texts[after]) >= SEAM:
        return keys[before] + b"|" + keys[after][-16:]
    left = _within_seam(texts, keys, range(before, -1, -1))
    right = _within_seam(texts, keys, range(after, len(texts)))
    return keys[before][:-16] + b"".join(reversed(left)) + b"|" + b"".join(right)


def _within_seam(texts: list[str], keys: list, indexes) -> list[bytes]:
    """The digests of the texts within SEAM characters, walking `indexes` (as _edge does)."""
    digests, chars = [], 0
    for i in indexes:
        if chars >= SEAM:
            break
        chars += len(texts[i])
        if keys[i] is not None:
            digests.append(keys[i][-16:])
    return digests


def _remember(known: KnownFindings, keys: list, found: list, read, complete: bool,
              seams: list[bytes]) -> None:
    """Keeps the findings of the texts just read. With a detector that may stop at its
    first finding (prompt injection does), a text is known clean only when the read found
    nothing at all: in a read that found something, a text without findings may never have
    been looked at, and is read again next time. A text met twice in one conversation
    keeps what was found in either place (a value cut across a seam is found in one)."""
    anything = not complete and any(found[i] for i in read)
    kept: dict[bytes, list[Finding]] = {}
    if not anything:                        # every seam was read
        kept.update(dict.fromkeys(seams, ()))
    for i in read:
        key = keys[i]
        if key is not None and (found[i] or not anything):
            if key in kept:
                kept[key] = kept[key] + [f for f in found[i] if f not in kept[key]]
            else:
                kept[key] = found[i]
    for key, findings in kept.items():
        known.put(key, findings)


def _runs(texts: list[str], indexes: list[int]) -> list[list[int]]:
    """The new texts' indexes in runs; only empty texts between two new ones keep them
    in one run (and join it)."""
    runs: list[list[int]] = []
    for i in indexes:
        if runs and not any(texts[runs[-1][-1] + 1:i]):
            runs[-1].extend(range(runs[-1][-1] + 1, i + 1))
        else:
            runs.append([i])
    return runs


def _read_run(detector, texts: list[str], run: list[int], out: list,
              seam: tuple[int, int] | None = None) -> list[int]:
    """Reads a run of new texts between the edges of its known neighbours (SEAM characters
    on either side, from as many neighbours as it takes: a short known text does not hide
    the one beyond it); findings in the run are the run's; a finding reaching the end of
    a neighbour's edge that faces the run is added to that neighbour (their indexes are
    returned). With no run, the seam between two known texts is read alone."""
    first, last = (run[0], run[-1]) if run else (seam[1], seam[0])
    before = _edge(texts, range(first - 1, -1, -1), tails=True)[::-1]     # farthest first
    after = _edge(texts, range(last + 1, len(texts)), tails=False)
    pieces = [piece for _, piece in before] + [texts[i] for i in run] + [piece for _, piece in after]
    found = find_in_texts(detector, pieces)
    # Only what runs towards the new text, and never what the cut of an edge made (a
    # value cut where the edge starts or ends is the known text's own, found whole then).
    touched = []
    for (index, piece), edge in zip(before, found):
        offset = len(texts[index]) - len(piece)
        if _add(out, index, [Finding(f.start + offset, f.end + offset, f.label) for f in edge
                             if f.end == len(piece) and not (offset and f.start == 0)]):
            touched.append(index)
    for (index, piece), edge in zip(after, found[len(before) + len(run):]):
        cut = len(piece) < len(texts[index])
        if _add(out, index, [f for f in edge if f.start == 0 and not (cut and f.end == len(piece))]):
            touched.append(index)
    for i, findings in zip(run, found[len(before):]):
        out[i] = findings
    return touched


def _edge(texts: list[str], indexes, tails: bool) -> list[tuple[int, str]]:
    """(index, its part within SEAM characters of the run) of the known texts beside a
    run, nearest first: their tails before the run, their heads after it."""
    edge, chars = [], 0
    for i in indexes:
        if chars >= SEAM:
            break
        text, room = texts[i], SEAM - chars
        piece = text if len(text) <= room else (text[len(text) - room:] if tails else text[:room])
        edge.append((i, piece))
        chars += len(piece)
    return edge


def _add(out: list, index: int, findings: list[Finding]) -> bool:
    """Adds what `out[index]` lacks of `findings`; whether it lacked any."""
    current = out[index] if out[index] is not None else []
    added = [f for f in findings if f not in current]
    if added:
        out[index] = current + added
    return bool(added)
