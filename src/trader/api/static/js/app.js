// The trader dashboard (docs/api.md, "Dashboard"): sign in with a token, then the chart, the orders,
// positions, PnL, services and dead letters, kept current from the api's WebSocket; the actions a
// trade token may take. Every error the api answers is shown; nothing is retried behind the user's back
// but the reads that poll.

import { Api, Live } from "./api.js";
import { CandleBook } from "./candles.js";
import { PnlChart, PriceChart } from "./chart.js";
import * as tables from "./tables.js";

const TOKEN_KEY = "trader.token"; // sessionStorage only: this tab, until it is closed or signed out
const SIGNED_OUT_KEY = "trader.signedOutBecause";
const NAME = /^[A-Za-z0-9_-]{1,64}$/;
const STATUS_EVERY_MS = 2000;
const DLQ_EVERY_MS = 15000;
const RENDER_EVERY_MS = 200;
const RECENT_ORDERS = 50;
const TERMINAL = new Set(["REJECTED", "FILLED", "CANCELED", "EXPIRED"]);
const CHANNELS = ["orders", "fills", "positions", "pnl", "trading"];

const $ = (id) => document.getElementById(id);

const page = {
  api: null,
  live: null,
  me: null,
  orders: new Map(), // client_order_id -> the latest Order
  positions: new Map(),
  pnl: new Map(), // scope -> PnlSnapshot
  instrument: null, // {symbol, venue, timeframe}
  book: null, // the chart's candles, once its history is in
  buffer: null, // market frames that came while the history was loading
  chartGeneration: 0,
  fills: [], // of the chart's symbol, oldest first
  history: 0, // candles from /api/bars
  updates: 0, // live changes to the chart since its history
  lastOrder: null, // the order this page placed last, followed in the form
  priceChart: null,
  pnlChart: null,
  pending: new Set(), // tables waiting to be drawn again
  renderTimer: null,
};

// Messages -------------------------------------------------------------------------------------------

/** Show an error (an ApiError or any Error) until dismissed; `key` keeps one message per source. */
function report(error, context, key = null) {
  const text = `${context}: ${error.status ? `${error.status} ` : ""}${error.message ?? error}`;
  message(text, "error", key);
}

function message(text, kind = "error", key = null) {
  const list = $("messages");
  const existing = key ? list.querySelector(`li[data-key="${key}"]`) : null;
  const li = existing ?? document.createElement("li");
  li.className = kind;
  li.setAttribute("role", kind === "error" ? "alert" : "status");
  if (key) li.dataset.key = key;
  const span = document.createElement("span");
  span.textContent = text;
  const close = document.createElement("button");
  close.type = "button";
  close.className = "small";
  close.textContent = "×";
  close.title = "Dismiss";
  close.addEventListener("click", () => li.remove());
  li.replaceChildren(span, close);
  if (!existing) list.append(li);
  if (kind === "info") setTimeout(() => li.remove(), 6000);
}

function clearMessage(key) {
  $("messages").querySelector(`li[data-key="${key}"]`)?.remove();
}

// Signing in and out -----------------------------------------------------------------------------------

function showLogin(reason) {
  $("dashboard").hidden = true;
  $("login").hidden = false;
  $("login-error").hidden = !reason;
  $("login-error").textContent = reason ?? "";
  $("login-token").focus();
}

async function signIn(token) {
  const api = new Api(token);
  let me;
  try {
    me = await api.get("/api/whoami");
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(error.status === 401 ? "The api does not know this token." : `Cannot sign in: ${error.message}`);
    return;
  }
  sessionStorage.setItem(TOKEN_KEY, token);
  $("login-token").value = "";
  api.onUnauthorized = () => signOut("The api refused the token (it was removed or changed): sign in again.");
  page.api = api;
  page.me = me;
  openDashboard(token);
}

/** Forget the token and start again from a clean page. */
function signOut(reason) {
  page.live?.stop();
  sessionStorage.removeItem(TOKEN_KEY);
  if (reason) sessionStorage.setItem(SIGNED_OUT_KEY, reason);
  location.reload();
}

// The dashboard ------------------------------------------------------------------------------------------

function openDashboard(token) {
  const canTrade = page.me.role === "trade";
  document.body.dataset.role = page.me.role;
  if (!canTrade) {
    for (const element of document.querySelectorAll(".trade-only")) element.remove();
  }
  $("who").textContent = `${page.me.name} (${page.me.role})`;
  $("login").hidden = true;
  $("dashboard").hidden = false;
  page.priceChart = new PriceChart($("chart"));
  page.pnlChart = new PnlChart($("pnl-chart"));
  wireControls(canTrade);
  page.live = new Live(token, {
    channels: CHANNELS,
    handlers: {
      order: onOrder,
      fill: onFill,
      position: onPosition,
      pnl: onPnl,
      trading: renderTrading,
      tick: (tick) => onMarket("tick", tick),
      bar: (bar) => onMarket("bar", bar),
      error: (data) => message(`live: ${data.reason}`),
    },
    onState: showLiveState,
    onOpen: reloadAll,
  });
  chooseInstrument();
  page.live.start();
  pollStatus();
  setInterval(pollStatus, STATUS_EVERY_MS);
  loadDeadLetters();
  setInterval(loadDeadLetters, DLQ_EVERY_MS);
}

