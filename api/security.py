"""Bearer-token protection for the admin endpoints (anything that changes state).

Without a configured `ALPHAPLUS_API_TOKEN` the admin endpoints are refused, not open: an
operator has to decide to enable them.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.context import ApiContext, context

_bearer = HTTPBearer(auto_error=False, description="ALPHAPLUS_API_TOKEN")


async def require_admin(
    ctx: Annotated[ApiContext, Depends(context)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    token = ctx.settings.api_token
    if not token:
        raise HTTPException(403, "admin endpoints are disabled: set ALPHAPLUS_API_TOKEN on the "
                                 "server to enable them")
    if credentials is None:
        raise HTTPException(401, "this endpoint needs `Authorization: Bearer <token>`",
                            headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(credentials.credentials.encode(), token.encode()):
        raise HTTPException(401, "wrong token", headers={"WWW-Authenticate": "Bearer"})
