"""Providers in the filter config: where each is reached (its Envoy cluster), what API it
speaks (api/providers.py), and its credential, read from the environment or a file (a
mounted Kubernetes Secret, re-read when it changes: runtime/reload.py), or minted from
one (Vertex AI's access tokens: credentials/)."""

from __future__ import annotations

import fnmatch
import os
import re
from dataclasses import dataclass

from ..api import providers as provider_types
from ..credentials import MintedToken
from ..credentials.entra import entra_token
from ..credentials.google import ServiceAccountError, read_key, vertex_token
from ..yamltree import Node
from .pools import Pool, parse_pool


class Secret:
    """A credential that never shows up in repr, logs or errors."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret(***)"

    __str__ = __repr__


@dataclass(frozen=True, slots=True)
class AwsSigning:
    """How Envoy's aws_request_signing filter signs a Bedrock provider's calls: its region,
    and the credentials: Envoy's default chain (environment, credentials file, IRSA/web
    identity, container and instance roles) unless a credentials file or, for demos, keys
    written into Envoy's config are named."""
    region: str
    access_key_id: str = ""
    secret_access_key: Secret | None = None
    credentials_file: str = ""
    profile: str = ""


# Anthropic's Messages API takes requests up to 32 MB; so does the default for every
# provider. The ceiling keeps a body inside one ext_proc message (transport/sending.py
# receives up to 72 MiB).
DEFAULT_MAX_REQUEST_BYTES = 32 << 20
MAX_REQUEST_BYTES_CEILING = 64 << 20


@dataclass(frozen=True, slots=True)
class Provider:
    name: str
    cluster: str                 # Envoy cluster that reaches it
    auth_header: str             # "authorization" (Bearer), "api-key" (Azure) or "x-api-key" (Anthropic)
    credential_source: str       # "env:NAME", "file:/path" or "inline" (never the value)
    credential: Secret | MintedToken | None    # None when the source could not be read
    type: str = provider_types.OPENAI
    base_path: str = "/v1"       # openai: where the server has the API
    api_version: str = ""        # azure: its api-version query parameter
    # Model names callers may ask for as "<provider>/<model>" without a `models:` entry
    # (shell-style patterns; empty: none).
    model_patterns: tuple[str, ...] = ()
    default_max_tokens: int = 4096   # a translated call's output cap when the caller set none
    url: str = ""                # where the provider is (`extproc envoy-config` makes its cluster)
    # Caller headers normally withheld from providers (stages/provider_headers.py) that
    # this provider receives as the caller sent them (lower case).
    pass_headers: frozenset[str] = frozenset()
    # The largest request body this provider accepts; larger: 413 in the caller's dialect
    # before anything else reads it. Envoy's listener takes the largest of all providers'.
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    project: str = ""            # vertex: the Google Cloud project
    location: str = ""           # vertex: its region (us-east5, europe-west1, ...) or "global"
    aws: AwsSigning | None = None    # bedrock: how Envoy signs its calls
    pool: Pool | None = None         # pool: its replicas and how one is picked per call

    def dialect_for(self, model: str) -> str:
        """The API dialect this provider speaks for `model` (Vertex AI: its maker's)."""
        return provider_types.dialect_of(self.type, model)

    def for_platform(self, model: str, counts: bool, body: dict) -> dict:
        """A body in `model`'s dialect (of an endpoint that `counts` a request's tokens, or
        not), as this provider's platform takes it."""
        return provider_types.body_for_platform(self.type, model, counts, body)

    @property
    def wraps_bodies(self) -> bool:
        """Whether bodies change on their way to this platform (for_platform)."""
        return provider_types.wraps_bodies(self.type)

    @property
    def streams_in_sse(self) -> bool:
        """Whether its streams are SSE; else (AWS's event stream) always read, never passed through."""
        return provider_types.streams_in_sse(self.type)

    def counts_tokens(self, model: str) -> bool:
        """Whether it serves its dialect's token-count endpoint for `model`."""
        return provider_types.counts_tokens(self.type, model)

    def serves(self, model: str) -> bool:
        """Whether "<provider>/<model>" names a model of this provider."""
        return any(fnmatch.fnmatchcase(model, pattern) for pattern in self.model_patterns)

    def auth_value(self) -> str:
        secret = self.credential.reveal() if self.credential else ""
        return f"Bearer {secret}" if self.auth_header == "authorization" else secret

    @property
    def credential_file(self) -> str | None:
        """The file the credential is read from (watched for rotation), if any."""
        return self.credential_source[len("file:"):] if self.credential_source.startswith("file:") else None

    def upstream_path(self, path: str, query: str, model: str, stream: bool = False, counts: bool = False) -> str:
        """The path (and query) an endpoint's `path` takes at this provider (`counts`: an
        endpoint counting a request's tokens)."""
        return provider_types.upstream_path(self.type, base_path=self.base_path, api_version=self.api_version,
                                            path=path, query=query, model=model, stream=stream, counts=counts,
                                            project=self.project, location=self.location)