function wireControls(canTrade) {
  $("logout").addEventListener("click", () => signOut(null));
  $("instrument").addEventListener("submit", (event) => {
    event.preventDefault();
    chooseInstrument();
  });
  $("dlq-refresh").addEventListener("click", loadDeadLetters);
  if (!canTrade) return;
  $("halt").addEventListener("click", () =>
    switchTrading("halt", "Halt trading? Risk denies every new order and the oms cancels every open order."),
  );
  $("reduce-only").addEventListener("click", () =>
    switchTrading("reduce-only", "Set trading to reduce-only? Only orders that shrink a position pass."),
  );
  $("resume").addEventListener("click", () =>
    switchTrading("resume", "Resume trading? New orders pass risk's limits again."),
  );
  $("order-form").addEventListener("submit", placeOrder);
}

function showLiveState(state, detail) {
  const element = $("live-state");
  element.dataset.state = state;
  element.textContent = {
    connecting: "connecting…",
    live: "live",
    reconnecting: `live connection lost (${detail}); reconnecting`,
    unauthorized: "live connection refused",
  }[state];
  if (state === "unauthorized") signOut("The api refused the token on the live connection: sign in again.");
}

/** After every (re)connection: what may have been missed meanwhile, read again. */
async function reloadAll() {
  await Promise.all([loadTrading(), loadOrders(), loadPositions(), loadPnl(), loadChart()]);
}

async function read(path, context) {
  try {
    const data = await page.api.get(path);
    clearMessage(context);
    return data;
  } catch (error) {
    report(error, context, context);
    return null;
  }
}

// Drawing, at most every RENDER_EVERY_MS ------------------------------------------------------------------

const RENDERERS = {
  orders: renderOrders,
  positions: renderPositions,
  pnl: renderPnl,
  legend: renderLegend,
};

function schedule(name) {
  page.pending.add(name);
  page.renderTimer ??= setTimeout(() => {
    page.renderTimer = null;
    const names = [...page.pending];
    page.pending.clear();
    for (const each of names) RENDERERS[each]();
  }, RENDER_EVERY_MS);
}

// Trading state -----------------------------------------------------------------------------------------

const MODE_TEXT = { active: "active", reduce_only: "reduce-only", halted: "halted" };

function renderTrading(state) {
  if (!state) return;
  $("trading").dataset.mode = state.mode;
  $("trading-mode").textContent = MODE_TEXT[state.mode] ?? state.mode;
  const since = state.since ? ` since ${new Date(state.since).toISOString().slice(11, 19)}` : "";
  $("trading-reason").textContent = state.reason ? `${state.reason}${since}` : since.trim();
  $("trading-reason").title = state.reason ?? "";
  if (page.me.role === "trade") {
    $("halt").disabled = state.mode === "halted";
    $("reduce-only").disabled = state.mode === "reduce_only";
    $("resume").disabled = state.mode === "active";
  }
}

async function loadTrading() {
  renderTrading(await read("/api/trading", "trading state"));
}

function confirmAction(question) {
  const dialog = $("confirm");
  $("confirm-text").textContent = question;
  return new Promise((resolve) => {
    const done = (answer) => {
      $("confirm-yes").onclick = null;
      $("confirm-no").onclick = null;
      dialog.onclose = null;
      if (dialog.open) dialog.close();
      resolve(answer);
    };
    $("confirm-yes").onclick = () => done(true);
    $("confirm-no").onclick = () => done(false);
    dialog.onclose = () => done(false); // Escape
    dialog.showModal();
    $("confirm-no").focus();
  });
}

async function switchTrading(action, question) {
  if (!(await confirmAction(question))) return;
  try {
    const answer = await page.api.post(`/api/trading/${action}`, {});
    renderTrading(answer.trading);
    message(`${answer.action}: ${answer.outcome} (${answer.detail})`, "info");
  } catch (error) {
    report(error, action);
  }
}

// Orders ------------------------------------------------------------------------------------------------

async function loadOrders() {
  const [open, ended] = await Promise.all([
    read("/api/orders?status=open&limit=10000", "orders"),
    read(`/api/orders?status=ended&limit=${RECENT_ORDERS}`, "orders"),
  ]);
  if (open === null || ended === null) return;
  page.orders = new Map([...open, ...ended].map((order) => [order.client_order_id, order]));
  renderOrders();
}

