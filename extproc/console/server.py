"""The console's HTTP listener, in the supervisor process (`console.listen`, loopback
unless configured otherwise): sign-in, sessions, CSRF, the audit line of every change,
and the pages (pages.py) rendered with the templates shipped beside this module.

Every answer carries a Content-Security-Policy that allows no script at all and only
this origin's stylesheet, and `Cache-Control: no-store` (a page may show a key once).
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlencode

from jinja2 import Environment, FileSystemLoader, select_autoescape

from ..config.files import file_signature, settled_signature
from ..config.filter_config import GatewayConfig, load_config
from ..guardrails.config import detectors_not_made
from ..yamltree import ConfigError
from . import data, pages
from .auth import COOKIE, PRE_COOKIE, Session, Sessions, clean_name, cookie_header
from .oidc import STATE_COOKIE, STATE_SECONDS, OidcSignIn, SignInProblem

MAX_FORM = 64 * 1024
MAX_RELOADS = 20                 # the config page's reload history
MAX_PROBLEMS = 50
WATCH_SECONDS = 1.0              # the config file's stat, as often as the workers poll theirs
HERE = Path(__file__).parent
STATIC = {"console.css": "text/css; charset=utf-8"}
SECURITY_HEADERS = (
    ("content-security-policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
                                "frame-ancestors 'none'; base-uri 'none'"),
    ("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"), ("referrer-policy", "no-referrer"),
    ("cache-control", "no-store"),
)


class Console:
    """What the handler threads share: the config (read again when its file changes),
    sessions, templates, and the runtime's key operation (`run_operation`)."""

    def __init__(self, config: GatewayConfig, run_operation: Callable) -> None:
        assert config.console is not None
        self.config = config
        self._stat = file_signature(config.path)
        self._lock = threading.Lock()
        self.reloads: list[dict] = [{"at": time.time(), "result": "started", "version": config.version,
                                     "problems": []}]
        self.sessions = Sessions(config.console)
        self.oidc = OidcSignIn(config.console.oidc, self.sessions) if config.console.oidc else None
        self.run_operation = run_operation
        self.templates = Environment(loader=FileSystemLoader(HERE / "templates"),
                                     autoescape=select_autoescape(default=True), trim_blocks=True,
                                     lstrip_blocks=True)
        self.templates.filters.update(pages.FILTERS)

    def current_config(self) -> GatewayConfig:
        """The config in force: read again when its file changes, as the workers read it
        (runtime/reload.py; same environment, same checks), each reading in `reloads`."""
        stat = settled_signature(self.config.path, self._stat)
        if stat is not None and stat != self._stat:
            with self._lock:
                if stat != self._stat:
                    self._stat = stat
                    try:
                        with detectors_not_made():
                            self.config = load_config(self.config.path)
                        self._reloaded("applied", self.config.version)
                    except ConfigError as error:       # the workers keep the old one too
                        self._reloaded("refused", None, error.problems)
                    except Exception as error:         # noqa: BLE001 - never a page's failure
                        self._reloaded("refused", None, [f"the file could not be read ({type(error).__name__})"])
        return self.config

    def watch(self) -> None:
        """Reads the file again whenever it changes, page or no page: the reload history
        has each change the workers saw (runtime/reload.py polls as often), not only
        those somebody looked at. First the run-time keys are read (ten thousand take
        ~100 ms to parse), so that the first page opened does not wait for them."""
        try:
            data.stored_keys(self.config)
        except Exception:               # noqa: BLE001 - the first page reads them then
            pass
        while True:
            time.sleep(WATCH_SECONDS)
            try:
                self.current_config()
            except Exception:           # noqa: BLE001 - the next look tries again
                pass

    def _reloaded(self, result: str, version: str | None, problems: list[str] = ()) -> None:
        self.reloads.append({"at": time.time(), "result": result, "version": version,
                             "problems": list(problems)[:MAX_PROBLEMS]})
        del self.reloads[:-MAX_RELOADS]


