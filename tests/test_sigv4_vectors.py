"""AWS Signature Version 4, as the mock's Bedrock routes verify it: botocore's SigV4Auth
reproduces the canonical request, string to sign and Authorization header of each known-good
vector (AWS's own test suite, and two Bedrock Converse calls), and the mock's verifier
accepts those requests and explains its refusal of a changed one as Bedrock does."""

from __future__ import annotations

import datetime
from pathlib import Path
from urllib.parse import urlsplit

import orjson
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import make_mocked_request
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from gateway_stack import FIXTURES

from extproc.mock.bedrock import AwsCredentials, signature_refusal

VECTORS = yaml.safe_load((FIXTURES / "provider-recordings" / "aws-sigv4-vectors.yaml").read_text())
SUITE = FIXTURES / "provider-recordings" / "aws-sigv4-testsuite"
ACCESS_KEY, SECRET_KEY = VECTORS["credentials"]["access_key_id"], VECTORS["credentials"]["secret_access_key"]
SIGNED_AT = datetime.datetime.strptime(VECTORS["date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=datetime.UTC)
SUITE_CASES = [case for case in VECTORS["cases"] if "request_raw" in case]
BEDROCK_CASES = [case for case in VECTORS["cases"] if "request_raw" not in case]


def parse_raw(raw: str) -> tuple[str, str, list[tuple[str, str]], bytes]:
    """A suite's .req: request line, `Name:value` headers, a blank line, the body."""
    head, _, body = raw.partition("\n\n")
    request_line, *lines = head.split("\n")
    method, path, _ = request_line.split(" ")
    headers = [(name, value) for name, _, value in (line.partition(":") for line in lines)]
    return method, path, headers, body.encode()


def suite_request(case: dict) -> AWSRequest:
    """The request as botocore's own suite runner builds it: the URL's query as params."""
    method, path, headers, body = parse_raw(case["request_raw"])
    host = dict((name.lower(), value) for name, value in headers)["host"]
    request = AWSRequest(method=method, url=f"https://{host}{path}", data=body)
    for name, value in headers:
        request.headers[name] = value
    split = urlsplit(request.url)
    if split.query:
        request.url = f"https://{host}{split.path}"
        request.params = dict(pair.partition("=")[::2] for pair in split.query.split("&"))
    request.context["timestamp"] = VECTORS["date"]
    return request


def freeze_clock(monkeypatch) -> None:
    """add_auth reads the clock itself: the vectors' date."""
    monkeypatch.setattr("botocore.auth.get_current_datetime", lambda: SIGNED_AT.replace(tzinfo=None))


@pytest.mark.parametrize("case", SUITE_CASES, ids=[case["name"] for case in SUITE_CASES])
def test_botocore_reproduces_the_aws_test_suite(case, monkeypatch):
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, case["session_token"]), "service", VECTORS["region"])
    request = suite_request(case)
    if case["session_token"] and "X-Amz-Security-Token" not in request.headers:
        request.headers["X-Amz-Security-Token"] = case["session_token"]     # as add_auth adds it, signed
    canonical = signer.canonical_request(request)
    assert canonical == case["canonical_request"]
    assert signer.string_to_sign(request, canonical) == case["string_to_sign"]
    freeze_clock(monkeypatch)
    signer.add_auth(request)
    assert request.headers["Authorization"] == case["authorization"]


@pytest.mark.parametrize("case", SUITE_CASES, ids=[case["name"] for case in SUITE_CASES])
def test_the_vectors_are_the_suites_files_verbatim(case):
    stem = SUITE / case["name"] / Path(case["name"]).name
    for suffix, key in ((".req", "request_raw"), (".creq", "canonical_request"), (".sts", "string_to_sign"),
                        (".authz", "authorization")):
        assert stem.with_suffix(suffix).read_text(encoding="utf-8") == case[key], suffix


def bedrock_request(case: dict) -> AWSRequest:
    request = AWSRequest(method=case["method"], url=case["url"], data=case["body"].encode(),
                         headers=dict(case["headers_before_signing"]))
    request.context["timestamp"] = VECTORS["date"]
    return request