def parse_provider(name: str, node: Node, strict: bool) -> Provider:
    node.only_keys("type", "cluster", "url", "auth", "api_key", "base_path", "api_version", "models",
                   "default_max_tokens", "pass_headers", "max_request_bytes", "project", "location",
                   "service_account", "token_url", "region", "aws_credentials",
                   "server", "endpoints", "service", "adapters", "picker")
    kind = node.get("type").choice(provider_types.TYPES, provider_types.OPENAI)
    entra = node.get("auth") if isinstance(node.get("auth").value, dict) else None
    auth = "bearer" if entra is not None else \
        node.get("auth").choice(tuple(provider_types.AUTH_HEADERS), provider_types.DEFAULT_AUTH[kind])
    project = location = ""
    aws = None
    source, secret = "", None
    if kind == provider_types.VERTEX:
        project, location = _vertex_place(node)
        source, secret = _google_credential(name, node, strict)
    elif kind == provider_types.BEDROCK:
        aws = _aws_signing(node)
    elif kind == provider_types.POOL and node.get("api_key").missing:
        pass                          # a pool's replicas usually take no key
    elif entra is not None:
        source, secret = _entra_credential(name, kind, node, entra, strict)
    else:
        source, secret = _credential(node.get("api_key"), strict)
    for key in ("project", "location", "service_account", "token_url", "region", "aws_credentials",
                "server", "endpoints", "service", "adapters", "picker"):
        if not node.get(key).missing and key not in _TYPE_KEYS.get(kind, ()):
            node.get(key).fail(f"is not a setting of a {kind} provider")
    base_path = node.get("base_path").str(provider_types.DEFAULT_BASE_PATHS.get(kind, "/v1")).rstrip("/")
    if base_path and not base_path.startswith("/"):
        node.get("base_path").fail("must start with '/' (e.g. /v1, /openai/v1)")
    api_version = node.get("api_version").str("")
    if kind == provider_types.AZURE and not api_version:
        node.get("api_version").fail("is required for an azure provider (e.g. 2024-10-21)")
    models = node.get("models")
    patterns = ("*",) if models.value == "*" else tuple(entry.str() for entry in models.elements())
    url = node.get("url").str(_vertex_url(location) if kind == provider_types.VERTEX else
                              f"https://bedrock-runtime.{aws.region}.amazonaws.com" if aws else "")
    if url and not re.fullmatch(r"https?://[^/\s]+(/.*)?", url):
        node.get("url").fail("must be an http:// or https:// URL (e.g. https://api.anthropic.com)")
    return Provider(name=name, cluster=node.get("cluster").str(cluster_name(name)),
                    auth_header=provider_types.AUTH_HEADERS[auth],
                    credential_source=source, credential=secret, type=kind, base_path=base_path,
                    api_version=api_version, model_patterns=patterns,
                    default_max_tokens=node.get("default_max_tokens").number(4096, integer=True, minimum=1),
                    url=url, pass_headers=_pass_headers(node.get("pass_headers")),
                    max_request_bytes=_max_request_bytes(node.get("max_request_bytes")),
                    project=project, location=location, aws=aws,
                    pool=parse_pool(node) if kind == provider_types.POOL else None)