function onOrder(order) {
  const known = page.orders.get(order.client_order_id);
  if (known && known.version >= order.version) return;
  page.orders.set(order.client_order_id, order);
  followSubmitted(order);
  schedule("orders");
}

function renderOrders() {
  const newest = [...page.orders.values()].sort(
    (a, b) => b.updated - a.updated || b.client_order_id.localeCompare(a.client_order_id),
  );
  const open = newest.filter((o) => !TERMINAL.has(o.status));
  const ended = newest.filter((o) => TERMINAL.has(o.status));
  for (const old of ended.slice(RECENT_ORDERS)) page.orders.delete(old.client_order_id); // kept bounded
  const canTrade = page.me.role === "trade";
  tables.fill(
    $("open-orders"),
    open.map((order) => tables.openOrderRow(order, canTrade ? cancelButton(order) : null)),
    "no open orders",
  );
  tables.fill($("recent-orders"), ended.slice(0, RECENT_ORDERS).map(tables.recentOrderRow), "no orders yet");
}

function cancelButton(order) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "small cancel";
  button.textContent = "Cancel";
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      await page.api.delete(`/api/orders/${encodeURIComponent(order.client_order_id)}`);
    } catch (error) {
      report(error, `cancel ${order.client_order_id}`);
      button.disabled = false;
    }
  });
  return button;
}

async function placeOrder(event) {
  event.preventDefault();
  const body = {
    symbol: $("order-symbol").value.trim(),
    side: $("order-side").value,
    quantity: $("order-quantity").value.trim(), // a decimal string, sent as typed
  };
  const price = $("order-price").value.trim();
  if (price) body.price = price;
  $("order-submit").disabled = true;
  try {
    const answer = await page.api.post("/api/orders", body);
    page.lastOrder = answer.client_order_id;
    orderResult(`${answer.client_order_id}: sent to risk`, "sent");
    const known = page.orders.get(answer.client_order_id);
    if (known) followSubmitted(known);
  } catch (error) {
    orderResult(`Refused (${error.status}): ${error.message}`, "error");
  } finally {
    $("order-submit").disabled = false;
  }
}

function orderResult(text, status) {
  const element = $("order-result");
  if (!element) return;
  element.textContent = text;
  element.dataset.status = status;
}

/** The form says what became of the order it placed last: accepted, filled, rejected and why. */
function followSubmitted(order) {
  if (order.client_order_id !== page.lastOrder) return;
  let text = `${order.client_order_id}: ${order.status}`;
  if (order.average_price) text += ` ${order.filled_quantity} @ ${order.average_price}`;
  if (order.reason) text += ` (${order.reason})`;
  orderResult(text, order.status);
}

// Positions and PnL -----------------------------------------------------------------------------------

const positionKey = (p) => `${p.account}|${p.venue}|${p.symbol}|${p.strategy ?? ""}`;

async function loadPositions() {
  const found = await read("/api/positions", "positions");
  if (found === null) return;
  page.positions = new Map(found.map((p) => [positionKey(p), p]));
  renderPositions();
}

function onPosition(position) {
  page.positions.set(positionKey(position), position);
  schedule("positions");
}

function renderPositions() {
  const sorted = [...page.positions.values()].sort((a, b) => positionKey(a).localeCompare(positionKey(b)));
  tables.fill($("positions"), sorted.map(tables.positionRow), "no positions");
}

async function loadPnl() {
  const [now, history] = await Promise.all([
    read("/api/pnl", "PnL"),
    read("/api/pnl/history?scope=total&limit=5000", "PnL history"),
  ]);
  if (now !== null) {
    page.pnl = new Map(now.map((s) => [s.scope, s]));
    renderPnl();
  }
  if (history !== null) page.pnlChart.show(history);
}

function onPnl(snapshot) {
  page.pnl.set(snapshot.scope, snapshot);
  if (snapshot.scope === "total") page.pnlChart.add(snapshot);
  schedule("pnl");
}

function renderPnl() {
  const sorted = [...page.pnl.values()].sort(
    (a, b) => (a.scope === "total") - (b.scope === "total") || a.scope.localeCompare(b.scope),
  );
  tables.fill($("pnl"), sorted.map(tables.pnlRow), "no PnL yet");
}

// The chart ---------------------------------------------------------------------------------------------

