"""The report's PNG chart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.image import imread

from tests.workers.backtest.synthetic import walk
from workers.backtest import chart
from workers.backtest.data import from_candles
from workers.backtest.engine import BacktestConfig
from workers.backtest.report import run
from workers.backtest.strategies import make


def test_render_writes_a_png_with_both_panels(tmp_path: Path) -> None:
    data = from_candles(walk(2000, seed=4), run_id="chart")
    report = run(data, make("ema_cross"), BacktestConfig(stop_loss_pct=1))
    path = chart.render(report, tmp_path / "sub" / "c.png")
    image = imread(path)
    assert image.shape[:2] == (715, 1210)  # 11 x 6.5 inches at 110 dpi
    # Drawn on, not blank: the strategy line's blue and the drawdown's red are both there.
    rgb = (image[..., :3] * 255).round().astype(int)
    assert np.any(np.all(rgb == (31, 119, 180), axis=-1))
    assert np.any((rgb[..., 0] > 200) & (rgb[..., 1] < 200) & (rgb[..., 2] < 200))


def test_thinning_keeps_every_extreme() -> None:
    n = 200_000
    series = np.sin(np.arange(n) / 5000.0)
    series[123_457] = -5.0  # a one-candle crash must stay visible
    series[7] = 9.0
    keep = chart._thin(n, [series])
    assert len(keep) <= chart.MAX_POINTS + 1
    assert {0, 7, 123_457, n - 1} <= set(keep.tolist())
    assert np.all(np.diff(keep) > 0)
    assert chart._thin(100, [series[:100]]).tolist() == list(range(100))
