"""FastAPI dependencies of the API areas, named once: `StateDep` (the app's clients and
stores) and `TenantDep` (the caller's tenant)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.gateway.http.apikeys import TENANT_SCOPE_KEY
from services.gateway.http.errors import ApiError
from services.gateway.state import GatewayState

# The dependencies are `async def` although they do no I/O: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop per request for nothing.


async def get_state(request: Request) -> GatewayState:
    """FastAPI dependency: the app's GatewayState."""
    state = request.app.state.gateway
    assert isinstance(state, GatewayState)
    return state


StateDep = Annotated[GatewayState, Depends(get_state)]


async def get_tenant(request: Request, state: StateDep) -> str:
    """FastAPI dependency: the caller's tenant: its API key's when auth is required (set
    by `ApiKeyMiddleware`, which answered 401 without a valid key) or a signed URL's, else
    the default."""
    settings = state.settings
    tenant = request.scope.get(TENANT_SCOPE_KEY)
    if isinstance(tenant, str):  # a key's, or a signed URL's (signed_urls.py)
        return tenant
    if settings.auth_required:  # a route the middleware let through as public
        raise ApiError(401, "unauthorized", "this route needs an API key")
    return settings.default_tenant


TenantDep = Annotated[str, Depends(get_tenant)]
