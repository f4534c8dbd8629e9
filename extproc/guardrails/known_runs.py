"""How the new texts of a conversation whose other texts are known get read (known.py):
as runs, each between SEAM characters of the conversation on either side, runs closer
than SEAM read as one, and what a read finds across a run's edge added to the known
neighbour it reaches; and, for a body grown from one whose texts were read, what a change
reaches: the old texts read again, the seams read (changes, seams_near). Imports nothing
of the gateway but the guardrails' own text reading.
"""

from __future__ import annotations

import bisect
from itertools import accumulate

from . import Finding
from .joined import SEAM, find_in_texts

# Where a text of a body grown from one the policy read lies (known.py's Lookup, `states`):
# in its new items, or before or after them in the body before.
NEW, BEFORE, AFTER = 0, 1, 2
_NEW, _BEFORE, _AFTER = bytes((NEW,)), bytes((BEFORE,)), bytes((AFTER,))


def reads(new: list[int], seams: list[int], texts: list[str]) -> list[tuple[int, int]]:
    """What to read, as (first, last) runs of texts: the new texts, and the seams of known
    texts not read side by side (j: an empty run, last = first - 1, between texts j-1 and
    j). Two closer than SEAM characters are read as one run, the known texts between
    included: a window of SEAM characters then reaches known texts only, never the cut
    edge of a text another run reads (whose findings there are the cut's, not the text's)."""
    spans = sorted([(i, i) for i in new] + [(j, j - 1) for j in seams])
    ends = [0, *accumulate(map(len, texts))]           # ends[i]: characters before text i
    reads: list[tuple[int, int]] = []
    for first, last in spans:
        if reads:
            start, end = reads[-1]
            if first <= end + 1 or ends[first] - ends[end + 1] < SEAM:
                reads[-1] = (start, max(end, last))
                continue
        reads.append((first, last))
    return reads


def read_run(detector, texts: list[str], first: int, last: int, out: list, complete: bool = True) -> bool:
    """Reads a run of new texts (first to last; none when last is first - 1: a seam alone)
    between SEAM characters of the conversation on either side (as many texts as make
    them: a value may be cut across a short one); findings in the run are the run's; a
    finding that runs from the run into a neighbour, through every text between, is added
    to the neighbour for this request (its entry holds its findings alone; the run's text
    at that seam is not remembered, so the seam is read again on every turn: known.py's `_remember`).
    True when the read found anything, in the neighbours' characters too: a detector that
    may stop at its first finding (`complete` False) may have stopped there, before the
    run's texts, which it then reads again alone (a window's cut edge can make a match
    the neighbour's whole text does not hold)."""
    run = range(first, last + 1)
    before, after = _window(texts, first - 1, -1), _window(texts, last + 1, 1)
    pieces = [texts[i][start:] for i, start in before] + [texts[i] for i in run] + \
        [texts[i][:stop] for i, stop in after]
    found = find_in_texts(detector, pieces)
    # Before the run, from the text next to it outwards: what reaches the next piece's start.
    reaching = True
    for (i, start), edge in zip(reversed(before), reversed(found[:len(before)])):
        if not reaching:
            break
        size = len(texts[i]) - start
        crossing = [Finding(f.start + start, f.end + start, f.label) for f in edge if f.end == size]
        _add_crossing(out, i, crossing)
        reaching = size == 0 or any(f.start == start for f in crossing)
    reaching = True
    for (i, stop), edge in zip(after, found[len(found) - len(after):]):
        if not reaching:
            break
        crossing = [f for f in edge if f.start == 0]
        _add_crossing(out, i, crossing)
        reaching = stop == 0 or any(f.end == stop for f in crossing)
    for i, findings in zip(run, found[len(before):len(found) - len(after)]):
        out[i] = findings if out[i] is None else out[i] + [f for f in findings if f not in out[i]]
    if not complete and run and (any(found[:len(before)]) or any(found[len(found) - len(after):])):
        for i, findings in zip(run, find_in_texts(detector, [texts[i] for i in run])):
            out[i] = out[i] + [f for f in findings if f not in out[i]]
    return any(found)


def _window(texts: list[str], index: int, step: int) -> list[tuple[int, int]]:
    """The texts that make SEAM characters from `index` on, going `step` (-1: back), in
    their order, with where the part in the window starts (back) or stops (forward)."""
    window, need = [], SEAM
    while 0 <= index < len(texts) and need > 0:
        size = len(texts[index])
        take = min(size, need)
        window.append((index, size - take if step < 0 else take))
        need -= take
        index += step
    if step < 0:
        window.reverse()
    return window


def _add_crossing(out: list, index: int, findings: list[Finding]) -> None:
    """Adds to a known text the findings a read of its edge made that it lacks."""
    current = out[index] if out[index] is not None else []
    added = [f for f in findings if f not in current]
    if added:
        out[index] = current + added


