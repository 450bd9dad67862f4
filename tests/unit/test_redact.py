"""redact.py: a secret is masked in every spelling it can reach a log line in."""

import json
from urllib.parse import quote, quote_plus

import pytest

from mrmd_monitor.redact import MASK, Masker, mask

TOKEN = "s3cr/t+tok=en&x y"
NON_ASCII = "tökén-ü/中"


def spellings(secret):
    once = quote(secret, safe="")
    return [secret, once, quote(secret), quote_plus(secret), once.lower(), json.dumps(secret)[1:-1]]


@pytest.mark.parametrize("secret", [TOKEN, NON_ASCII])
def test_every_known_spelling_is_masked(secret):
    for form in spellings(secret):
        assert mask("said: %s." % form, [secret]) == "said: %s." % MASK, form


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


def test_a_masker_works_its_forms_out_once_and_ignores_empty_secrets():
    masker = Masker(["", None, TOKEN])
    assert masker("x %s y" % TOKEN) == "x %s y" % MASK
    assert masker("nothing secret") == "nothing secret"
