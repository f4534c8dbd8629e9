"""What earlier checks already found: each text's findings, by a digest of the text.

An agent resends its whole conversation every turn; the text of earlier turns was read
when it was new. A guardrail reads only the texts whose findings it does not know yet
(and the edges of their neighbours, where a value cut across two texts lies), and hands
every known text the findings it had then: its verdict and its redaction again, byte for
byte, at the cost of finding its digest (a resent text's is found by a compare, not
hashed again). Entries hold a digest of the text and the findings' spans, never the text
itself; they are keyed by the guardrail's digest (its type and rules), so a config
reloaded with other rules never meets a finding made under the old ones.

Seams are remembered too: the meeting of two texts is known read when the texts around it
(as far as SEAM characters reach either way) were read side by side before. Two known
texts that meet for the first time (a history edited, compacted, or texts of one session
resent in another order) have their seam read, so nothing cut across them passes.

And a whole conversation found clean: a guardrail that read a request's texts (16 or
more) and found nothing in any of them, or across any seam, keeps that of the texts'
digests in their order, and the same texts again (the same history resent, as retries
and an agent's parallel calls send it) are known clean at one look-up, where each
text's and seam's took ~100 (0.5 of the 1.1 µs a text costs a guardrail).
"""

from __future__ import annotations

import functools
import os

import orjson

from . import Finding
from .joined import SEAM, find_in_texts
from .known_runs import AFTER, BEFORE, NEW, changes, read_run, reads, seams_near
from .text_digests import TextDigests, text_digest

# Entries per worker: a text's ~190 bytes (a digest and a few spans), a seam's ~70; 300k
# entries ≈ 40 MB hold a thousand and more concurrent conversations of a hundred messages.
CAPACITY = 300_000

# Every text but the empty one is looked up, however short. A short text alone reads in
# less than its hash costs, but a text not known is not read alone: it is read as a run
# with SEAM characters of its neighbours on either side (~25 µs), on every turn. Left
# unknown, every short question and tool call of an agent's history was read again each
# turn (60 of them, 2 guardrails: 3.6 of the 10 ms a 4 MB turn cost in process).


class KnownFindings:
    """A bounded map (guardrail digest, text digest) → the text's findings, and the seams
    read side by side (an int: _seam_keys) → ().

    Two generations rather than an LRU: a request looks up every text of its history,
    per guardrail (a 400 KB agent history: ~100 texts × 4 guardrails), and a look-up is
    one C-level `dict.get` over all its keys at once (`get_many`) where an LRU's
    per-entry move to the end cost a Python call each. An entry goes to the young
    generation when made, and again when found in the old one; when the young one holds
    half the capacity, it becomes the old one and the old one is dropped. What a
    session still sends stays young; what nobody sent for a generation goes."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self._half = max(1, capacity // 2)      # the young generation's size when it turns old
        self._young: dict[bytes | int, tuple[Finding, ...]] = {}
        self._old: dict[bytes | int, tuple[Finding, ...]] = {}
        self.enabled = True

    def get(self, key):
        found = self._young.get(key)
        if found is None:
            found = self._old.pop(key, None)
            if found is not None:
                self._keep(key, found)
        return found

    def get_many(self, keys: list) -> list:
        """Each key's findings (None: not known; None keys find None)."""
        found = list(map(self._young.get, keys))
        if self._old and None in found:
            take = self._old.pop
            for i, findings in enumerate(found):
                if findings is None and keys[i] is not None:
                    findings = take(keys[i], None)
                    if findings is not None:
                        self._keep(keys[i], findings)
                        found[i] = findings
        return found

    def put(self, key, findings) -> None:
        self._old.pop(key, None)
        self._keep(key, tuple(findings))

    def _keep(self, key, findings: tuple) -> None:
        young = self._young
        young[key] = findings
        if len(young) >= self._half:
            self._old, self._young = young, {}

    def clear(self) -> None:
        self._young.clear()
        self._old.clear()

    def __len__(self) -> int:
        return len(self._young) + len(self._old)


KNOWN = KnownFindings()
# EXTPROC_KNOWN_FINDINGS=0 makes every check read every text again (bench/long_session_envoy.py
# measures what remembering saves); nothing else should need it.
KNOWN.enabled = os.environ.get("EXTPROC_KNOWN_FINDINGS", "1") != "0"


