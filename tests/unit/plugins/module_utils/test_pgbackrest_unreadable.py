"""Why a pgBackRest repository cannot be read, as the message says it: S3's own answer, an untrusted TLS certificate,
else the cipher pass; the stanza's messages as pgBackRest's info --output=json gives them."""

from __future__ import annotations

import typing as t

import pytest

from ansible_collections.payments.deploy.plugins.module_utils._pgbackrest import PgBackRestError, require_readable

S3_REFUSAL = ("raised from remote-0 protocol on 'localhost': HTTP request failed with 403 (Forbidden):\n*** Path/Query ***:\n"
              "GET /payments-pgbackrest/?list-type=2\n*** Response Content ***:\n<?xml version=\"1.0\"?><Error>"
              "<Code>SignatureDoesNotMatch</Code><Message>The request signature we calculated does not match</Message></Error>")
TLS_REFUSAL = "[CryptoError] unable to verify certificate presented by 'localhost:21443': [20] unable to get local issuer certificate"
NAME_REFUSAL = "[CryptoError] unable to find hostname 'localhost' in certificate common name or subject alternative names"
CIPHER_REFUSAL = "[CryptoError] cipher header invalid\nHINT: is or was the repo encrypted?"


def stanza(message: str) -> dict[str, t.Any]:
    return {"name": "payments", "status": {"code": 99, "message": "other"},
            "repo": [{"key": 1, "status": {"code": 99, "message": message}}]}


@pytest.mark.parametrize(("message", "cause", "detail"), [
    (S3_REFUSAL, "(S3 answered SignatureDoesNotMatch: The request signature we calculated does not match)",
     "HTTP request failed with 403 (Forbidden)"),
    (TLS_REFUSAL, "(TLS: the S3 endpoint's certificate is not trusted", "unable to verify certificate"),
    (NAME_REFUSAL, "(TLS: the S3 endpoint's certificate does not name the host connected to", "unable to find hostname 'localhost'"),
    (CIPHER_REFUSAL, "(a wrong cipher pass?)", "cipher header invalid"),
])
def test_the_cause_is_named_with_the_first_line_of_each_message(message: str, cause: str, detail: str) -> None:
    with pytest.raises(PgBackRestError) as raised:
        require_readable(stanza(message))
    text = str(raised.value)
    assert text.startswith("the repository of stanza 'payments' cannot be read ") and cause in text and detail in text
    assert "HINT" not in text and "Path/Query" not in text  # only each message's first line is shown


@pytest.mark.parametrize("code", [0, 1, 2])
def test_a_readable_or_missing_stanza_passes(code: int) -> None:
    require_readable({"name": "payments", "status": {"code": code, "message": "x"}, "repo": []})
