"""Hypothesis strategies for adversarial exchange frames: random bytes, arbitrary JSON, real
trade frames with one field replaced, removed or buried, and deep nesting at any depth."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

T = 1_723_161_255_395  # a trade time of the recorded day
# Trade id 1: a variant that stays a valid trade is older than every recorded one, so a live
# source takes it as a duplicate instead of jumping its sequence ahead of the recording.
TRADE: dict[str, Any] = {"e": "trade", "E": T + 5, "s": "BTCUSDT", "t": 1,
                         "p": "61800.30", "q": "0.006", "T": T, "m": False, "M": True}

scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**80), max_value=2**80)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=40))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=20)


def _nested(levels: int, opener: str) -> str:
    if opener == "{":
        return '{"a":' * levels + "1" + "}" * levels
    return "[" * levels + "]" * levels


@st.composite
def mutated_trade(draw: st.DrawFn) -> str:
    """A trade frame with one field replaced by any JSON value, or removed."""
    data = dict(TRADE)
    field = draw(st.sampled_from([*TRADE, "stream", "data"]))
    removed = draw(st.booleans())
    value = draw(json_values)
    frame: dict[str, Any] = {"stream": "btcusdt@trade", "data": data}
    if field in ("stream", "data"):
        if removed:
            del frame[field]
        else:
            frame[field] = value
    elif removed:
        del data[field]
    else:
        data[field] = value
    return json.dumps(frame, separators=(",", ":"))  # NaN, Infinity and 2**80 included


@st.composite
def deeply_nested(draw: st.DrawFn) -> str:
    levels = draw(st.integers(min_value=1, max_value=6000))
    nested = _nested(levels, draw(st.sampled_from("[{")))
    where = draw(st.sampled_from(["data", "field", "whole"]))
    if where == "whole":
        return nested
    if where == "data":
        return '{"stream":"btcusdt@trade","data":' + nested + "}"
    return json.dumps({"stream": "btcusdt@trade", "data": {**TRADE, "p": 0}},
                      separators=(",", ":")).replace('"p":0', '"p":' + nested)


frames = (st.binary(max_size=300) | st.text(max_size=300) | json_values.map(json.dumps)
          | mutated_trade() | deeply_nested())
