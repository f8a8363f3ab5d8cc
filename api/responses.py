"""JSON responses encoded with orjson, or passed through when the cache already holds bytes."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response


class Json(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        if isinstance(content, bytes):
            return content  # a cached body: encoded once, served many times
        return orjson.dumps(content, option=orjson.OPT_NON_STR_KEYS)