@pytest.mark.parametrize("case", BEDROCK_CASES, ids=[case["name"] for case in BEDROCK_CASES])
def test_botocore_reproduces_the_bedrock_vectors(case, monkeypatch):
    signer = SigV4Auth(Credentials(ACCESS_KEY, SECRET_KEY, case["session_token"]), case["service"], case["region"])
    request = bedrock_request(case)
    request.headers["X-Amz-Date"] = VECTORS["date"]         # what add_auth adds before signing: both signed
    if case["session_token"]:
        request.headers["X-Amz-Security-Token"] = case["session_token"]
    canonical = signer.canonical_request(request)
    assert canonical == case["canonical_request"]
    string_to_sign = signer.string_to_sign(request, canonical)
    assert string_to_sign == case["string_to_sign"]
    assert signer.signature(string_to_sign, request) == case["signature"]
    freeze_clock(monkeypatch)
    signed = bedrock_request(case)
    signer.add_auth(signed)
    assert signed.headers["Authorization"] == case["authorization"]


def received(case: dict, body: bytes | None = None) -> tuple[web.Request, bytes]:
    """The vector's signed request as the mock's server receives it."""
    url = urlsplit(case["url"])
    headers = {**case["headers_before_signing"], "Host": url.netloc, "X-Amz-Date": VECTORS["date"],
               "Authorization": case["authorization"]}
    if case["session_token"]:
        headers["X-Amz-Security-Token"] = case["session_token"]
    return make_mocked_request(case["method"], url.path, headers=headers), \
        case["body"].encode() if body is None else body


AWS = AwsCredentials(ACCESS_KEY, SECRET_KEY, "us-east-1")


@pytest.mark.parametrize("case", BEDROCK_CASES, ids=[case["name"] for case in BEDROCK_CASES])
def test_the_mocks_verifier_accepts_the_bedrock_vectors(case):
    request, body = received(case)
    assert request.raw_path == urlsplit(case["url"]).path          # %3A as sent, not decoded
    assert signature_refusal(request, body, AWS, SIGNED_AT) is None
    assert signature_refusal(request, body, AWS, SIGNED_AT + datetime.timedelta(minutes=4)) is None


@pytest.mark.parametrize("case", BEDROCK_CASES, ids=[case["name"] for case in BEDROCK_CASES])
def test_the_mocks_verifier_explains_a_mismatch_with_the_vectors_strings(case):
    request, body = received(case)
    refusal = signature_refusal(request, body, AwsCredentials(ACCESS_KEY, "another-secret", "us-east-1"), SIGNED_AT)
    assert refusal is not None and refusal.status == 403
    assert refusal.headers["x-amzn-ErrorType"] == \
        "InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"
    message = refusal.text
    assert "The request signature we calculated does not match the signature you provided." in message
    # The strings AWS would have signed are the vector's: the secret alone was wrong.
    assert orjson.loads(refusal.body)["message"].endswith(
        f"The Canonical String for this request should have been\n'{case['canonical_request']}'\n\n"
        f"The String-to-Sign should have been\n'{case['string_to_sign']}'\n")
    changed, body = received(case, b'{"messages": []}')
    assert signature_refusal(changed, body, AWS, SIGNED_AT).status == 403      # a body changed after signing


def test_the_mocks_verifier_refuses_a_stale_or_early_clock():
    request, body = received(BEDROCK_CASES[0])
    stale = signature_refusal(request, body, AWS, SIGNED_AT + datetime.timedelta(minutes=6))
    assert "Signature expired: 20150830T123600Z is now earlier than 20150830T123700Z " \
           "(20150830T124200Z - 5 min.)" in stale.text
    early = signature_refusal(request, body, AWS, SIGNED_AT - datetime.timedelta(minutes=6))
    assert "Signature not yet current: 20150830T123600Z is still later than 20150830T123500Z " \
           "(20150830T123000Z + 5 min.)" in early.text
