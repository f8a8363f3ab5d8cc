"""`/ws`: Binance-style subscriptions to live candles, indicators, signals and patterns
(the protocol is in api/ws/protocol.py, the fan-out in api/ws/hub.py)."""

from __future__ import annotations

from fastapi import APIRouter, WebSocket

from api.context import ws_context

router = APIRouter()


@router.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    await ws_context(websocket).hub.serve(websocket)
