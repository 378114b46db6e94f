// The dashboard's ways to the api: REST with the bearer token, and the WebSocket (/api/ws) that
// authenticates with its first message, resubscribes after a reconnect and says how it is doing.

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** What an error answer says: FastAPI's `detail`, a string or a list of `{loc, msg}` (a 422). */
export function detailText(body) {
  if (body && typeof body === "object" && "detail" in body) {
    const detail = body.detail;
    if (typeof detail === "string") return detail;
    if (Array.isArray(detail)) {
      return detail
        .map((e) => {
          const field = (e.loc ?? []).filter((part) => part !== "body").join(".");
          return field ? `${field}: ${e.msg}` : String(e.msg);
        })
        .join("; ");
    }
    return JSON.stringify(detail);
  }
  return typeof body === "string" ? body : "";
}

export class Api {
  /** `onUnauthorized` is called on a 401 (the token was removed or rotated meanwhile). */
  constructor(token, onUnauthorized = () => {}) {
    this.token = token;
    this.onUnauthorized = onUnauthorized;
  }

  get(path) {
    return this.request("GET", path);
  }

  post(path, body = {}) {
    return this.request("POST", path, body);
  }

  delete(path) {
    return this.request("DELETE", path);
  }

  async request(method, path, body) {
    const headers = { Authorization: `Bearer ${this.token}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    let response;
    try {
      response = await fetch(path, {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: "no-store",
      });
    } catch (error) {
      throw new ApiError(0, `the api cannot be reached (${error.message})`);
    }
    const text = await response.text();
    let data = text;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      // not JSON: the text is the message
    }
    if (!response.ok) {
      if (response.status === 401) this.onUnauthorized();
      const retry = response.headers.get("Retry-After");
      const message = detailText(data) || response.statusText || "no answer";
      throw new ApiError(response.status, retry ? `${message} (retry in ${retry} s)` : message);
    }
    return data;
  }
}

const CLOSE_UNAUTHORIZED = 4401;
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 15000;

/**
 * The WebSocket. `handlers[type](data)` for each frame; `onState(state, detail)` with state one of
 * connecting, live, reconnecting, unauthorized; `onOpen()` after each (re)connection is subscribed,
 * so the page can read again what it may have missed.
 */
export class Live {
  constructor(token, { channels, handlers, onState, onOpen }) {
    this.token = token;
    this.channels = channels;
    this.handlers = handlers;
    this.onState = onState;
    this.onOpen = onOpen;
    this.market = { ticks: [], bars: [] };
    this.retryMs = RETRY_FIRST_MS;
    this.stopped = false;
    this.socket = null;
  }

  start() {
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/api/ws`);
    this.socket = socket;
    this.onState("connecting");
    socket.addEventListener("open", () => {
      this.send({ op: "auth", token: this.token });
      this.send({ op: "subscribe", channels: this.channels, ...this.market });
      this.retryMs = RETRY_FIRST_MS;
      this.onState("live");
      this.onOpen();
    });
    socket.addEventListener("message", (event) => {
      const frame = JSON.parse(event.data);
      const handler = this.handlers[frame.type];
      if (handler) handler(frame.data, frame);
    });
    socket.addEventListener("close", (event) => {
      if (this.stopped || socket !== this.socket) return;
      if (event.code === CLOSE_UNAUTHORIZED) {
        this.onState("unauthorized", "the token was refused");
        return;
      }
      const wait = this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, RETRY_MAX_MS);
      this.onState("reconnecting", `${event.code}${event.reason ? ` ${event.reason}` : ""}`);
      setTimeout(() => {
        if (!this.stopped) this.start();
      }, wait);
    });
  }

  /** Follow these ticks and bars instead of the ones before. */
  follow(ticks, bars) {
    const before = this.market;
    this.market = { ticks, bars };
    if (this.socket?.readyState === WebSocket.OPEN) {
      if (before.ticks.length || before.bars.length) this.send({ op: "unsubscribe", ...before });
      this.send({ op: "subscribe", ...this.market });
    }
  }

  send(message) {
    if (this.socket?.readyState === WebSocket.OPEN) this.socket.send(JSON.stringify(message));
  }

  stop() {
    this.stopped = true;
    this.socket?.close();
  }
}