# A request's texts are looked up one by one when they are few, and as lists built in C
# when they are many (an agent's history): per text and guardrail 0.87 → 0.64 µs on a
# 400 KB history of 101 texts, where for one short text the lists' making costs more
# (3.4 against 4.8 µs a guardrail).
MANY_TEXTS = 16


@functools.lru_cache(maxsize=64)
def _prefix(guardrail_digest: str) -> bytes:
    return guardrail_digest.encode() + b"\0"


class Lookup:
    """What one guardrail knows of a request's texts: each text's key and, where an earlier
    check read it, its findings (None: not known), looked up once however many questions
    the check asks (is there much to fetch from the store, how much text is new, what is
    found)."""

    __slots__ = ("texts", "keys", "found", "known", "whole", "clean", "grown")

    def __init__(self, guardrail_digest: str, texts: list[str], known: KnownFindings = KNOWN,
                 digests: TextDigests | None = None, states: list[int] | None = None,
                 before: list | None = None, resent: bool = False, part: bool = False) -> None:
        self.texts, self.known = texts, known
        self.keys: list[bytes | None]
        self.found: list[list[Finding] | None]
        self.whole: int | None = None       # the key of these texts read together (a history's)
        self.clean = False                  # they were, and nothing was found
        self.grown: list[int] | None = None # the seams to read of a grown body's clean texts
        if not known.enabled:
            self.keys, self.found = [None] * len(texts), [None] * len(texts)
            return
        prefix = _prefix(guardrail_digest)
        if states is not None and self._grown(prefix, states, digests, before, resent, part):
            return
        if len(texts) < MANY_TEXTS:
            of, get = (digests.of if digests is not None else text_digest), known.get
            self.keys, self.found = keys, found = [], []
            for text in texts:
                if not text:            # nothing in it; the seam of its neighbours is theirs to read
                    keys.append(None)
                    found.append([])
                    continue
                key = prefix + of(text)
                cached = get(key)
                keys.append(key)
                found.append(list(cached) if cached is not None else None)
            return
        # A history: each list made in C where it can be (its texts are mostly found).
        digests_of = digests.of_all(texts) if digests is not None else [text_digest(t) if t else None for t in texts]
        # Python's salted hash, as a seam's (_seam_keys); 3: no seam's key, whose first
        # item is a count of texts before it (1 or more) or 1.
        self.whole = whole = hash((3, prefix, *digests_of))
        if known.get(whole) is not None:      # read together before, nothing found
            self.keys, self.found, self.clean = [None] * len(texts), [[] for _ in texts], True
            return
        self.keys = keys = [prefix + digest if digest is not None else None for digest in digests_of]
        self.found = [list(f) if f is not None else None if key is not None else []
                      for f, key in zip(known.get_many(keys), keys)]

    def _grown(self, prefix: bytes, states: list[int], digests: TextDigests | None,
               before: list | None = None, resent: bool = False, part: bool = False) -> bool:
        """The texts of a body grown from one this rule's policy read, each marked
        (grown_states: NEW, or where it lay in the body before, BEFORE or AFTER the new
        items). The texts of the body before and the seams between them were read then:
        each has the findings that read gave it (`before`, by text; None: none at all),
        without a look-up; the new ones are read, with the conversation on either side.
        The seams of old texts near one that changed are read (known_runs.changes): where
        a turn was taken out, two old texts meet for the first time; a value the texts
        taken out held back may end at the conversation's end. An old text with a finding
        near a seam that changed is read again as new. `resent`: the body before's very
        bytes, every text where it lay, none new. False, and nothing set, when a new text
        is known by itself (a tool result met before): its seams are not, and the
        per-text path reads them; but not for `part` of the conversation (the texts from
        known_runs.reach_start on, after the old ones with a finding), whose neighbours
        are not all there to read a seam with: such a text is read as new."""
        texts, get = self.texts, self.known.get
        of = digests.of if digests is not None else text_digest
        found: list[list[Finding] | None] = [[] for _ in texts] if before is None else \
            [list(findings) for findings in before]
        changed: list[int] = []
        if not resent:
            states, changed = changes(states, texts, found if before is not None and any(before) else None)
        fresh = [index for index, (state, text) in enumerate(zip(states, texts)) if state == NEW and text]
        keys: list[bytes | None] = [None] * len(texts)
        for index in fresh:
            key = keys[index] = prefix + of(texts[index])
            if not part and get(key) is not None:
                return False
        for index in fresh:
            found[index] = None
        seams = seams_near(changed, states, texts) if changed else []
        self.keys, self.found, self.grown = keys, found, seams
        return True

    def unknown(self, min_chars: int = 1) -> list[tuple[bytes, int]]:
        """(key, length) of each text of `min_chars` or more whose findings are not known."""
        if self.clean:
            return []
        return [(key, len(text)) for key, text, found in zip(self.keys, self.texts, self.found)
                if found is None and key is not None and len(text) >= min_chars]

    def learned(self) -> None:
        """Looks up again the texts not known: the store may have taught some."""
        get = self.known.get
        for i, found in enumerate(self.found):
            if found is None:
                cached = get(self.keys[i])
                if cached is not None:
                    self.found[i] = list(cached)

    def new_chars(self) -> int:
        """How many characters no earlier check read (what max_scan_chars bounds)."""
        if not self.known.enabled:
            return sum(map(len, self.texts))
        if self.clean:
            return 0
        return sum(len(text) for text, found in zip(self.texts, self.found) if found is None)

    def find_each(self, detector) -> list[list[Finding]]:
        """Each text's findings, each text read alone (a detector that scores whole texts:
        injection_model.py), reading only the texts not known yet, and keeping what it read."""
        unread = self.unread()
        self.take(unread, [detector.find(self.texts[i]) for i in unread])
        self._clean_whole(self.found)
        return list(self.found)

    def _clean_whole(self, found: list) -> None:
        """Keeps these texts, read together, as clean when nothing was found in them."""
        if self.whole is not None and not self.clean and not any(found):
            self.known.put(self.whole, ())

    def unread(self) -> list[int]:
        """The texts whose findings are not known (every one when nothing is remembered)."""
        return [i for i, found in enumerate(self.found) if found is None]

    def take(self, read: list[int], findings: list[list[Finding]]) -> None:
        """What a read of the texts `read` (each alone) found, kept here and remembered."""
        for i, found in zip(read, findings):
            self.found[i] = found
            if self.keys[i] is not None:
                self.known.put(self.keys[i], found)

    def find(self, detector, complete: bool = True) -> list[list[Finding]]:
        """Each text's findings, the texts read as one conversation (joined.py), reading only
        the texts not known yet: each run of new texts is read with SEAM characters of the
        texts on either side, so a value cut across a known text and a new one is found,
        and so is each seam of two known texts not read side by side before.
        `complete`: the detector finds every value (a redacting rule must); False for one
        that may stop at its first finding (a blocking rule), whose clean texts are known
        only from a read that found nothing."""
        texts, known = self.texts, self.known
        if not known.enabled:
            return find_in_texts(detector, texts)
        out = list(self.found)
        if self.clean:
            return out
        if len(texts) == 1 and self.grown is None:     # a chat user's question: no seam, the text known or read
            if out[0] is None:
                # _remember's rule for one text read alone: kept unless a finding touches
                # its start or end (with one text, `complete` changes nothing: a read that
                # found nothing keeps it clean, one that found something keeps its findings).
                out = [findings] = [detector.find(texts[0])]
                key = self.keys[0]
                if key is not None and not (findings and _at_an_edge(findings, len(texts[0]))):
                    known.put(key, findings)
            return out
        new = [i for i, found in enumerate(out) if found is None]
        # Whether a read found anything at all, in the known text around a run too: a
        # detector that may stop at its first finding may then have stopped before the run.
        stopped = False
        if self.grown is not None:      # the seams of known texts were read with them: none to look up
            for first, last in reads(new, self.grown, texts):
                stopped |= read_run(detector, texts, first, last, out, complete)
            _remember(known, self.keys, texts, out, new, complete, stopped)
            return out
        seams = _seam_keys(self.keys, texts)
        missing = [j for j, found in enumerate(known.get_many(seams), 1) if found is None]  # texts j-1, j
        if not new and not missing:     # every text and seam known (a request sent again): nothing to read
            self._clean_whole(out)
            return out
        if len(new) == len(texts):                      # nothing known: one read of it all
            out = find_in_texts(detector, texts)
        else:
            found = self.found
            unread = [j for j in missing if found[j - 1] is not None and found[j] is not None]
            for first, last in reads(new, unread, texts):
                stopped |= read_run(detector, texts, first, last, out, complete)
        _remember(known, self.keys, texts, out, new, complete, stopped)
        _remember_seams(known, seams, missing, texts, out, new, complete, stopped)
        self._clean_whole(out)
        return out


