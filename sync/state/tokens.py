"""Platform session tokens at rest: encrypted with a key kept outside the state store.

Why: a SmartKasa refresh token is good for 30 days and the state store is a file (or a
database with backups and dumps); whoever reads it must not get a working session.

- The key is the ``secrets_key`` setting (or ``$ERPSYNC_SECRET_KEY``): one or more Fernet
  keys separated by commas. The first encrypts; every one decrypts, so a key is rotated
  by putting the new one first; a row read with an older key is rewritten with the new one.
- No key configured: erpsync derives nothing and writes nothing. Tokens live in memory
  only and each process logs in once (a login per CLI run, one per worker process). A
  plaintext row left by an older version is used once and then deleted.
- A row that cannot be decrypted (the key changed) is treated as absent: a fresh login,
  whose tokens overwrite it.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

log = logging.getLogger(__name__)

PREFIX = "enc:v1:"


def parse_keys(value: str) -> list[str]:
    """The comma-separated keys of a ``secrets_key`` value; raises ``ValueError`` naming the bad one."""
    keys = [k.strip() for k in value.split(",") if k.strip()]
    if not keys:
        raise ValueError("secrets_key is empty")
    for i, key in enumerate(keys, 1):
        try:
            Fernet(key.encode())
        except (ValueError, TypeError):
            raise ValueError(
                f"secrets_key: key {i} is not a Fernet key (32 url-safe base64 bytes); generate one with "
                "python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'"
            ) from None
    return keys


class TokenCipher:
    """Encrypts token text for the state store; the repr shows no key."""

    def __init__(self, keys: str | list[str]) -> None:
        parsed = parse_keys(keys) if isinstance(keys, str) else keys
        self._fernets = [Fernet(k.encode()) for k in parsed]
        self._multi = MultiFernet(self._fernets)

    def __repr__(self) -> str:
        return f"TokenCipher(keys={len(self._fernets)})"

    @staticmethod
    def is_encrypted(text: str) -> bool:
        return text.startswith(PREFIX)

    def encrypt(self, text: str) -> str:
        return PREFIX + self._multi.encrypt(text.encode()).decode("ascii")

    def decrypt(self, text: str) -> tuple[str, bool]:
        """``(plain text, stale)``; ``stale`` when an older key was needed (rewrite it).

        Raises ``InvalidToken`` when no configured key opens it."""
        raw = text[len(PREFIX) :].encode("ascii")
        try:
            return self._fernets[0].decrypt(raw).decode(), False
        except InvalidToken:
            return self._multi.decrypt(raw).decode(), True


def token_cipher(secrets_key: Any) -> TokenCipher | None:
    """The cipher for a ``secrets_key`` setting (``SecretStr``, text or None)."""
    if secrets_key is None:
        return None
    value = secrets_key.get_secret_value() if hasattr(secrets_key, "get_secret_value") else str(secrets_key)
    return TokenCipher(value) if value.strip() else None


class StateTokenStore:
    """SmartKasa session tokens in the state store, encrypted (see the module docstring)."""

    _warned = False

    def __init__(self, store: Any, tenant: str, cipher: TokenCipher | None = None) -> None:
        self.store, self.tenant, self.cipher = store, tenant, cipher

    async def load(self) -> Any:
        from sync.clients.smartkasa.auth import TokenSet

        row = self.store.load_token(self.tenant, "smartkasa", cipher=self.cipher)
        if row is None:
            return None
        return TokenSet(
            access=row.access_token,
            refresh=row.refresh_token or None,
            access_expires_at=row.access_expires_at,
            refresh_expires_at=row.refresh_expires_at,
        )

    async def save(self, tokens: Any) -> None:
        from sync.state.store import TokenRow

        if self.cipher is None:
            if not StateTokenStore._warned:
                StateTokenStore._warned = True
                log.info(
                    "SmartKasa session tokens are kept in memory only (no secrets_key configured): "
                    "each process logs in once; set secrets_key or ERPSYNC_SECRET_KEY to keep them, "
                    "encrypted, in the state store"
                )
            return
        far = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)
        self.store.save_token(
            self.tenant,
            "smartkasa",
            TokenRow(
                tokens.access,
                tokens.refresh or "",
                tokens.access_expires_at or far,
                tokens.refresh_expires_at or far,
            ),
            cipher=self.cipher,
        )

    def __repr__(self) -> str:
        return f"StateTokenStore(tenant={self.tenant!r}, encrypted={self.cipher is not None})"
