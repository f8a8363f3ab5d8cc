// The price chart: candles, volume, EMA 9/21 and Bollinger overlays, and an RSI(14) pane.
// Times arrive as epoch milliseconds; lightweight-charts wants seconds (UTC).
//
// The library throws when a series is updated with a time older than its last point, so every
// series remembers its last time and stale updates are dropped here: a live message can never
// move the chart backwards, whatever order the socket and the history request finish in.

const LC = window.LightweightCharts;

const UP = "#26a69a";
const DOWN = "#ef5350";
const GRID = "#1b2029";
const BORDER = "#2a2f3a";

const OVERLAYS = [
  // [indicator key, colour, line style (0 solid, 2 dashed)]
  ["ema_9", "#f0b90b", 0],
  ["ema_21", "#2196f3", 0],
  ["bb_upper", "#8e7cc3", 0],
  ["bb_middle", "#8e7cc3", 2],
  ["bb_lower", "#8e7cc3", 0],
];

const sec = (ms) => Math.floor(ms / 1000);

function precisionFor(price) {
  if (!(price > 0)) return 2;
  if (price >= 1000) return 2;
  if (price >= 1) return 4;
  // Small prices (e.g. 0.000012) keep about four significant digits.
  return Math.min(10, 3 - Math.floor(Math.log10(price)));
}

// Overlay lines carry no axis label (the legend names them): five labels crowd the price axis.
function lineOptions(color, lineStyle) {
  return {
    color, lineStyle, lineWidth: 1,
    priceLineVisible: false, lastValueVisible: false, crosshairMarkerVisible: false,
  };
}

// A series plus the time of its last point, so updates can be checked against it.
class Track {
  constructor(series) {
    this.series = series;
    this.last = -Infinity;
  }

  set(points) {
    this.series.setData(points);
    this.last = points.length ? points[points.length - 1].time : -Infinity;
  }

  // Returns false (and leaves the series alone) for a point older than the last one.
  update(point) {
    if (point.time < this.last) return false;
    this.series.update(point);
    this.last = point.time;
    return true;
  }
}

export class PriceChart {
  constructor(container) {
    this.chart = LC.createChart(container, {
      autoSize: true,
      layout: {
        background: { type: "solid", color: "#0d1117" },
        textColor: "#c9d1d9",
        fontFamily: "ui-sans-serif, system-ui, sans-serif",
        panes: { separatorColor: BORDER, separatorHoverColor: "#3b4252" },
      },
      grid: { vertLines: { color: GRID }, horzLines: { color: GRID } },
      crosshair: { mode: LC.CrosshairMode.Normal },
      rightPriceScale: { borderColor: BORDER },
      timeScale: { borderColor: BORDER, timeVisible: true, secondsVisible: false },
    });
    this.candles = new Track(this.chart.addSeries(LC.CandlestickSeries, {
      upColor: UP, downColor: DOWN, borderVisible: false, wickUpColor: UP, wickDownColor: DOWN,
    }));
    this.volume = new Track(this.chart.addSeries(LC.HistogramSeries, {
      priceFormat: { type: "volume" }, priceScaleId: "volume",
      lastValueVisible: false, priceLineVisible: false,
    }));
    this.chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.82, bottom: 0 } });
    this.overlays = OVERLAYS.map(([key, color, style]) =>
      [key, new Track(this.chart.addSeries(LC.LineSeries, lineOptions(color, style)))]);
    const rsi = this.chart.addSeries(LC.LineSeries, {
      ...lineOptions("#c678dd", 0),
      title: "RSI 14",
      lastValueVisible: true,
      priceFormat: { type: "price", precision: 2, minMove: 0.01 },
      autoscaleInfoProvider: () => ({ priceRange: { minValue: 0, maxValue: 100 } }),
    }, 1);
    for (const level of [70, 30]) {
      rsi.createPriceLine({
        price: level, color: level === 70 ? DOWN : UP, lineWidth: 1,
        lineStyle: LC.LineStyle.Dashed, axisLabelVisible: true, title: String(level),
      });
    }
    this.rsi = new Track(rsi);
    rsi.priceScale().applyOptions({ scaleMargins: { top: 0.08, bottom: 0.08 } });
    const panes = this.chart.panes();
    panes[0].setStretchFactor(3);
    panes[1].setStretchFactor(1);
    this.markers = LC.createSeriesMarkers(this.candles.series, []);
    this.precision = null;
  }

  // History: candles oldest first, each with optional `indicators`.
  setHistory(rows) {
    this._setPrecision(rows.length ? rows[rows.length - 1].close : 0);
    this.candles.set(rows.map(toBar));
    this.volume.set(rows.map(toVolume));
    for (const [key, track] of this.overlays) track.set(points(rows, key));
    this.rsi.set(points(rows, "rsi_14"));
    this.markers.setMarkers([]);
    this.chart.timeScale().scrollToRealTime();
  }

  // A live candle: "same" (replaced the last bar), "new" (appended) or "stale" (ignored).
  updateCandle(row) {
    if (this.precision === null) this._setPrecision(row.close);
    const bar = toBar(row);
    const before = this.candles.last;
    if (!this.candles.update(bar)) return "stale";
    this.volume.update(toVolume(row));
    return bar.time === before ? "same" : "new";
  }

  updateIndicators(openTime, values) {
    const time = sec(openTime);
    for (const [key, track] of [...this.overlays, ["rsi_14", this.rsi]]) {
      const value = values[key];
      if (value !== null && value !== undefined && Number.isFinite(value)) {
        track.update({ time, value });
      }
    }
  }

  // Signals as arrows on the candles they fired on (only those inside the loaded range);
  // unlabelled, since neighbouring labels overlap: the signal list names them.
  setSignals(signals, firstOpenTime) {
    const markers = signals
      .filter((s) => s.time >= firstOpenTime)
      .map((s) => {
        const bull = s.direction === "bullish";
        return {
          time: sec(s.time),
          position: bull ? "belowBar" : "aboveBar",
          color: bull ? UP : DOWN,
          shape: bull ? "arrowUp" : "arrowDown",
        };
      })
      .sort((a, b) => a.time - b.time);
    this.markers.setMarkers(markers);
  }

  onCrosshair(handler) {
    this.chart.subscribeCrosshairMove((param) => {
      handler(param.time === undefined ? null : param.seriesData.get(this.candles.series));
    });
  }

  _setPrecision(price) {
    const precision = precisionFor(price);
    if (precision === this.precision) return;
    this.precision = precision;
    const priceFormat = { type: "price", precision, minMove: 10 ** -precision };
    this.candles.series.applyOptions({ priceFormat });
    for (const [, track] of this.overlays) track.series.applyOptions({ priceFormat });
  }
}

function toBar(c) {
  return { time: sec(c.open_time), open: c.open, high: c.high, low: c.low, close: c.close };
}

function toVolume(c) {
  return {
    time: sec(c.open_time), value: c.volume,
    color: c.close >= c.open ? "rgba(38,166,154,0.35)" : "rgba(239,83,80,0.35)",
  };
}

function points(rows, key) {
  const out = [];
  for (const row of rows) {
    const value = row.indicators ? row.indicators[key] : null;
    if (value !== null && value !== undefined && Number.isFinite(value)) {
      out.push({ time: sec(row.open_time), value });
    }
  }
  return out;
}

export { precisionFor };
