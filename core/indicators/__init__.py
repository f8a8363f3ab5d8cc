"""Technical indicators with the `ta` library's definitions.

`engine.IndicatorEngine` updates every indicator per closed candle in O(1) (live work);
`batch.compute_batch` computes the same keys with `ta` over whole series (backfill, replay).
`batch` imports pandas and `ta`, so it is not imported here: the live path stays light.
"""

from core.indicators.engine import KEYS, CandleOutOfOrder, IndicatorEngine, Values

__all__ = ["KEYS", "CandleOutOfOrder", "IndicatorEngine", "Values"]
