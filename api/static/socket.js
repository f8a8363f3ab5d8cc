// The /ws client: Binance-style SUBSCRIBE/UNSUBSCRIBE requests, app-level ping/pong, and
// reconnection with capped exponential backoff (plus jitter, so many open pages do not all
// come back in the same instant after a server restart).

const BACKOFF_MIN_MS = 500;
const BACKOFF_MAX_MS = 15000;

export class LiveSocket {
  // handlers: onMessage(stream, data, sentAt), onState(state, delayMs), onResult(id),
  // onError(text, id), onOpen(reconnected) — after each (re)connection.
  constructor(handlers) {
    this.handlers = handlers;
    this.ws = null;
    this.nextId = 1;
    this.attempt = 0;
    this.everOpened = false;
    this.timer = null;
  }

  // A server with ALPHAPLUS_WS_TOKEN set wants `?token=`: the page passes on its own.
  url() {
    const scheme = location.protocol === "https:" ? "wss:" : "ws:";
    const token = new URLSearchParams(location.search).get("token");
    const query = token ? `?token=${encodeURIComponent(token)}` : "";
    return `${scheme}//${location.host}/ws${query}`;
  }

  connect() {
    clearTimeout(this.timer);
    this.handlers.onState("connecting");
    const ws = new WebSocket(this.url());
    this.ws = ws;
    ws.onopen = () => {
      const reconnected = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.handlers.onState("live");
      this.handlers.onOpen(reconnected);
    };
    ws.onmessage = (event) => this._receive(event.data);
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this._scheduleReconnect();
    };
    // A failed connection is followed by a close event, which does the reconnecting; the
    // error event itself carries no detail worth showing.
    ws.onerror = () => {};
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  // Returns the request id, or null when the socket is down (onOpen re-sends what matters).
  request(method, params) {
    if (!this.open) return null;
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ method, params, id }));
    return id;
  }

  _scheduleReconnect() {
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** this.attempt);
    const delay = Math.round(base * (0.75 + Math.random() * 0.5));
    this.attempt += 1;
    this.handlers.onState("reconnecting", delay);
    this.timer = setTimeout(() => this.connect(), delay);
  }

  _receive(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      return; // not ours to understand: ignore, as with any unknown message
    }
    if (msg === null || typeof msg !== "object") return;
    if ("ping" in msg) {
      if (this.open) this.ws.send(JSON.stringify({ pong: msg.ping }));
      return;
    }
    if (typeof msg.stream === "string" && msg.data !== undefined) {
      this.handlers.onMessage(msg.stream, msg.data, msg.sent_at);
      return;
    }
    if ("id" in msg && msg.error) {
      const text = `${msg.error.msg ?? "request refused"} (code ${msg.error.code ?? "?"})`;
      this.handlers.onError(text, msg.id);
    } else if ("id" in msg && "result" in msg) {
      this.handlers.onResult(msg.id);
    }
  }
}
