"""How a call ended: the `outcome` of its log line, of `gateway_call_outcomes_total` and of
its span (docs/observability.md#outcomes), and what reached Envoy of a call whose stream
Envoy ended while it waited for a reply of the service's.

Each outcome names who ended the call: the provider answered (`ok`, `upstream_error`),
the gateway refused it (`refused`), the gateway failed it (`error`: a stage raised;
`gateway_timeout`: Envoy gave up waiting for the service, a worker hung or too slow),
the provider failed mid-answer (`provider_cut`: it reset, cut or broke its answer, or
timed out, as Envoy's access log says), or the client left (`cancelled`).
"""

from __future__ import annotations

OK = "ok"
REFUSED = "refused"
UPSTREAM_ERROR = "upstream_error"       # the provider answered an error status
CANCELLED = "cancelled"                 # the client left
ERROR = "error"                         # a stage of the service failed
GATEWAY_TIMEOUT = "gateway_timeout"     # Envoy gave up waiting for the service's reply
PROVIDER_CUT = "provider_cut"           # the provider reset, cut or broke its answer, or timed out

# The gateway's own faults: no provider is to blame.
GATEWAY_FAULTS = frozenset({ERROR, GATEWAY_TIMEOUT})


# Among the numbers of a cut or ended-early entry (runtime/cut_stream_log.py): Envoy's
# response flags said the provider failed the call.
UPSTREAM_FAILED = "upstream_failed"


def ended_early_id(request_id: str) -> str:
    """The key of a call's ended-early entry (beside streams' cut_ids in store/cut_streams.py)."""
    return "early:" + request_id


class Undelivered:
    """A call whose stream Envoy ended while a reply of the service's was due: Envoy never
    took that reply, nor any made after the last one that left the worker. Set by the
    worker (runtime/processor.py) only then; stages/accounting/delivered.py charges what the caller
    got from it."""
    __slots__ = ("replies", "generated", "worker_hung", "answered", "refuted")

    def __init__(self) -> None:
        self.replies = 0          # replies Envoy took: 2 or more once the request went on to the provider
        self.generated = 0        # of call.generated, the texts whose chunks' replies Envoy took
        self.worker_hung = False  # the worker's loop did not run for a while before the end
        self.answered = ""        # the outcome the call had when its last reply was made ("": none made)
        self.refuted = False      # Envoy's access log says the caller got every reply after all
