"""Bearer tokens: what a freshly issued token looks like, how it is digested, and which
``Authorization`` headers yield a token at all."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from identity_sync.auth import tokens

TOKEN_BODY = re.compile(r"^[A-Za-z0-9_-]{43}$")


def test_a_new_token_is_the_prefix_followed_by_43_url_safe_characters() -> None:
    token = tokens.new_token()
    assert token.startswith(tokens.TOKEN_PREFIX) and tokens.TOKEN_PREFIX == "idsync_"
    assert TOKEN_BODY.match(token[len(tokens.TOKEN_PREFIX):])


def test_a_new_token_carries_256_random_bits() -> None:
    body = tokens.new_token()[len(tokens.TOKEN_PREFIX):]
    assert len(base64.urlsafe_b64decode(body + "=")) == 32


def test_new_tokens_never_repeat() -> None:
    issued = {tokens.new_token() for _ in range(1000)}
    assert len(issued) == 1000


def test_new_tokens_use_the_whole_alphabet_rather_than_a_fixed_pattern() -> None:
    bodies = [tokens.new_token()[len(tokens.TOKEN_PREFIX):] for _ in range(200)]
    assert len(set("".join(bodies))) == 64
    # No position is constant across tokens.
    assert all(len({body[i] for body in bodies}) > 1 for i in range(43))


def test_credential_ids_are_short_unique_hex_and_unrelated_to_the_token() -> None:
    ids = {tokens.new_credential_id() for _ in range(500)}
    assert len(ids) == 500
    assert all(re.fullmatch(r"[0-9a-f]{12}", credential_id) for credential_id in ids)


def test_the_digest_is_the_stable_sha256_hex_of_the_token() -> None:
    token = "idsync_" + "A" * 43
    assert tokens.digest(token) == tokens.digest(token) == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", tokens.digest(token))


def test_the_digest_never_contains_the_token() -> None:
    token = tokens.new_token()
    assert token not in tokens.digest(token)
    assert token[len(tokens.TOKEN_PREFIX):][:8] not in tokens.digest(token)


def test_different_tokens_have_different_digests() -> None:
    assert tokens.digest("idsync_a") != tokens.digest("idsync_b")
    assert tokens.digest("idsync_a") != tokens.digest("idsync_A")


def test_same_digest_compares_exactly() -> None:
    a = tokens.digest("idsync_a")
    assert tokens.same_digest(a, a)
    assert not tokens.same_digest(a, tokens.digest("idsync_b"))
    assert not tokens.same_digest(a, a[:-1])
    assert not tokens.same_digest(a, a.upper())


TOKEN = "idsync_" + "x" * 43


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(None, None, id="missing"),
        pytest.param("", None, id="empty"),
        pytest.param("   ", None, id="blank"),
        pytest.param("Bearer", None, id="bearer-alone"),
        pytest.param("Bearer ", None, id="bearer-and-space"),
        pytest.param("Bearer    ", None, id="bearer-and-spaces"),
        pytest.param("Basic x", None, id="basic-scheme"),
        pytest.param(f"Basic {TOKEN}", None, id="basic-scheme-with-a-token"),
        pytest.param(f"Token {TOKEN}", None, id="other-scheme"),
        pytest.param(f"Bearer{TOKEN}", None, id="no-space-after-scheme"),
        pytest.param(TOKEN, None, id="token-without-scheme"),
        pytest.param(f"Bearer {TOKEN}", TOKEN, id="canonical"),
        pytest.param(f"bearer {TOKEN}", TOKEN, id="lower-case-scheme"),
        pytest.param(f"BEARER {TOKEN}", TOKEN, id="upper-case-scheme"),
        pytest.param(f"Bearer   {TOKEN}", TOKEN, id="extra-spaces-between"),
        pytest.param(f"  Bearer {TOKEN}  ", TOKEN, id="surrounding-spaces"),
        pytest.param("Bearer " + "x" * 4096, "x" * 4096, id="largest-accepted"),
        pytest.param("Bearer " + "x" * 4097, None, id="oversized"),
        pytest.param("Bearer " + "x" * 1_000_000, None, id="huge"),
    ],
)
def test_bearer_from_header(header: str | None, expected: str | None) -> None:
    assert tokens.bearer_from_header(header) == expected
