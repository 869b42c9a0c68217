"""API key material: generation, hashing and the display hint. No database here, only the format.

Keys are `pk-` + 256 random bits (43 url-safe characters). Because they are high-entropy random
strings, not passwords, a single sha256 is the right hash: brute force of 2**256 is out of reach,
so a slow KDF (scrypt/argon2) would add only latency to every request; a plain digest also allows
an indexed lookup by hash.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

PREFIX = "pk-"


def generate_key() -> str:
    """A new plaintext key; it is shown to the operator once and never stored."""
    return PREFIX + secrets.token_urlsafe(32)


def hash_key(plaintext: str) -> str:
    """The stored form of a key: sha256 hex of its UTF-8 bytes."""
    return hashlib.sha256(plaintext.encode("utf-8")).hexdigest()


def hashes_match(stored: str, candidate: str) -> bool:
    """Constant-time comparison so that response timing says nothing about the stored hash."""
    return hmac.compare_digest(stored.encode("ascii"), candidate.encode("ascii"))


def key_hint(plaintext: str) -> str:
    """What listings show (`pk-...AbCd`): enough to recognise a key, far too little to use it."""
    return f"{PREFIX}...{plaintext[-4:]}"


def new_key_id() -> str:
    """Public id of a key (for revoking and for recording who created an image)."""
    return f"key_{secrets.token_hex(8)}"


def new_tenant_id() -> str:
    """Public id of a tenant."""
    return f"ten_{secrets.token_hex(8)}"
