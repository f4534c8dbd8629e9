"""How the new texts of a conversation whose other texts are known get read (known.py):
as runs, each between SEAM characters of the conversation on either side, runs closer
than SEAM read as one, and what a read finds across a run's edge added to the known
neighbour it reaches. Imports nothing of the gateway but the guardrails' own text reading.
"""

from __future__ import annotations

from itertools import accumulate

from . import Finding
from .joined import SEAM, find_in_texts


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


def read_run(detector, texts: list[str], first: int, last: int, out: list) -> None:
    """Reads a run of new texts (first to last; none when last is first - 1: a seam alone)
    between SEAM characters of the conversation on either side (as many texts as make
    them: a value may be cut across a short one); findings in the run are the run's; a
    finding that runs from the run into a neighbour, through every text between, is added
    to the neighbour for this request (its entry holds its findings alone; the run's text
    at that seam is not remembered, so the seam is read again on every turn: known.py's `_remember`)."""
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
