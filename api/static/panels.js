// The page around the chart: status line, error banner, legend and the signal/pattern lists.
// Text goes in through textContent only: names come from the server and are never markup.

const MAX_ROWS = 20;

const $ = (id) => document.getElementById(id);

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clock(ms) {
  return new Date(ms).toISOString().slice(5, 19).replace("T", " ");
}

function fmt(value, precision) {
  return Number.isFinite(value) ? value.toFixed(precision) : "–";
}

export function showError(text) {
  const box = $("error");
  box.textContent = text;
  box.hidden = false;
}

export function clearError() {
  $("error").hidden = true;
}

const STATE_TEXT = {
  connecting: "connecting…",
  live: "live",
  reconnecting: "disconnected — reconnecting",
};

export function setConnection(state, delayMs) {
  const node = $("conn");
  node.dataset.state = state;
  node.textContent = state === "reconnecting" && delayMs !== undefined
    ? `${STATE_TEXT.reconnecting} in ${(delayMs / 1000).toFixed(1)} s`
    : STATE_TEXT[state] ?? state;
}

export function setLatency(ms) {
  $("latency").textContent = Number.isFinite(ms) ? `latency ${Math.max(0, ms).toFixed(0)} ms`
    : "latency –";
}

export function setCount(n) {
  $("count").textContent = `${n} candle${n === 1 ? "" : "s"}`;
}

export function setLegend(symbol, timeframe, bar, precision) {
  const node = $("legend");
  node.replaceChildren();
  node.append(el("strong", "", `${symbol} · ${timeframe}`));
  if (!bar) return;
  const cls = bar.close >= bar.open ? "up" : "down";
  for (const [label, value] of [["O", bar.open], ["H", bar.high], ["L", bar.low],
    ["C", bar.close]]) {
    node.append(el("span", "", ` ${label} `), el("span", cls, fmt(value, precision)));
  }
}

// One list row per event, newest first; duplicates (a reconnect replays nothing, but history
// and the socket can both deliver the same signal) are folded by time and name.
export class EventList {
  constructor(listId, emptyText) {
    this.list = $(listId);
    this.emptyText = emptyText;
    this.rows = [];
  }

  set(rows) {
    this.rows = [];
    this.add(rows);
  }

  add(rows) {
    const seen = new Set(this.rows.map(key));
    for (const row of rows) {
      if (!seen.has(key(row))) {
        seen.add(key(row));
        this.rows.push(row);
      }
    }
    this.rows.sort((a, b) => b.time - a.time);
    this.rows.length = Math.min(this.rows.length, MAX_ROWS);
    this.render();
  }

  render() {
    if (!this.rows.length) {
      this.list.replaceChildren(el("li", "empty", this.emptyText));
      return;
    }
    this.list.replaceChildren(...this.rows.map((row) => {
      const li = el("li", `event ${row.direction ?? "neutral"}`);
      li.dataset.name = row.name;
      li.append(
        el("span", "name", row.name.replaceAll("_", " ")),
        el("span", "direction", row.direction ?? ""),
        el("span", "strength", Number.isFinite(row.strength) ? row.strength.toFixed(2)
          : row.candles ? `${row.candles} bar${row.candles === 1 ? "" : "s"}` : ""),
        el("time", "time", clock(row.time)),
      );
      return li;
    }));
  }
}

function key(row) {
  return `${row.time}|${row.name}`;
}
