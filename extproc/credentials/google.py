"""Google OAuth access tokens for Vertex AI: from a service account's JSON key (a file,
e.g. a mounted Secret, or an environment variable holding it), or with no key, from
Application Default Credentials (workload identity on GKE, the metadata server, or
GOOGLE_APPLICATION_CREDENTIALS). google-auth makes the signed assertion and calls the
token endpoint: the key's `token_uri`, or the provider's `token_url` when it names one
(a private endpoint, or the mock's in tests).
"""

from __future__ import annotations

import datetime
import hashlib

import orjson

from .minted import MintedToken, shared

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class ServiceAccountError(ValueError):
    """The service account's JSON is not a usable key (the message never quotes it)."""


def read_key(text: str) -> dict:
    """A service-account key's fields, checked enough to sign with; raises ServiceAccountError."""
    try:
        info = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise ServiceAccountError("is not JSON (a service account's key file, as the Cloud console makes it)") from None
    if not isinstance(info, dict) or info.get("type") != "service_account":
        raise ServiceAccountError('is not a service account\'s key ("type": "service_account")')
    missing = [f for f in ("client_email", "private_key", "token_uri") if not isinstance(info.get(f), str)]
    if missing:
        raise ServiceAccountError(f"lacks {', '.join(missing)}")
    return info


def vertex_token(key_json: str | None, token_url: str, describe: str) -> MintedToken:
    """The process's token for this key (None: Application Default Credentials)."""
    digest = hashlib.sha256((key_json or "").encode()).hexdigest()
    return shared(("google", digest, token_url), describe, lambda: _mint(key_json, token_url))


def _mint(key_json: str | None, token_url: str) -> tuple[str, float]:
    import google.auth
    import google.auth.transport.requests
    from google.oauth2 import service_account

    if key_json:
        info = read_key(key_json)
        if token_url:
            info = {**info, "token_uri": token_url}
        credentials = service_account.Credentials.from_service_account_info(info, scopes=SCOPES)
    else:
        credentials, _ = google.auth.default(scopes=SCOPES)
    credentials.refresh(google.auth.transport.requests.Request())
    expiry = credentials.expiry      # naive UTC, as google-auth keeps it
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    lifetime = (expiry - now).total_seconds() if expiry is not None else 3600.0
    return credentials.token, max(lifetime, 1.0)


DEMO_SERVICE_ACCOUNT_ENV = "LLMGW_DEMO_VERTEX_SERVICE_ACCOUNT"


def demo_service_account(project: str = "demo-project") -> str:
    """A throwaway service account's key JSON, made fresh for the quickstart: the mock's
    token endpoint takes any well-formed assertion, so a new RSA key is as good as any."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    return orjson.dumps({"type": "service_account", "project_id": project, "private_key_id": "demo",
                         "private_key": pem, "client_email": f"quickstart@{project}.iam.gserviceaccount.com",
                         "client_id": "0", "token_uri": "https://oauth2.googleapis.com/token"}).decode()
