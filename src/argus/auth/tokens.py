"""Bearer tokens: `argus_<token_id>_<secret>`, random, shown once, stored as a hash.

The token_id lets the store find the row; the hash of the whole token is compared
in constant time. A token has 256 bits of randomness, so a fast hash (SHA-256) is
the right tool: a slow password hash guards low-entropy secrets, not these.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

TOKEN_PREFIX = "argus"
_TOKEN_RE = re.compile(r"argus_([0-9a-f]{12})_[A-Za-z0-9_-]{43}")
ADMIN_USER_ID = "admin"


@dataclass(frozen=True)
class IssuedToken:
    token_id: str
    token: str  # the plaintext: shown to the user once, never stored
    token_hash: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def issue_token() -> IssuedToken:
    token_id = secrets.token_hex(6)
    token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(32)}"
    return IssuedToken(token_id=token_id, token=token, token_hash=hash_token(token))


KEY_PREFIX = "argus_key"


def issue_key() -> IssuedToken:
    """An inference key: `argus_key_<key_id>_<secret>`, for the OpenAI endpoint only (the
    argus API refuses it: it is no token)."""
    key_id = secrets.token_hex(6)
    key = f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"
    return IssuedToken(token_id=key_id, token=key, token_hash=hash_token(key))


def parse_token_id(token: str) -> str | None:
    """The token_id inside a well-formed user token, or None."""
    match = _TOKEN_RE.fullmatch(token)
    return match.group(1) if match else None


def token_matches(token: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_token(token), stored_hash)


def generate_admin_token() -> str:
    return f"{TOKEN_PREFIX}_admin_{secrets.token_urlsafe(32)}"


@dataclass(frozen=True)
class Principal:
    user_id: str
    is_admin: bool