# Settings only some provider types take.
_TYPE_KEYS = {provider_types.VERTEX: ("project", "location", "service_account", "token_url"),
              provider_types.BEDROCK: ("region", "aws_credentials"),
              provider_types.POOL: ("server", "endpoints", "service", "adapters", "picker")}


def _aws_signing(node: Node) -> AwsSigning:
    if not node.get("api_key").missing:
        node.get("api_key").fail("a bedrock provider's calls are signed by Envoy (SigV4) with AWS "
                                 "credentials (`aws_credentials:`, or Envoy's default chain), not an API key")
    region = node.get("region").str("")
    if not re.fullmatch(r"[a-z]{2}(-gov)?-[a-z]+-\d", region):
        node.get("region").fail("is required for a bedrock provider: the AWS region (us-east-1, eu-west-3, ...)")
    credentials = node.get("aws_credentials")
    credentials.only_keys("access_key_id", "secret_access_key", "file", "profile")
    if credentials.missing:
        return AwsSigning(region)
    if not credentials.get("file").missing:
        return AwsSigning(region, credentials_file=credentials.get("file").str(),
                          profile=credentials.get("profile").str(""))
    key_id, secret = credentials.get("access_key_id").str(""), credentials.get("secret_access_key").str("")
    if not key_id or not secret:
        credentials.fail("names a credentials `file` (and `profile`), or, for demos, both "
                         "`access_key_id` and `secret_access_key` (written into Envoy's config)")
    return AwsSigning(region, access_key_id=key_id, secret_access_key=Secret(secret))


def _entra_credential(name: str, kind: str, node: Node, auth: Node, strict: bool) -> tuple[str, MintedToken | None]:
    """Azure OpenAI's Entra ID token, minted from an app registration's client secret or
    a federated token file (AKS workload identity): `auth: {entra: {...}}`."""
    auth.only_keys("entra")
    entra = auth.get("entra")
    entra.only_keys("tenant_id", "client_id", "client_secret", "federated_token_file", "token_url")
    if kind != provider_types.AZURE:
        auth.fail("`entra` authenticates an azure provider only")
        return "", None
    if not node.get("api_key").missing:
        node.get("api_key").fail("an Entra-authenticated provider has no API key (`auth: {entra: ...}`)")
    tenant, client = entra.get("tenant_id").str(""), entra.get("client_id").str("")
    for key, value in (("tenant_id", tenant), ("client_id", client)):
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]{0,99}", value):
            entra.get(key).fail("is required: the app registration's directory (tenant) or application (client) ID")
    token_url = entra.get("token_url").str("")
    if token_url and not re.fullmatch(r"https?://[^/\s]+(/.*)?", token_url):
        entra.get("token_url").fail("must be an http:// or https:// URL")
    federated = entra.get("federated_token_file").str("")
    if entra.get("client_secret").missing == (not federated):
        entra.fail("names one of `client_secret` ({env|file|value}) or `federated_token_file` "
                   "(AKS workload identity: $AZURE_FEDERATED_TOKEN_FILE's path)")
        return "", None
    describe = f"provider {name}: Entra ID app {client}"
    if federated:
        return f"entra:{client}", entra_token(tenant, client, None, federated, token_url, describe)
    source, secret = _credential(entra.get("client_secret"), strict)
    if secret is None:
        return source, None
    return f"entra:{client}", entra_token(tenant, client, secret.reveal, "", token_url, describe)


