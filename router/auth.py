"""Optional bearer-token check on incoming requests (`--auth-token-file`).

The token is read once at start-up; every graph request must carry `Authorization: Bearer
<token>`, compared in constant time (hmac.compare_digest) so response timing reveals nothing
about the token. `/readyz` stays open for probes. A missing or wrong token is a 401 with the
router's error body and a `WWW-Authenticate: Bearer` header.
"""

from __future__ import annotations

import hmac
from pathlib import Path


class TokenFileError(ValueError):
    """The token file cannot be used; the message names the file and why."""


def read_token(path: str | Path) -> bytes:
    try:
        token = Path(path).read_text().strip()
    except OSError as error:
        raise TokenFileError(f"--auth-token-file {path}: {error.strerror}") from None
    if not token:
        raise TokenFileError(f"--auth-token-file {path} is empty")
    return token.encode()


def authorized(header: str | None, token: bytes) -> bool:
    if header is None or not header.startswith("Bearer "):
        return False
    return hmac.compare_digest(header[len("Bearer ") :].strip().encode(), token)
