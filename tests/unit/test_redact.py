"""redact.py: outside text kept on one line, and secrets masked in every form
they can take on their way into a log line."""

import json
from urllib.parse import quote, quote_plus

import pytest

from mrmd_monitor.redact import MASK, Masker, escape, mask, url_secrets

SECRET = "s3cr/t tok+én"


@pytest.mark.parametrize("text, shown", [
    ("a\nb", "a\\nb"), ("a\r\nb", "a\\r\\nb"), ("\tx", "\\tx"), ("\x1b[31m", "\\x1b[31m"),
    ("\x00\x7f\x9b", "\\x00\\x7f\\x9b"), ("line\u2028two", "line\\u2028two"),
    ("\u202egnp.exe", "\\u202egnp.exe"), ("plain é 中 😀", "plain é 中 😀")])
def test_escape_keeps_outside_text_on_one_visible_line(text, shown):
    assert escape(text) == shown


def test_escape_takes_any_value():
    assert escape(42) == "42" and escape(None) == "None"


@pytest.mark.parametrize("form", [
    SECRET, quote(SECRET, safe=""), quote(SECRET), quote_plus(SECRET),
    quote(SECRET, safe="").lower(), json.dumps(SECRET)[1:-1], repr(SECRET)[1:-1]])
def test_a_secret_is_masked_in_every_spelling(form):
    line = "connecting with %s now" % form
    assert mask(line, [SECRET]) == "connecting with %s now" % MASK


def test_credentials_nobody_configured_are_masked_by_their_place():
    line = ("GET wss://ada:hunter2@sync.example.org/doc?room=x&token=abc123&api_key=k9 "
            "Authorization: bearer eyJhbGciOi.x.y")
    masked = mask(line)
    for secret in ("hunter2", "abc123", "k9", "eyJhbGciOi"):
        assert secret not in masked
    assert "ada:%s@sync.example.org" % MASK in masked
    assert "room=x" in masked and "token=%s" % MASK in masked
    assert "bearer %s" % MASK in masked


def test_masking_inside_a_json_line_keeps_it_valid_json():
    line = json.dumps({"message": 'GET /doc?token=abc"def&room=x: Bearer xyz"'})
    masked = mask(line)
    assert "abc" not in masked and "xyz" not in masked
    assert json.loads(masked)["message"] == 'GET /doc?token=%s"def&room=x: Bearer %s"' % (
        MASK, MASK)


def test_the_url_s_password_and_secret_query_values_are_its_secrets():
    found = url_secrets("wss://u:p%40ss@h:4444/?token=t%2Bk&room=lab&password=pw")
    assert {"p%40ss", "p@ss", "t%2Bk", "t+k", "pw"} <= set(found)
    assert "lab" not in found and "u" not in found
    assert url_secrets("ws://localhost:4444") == [] and url_secrets(None) == []
    assert url_secrets("ws://[broken") == []


def test_a_masker_is_mask_with_its_secrets_worked_out_once():
    masker = Masker([SECRET, "", None])
    line = "a %s b %s" % (SECRET, quote_plus(SECRET))
    assert masker(line) == mask(line, [SECRET]) == "a %s b %s" % (MASK, MASK)
    assert Masker()("nothing to hide") == "nothing to hide"


def test_a_longer_secret_is_masked_whole_before_a_shorter_one_inside_it():
    assert mask("key=abcdef", ["abc", "abcdef"]) == "key=%s" % MASK
    assert mask("value abcdef", ["abc", "abcdef"]) == "value %s" % MASK


TOKEN = "s3cr/t+tok=en&x y"
NON_ASCII = "tökén-ü/中"


@pytest.mark.parametrize("secret", [TOKEN, NON_ASCII])
def test_a_double_url_encoded_secret_is_masked(secret):
    """A URL carried inside another URL's query (a redirect target, a proxy's
    error) quotes the secret twice."""
    twice = quote(quote(secret, safe=""), safe="")
    for form in (twice, twice.lower(), quote(quote_plus(secret), safe="")):
        assert form not in mask("redirected to /login?next=%2Fdoc%3Fk%3D" + form, [secret]), form


def test_the_repr_of_a_non_ascii_secrets_bytes_is_masked():
    """A library that logs the raw header or URL bytes: b'...\\xc3\\xb6...'."""
    for shown in (repr(NON_ASCII.encode("utf-8")), str(NON_ASCII.encode("utf-8")),
                  ascii(NON_ASCII)):
        masked = mask("sent %s" % shown, [NON_ASCII])
        assert "k\\xc3\\xa9n" not in masked and "k\\xe9n" not in masked, masked
