"""Who did it: the actor the audit trail records with every event, handed by the service
layer to the domain's commands (which know nothing of HTTP)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from chalicelib.auth import Principal
from chalicelib.observability import request_scope


@dataclass(frozen=True)
class Actor:
    """The verified caller (subject, role, issuer, tenant) and the request it acts in."""

    sub: str
    role: str
    issuer: str
    tenant: int
    request_id: Optional[str] = None

    @classmethod
    def of(cls, principal: Principal, request_id: Optional[str] = None) -> "Actor":
        """The actor of `principal` (in request `request_id`, when one is named)."""
        return cls(principal.sub, principal.role, principal.issuer, principal.tenant, request_id)

    @classmethod
    def in_request(cls, principal: Principal) -> "Actor":
        """The actor of `principal` in the current request."""
        return cls.of(principal, request_scope.request_id())

