"""Who is signed in to the console, and what they may do.

Sign-in: a role's token (config `console.tokens`), compared in constant time with every
configured token, so the time taken says nothing of which role's was close. A session
is a cookie `HttpOnly; SameSite=Strict; Path=/`, its value `<payload>.<signature>`: the
payload (who, role, expiry, a random session id) in base64url JSON, the signature
HMAC-SHA256 over it with the session secret (configured, else made at each start, which
signs every session out when the console restarts). The CSRF token of a session is an
HMAC of its id: every form carries it, every POST is refused (403) without it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass

from ..config.console import ROLES, ConsoleSettings

COOKIE = "llmgw_console"
PRE_COOKIE = "llmgw_console_signin"      # the sign-in form's own CSRF token (double submit)
MAX_NAME_CHARS = 64

# What each action needs, by the least role allowed.
NEEDS = {"read": "viewer", "keys": "key_manager", "config": "admin"}


@dataclass(frozen=True, slots=True)
class Session:
    who: str
    role: str
    expires: float
    sid: str

    def may(self, action: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(NEEDS[action])


class Sessions:
    def __init__(self, settings: ConsoleSettings) -> None:
        self._tokens = [(role, token.reveal().encode("utf-8")) for role, token, _ in settings.tokens]
        secret = settings.session_secret.reveal() if settings.session_secret else secrets.token_hex(32)
        self._key = hashlib.sha256(b"llmgw-console-session|" + secret.encode("utf-8")).digest()
        self._lifetime = settings.session_seconds
        self._closed: dict[str, float] = {}        # sessions signed out: id -> when the cookie expires

    # --- sign-in ---------------------------------------------------------------------

    def role_of(self, presented: str) -> str | None:
        """The role whose token this is (each one compared, whatever matched)."""
        given = presented.strip().encode("utf-8", "surrogateescape")
        found = None
        for role, token in self._tokens:
            if hmac.compare_digest(given, token) and found is None:
                found = role
        return found

    def open(self, who: str, role: str, now: float | None = None) -> tuple[Session, str]:
        """A new session, and its cookie's value."""
        session = Session(who=clean_name(who) or role, role=role,
                          expires=(now or time.time()) + self._lifetime, sid=secrets.token_urlsafe(16))
        payload = _b64(json.dumps({"w": session.who, "r": session.role, "e": session.expires,
                                   "s": session.sid}, separators=(",", ":")).encode())
        return session, f"{payload}.{self._sign(payload)}"

    def session(self, cookie_value: str | None, now: float | None = None) -> Session | None:
        """The session a cookie holds, if its signature is ours and it has not expired."""
        if not cookie_value or cookie_value.count(".") != 1 or len(cookie_value) > 2048:
            return None
        payload, signature = cookie_value.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(payload).encode()):
            return None
        try:
            raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
            session = Session(who=str(raw["w"]), role=str(raw["r"]), expires=float(raw["e"]), sid=str(raw["s"]))
        except (ValueError, KeyError, TypeError):
            return None
        if session.role not in ROLES or session.expires <= (now or time.time()) or session.sid in self._closed:
            return None
        return session

    def close(self, session: Session) -> None:
        """Signed out: its cookie, copied or not, opens nothing any more (until this process
        restarts; the cookie expires on its own)."""
        now = time.time()
        for sid, expires in list(self._closed.items()):
            if expires <= now:
                self._closed.pop(sid, None)
        self._closed[session.sid] = session.expires

    # --- CSRF ------------------------------------------------------------------------

    def csrf_token(self, session: Session) -> str:
        return self._sign("csrf|" + session.sid)

    def csrf_ok(self, session: Session, presented: str | None) -> bool:
        return bool(presented) and hmac.compare_digest(presented.encode("utf-8", "surrogateescape"),
                                                       self.csrf_token(session).encode())

    # --- other signed values (the OIDC sign-in's state: oidc.py) ---------------------

    def seal(self, purpose: str, value: dict) -> str:
        payload = _b64(json.dumps(value, separators=(",", ":")).encode())
        return f"{payload}.{self._sign(purpose + '|' + payload)}"

    def unseal(self, purpose: str, sealed: str | None) -> dict | None:
        if not sealed or sealed.count(".") != 1 or len(sealed) > 4096:
            return None
        payload, signature = sealed.split(".")
        if not hmac.compare_digest(signature.encode(), self._sign(purpose + "|" + payload).encode()):
            return None
        try:
            value = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _sign(self, text: str) -> str:
        return _b64(hmac.new(self._key, text.encode(), hashlib.sha256).digest())


def clean_name(name: str) -> str:
    """A name someone typed, as an audit line may hold it: printable, bounded."""
    return "".join(ch for ch in (name or "") if ch.isprintable())[:MAX_NAME_CHARS].strip()


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def cookie_header(name: str, value: str, max_age: float | None, secure: bool = False,
                  same_site: str = "Strict") -> str:
    parts = [f"{name}={value}", "Path=/", "HttpOnly", f"SameSite={same_site}"]
    if max_age is not None:
        parts.append(f"Max-Age={int(max_age)}")
    if secure:
        parts.append("Secure")
    return "; ".join(parts)