def unknown(guardrail_digest: str, texts: list[str], known: KnownFindings = KNOWN,
            digests: TextDigests | None = None, min_chars: int = 1) -> list[tuple[bytes, int]]:
    return Lookup(guardrail_digest, texts, known, digests).unknown(min_chars)


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
    return Lookup(guardrail_digest, texts, known, digests).new_chars()


def find_known_or_new(detector, guardrail_digest: str, texts: list[str],
                      known: KnownFindings = KNOWN, complete: bool = True,
                      digests: TextDigests | None = None) -> list[list[Finding]]:
    return Lookup(guardrail_digest, texts, known, digests).find(detector, complete)


def _remember(known: KnownFindings, keys: list, texts: list[str], found: list, read, complete: bool,
              stopped: bool = False) -> None:
    """Keeps the findings of the texts just read, those a text holds alone: an entry is
    keyed by one text, and serves it next to any neighbour, in any conversation.

    A text with a finding at its start or end is not kept: the value may run on into the
    neighbour, or end there only because of what the neighbour starts with. Read again
    on every turn with SEAM characters of its neighbours, it gets what a read of the
    whole conversation finds (a key cut across two turns has its known half redacted on
    every later turn), and no entry holds a finding that a neighbour's text made.

    With a detector that may stop at its first finding (prompt injection does), a text is
    known clean only when the read found nothing at all: in a read that found something,
    a text without findings may never have been looked at, and is read again next time.
    `stopped`: a read found something in the known text around the new (an injection in
    the turn before a new one): it may have stopped there, before the new texts."""
    anything = not complete and (stopped or any(found[i] for i in read))
    for i in read:
        findings = found[i]
        if keys[i] is None or (anything and not findings):
            continue
        if findings and _at_an_edge(findings, len(texts[i])):
            continue
        known.put(keys[i], findings)