def start_console(config: GatewayConfig, run_operation: Callable) -> ThreadingHTTPServer:
    """`run_operation`: runtime/keys_cli.py's, as the admin API runs it (the console does
    not import the runtime, which starts it)."""
    console = Console(config, run_operation)
    host, _, port = config.console.listen.rpartition(":")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (stdlib name)
            self._handle("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._handle("POST")

        def _handle(self, method: str) -> None:
            path, _, query = self.path.partition("?")
            try:
                if path == "/favicon.ico":
                    return self._send(404, b"", "text/plain")
                if path.startswith("/static/"):
                    return self._static(path[len("/static/"):])
                if path == "/login":
                    return self._login(method)
                if path == "/sign-in":
                    return self._sign_in_by_token(method)
                if path in ("/login/oidc", "/login/callback") and method == "GET":
                    return self._oidc(path, parse_qs(query))
                session = console.sessions.session(self._cookie(COOKIE))
                if session is None:
                    if method == "POST":
                        return self._page(403, "error.html", None, {"message": "Sign in first."})
                    return self._redirect("/login")
                form = {}
                if method == "POST":
                    form = self._form()
                    if not console.sessions.csrf_ok(session, (form.get("csrf") or [""])[0]):
                        self._audit(session, path.strip("/").replace("/", "."), None, 403, "no CSRF token")
                        return self._page(403, "error.html", session,
                                          {"message": "This change was refused: its form was not one of this "
                                                      "console's (CSRF). Reload the page and try again."})
                answer = pages.route(console, session, method, path, parse_qs(query), form)
                if answer.audit is not None:
                    action, key_id, outcome = answer.audit
                    self._audit(session, action, key_id, answer.status, outcome)
                if answer.redirect:
                    return self._redirect(answer.redirect, [("set-cookie", cookie_header(COOKIE, "", 0))]
                                          if answer.signs_out else [])
                if answer.csv is not None:
                    return self._send(200, answer.csv.encode(), "text/csv; charset=utf-8",
                                      [("content-disposition", f'attachment; filename="{answer.filename}"')])
                self._page(answer.status, answer.template, session, answer.context)
            except Exception as error:     # noqa: BLE001 - a page's failure must not show its details
                print(json.dumps({"ts": time.time(), "console_error": type(error).__name__, "path": path[:128]}),
                      file=sys.stderr, flush=True)
                self._page(500, "error.html", None, {"message": "The console could not show this page "
                                                                 f"({type(error).__name__}); see the gateway's log."})

        # --- sign-in ---------------------------------------------------------------

        def _login(self, method: str) -> None:
            if method == "GET":
                # One token per browser while it signs in: a second sign-in tab (or its
                # favicon's request) must not make the first tab's form stale.
                token = self._cookie(PRE_COOKIE) or ""
                if not re.fullmatch(r"[0-9a-f]{32}", token):
                    token = os.urandom(16).hex()
                return self._page(200, "login.html", None, {"csrf": token, "problem": None, "oidc": console.oidc},
                                  [("set-cookie", cookie_header(PRE_COOKIE, token, 600))])
            form = self._form()
            pre = self._cookie(PRE_COOKIE)
            if not pre or (form.get("csrf") or [""])[0] != pre:
                return self._page(403, "error.html", None, {"message": "Sign-in refused: reload the sign-in page."})
            name = clean_name((form.get("name") or [""])[0])
            role = console.sessions.role_of((form.get("token") or [""])[0])
            if role is None:
                self._audit_line(name or "unknown", None, "sign_in", None, 401, "wrong token")
                token = os.urandom(16).hex()
                return self._page(401, "login.html", None, {"csrf": token, "oidc": console.oidc, "problem": "That "
                                  "token is not one of this console's."},
                                  [("set-cookie", cookie_header(PRE_COOKIE, token, 600))])
            session, value = console.sessions.open(name, role)
            self._audit(session, "sign_in", None, 200, "signed in")
            self._redirect("/", [("set-cookie", cookie_header(COOKIE, value, console.config.console.session_seconds)),
                                 ("set-cookie", cookie_header(PRE_COOKIE, "", 0))])

        def _sign_in_by_token(self, method: str) -> None:
            """The sign-in a script posts: the form field `token` alone. It needs no CSRF
            token: a console token is itself the proof a CSRF token stands in for, and a page
            that could post one already holds the console."""
            if method != "POST":
                return self._redirect("/login")
            form = self._form()
            name = clean_name((form.get("name") or [""])[0])
            role = console.sessions.role_of((form.get("token") or [""])[0])
            if role is None:
                self._audit_line(name or "unknown", None, "sign_in", None, 401, "wrong token")
                return self._page(401, "error.html", None, {"message": "That token is not one of this console's.",
                                                            "back": "/login"})
            session, value = console.sessions.open(name, role)
            self._audit(session, "sign_in", None, 200, "signed in")
            self._redirect("/", [("set-cookie", cookie_header(COOKIE, value, console.config.console.session_seconds))])

        def _oidc(self, path: str, query: dict) -> None:
            if console.oidc is None:
                return self._page(404, "error.html", None, {"message": "No identity provider is configured."})
            try:
                if path == "/login/oidc":
                    where, sealed = console.oidc.start()
                    # Lax: this cookie must come back on the provider's redirect to /login/callback.
                    return self._redirect(where, [("set-cookie", cookie_header(STATE_COOKIE, sealed, STATE_SECONDS,
                                                                               same_site="Lax"))])
                who, role = console.oidc.finish(query, self._cookie(STATE_COOKIE))
            except SignInProblem as problem:
                self._audit_line("unknown", None, "sign_in", None, 403, f"identity provider: {problem}")
                return self._page(403, "error.html", None, {"message": str(problem), "back": "/login"},
                                  [("set-cookie", cookie_header(STATE_COOKIE, "", 0, same_site="Lax"))])
            session, value = console.sessions.open(who, role)
            self._audit(session, "sign_in", None, 200, "signed in through the identity provider")
            # A page, not a redirect: the provider's redirect brought the browser here from
            # another site, and a SameSite=Strict cookie set now goes only with a navigation
            # this site starts.
            self._page(200, "signed_in.html", session, {},
                       [("set-cookie", cookie_header(COOKIE, value, console.config.console.session_seconds)),
                        ("set-cookie", cookie_header(STATE_COOKIE, "", 0, same_site="Lax"))])

        # --- plumbing --------------------------------------------------------------

        def _cookie(self, name: str) -> str | None:
            for part in self.headers.get("cookie", "").split(";"):
                key, sep, value = part.strip().partition("=")
                if sep and key == name:
                    return value
            return None

        def _form(self) -> dict[str, list[str]]:
            try:
                length = int(self.headers.get("content-length") or 0)
            except ValueError:
                length = 0
            if length > MAX_FORM or length < 0:
                return {}
            raw = self.rfile.read(length).decode("utf-8", "replace") if length else ""
            return parse_qs(raw, keep_blank_values=True)

        def _static(self, name: str) -> None:
            if name not in STATIC:
                return self._send(404, b"not found\n", "text/plain")
            self._send(200, (HERE / "static" / name).read_bytes(), STATIC[name],
                       [("cache-control", "max-age=3600")])

        def _page(self, status: int, template: str, session: Session | None, context: dict,
                  headers: list[tuple[str, str]] = ()) -> None:
            extra = {"session": session, "csrf": context.get("csrf") or (
                console.sessions.csrf_token(session) if session else ""), "path": self.path.partition("?")[0]}
            body = console.templates.get_template(template).render(**{**context, **extra})
            self._send(status, body.encode(), "text/html; charset=utf-8", list(headers))

        def _redirect(self, where: str, headers: list[tuple[str, str]] = ()) -> None:
            self._send(303, b"", "text/plain", [("location", where), *headers])

        def _send(self, status: int, body: bytes, content_type: str, headers: list[tuple[str, str]] = ()) -> None:
            self.send_response(status)
            self.send_header("content-type", content_type)
            self.send_header("content-length", str(len(body)))
            given = {name for name, _ in headers}
            for name, value in [*(h for h in SECURITY_HEADERS if h[0] not in given), *headers]:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        def _audit(self, session: Session, action: str, key_id: str | None, status: int, outcome: str) -> None:
            self._audit_line(session.who, session.role, action, key_id, status, outcome)

        def _audit_line(self, who: str, role: str | None, action: str, key_id: str | None, status: int,
                        outcome: str) -> None:
            """One JSON line on stdout, as the admin API writes: who, what, which key id, the
            outcome; never a key or a token."""
            line = {"ts": time.time(), "audit": "console", "who": who, "role": role, "peer": self.client_address[0],
                    "action": action[:64], "key_id": key_id, "status": status, "outcome": outcome[:200]}
            sys.stdout.write(json.dumps(line) + "\n")
            sys.stdout.flush()

        def log_message(self, *args) -> None:     # the audit lines say what matters
            pass

    server = ThreadingHTTPServer((host or "127.0.0.1", int(port)), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="console-http", daemon=True).start()
    threading.Thread(target=console.watch, name="console-config", daemon=True).start()
    return server


def query_string(**params) -> str:
    return urlencode({k: v for k, v in params.items() if v not in (None, "")}, doseq=True)
