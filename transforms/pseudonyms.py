"""Pseudonymous ids: a keyed hash (HMAC-SHA256) of a patient, study, series or file id with a
secret per corpus, so one patient keeps one pseudonym across the corpus's sources and rebuilds,
while nobody without the secret can test a guessed id against it (a plain hash of a short numeric
id could be reversed by trying every id). Every source's pseudonyms come from here."""
from __future__ import annotations

import hashlib
import hmac


def keyed_digest(secret: bytes, kind: str, value: str) -> bytes:
    """HMAC-SHA256(secret, kind US value); ``kind`` (patient, study, series, uid ...) separates
    namespaces, so a study and a patient with the same id differ."""
    if not secret:
        raise ValueError("a pseudonym needs a non-empty secret")
    return hmac.new(secret, f"{kind}\x1f{value}".encode("utf-8"), hashlib.sha256).digest()


def pseudonym(secret: bytes, kind: str, value: str, length: int = 20) -> str:
    """``length`` hex digits of the keyed digest."""
    return keyed_digest(secret, kind, value).hex()[:length]
