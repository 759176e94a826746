"""CancelShutDown is public on the internet: thousands of generated hostile requests, with Azurite behind it.

For every request: no 5xx, no exception out of main(), nothing user-controlled echoed raw, and - checked
in Azurite itself at the end - nothing written. Time is moved through the injected clock, never slept.
"""

from __future__ import annotations

import importlib
import logging
from datetime import date, timedelta

import azure.functions as func
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from itsdangerous import URLSafeSerializer
from itsdangerous.encoding import base64_decode

from shared import links
from shared.links import CancelGrant, LinkSigner

CancelShutDown = importlib.import_module("CancelShutDown")

FUZZ = settings(max_examples=700, deadline=None, suppress_health_check=list(HealthCheck), database=None)
PROBE = "<script>alert('x')</script>"  # planted in every user-controlled string
METHODS = st.sampled_from(
    ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "PROPFIND", "post", "gEt", ""]
)
CONTENT_TYPES = st.sampled_from(
    ["application/x-www-form-urlencoded", "application/json", "text/plain", "multipart/form-data; boundary=x",
     "application/xml", "", "text/html; charset=utf-16", "\x00", "application/json; charset=\u202eevil"]
)  # fmt: skip
TRICKY = st.text(
    alphabet=st.sampled_from(list("\x00\u202e\u2066\u200f\U0001f600\ufeff<>&\"'%=?#/\\\r\n.-_ aZ09")),
    max_size=40,
)
BODIES = st.one_of(
    st.binary(max_size=2048),
    st.just(b'{"token": "x", "confirm": true}'),
    st.just(b"token=abc&confirm=1&" + b"x" * 200_000),
    TRICKY.map(lambda t: t.encode("utf-8", "surrogatepass")),
)


class Fuzz:
    """Sends one request through main() and checks the invariants that hold for every answer."""

    def __init__(self, wire):
        self.wire = wire
        self.failures: list[logging.LogRecord] = []
        handler = logging.Handler(level=logging.ERROR)
        handler.emit = self.failures.append
        logging.getLogger().addHandler(handler)
        self.handler = handler

    def send(
        self, method: str, params: dict[str, str], headers: dict[str, str], body: bytes
    ) -> func.HttpResponse:
        url = "https://autoshutdown.example.net/api/CancelShutDown?" + "&".join(f"{k}=..." for k in params)
        request = func.HttpRequest(method, url, headers=headers, params=params, body=body)
        response = CancelShutDown.main(request)  # an exception here fails the test: none may escape
        page = (response.get_body() or b"").decode("utf-8")
        assert response.status_code < 500, (response.status_code, page[:300])
        assert PROBE not in page
        for value in [*params.values(), *headers.values()]:
            if len(value) >= 8 and any(c in value for c in "<>&\"'"):
                assert value not in page
        assert not [r for r in self.failures if "unexpectedly" in r.getMessage()]
        return response

    def close(self) -> None:
        logging.getLogger().removeHandler(self.handler)


@pytest.fixture
def fuzz(wire):
    wire.standins.azureml.seed("ci-alice", "Running")
    fuzzer = Fuzz(wire)
    yield fuzzer
    fuzzer.close()
    assert wire.ledger() == []  # nothing written, checked in Azurite itself


def valid_token(wire, instance: str = "ci-alice") -> str:
    shutdown = wire.MAIL_AT.replace(hour=19)
    grant = CancelGrant(wire.environ["aml_workspace"], instance, date(2026, 11, 24), shutdown)
    return LinkSigner(wire.environ["cancel_link_secret"]).sign(grant)


def headers_with(user_agent: str, forwarded: str, content_type: str) -> dict[str, str]:
    return {
        "User-Agent": user_agent + PROBE,
        "X-Forwarded-For": forwarded + PROBE,
        "Content-Type": content_type,
    }


def same_bytes(a: str, b: str) -> bool:
    """Two tokens that decode to identical bytes are the same token (base64 padding bits aside)."""
    try:
        return [base64_decode(p) for p in a.split(".")] == [base64_decode(p) for p in b.split(".")]
    except Exception:
        return False


def test_random_truncated_and_oversized_tokens(fuzz, wire):
    token = valid_token(wire)

    @FUZZ
    @given(
        method=METHODS,
        junk=st.one_of(
            st.text(max_size=300),
            TRICKY,
            st.integers(0, len(token) - 1).map(lambda n: token[:n]),
            st.integers(1000, 120_000).map(lambda n: "A" * n),
            st.just(token + PROBE),
        ),
        extra=st.dictionaries(TRICKY, TRICKY, max_size=5),
        ua=TRICKY,
        fwd=TRICKY,
        ctype=CONTENT_TYPES,
        body=BODIES,
    )
    def run(method, junk, extra, ua, fwd, ctype, body):
        response = fuzz.send(method, {**extra, "token": junk}, headers_with(ua, fwd, ctype), body)
        assert response.status_code == (400 if method.upper() in ("GET", "HEAD", "POST") else 405)

    run()


