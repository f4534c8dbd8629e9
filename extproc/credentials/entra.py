"""Microsoft Entra ID access tokens for Azure OpenAI: OAuth 2.0's client-credentials grant
against the tenant's token endpoint, with the app registration's client secret or, on
AKS with workload identity, the federated token Kubernetes projects into the pod (read
anew at each mint: the kubelet rotates it). A plain OAuth 2.0 client (the standard
library's HTTP): the grant is one form POST, and azure-identity would bring a dependency
tree for it. The scope is Azure OpenAI's (Cognitive Services').
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Callable

import orjson

from .minted import MintedToken, shared

SCOPE = "https://cognitiveservices.azure.com/.default"
AUTHORITY = "https://login.microsoftonline.com"
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
_TIMEOUT = 10.0


class EntraError(RuntimeError):
    """The token endpoint refused or could not be reached (its error code, never a secret)."""


def token_endpoint(tenant_id: str) -> str:
    return f"{AUTHORITY}/{urllib.parse.quote(tenant_id, safe='')}/oauth2/v2.0/token"


def entra_token(tenant_id: str, client_id: str, client_secret: Callable[[], str] | None,
                federated_token_file: str, token_url: str, describe: str) -> MintedToken:
    """The process's token for this app registration: `client_secret` reads the secret
    (None: the federated token file stands in for it)."""
    url = token_url or token_endpoint(tenant_id)
    secret_digest = hashlib.sha256(client_secret().encode()).hexdigest() if client_secret else ""
    key = ("entra", tenant_id, client_id, secret_digest, federated_token_file, url)
    return shared(key, describe, lambda: _mint(url, client_id, client_secret, federated_token_file))


def _mint(url: str, client_id: str, client_secret: Callable[[], str] | None,
          federated_token_file: str) -> tuple[str, float]:
    form = {"grant_type": "client_credentials", "client_id": client_id, "scope": SCOPE}
    if client_secret is not None:
        form["client_secret"] = client_secret()
    else:
        form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
        form["client_assertion"] = Path(federated_token_file).read_text().strip()
    request = urllib.request.Request(url, data=urllib.parse.urlencode(form).encode(), method="POST",
                                     headers={"content-type": "application/x-www-form-urlencoded",
                                              "accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as answer:     # noqa: S310 (configured URL)
            body = orjson.loads(answer.read())
    except urllib.error.HTTPError as error:
        raise EntraError(f"the token endpoint answered {error.code} {_error_code(error.read())}") from None
    except (urllib.error.URLError, OSError, orjson.JSONDecodeError) as error:
        raise EntraError(f"the token endpoint could not be read ({type(error).__name__})") from None
    token, lifetime = body.get("access_token"), body.get("expires_in")
    if not isinstance(token, str) or not token:
        raise EntraError("the token endpoint's answer has no access_token")
    try:
        seconds = float(lifetime)
    except (TypeError, ValueError):
        seconds = 3600.0
    return token, max(seconds, 1.0)


def _error_code(body: bytes) -> str:
    """Entra's error and its AADSTS code (their descriptions may quote the request)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(parsed, dict):
        return ""
    codes = parsed.get("error_codes")
    code = f" AADSTS{codes[0]}" if isinstance(codes, list) and codes and isinstance(codes[0], int) else ""
    error = parsed.get("error")
    return f"({error}{code})" if isinstance(error, str) else ""