function chooseInstrument() {
  const instrument = {
    symbol: $("chart-symbol").value.trim(),
    venue: $("chart-venue").value.trim(),
    timeframe: $("chart-timeframe").value,
  };
  if (!NAME.test(instrument.symbol) || !NAME.test(instrument.venue)) {
    message("chart: a symbol and a venue are letters, digits, _ and -");
    return;
  }
  page.instrument = instrument;
  const { symbol, venue, timeframe } = instrument;
  page.live.follow([{ venue, symbol }], [{ venue, symbol, timeframe }]);
  loadChart();
}

/** History from /api/bars and /api/fills; what the WebSocket brings meanwhile waits, then follows. */
async function loadChart() {
  const instrument = page.instrument;
  const generation = ++page.chartGeneration;
  page.book = null;
  page.buffer = [];
  page.fills = []; // the WebSocket's fills while the history loads; merged with it below
  const { symbol, venue, timeframe } = instrument;
  const query = new URLSearchParams({ symbol, venue, timeframe, limit: "1000" });
  const [rows, fills] = await Promise.all([
    read(`/api/bars?${query}`, "chart"),
    read(`/api/fills?${new URLSearchParams({ symbol, limit: "1000" })}`, "fills"),
  ]);
  if (generation !== page.chartGeneration) return;
  const book = new CandleBook(timeframe);
  const candles = book.load(rows ?? []); // no history (its error is shown): the live candles still come
  page.history = candles.length;
  // Every venue's fills of the symbol (paper fills are "paper"'s), and those the WebSocket brought
  // while the history loaded, which /api/fills may or may not have had yet.
  const known = new Set((fills ?? []).map((f) => f.exec_id));
  page.fills = [...(fills ?? []).reverse(), ...page.fills.filter((f) => !known.has(f.exec_id))];
  page.priceChart.show(candles, book.markers(page.fills));
  page.book = book;
  page.updates = 0;
  for (const [kind, data] of page.buffer) applyMarket(kind, data);
  page.buffer = null;
  renderLegend();
}

function isCharted(data, kind) {
  const i = page.instrument;
  return (
    i !== null && data.symbol === i.symbol && data.venue === i.venue && (kind === "tick" || data.timeframe === i.timeframe)
  );
}

function onMarket(kind, data) {
  if (!isCharted(data, kind)) return;
  if (page.book === null) {
    page.buffer?.push([kind, data]);
    return;
  }
  applyMarket(kind, data);
}

function applyMarket(kind, data) {
  const change = kind === "tick" ? page.book.tick(data) : page.book.bar(data);
  if (change === null) return;
  page.priceChart.update(change);
  page.updates += 1;
  schedule("legend");
}

function onFill(fill) {
  const i = page.instrument;
  if (i === null || fill.symbol !== i.symbol) return;
  if (page.fills.some((f) => f.exec_id === fill.exec_id)) return;
  page.fills.push(fill); // kept while the chart loads: loadChart merges it with the history
  if (page.book === null) return;
  page.priceChart.setMarkers(page.book.markers(page.fills));
  schedule("legend");
}

function renderLegend() {
  const legend = $("chart-legend");
  const { symbol, venue, timeframe } = page.instrument;
  const last = page.book?.last;
  legend.dataset.candles = String(page.book?.byTime.size ?? 0);
  legend.dataset.history = String(page.history);
  legend.dataset.updates = String(page.updates);
  legend.dataset.lastTime = String(last?.time ?? "");
  legend.dataset.fills = String(page.fills.length);
  if (!last) {
    legend.textContent = `no bars of ${symbol} on ${venue} at ${timeframe} yet`;
    return;
  }
  const f = (n) => n.toPrecision(8).replace(/\.?0+$/, "");
  legend.textContent =
    `${symbol} · ${venue} · ${timeframe}  O ${f(last.open)}  H ${f(last.high)}  L ${f(last.low)}  ` +
    `C ${f(last.close)}  V ${f(last.volume)}`;
}

// Services and dead letters --------------------------------------------------------------------------------

async function pollStatus() {
  const found = await read("/api/status", "status");
  if (found === null) return;
  $("stack-phase").textContent = found.supervisor?.phase ? `(stack ${found.supervisor.phase})` : "";
  tables.fill($("status"), found.components.map(tables.componentRow), "no stack is running");
  renderTrading(found.trading);
}

async function loadDeadLetters() {
  const found = await read("/api/dlq?limit=50", "dead letters");
  if (found !== null) tables.fill($("dlq"), found.map(tables.deadLetterRow), "no dead letters");
}

// Start -------------------------------------------------------------------------------------------------

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const token = $("login-token").value.trim();
  if (token) signIn(token);
});
const signedOutBecause = sessionStorage.getItem(SIGNED_OUT_KEY);
sessionStorage.removeItem(SIGNED_OUT_KEY);
const saved = sessionStorage.getItem(TOKEN_KEY);
if (saved) signIn(saved);
else showLogin(signedOutBecause);
