// The live dashboard: history over REST, then live candles, indicators and signals over /ws.
//
// Switching symbol or timeframe subscribes to the new streams *before* the history request and
// buffers what arrives until the history is drawn, then replays the buffer: no update can fall
// into the gap between the two, and the chart's own guard drops whatever the history already
// covered. After a reconnection the history is loaded again for the same reason.

import { PriceChart } from "./chart.js";
import {
  EventList, clearError, setConnection, setCount, setLatency, setLegend, showError,
} from "./panels.js";
import { LiveSocket } from "./socket.js";

const HISTORY_LIMIT = 500;
const SIGNAL_LIMIT = 20;
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 15000;

// What tests (and curious people in the console) read; kept current on every change.
// `ready`: the history is drawn and the server confirmed the live subscription, so anything
// published from then on reaches the chart.
const exposed = {
  ready: false, historyLoaded: false, subscribed: false, bars: 0, lastBar: null,
  lastUpdateAt: null, latencyMs: null, symbol: null, timeframe: null,
  connection: "connecting", signals: 0, patterns: 0, messages: 0,
};
window.__dashboard = exposed;

const symbolSelect = document.getElementById("symbol");
const timeframeSelect = document.getElementById("timeframe");
const chart = new PriceChart(document.getElementById("chart"));
const signalList = new EventList("signals", "no signals yet");
const patternList = new EventList("patterns", "no patterns yet");

let view = null; // {symbol, timeframe, streams, gen}
let generation = 0;
let loads = 0; // a reconnection reloads the history: only the newest load may draw
let buffer = null; // messages held while the history loads; null when drawing live
let firstOpenTime = Infinity;
let chartRequest = null;
let patternRequest = null;
let crosshairBar = null;

class HttpError extends Error {}

async function getJson(path) {
  let response;
  try {
    response = await fetch(path, { headers: { Accept: "application/json" } });
  } catch {
    throw new HttpError("API unreachable");
  }
  if (!response.ok) {
    let detail = "";
    try {
      const body = await response.json();
      detail = typeof body.detail === "string" ? `: ${body.detail}` : "";
    } catch { /* a body that is not JSON adds nothing */ }
    throw new HttpError(`API error ${response.status}${detail}`);
  }
  return response.json();
}

// Retries `load` with backoff, showing why in the page, until it succeeds or `stillWanted()`
// says the result is no longer needed (the user switched to something else meanwhile).
async function withRetry(load, stillWanted) {
  for (let attempt = 0; ; attempt += 1) {
    try {
      return await load();
    } catch (error) {
      if (!stillWanted()) return null;
      const delay = Math.min(RETRY_MAX_MS, RETRY_MIN_MS * 2 ** attempt);
      const reason = error instanceof HttpError ? error.message : `failed: ${error}`;
      showError(`${reason} — retrying in ${Math.round(delay / 1000)} s`);
      await new Promise((resolve) => setTimeout(resolve, delay));
      if (!stillWanted()) return null;
    }
  }
}

function streamsFor(symbol, timeframe) {
  const s = symbol.toLowerCase();
  return {
    kline: `${s}@kline_${timeframe}`,
    indicators: `${s}@indicators_${timeframe}`,
    signals: `${s}@signals`,
    patterns: `${s}@patterns`,
  };
}

function setFlags(flags) {
  Object.assign(exposed, flags);
  exposed.ready = exposed.historyLoaded && exposed.subscribed;
}

function subscribe() {
  const { kline, indicators, signals, patterns } = view.streams;
  setFlags({ subscribed: false });
  chartRequest = socket.request("SUBSCRIBE", [kline, indicators, signals]);
  // Patterns are a nice-to-have: asked for separately so that a server without that stream
  // refuses only this request, not the chart's.
  patternRequest = socket.request("SUBSCRIBE", [patterns]);
}

function unsubscribe(streams) {
  socket.request("UNSUBSCRIBE", Object.values(streams));
}

function select(symbol, timeframe) {
  if (view && view.symbol === symbol && view.timeframe === timeframe) return;
  if (view) unsubscribe(view.streams);
  generation += 1;
  view = { symbol, timeframe, streams: streamsFor(symbol, timeframe), gen: generation };
  exposed.symbol = symbol;
  exposed.timeframe = timeframe;
  const url = new URL(location.href);
  url.searchParams.set("symbol", symbol);
  url.searchParams.set("timeframe", timeframe);
  history.replaceState(null, "", url);
  document.title = `${symbol} ${timeframe} · AlphaPlus`;
  // The previous chart must not stand under the new title while the history loads.
  chart.setHistory([]);
  signalList.set([]);
  patternList.set([]);
  Object.assign(exposed, { bars: 0, lastBar: null, latencyMs: null });
  crosshairBar = null;
  refreshStatus();
  subscribe();
  loadHistory();
}

