"""An access token kept fresh by a thread of its own.

Each worker process holds one `MintedToken` per credential (the same key file and token
endpoint share one across config reloads: `shared`), whose thread mints the first token
when the worker starts and a new one once three quarters of the current one's lifetime
have passed (at least a minute before it expires, as Google's and Microsoft's clients do).
A failed mint is retried with back-off while the current token is still good; requests
never wait for the token endpoint. Until a first token exists `reveal()` is empty, and
the provider answers its own 401, which the caller gets as a 502 naming the provider.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Callable

log = logging.getLogger("extproc.credentials")

# A mint takes (returns) the token and the seconds it lives; raises on failure.
Mint = Callable[[], tuple[str, float]]

_RETRY_FIRST, _RETRY_MOST = 1.0, 30.0
_EARLIEST_MARGIN = 60.0


class MintedToken:
    """A bearer token minted by `mint` and refreshed in the background."""

    def __init__(self, describe: str, mint: Mint) -> None:
        self.describe = describe          # which credential, for logs (never its value)
        self._mint = mint
        self._token = ""
        self._expires_at = 0.0            # time.monotonic()
        self._minted = threading.Event()  # a first token exists
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._patient_until = 0.0         # until then, a failed first mint is not yet an error
        self.mints = 0                    # tokens minted (tests, logs)

    def reveal(self) -> str:
        """The current token ('' before the first one, or once it has expired)."""
        return self._token if time.monotonic() < self._expires_at else ""

    def __repr__(self) -> str:
        return f"MintedToken({self.describe})"

    __str__ = __repr__

    def start(self, wait: float = 10.0) -> bool:
        """Start the refresh thread (once) and wait up to `wait` seconds for a first token:
        a worker starts serving with one. False when none came in time (the thread goes on)."""
        if self._thread is None:
            self._patient_until = time.monotonic() + wait
            self._thread = threading.Thread(target=self._run, name=f"mint {self.describe}", daemon=True)
            self._thread.start()
        return self._minted.wait(wait)

    def stop(self) -> None:
        self._stop.set()

    def mint_now(self) -> float:
        """Mint a token; the seconds until the next mint is due."""
        token, lifetime = self._mint()
        now = time.monotonic()
        self._token, self._expires_at = token, now + lifetime
        self.mints += 1
        self._minted.set()
        return max(min(lifetime * 0.75, lifetime - _EARLIEST_MARGIN), lifetime / 2, 1.0)

    def _run(self) -> None:
        retry = _RETRY_FIRST
        while not self._stop.is_set():
            try:
                wait = self.mint_now()
                retry = _RETRY_FIRST
            except Exception as error:      # noqa: BLE001 - the thread must outlive a bad endpoint
                left = self._expires_at - time.monotonic()
                # A token endpoint starting beside the worker (the quickstart's mock) may not
                # answer at first: only once the start's patience is over is it an error.
                starting = not self._minted.is_set() and time.monotonic() < self._patient_until
                log.log(logging.INFO if starting else logging.ERROR,
                        "could not mint an access token for %s (%s: %s); retrying in %.0fs%s",
                        self.describe, type(error).__name__, _first_line(error), retry,
                        f", the current one lasts {left:.0f}s more" if left > 0 else "")
                # Sooner while the current token lasts: the next try must come before it ends.
                wait = min(retry, max(left / 2, _RETRY_FIRST)) if left > 0 else retry
                retry = min(retry * 2, _RETRY_MOST)
            self._stop.wait(wait)


def _first_line(error: Exception) -> str:
    """An error's first line, short: a token endpoint's answer may be long (never a secret:
    the key signs the assertion and is not sent)."""
    return str(error).splitlines()[0][:200] if str(error) else ""


_SHARED: dict[tuple, MintedToken] = {}
_SHARED_LOCK = threading.Lock()


def shared(key: tuple, describe: str, mint: Mint) -> MintedToken:
    """The process's one MintedToken for `key` (a credential and where it is minted): a
    reloaded config keeps the token and thread of the one before."""
    with _SHARED_LOCK:
        token = _SHARED.get(key)
        if token is None:
            token = _SHARED[key] = MintedToken(describe, mint)
        return token


def start_minting(credentials, wait: float = 10.0) -> list[str]:
    """Start every MintedToken among `credentials`; the ones with no token after `wait`."""
    late = []
    minted = [c for c in credentials if isinstance(c, MintedToken)]
    deadline = time.monotonic() + wait
    for token in minted:
        if not token.start(max(0.0, deadline - time.monotonic())):
            late.append(token.describe)
    return late


def stop_minting() -> None:
    with _SHARED_LOCK:
        for token in _SHARED.values():
            token.stop()