def changes(states: list[int], texts: list[str], found: list | None) -> tuple[list[int], list[int]]:
    """Where a grown body's conversation changed from the body before's: the seams (j:
    between texts j-1 and j; len(texts): the conversation's end) where an old text
    (BEFORE, AFTER) meets a NEW one, after the last BEFORE text and before the first AFTER
    one (turns may have been taken out between them, or after the last); and `states`
    with NEW for each old text holding a finding (`found`: the body before's) within SEAM
    characters of such a seam. What lies that near may have been cut across, or held
    back, by a text that is gone, or may run on into a new one: such a text is read again,
    which changes its own seams in turn. Farther than SEAM, a value is out of reach of any
    change, as every read of a known text assumes. (Walked from each seam outwards: a
    history has hundreds of texts, the few near a change are what count.)"""
    count = len(texts)
    changed = set()
    marks = bytes(states)            # (searched in C: a list's are Python compares, ~8 ns a text)
    first = marks.find(_NEW)
    if first >= 0:
        last = marks.rfind(_NEW)
        if marks.count(_NEW) == last - first + 1:           # the new items' texts, together
            changed.update(j for j in (first, last + 1) if 0 < j < count)
        else:
            changed.update(j for j in range(1, count) if (states[j - 1] == NEW) != (states[j] == NEW))
    last_before, first_after = marks.rfind(_BEFORE), marks.find(_AFTER)
    if last_before >= 0:
        changed.add(last_before + 1)
    if first_after > 0:
        changed.add(first_after)
    if found is None or not any(found[i] for i in range(count) if states[i] != NEW):
        return states, sorted(changed)
    states = list(states)
    todo = list(changed)
    while todo:
        marked = []
        for j in todo:
            for i, reach in _near(texts, j):
                if states[i] != NEW and found[i] and any(
                        (f.start if i >= j else len(texts[i]) - f.end) + reach < SEAM for f in found[i]):
                    states[i] = NEW
                    marked.append(i)
        todo = [j for i in marked for j in (i, i + 1) if 0 < j <= count and j not in changed]
        changed.update(todo)
    return states, sorted(changed)


def reach_start(states: list[int], texts: list[str], has_finding=None, resent: bool = False) -> int:
    """Where what a grown body's read can reach begins: every text before it is old
    (BEFORE) and out of reach of the change, and a read of the texts from it on finds what
    a read of them all finds. That is the start of the first run, going back from the
    first text that is not BEFORE, of old texts without a finding (`has_finding(i)`;
    None: no text has one) holding 2 x SEAM characters: a changed seam's neighbours
    (`changes`, `seams_near`) lie within SEAM of it, a read's window (`read_run`) SEAM
    further, and a text without a finding is never marked, so nothing reaches past such a
    run. 0 when there is none (every text may be reached); len(texts) for the same bytes
    resent, where nothing changed and nothing is read."""
    count = len(texts)
    if resent:
        return count
    marks = bytes(states)
    first = min(at for at in (marks.find(_NEW), marks.find(_AFTER), count) if at >= 0)
    clean = 0
    for index in range(first - 1, -1, -1):
        if has_finding is not None and has_finding(index):
            clean = 0
            continue
        clean += len(texts[index])
        if clean >= 2 * SEAM:
            return index
    return 0


def _near(texts: list[str], j: int):
    """The texts within SEAM characters of seam j, each with how many characters lie
    between it and the seam: back from text j-1, then on from text j."""
    reach, i = 0, j - 1
    while i >= 0 and reach < SEAM:
        yield i, reach
        reach += len(texts[i])
        i -= 1
    reach, i = 0, j
    while i < len(texts) and reach < SEAM:
        yield i, reach
        reach += len(texts[i])
        i += 1


def seams_near(changed: list[int], states: list[int], texts: list[str]) -> list[int]:
    """The seams to read of a grown body: each between two old texts within SEAM
    characters of a seam that changed (what a read around it finds may differ from the
    body before's), that seam itself, and the conversation's end where it changed. A seam
    next to a NEW text is read with that text."""
    count = len(texts)
    picked = set()
    for j in changed:
        if j == count:
            if count and states[j - 1] != NEW:
                picked.add(j)
        reach, k = 0, j              # back: seams k, k-1, ... while the texts between are short
        while k > 0 and reach < SEAM:
            if states[k - 1] != NEW and k < count and states[k] != NEW:
                picked.add(k)
            reach += len(texts[k - 1])
            k -= 1
        reach, k = 0, j              # on
        while k < count and reach < SEAM:
            if k > 0 and states[k - 1] != NEW and states[k] != NEW:
                picked.add(k)
            reach += len(texts[k])
            k += 1
    return sorted(picked)