async function loadHistory() {
  const { symbol, timeframe, gen } = view;
  const load = ++loads;
  const wanted = () => view.gen === gen && loads === load;
  buffer = [];
  setFlags({ historyLoaded: false });
  const q = `symbol=${encodeURIComponent(symbol)}&timeframe=${encodeURIComponent(timeframe)}`;
  const result = await withRetry(() => Promise.all([
    getJson(`/api/market/data?${q}&limit=${HISTORY_LIMIT}&include=indicators`),
    getJson(`/api/signals?${q}&limit=${SIGNAL_LIMIT}`),
    getJson(`/api/patterns?${q}&limit=${SIGNAL_LIMIT}`),
  ]), wanted);
  if (result === null || !wanted()) return;
  const [market, signals, patterns] = result;
  clearError();
  const rows = market.candles ?? [];
  chart.setHistory(rows);
  firstOpenTime = rows.length ? rows[0].open_time : Infinity;
  exposed.bars = rows.length;
  exposed.lastBar = rows.length ? plainBar(rows[rows.length - 1]) : null;
  signalList.set(signals.signals ?? []);
  patternList.set(patterns.patterns ?? []);
  chart.setSignals(signalList.rows, firstOpenTime);
  const held = buffer ?? [];
  buffer = null;
  for (const [stream, data, sentAt] of held) apply(stream, data, sentAt);
  setFlags({ historyLoaded: true });
  refreshStatus();
}

function plainBar(c) {
  return {
    open_time: c.open_time, close_time: c.close_time, open: c.open, high: c.high, low: c.low,
    close: c.close, volume: c.volume, closed: c.closed,
  };
}

function onMessage(stream, data, sentAt) {
  if (!view || !Object.values(view.streams).includes(stream)) return; // an old subscription
  if (buffer !== null) {
    buffer.push([stream, data, sentAt]);
    return;
  }
  apply(stream, data, sentAt);
}

function apply(stream, data, sentAt) {
  const { streams, symbol, timeframe } = view;
  exposed.messages += 1;
  if (stream === streams.kline) {
    const outcome = chart.updateCandle(data);
    if (outcome === "stale") return;
    if (outcome === "new") exposed.bars += 1;
    if (exposed.bars === 1) firstOpenTime = data.open_time;
    exposed.lastBar = plainBar(data);
  } else if (stream === streams.indicators) {
    chart.updateIndicators(data.open_time, data.values ?? {});
  } else if (data.symbol !== symbol || data.timeframe !== timeframe) {
    return; // the signal and pattern streams carry every timeframe of the symbol
  } else if (stream === streams.signals) {
    signalList.add([data]);
    chart.setSignals(signalList.rows, firstOpenTime);
  } else if (stream === streams.patterns) {
    patternList.add([data]);
  }
  exposed.lastUpdateAt = Date.now();
  if (Number.isFinite(sentAt)) exposed.latencyMs = exposed.lastUpdateAt - sentAt;
  refreshStatus();
}

function refreshStatus() {
  setCount(exposed.bars);
  setLatency(exposed.latencyMs);
  exposed.signals = signalList.rows.length;
  exposed.patterns = patternList.rows.length;
  setLegend(view.symbol, view.timeframe, crosshairBar ?? exposed.lastBar, chart.precision ?? 2);
}

const socket = new LiveSocket({
  onMessage,
  onState(state, delay) {
    exposed.connection = state;
    if (state !== "live") setFlags({ subscribed: false });
    setConnection(state, delay);
  },
  onResult(id) {
    if (id === chartRequest) setFlags({ subscribed: true });
  },
  onError(text, id) {
    // Without a live pattern stream the list still comes from /api/patterns on each load.
    if (id !== null && id === patternRequest) return;
    showError(`Live feed: ${text}`);
  },
  onOpen(reconnected) {
    if (!view) return;
    subscribe();
    // Whatever was published while the socket was down is only in the history now.
    if (reconnected) loadHistory();
  },
});

function fill(selectNode, values, chosen) {
  selectNode.replaceChildren(...values.map((v) => new Option(v, v, false, v === chosen)));
}

async function start() {
  setConnection("connecting");
  setCount(0);
  setLatency(NaN);
  const meta = await withRetry(() => getJson("/api/symbols"), () => true);
  clearError();
  const symbols = meta.symbols ?? [];
  const timeframes = meta.timeframes ?? [];
  if (!symbols.length || !timeframes.length) {
    showError("The API serves no symbols or timeframes (check ALPHAPLUS_SYMBOLS).");
    return;
  }
  const params = new URLSearchParams(location.search);
  const wantSymbol = (params.get("symbol") ?? "").toUpperCase();
  const wantTf = params.get("timeframe") ?? "";
  const symbol = symbols.includes(wantSymbol) ? wantSymbol : symbols[0];
  const timeframe = timeframes.includes(wantTf) ? wantTf
    : timeframes.includes("1m") ? "1m" : timeframes[0];
  fill(symbolSelect, symbols, symbol);
  fill(timeframeSelect, timeframes, timeframe);
  const change = () => select(symbolSelect.value, timeframeSelect.value);
  symbolSelect.addEventListener("change", change);
  timeframeSelect.addEventListener("change", change);
  chart.onCrosshair((bar) => {
    crosshairBar = bar ?? null;
    if (view) refreshStatus();
  });
  select(symbol, timeframe);
  socket.connect();
}

start();
