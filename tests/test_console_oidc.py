"""Signing in to the console with an identity provider (OpenID Connect, authorization code
with PKCE) in Debian's Chromium: an identity provider written for the test (authorize,
token; it checks the PKCE verifier) signs ID tokens with the quickstart's demo issuer's
key, which the quickstart's `identity.jwt.providers.demo` trusts. The console runs as the
supervisor runs it, on the store of a temporary state dir."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import shutil
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import pytest
import yaml
from gateway_stack import free_port, quickstart_config
from playwright.sync_api import sync_playwright

from extproc.config.filter_config import load_config
from extproc.console.server import start_console
from extproc.guardrails.config import detectors_not_made
from extproc.runtime.keys_cli import run_operation
from extproc.runtime.token_cli import demo_token

CLIENT_ID = "llm-gateway-console"


class Provider:
    """The identity provider: signs in whoever `who` says, with `groups`."""

    def __init__(self) -> None:
        self.port = free_port()
        self.who, self.groups, self.wrong_nonce = "alice@example.com", ["platform-admins"], False
        self.codes: dict[str, tuple] = {}
        self.redirect_url = ""
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                query = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                ok = (query.get("client_id") == CLIENT_ID and query.get("redirect_uri") == provider.redirect_url
                      and query.get("response_type") == "code" and query.get("code_challenge_method") == "S256"
                      and "openid" in query.get("scope", "").split())
                if not ok:
                    return self._send(400, {"error": "invalid_request"})
                code = secrets.token_urlsafe(16)
                provider.codes[code] = (query["code_challenge"], query["nonce"], provider.who, provider.groups)
                self.send_response(302)
                self.send_header("location", f"{provider.redirect_url}?{urlencode({'code': code, 'state': query['state']})}")
                self.send_header("content-length", "0")
                self.end_headers()

            def do_POST(self) -> None:  # noqa: N802
                form = {k: v[0] for k, v in parse_qs(self.rfile.read(int(self.headers["content-length"])).decode()).items()}
                found = provider.codes.pop(form.get("code", ""), None)
                if found is None or form.get("client_id") != CLIENT_ID or form.get("redirect_uri") != provider.redirect_url:
                    return self._send(400, {"error": "invalid_grant"})
                challenge, nonce, who, groups = found
                verifier = form.get("code_verifier", "")
                if base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode() != challenge:
                    return self._send(400, {"error": "invalid_grant", "error_description": "PKCE"})
                token = demo_token(who, "platform", groups=groups, extra={
                    "aud": CLIENT_ID, "nonce": "another-nonce" if provider.wrong_nonce else nonce})
                self._send(200, {"id_token": token, "access_token": "unused", "token_type": "Bearer"})

            def _send(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def console(tmp_path_factory):
    work = tmp_path_factory.mktemp("console-oidc")
    provider = Provider()
    port = free_port()
    provider.redirect_url = f"http://127.0.0.1:{port}/login/callback"
    config = quickstart_config()
    config["store"] = {"path": str(work / "budgets.sqlite3")}
    config["console"] = {"listen": f"127.0.0.1:{port}", "oidc": {
        "provider": "demo", "client_id": CLIENT_ID, "redirect_url": provider.redirect_url,
        "authorization_endpoint": f"http://127.0.0.1:{provider.port}/authorize",
        "token_endpoint": f"http://127.0.0.1:{provider.port}/token",
        "roles": {"admin": ["platform-admins"], "viewer": ["engineering"]}}}
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    with detectors_not_made():
        loaded = load_config(str(path))
    server = start_console(loaded, run_operation)
    yield f"http://127.0.0.1:{port}", provider
    server.shutdown()
    provider.server.shutdown()


@pytest.fixture(scope="module")
def browser():
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("Chromium is not installed (tests/run.sh installs Debian's chromium)")
    with sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=binary, args=["--no-sandbox", "--disable-gpu"])
        yield launched
        launched.close()


def sign_in(browser, url: str):
    context = browser.new_context(base_url=url)
    page = context.new_page()
    page.goto("/login")
    page.click("text=Sign in with demo")
    page.wait_for_load_state()
    return context, page


def test_a_member_of_the_admins_group_signs_in_as_admin(browser, console, capsys):
    url, provider = console
    provider.who, provider.groups, provider.wrong_nonce = "alice@example.com", ["engineering", "platform-admins"], False
    context, page = sign_in(browser, url)
    page.wait_for_url(url + "/")
    assert "alice@example.com" in page.locator("header .who").inner_text() and "(admin)" in page.content()
    cookies = {c["name"]: c for c in context.cookies()}
    assert cookies["llmgw_console"]["sameSite"] == "Strict" and cookies["llmgw_console"]["httpOnly"]
    assert "llmgw_console_oidc" not in cookies
    page.goto("/config")
    assert "***" in page.content()
    audit = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"audit"' in line]
    assert any(a["who"] == "alice@example.com" and a["role"] == "admin" and a["action"] == "sign_in" for a in audit)
    context.close()


def test_a_member_of_engineering_reads_and_someone_else_gets_no_role(browser, console):
    url, provider = console
    provider.who, provider.groups, provider.wrong_nonce = "erin@example.com", ["engineering"], False
    context, page = sign_in(browser, url)
    page.wait_for_url(url + "/")
    assert "(viewer)" in page.content()
    page.goto("/keys")
    assert page.locator("form[action='/keys'][method=post]").count() == 0
    context.close()

    provider.who, provider.groups = "mallory@example.com", ["sales"]
    context, page = sign_in(browser, url)
    assert "has no console role" in page.content()
    assert "llmgw_console" not in {c["name"] for c in context.cookies()}
    assert page.goto("/").url.endswith("/login")
    context.close()


def test_a_token_for_another_sign_in_or_a_forged_state_is_refused(browser, console):
    url, provider = console
    provider.who, provider.groups, provider.wrong_nonce = "alice@example.com", ["platform-admins"], True
    context, page = sign_in(browser, url)
    assert "nonce" in page.content() and "llmgw_console" not in {c["name"] for c in context.cookies()}
    context.close()

    provider.wrong_nonce = False
    context = browser.new_context(base_url=url)
    page = context.new_page()
    for forged in ("/login/callback?code=x&state=y", "/login/callback?error=access_denied"):
        answer = page.goto(forged)
        assert answer.status == 403 and "sign in again" in page.content()
    context.close()