def _at_an_edge(findings, size: int) -> bool:
    """A finding at the start or end of a text `size` long: it may run on into a neighbour."""
    return any(f.start == 0 or f.end == size for f in findings)


def _seam_keys(keys: list, texts: list[str]) -> list[int]:
    """Each seam's key (between texts j-1 and j, j from 1): a hash of the keys of the texts
    that SEAM characters reach on either side, in order, and how many of them come before
    the seam. Usually the two texts' own; a short text's neighbours beyond it too.

    Python's 64-bit hash of that tuple, salted per process (PYTHONHASHSEED): 67 bytes an
    entry where the tuple holding its keys took 333, and the texts' keys' own hashes are
    kept, where joined bytes would be hashed again. Two seams of one worker share a hash
    with a chance of ~n²/2^65 (n seams held: 1e-8 at 200,000), and nobody outside the
    process can aim at one; the text entries' keys are bytes, never equal to an int."""
    lengths = list(map(len, texts))
    count = len(texts)
    if count > 1 and min(lengths) >= SEAM:          # every seam two texts reach: in one pass
        return [hash((1, before, after)) for before, after in zip(keys, keys[1:])]
    out = []
    for j in range(1, count):
        if lengths[j - 1] >= SEAM and lengths[j] >= SEAM:      # most seams: two texts reach
            out.append(hash((1, keys[j - 1], keys[j])))
            continue
        first, need = j - 1, SEAM - lengths[j - 1]
        while need > 0 and first > 0:
            first -= 1
            need -= lengths[first]
        last, need = j, SEAM - lengths[j]
        while need > 0 and last < count - 1:
            last += 1
            need -= lengths[last]
        out.append(hash((j - first, *keys[first:last + 1])))
    return out


def _remember_seams(known: KnownFindings, seams: list[int], missing: list[int], texts: list[str],
                    found: list, read, complete: bool, stopped: bool = False) -> None:
    """Keeps the seams this request read side by side that were not known, but a seam a
    finding touches (its texts are read again next time anyway) and, for a detector that
    may stop at its first finding, any seam of a read that found something (`stopped`: in
    the known text around the new too) or of a text with findings (the read may have
    stopped before the seam)."""
    if not complete and (stopped or any(found[i] for i in read)):
        return
    put = known.put
    for j in missing:
        before, after = found[j - 1], found[j]
        if complete:
            if any(f.end == len(texts[j - 1]) for f in before) or any(f.start == 0 for f in after):
                continue
        elif before or after:
            continue
        put(seams[j - 1], ())