def test_bit_flipped_and_reordered_tokens(fuzz, wire):
    token = valid_token(wire)

    @FUZZ
    @given(
        method=st.sampled_from(["GET", "POST", "HEAD"]),
        position=st.integers(0, len(token) - 1),
        bit=st.integers(0, 6),
        shuffle=st.booleans(),
        permutation=st.permutations(token.split(".")),
        body=BODIES,
    )
    def run(method, position, bit, shuffle, permutation, body):
        if shuffle:
            forged = ".".join(permutation)
        else:
            forged = token[:position] + chr(ord(token[position]) ^ (1 << bit)) + token[position + 1 :]
        assume(forged != token and not same_bytes(forged, token))
        response = fuzz.send(
            method, {"token": forged}, headers_with("", "", "application/x-www-form-urlencoded"), body
        )
        assert response.status_code == 400

    run()


def test_genuine_looking_tokens_that_must_not_count(fuzz, wire):
    """Signed with another secret, for another workspace, instance, day or night, or malformed payloads."""
    real = wire.environ["cancel_link_secret"]
    shutdown = wire.MAIL_AT.replace(hour=19)
    forge = URLSafeSerializer(real, salt=links._SALT)

    @FUZZ
    @given(
        variant=st.sampled_from(["other-secret", "other-workspace", "unmanaged", "wrong-day", "later-night", "shape"]),
        workspace=st.from_regex(r"[a-z][a-z0-9-]{2,20}", fullmatch=True),
        days=st.integers(1, 400),
        payload=st.one_of(st.none(), st.integers(), st.lists(st.integers(), max_size=3), st.dictionaries(TRICKY, TRICKY, max_size=4)),
        method=st.sampled_from(["GET", "POST"]),
    )  # fmt: skip
    def run(variant, workspace, days, payload, method):
        ws = wire.environ["aml_workspace"]
        night = date(2026, 11, 24)
        if variant == "other-secret":
            token = LinkSigner(real + "-rotated").sign(CancelGrant(ws, "ci-alice", night, shutdown))
        elif variant == "other-workspace":
            assume(workspace != ws)
            token = LinkSigner(real).sign(CancelGrant(workspace, "ci-alice", night, shutdown))
        elif variant == "unmanaged":
            wire.configure(aml_compute_instance="ci-alice")
            token = LinkSigner(real).sign(CancelGrant(ws, "ci-zed", night, shutdown))
        elif variant == "wrong-day":
            token = LinkSigner(real).sign(CancelGrant(ws, "ci-alice", night + timedelta(days=days), shutdown))
        elif variant == "later-night":
            later = shutdown + timedelta(days=days)
            token = LinkSigner(real).sign(CancelGrant(ws, "ci-alice", later.date(), later))
        else:
            token = forge.dumps(payload)
        response = fuzz.send(method, {"token": token}, headers_with("", "", ""), b"")
        assert response.status_code == 400
        wire.configure(aml_compute_instance="*")

    run()


def test_expired_tokens_and_valid_tokens_with_other_methods(fuzz, wire):
    token = valid_token(wire)

    @FUZZ
    @given(
        late=st.integers(0, 10 * 24 * 3600),
        method=st.sampled_from(["POST", "GET", "HEAD", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        expired=st.booleans(),
    )
    def run(late, method, expired):
        assume(expired or method != "POST")  # a valid, current POST is a real click: it writes, rightly
        wire.now = wire.MAIL_AT.replace(hour=19) + timedelta(seconds=late) if expired else wire.MAIL_AT
        response = fuzz.send(method, {"token": token}, headers_with("", "", ""), b"")
        if method in ("PUT", "DELETE", "PATCH", "OPTIONS"):
            assert response.status_code == 405
        elif expired:
            assert response.status_code == 410
        else:
            assert response.status_code == 200

    run()
    wire.now = wire.MAIL_AT


def test_every_page_is_html_with_the_protective_headers(fuzz, wire):
    for method, token in (("GET", valid_token(wire)), ("POST", "garbage"), ("PUT", valid_token(wire))):
        response = fuzz.send(method, {"token": token}, {}, b"")
        assert response.headers["Content-Type"].startswith("text/html")
        assert response.headers["X-Content-Type-Options"] == "nosniff"
        assert "script-src" not in response.headers["Content-Security-Policy"]  # default-src 'none' covers it
