"""Reviewer credentials: one random token per reviewer, kept on the server only as its SHA-256.

Why tokens and not users with roles: a line has a handful of analysts and the dashboard has no
user store, sessions or password handling; a token per name gives each review a name that the
client cannot choose (the name comes from the token that matched) with nothing to manage but a
line per reviewer (`inspection review token NAME` prints both). Tokens are 32 random bytes, so a
plain SHA-256 (no slow KDF) is enough: nobody can guess a preimage; the comparison is
constant-time over every configured hash.

Format (env INSPECTION_REVIEWERS or a file, one per line or comma separated): `name=sha256hex`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_HEX = re.compile(r"^[0-9a-f]{64}$")


class ReviewerConfigError(ValueError):
    """A reviewer line that is not `name=sha256hex` (the message names it)."""


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


@dataclass(frozen=True)
class Reviewers:
    """Reviewer name -> SHA-256 of the reviewer's token."""

    hashes: tuple[tuple[str, str], ...] = ()

    @classmethod
    def parse(cls, text: str) -> Reviewers:
        entries: list[tuple[str, str]] = []
        for raw in re.split(r"[,\n]", text):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            name, sep, digest = line.partition("=")
            name, digest = name.strip(), digest.strip().lower()
            if not sep or not _NAME.match(name) or not _HEX.match(digest):
                shown = line if len(line) < 40 else line[:37] + "..."
                raise ReviewerConfigError(
                    f"reviewer entry {shown!r}: expected name=<sha256 hex of the token> "
                    "(name: letters, digits, . _ @ -; `inspection review token NAME` prints one)"
                )
            if any(name == n for n, _ in entries):
                raise ReviewerConfigError(f"reviewer {name!r} is listed twice")
            entries.append((name, digest))
        return cls(tuple(entries))

    def __bool__(self) -> bool:
        return bool(self.hashes)

    def identify(self, token: str | None) -> str | None:
        """The reviewer whose token this is, or None. Every hash is compared (constant time each)."""
        if not token:
            return None
        candidate = hash_token(token).encode()
        found: str | None = None
        for name, digest in self.hashes:
            if hmac.compare_digest(candidate, digest.encode()):
                found = name
        return found
