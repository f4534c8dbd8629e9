"""The caller's headers a provider never sees, found over the whole header map at once, are
exactly those the per-header rule (`is_withheld`, less the provider's own credential
header and those its config passes) names, in the caller's order."""

from __future__ import annotations

from types import SimpleNamespace

from hypothesis import given, settings
from hypothesis import strategies as st

from extproc.dialects import ACCOUNT_HEADER_PREFIXES, ACCOUNT_HEADERS, API_HEADERS
from extproc.stages.provider_headers import is_withheld, withheld_headers

# Names of every kind: the dialects' account headers and prefixes, the API headers that
# share a prefix with them, the network's, credentials, and anything else.
KNOWN = sorted(ACCOUNT_HEADERS | API_HEADERS | {"x-forwarded-for", "forwarded", "x-real-ip", "x-forwarded-host",
                                                 "authorization", "x-api-key", "api-key", "x-goog-api-key",
                                                 "content-type", "user-agent", "x-stainless-os"})
NAMES = st.one_of(st.sampled_from(KNOWN),
                  st.builds(lambda prefix, rest: prefix + rest, st.sampled_from(ACCOUNT_HEADER_PREFIXES),
                            st.text("abcxyz-", max_size=6)),
                  st.text("abcdefghijklmnopqrstuvwxyz-", min_size=1, max_size=12))


@settings(max_examples=400, deadline=None)
@given(names=st.lists(NAMES, unique=True, max_size=24), passed=st.frozensets(st.sampled_from(KNOWN), max_size=4),
       auth=st.sampled_from(["authorization", "x-api-key", "api-key", "x-goog-api-key", ""]))
def test_the_withheld_headers_are_each_headers_own_verdict(names, passed, auth):
    provider = SimpleNamespace(pass_headers=passed, auth_header=auth)
    headers = {name: "v" for name in names}
    expected = [name for name in names if is_withheld(name) and name not in passed and name != auth]
    assert withheld_headers(headers, provider) == expected
    assert withheld_headers(list(names), provider) == expected     # a list of names, as well as a map
