"""How many examples a property test tries. The suite tries each test's share, so that it
runs in minutes; a deep run (`bench/fuzz.sh`, which sets LLMGW_EXAMPLES=deep) tries ten
times as many, new ones each time where the test is not derandomized."""

from __future__ import annotations

import os

DEEP = os.environ.get("LLMGW_EXAMPLES") == "deep"


def examples(suite: int) -> int:
    return suite * 10 if DEEP else suite
