"""Tenants: who a call comes from, read from a TOML tenants file.

A tenants file names each tenant, how it authenticates and its quota::

    [tenants.ci-team-a]
    token_sha256 = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    client_cn = "ci-team-a"     # optional: an mTLS client certificate with this CN
    max_vms = 16                # optional quotas; absent or 0: no limit
    max_vcpus = 32
    max_memory = "8G"
    max_runs = 8

A call authenticates with ``authorization: Bearer <token>`` metadata (the
file holds only the token's SHA-256, compared in constant time) or, on a
server with ``--tls-client-ca``, with a client certificate whose subject
common name is a tenant's ``client_cn``. A server without a tenants file is
open: every call is the tenant ``default``, with no quota.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import tomllib

OPEN_TENANT = "default"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_SIZE = re.compile(r"^\s*(\d+)\s*([KMGT]?)(i?B)?\s*$", re.IGNORECASE)
_KEYS = {"token_sha256", "client_cn", "max_vms", "max_vcpus", "max_memory", "max_runs"}


class TenantsError(ValueError):
    """A tenants file that cannot be used (the server refuses to start)."""


def parse_size(value: Any) -> int:
    """Bytes from an integer or a string such as "8G", "512M", "64KiB"."""
    if isinstance(value, bool):
        raise TenantsError(f"not a size: {value!r}")
    if isinstance(value, int):
        if value < 0:
            raise TenantsError(f"negative size {value}")
        return value
    if isinstance(value, str):
        match = _SIZE.match(value)
        if match:
            shift = {"": 0, "K": 10, "M": 20, "G": 30, "T": 40}[match.group(2).upper()]
            return int(match.group(1)) << shift
    raise TenantsError(f"not a size: {value!r}")


@dataclass(frozen=True)
class Quota:
    """Limits of one tenant; 0: no limit."""

    max_vms: int = 0
    max_vcpus: int = 0
    max_memory: int = 0
    max_runs: int = 0


@dataclass(frozen=True)
class Tenant:
    name: str
    quota: Quota = Quota()
    token_sha256: Optional[bytes] = None
    client_cn: Optional[str] = None


OPEN = Tenant(OPEN_TENANT)


def _count(name: str, key: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TenantsError(f"tenant {name}: {key} must be a non-negative integer")
    return value


def _tenant(name: str, table: Any) -> Tenant:
    if not _NAME.match(name):
        raise TenantsError(f"tenant name {name!r}: letters, digits, '.', '_', '-' "
                           "(at most 64)")
    if not isinstance(table, dict):
        raise TenantsError(f"tenant {name}: expected a table")
    unknown = set(table) - _KEYS
    if unknown:
        raise TenantsError(f"tenant {name}: unknown keys {', '.join(sorted(unknown))}")
    digest = table.get("token_sha256")
    token: Optional[bytes] = None
    if digest is not None:
        if not isinstance(digest, str) or not _SHA256.match(digest.lower()):
            raise TenantsError(f"tenant {name}: token_sha256 must be 64 hex digits")
        token = bytes.fromhex(digest)
    client_cn = table.get("client_cn")
    if client_cn is not None and (not isinstance(client_cn, str) or not client_cn):
        raise TenantsError(f"tenant {name}: client_cn must be a non-empty string")
    if token is None and client_cn is None:
        raise TenantsError(f"tenant {name}: needs token_sha256 or client_cn")
    quota = Quota(
        max_vms=_count(name, "max_vms", table.get("max_vms", 0)),
        max_vcpus=_count(name, "max_vcpus", table.get("max_vcpus", 0)),
        max_memory=parse_size(table.get("max_memory", 0)),
        max_runs=_count(name, "max_runs", table.get("max_runs", 0)))
    return Tenant(name, quota, token, client_cn)


class Tenants:
    """The tenants of a server and how a call's credentials name one."""

    def __init__(self, tenants: Iterable[Tenant]) -> None:
        self._by_name: Dict[str, Tenant] = {}
        self._by_cn: Dict[str, Tenant] = {}
        tokens: Dict[bytes, str] = {}
        for tenant in tenants:
            if tenant.name in self._by_name:
                raise TenantsError(f"tenant {tenant.name} named twice")
            self._by_name[tenant.name] = tenant
            if tenant.token_sha256 is not None:
                if tenant.token_sha256 in tokens:
                    raise TenantsError(f"tenants {tokens[tenant.token_sha256]} and "
                                       f"{tenant.name} have the same token")
                tokens[tenant.token_sha256] = tenant.name
            if tenant.client_cn is not None:
                if tenant.client_cn in self._by_cn:
                    raise TenantsError(f"client_cn {tenant.client_cn!r} names two tenants")
                self._by_cn[tenant.client_cn] = tenant
        if not self._by_name:
            raise TenantsError("the tenants file names no tenant")
        self._with_token = [t for t in self._by_name.values() if t.token_sha256 is not None]

    @classmethod
    def from_toml(cls, text: str) -> Tenants:
        try:
            data = tomllib.loads(text)
        except tomllib.TOMLDecodeError as err:
            raise TenantsError(f"tenants file: {err}") from None
        unknown = set(data) - {"tenants"}
        if unknown:
            raise TenantsError(f"tenants file: unknown tables {', '.join(sorted(unknown))}")
        table = data.get("tenants", {})
        if not isinstance(table, dict):
            raise TenantsError("tenants file: [tenants.NAME] tables expected")
        return cls(_tenant(name, entry) for name, entry in table.items())

    @classmethod
    def load(cls, path: str) -> Tenants:
        try:
            with open(path, encoding="utf-8") as f:
                text = f.read()
        except OSError as err:
            raise TenantsError(f"tenants file {path}: {err.strerror}") from None
        return cls.from_toml(text)

    @property
    def names(self) -> List[str]:
        return sorted(self._by_name)

    def get(self, name: str) -> Optional[Tenant]:
        return self._by_name.get(name)

    def by_token(self, token: str) -> Optional[Tenant]:
        """The tenant whose token this is. Every tenant's digest is compared
        (in constant time), so the time taken does not tell which matched."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found: Optional[Tenant] = None
        for tenant in self._with_token:
            assert tenant.token_sha256 is not None
            if hmac.compare_digest(digest, tenant.token_sha256):
                found = tenant
        return found

    def by_client_cn(self, common_name: str) -> Optional[Tenant]:
        return self._by_cn.get(common_name)

    def authenticate(self, metadata: Sequence[Tuple[str, Any]],
                     auth_context: Mapping[str, Sequence[bytes]]) -> Optional[Tenant]:
        """The tenant a call's credentials name, or None. A bearer token
        takes precedence over a client certificate."""
        for key, value in metadata:
            if key == "authorization":
                text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
                scheme, _, token = text.partition(" ")
                if scheme.lower() == "bearer" and token.strip():
                    return self.by_token(token.strip())
                return None
        for cn in auth_context.get("x509_common_name", ()):
            tenant = self.by_client_cn(cn.decode("utf-8", "replace"))
            if tenant is not None:
                return tenant
        return None