def _vertex_place(node: Node) -> tuple[str, str]:
    project, location = node.get("project").str(""), node.get("location").str("global")
    if not re.fullmatch(r"[a-z][a-z0-9-]{4,28}[a-z0-9]|[0-9]{6,20}", project):
        node.get("project").fail("is required for a vertex provider: the Google Cloud project's id or number")
    if not re.fullmatch(r"[a-z]+(-[a-z0-9]+)*", location):
        node.get("location").fail("must be a Vertex AI location (us-east5, europe-west1, global, ...)")
    return project, location


def _vertex_url(location: str) -> str:
    """Where Vertex AI serves a location when the config names no `url`."""
    return "https://aiplatform.googleapis.com" if location == "global" else \
        f"https://{location}-aiplatform.googleapis.com"


def _google_credential(name: str, node: Node, strict: bool) -> tuple[str, MintedToken | None]:
    """Vertex AI's access token: minted from the service account's key (`service_account:`
    {file} or {env} holding the JSON), or from Application Default Credentials without one."""
    if not node.get("api_key").missing:
        node.get("api_key").fail("a vertex provider authenticates with `service_account:` "
                                 "(or, without it, workload identity), not an API key")
    token_url = node.get("token_url").str("")
    if token_url and not re.fullmatch(r"https?://[^/\s]+(/.*)?", token_url):
        node.get("token_url").fail("must be an http:// or https:// URL")
    account = node.get("service_account")
    if account.missing:
        return "google-default", vertex_token(None, token_url, f"provider {name}: application default credentials")
    source, secret = _credential(account, strict)
    if secret is None:
        return source, None
    try:
        read_key(secret.reveal())
    except ServiceAccountError as error:
        account.fail(str(error))
        return source, None
    return source, vertex_token(secret.reveal(), token_url, f"provider {name}: service account from {source}")


def _max_request_bytes(node: Node) -> int:
    value = node.number(DEFAULT_MAX_REQUEST_BYTES, integer=True, minimum=65_536)
    if value > MAX_REQUEST_BYTES_CEILING:
        node.fail(f"must be at most {MAX_REQUEST_BYTES_CEILING} (64 MiB)")
        return MAX_REQUEST_BYTES_CEILING
    return value


def _pass_headers(node: Node) -> frozenset[str]:
    names = []
    for entry in node.elements():
        name = entry.str().strip().lower()
        if not re.fullmatch(r"[a-z0-9!#$%&'*+.^_`|~-]+", name):
            entry.fail("a header name (letters, digits, '-')")
        elif name in provider_types.CREDENTIAL_HEADERS or name.startswith(("x-gateway-", ":")):
            entry.fail("a credential or the gateway's own header never passes")
        names.append(name)
    return frozenset(names)


def cluster_name(provider: str) -> str:
    """The Envoy cluster of a provider whose config names none: its name, as Envoy spells clusters."""
    return re.sub(r"[^A-Za-z0-9_]", "_", provider)


def _credential(node: Node, strict: bool) -> tuple[str, Secret | None]:
    node.only_keys("env", "file", "value")
    if node.missing:
        node.fail("is required: {env: VAR}, {file: /path} or {value: ...} (demo only)")
        return "", None
    if not node.get("env").missing:
        var = node.get("env").str()
        value = os.environ.get(var)
        if value is None and strict:
            node.fail(f"environment variable {var} is not set")
        elif value is None:             # `extproc check`: valid, but `up` and `serve` would refuse it
            node.warn(f"environment variable {var} is not set here (`extproc up` and `serve` need it)")
        return f"env:{var}", Secret(value) if value is not None else None
    if not node.get("file").missing:
        file = node.get("file").str()
        try:
            with open(file, encoding="utf-8") as handle:
                return f"file:{file}", Secret(handle.read().strip())
        except OSError as exc:
            if strict:
                node.fail(f"cannot read credential file {file}: {exc.strerror}")
            else:
                node.warn(f"cannot read credential file {file} here: {exc.strerror} (`extproc up` and "
                          "`serve` need it)")
            return f"file:{file}", None
    if not node.get("value").missing:
        return "inline", Secret(node.get("value").str())
    node.fail("must have one of: env, file, value")
    return "", None


