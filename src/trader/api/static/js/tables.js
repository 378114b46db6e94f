// The dashboard's tables: rows built from text (never HTML: a dead letter's payload is anyone's bytes).

import { rateText, roundDecimal, signOf, timeText } from "./format.js";

/** A cell: a string, or `{text, cls, title}`, or a DOM node. */
function cellOf(value) {
  const td = document.createElement("td");
  if (value instanceof Node) {
    td.append(value);
  } else if (value !== null && typeof value === "object") {
    td.textContent = value.text ?? "";
    if (value.cls) td.className = value.cls;
    if (value.title) td.title = value.title;
  } else {
    td.textContent = value ?? "";
  }
  return td;
}

function rowOf(cells, attributes = {}) {
  const tr = document.createElement("tr");
  for (const [key, value] of Object.entries(attributes)) tr.setAttribute(key, value);
  tr.append(...cells.map(cellOf));
  return tr;
}

/** Replace the table's rows; one muted row saying `empty` when there are none. */
export function fill(table, rows, empty) {
  const body = table.tBodies[0];
  if (rows.length === 0) {
    const columns = table.tHead.rows[0].cells.length;
    const td = document.createElement("td");
    td.colSpan = columns;
    td.textContent = empty;
    const tr = document.createElement("tr");
    tr.className = "empty";
    tr.append(td);
    body.replaceChildren(tr);
  } else {
    body.replaceChildren(...rows);
  }
}

const num = (text, places) => ({ text: places === undefined ? (text ?? "") : roundDecimal(text, places), cls: "num" });
const signed = (text, places) => {
  const sign = signOf(text);
  const shown = places === undefined ? (text ?? "") : roundDecimal(text, places);
  return { text: shown, cls: `num${sign < 0 ? " neg" : sign > 0 ? " pos" : ""}` };
};
const side = (value) => ({ text: value, cls: value });

/** An open order's row; `cancel` a button (trade tokens) or null. */
export function openOrderRow(order, cancel) {
  return rowOf(
    [
      timeText(order.updated),
      order.client_order_id,
      order.strategy,
      order.symbol,
      side(order.side),
      order.type,
      num(order.quantity),
      num(order.filled_quantity),
      num(order.price ?? ""),
      { text: order.status, cls: `status-${order.status}` },
      ...(cancel ? [cancel] : []),
    ],
    { "data-id": order.client_order_id, "data-status": order.status },
  );
}

export function recentOrderRow(order) {
  return rowOf(
    [
      timeText(order.updated),
      order.client_order_id,
      order.strategy,
      order.symbol,
      side(order.side),
      order.type,
      num(order.quantity),
      num(order.filled_quantity),
      num(order.average_price ?? ""),
      { text: order.status, cls: `status-${order.status}` },
      { text: order.reason ?? "", cls: "wrap" },
    ],
    { "data-id": order.client_order_id, "data-status": order.status },
  );
}

export function positionRow(position) {
  return rowOf(
    [
      position.account,
      position.venue,
      position.symbol,
      position.strategy ?? "net",
      signed(position.quantity),
      num(position.average_price ?? ""),
      signed(position.realized_pnl, 4),
      num(position.fees, 4),
    ],
    {
      class: position.strategy ? "" : "net",
      "data-symbol": position.symbol,
      "data-strategy": position.strategy ?? "",
      "data-quantity": position.quantity,
    },
  );
}

export function pnlRow(snapshot) {
  return rowOf(
    [
      snapshot.scope,
      signed(snapshot.realized, 4),
      signed(snapshot.unrealized, 4),
      num(snapshot.fees, 4),
      signed(snapshot.total, 4),
      num(snapshot.gross_exposure, 2),
    ],
    { class: snapshot.scope === "total" ? "net" : "", "data-scope": snapshot.scope },
  );
}

/** up, degraded, not ready or down: what an operator needs to see first. */
export function componentState(component) {
  if (component.alive === false || !component.healthy) return "down";
  if (component.degraded) return "degraded";
  if (!component.ready) return "not ready";
  return "up";
}

export function componentRow(component) {
  const state = componentState(component);
  const problems = [...(component.problems ?? []), ...(component.notes ?? [])].join("; ");
  return rowOf(
    [
      component.name,
      { text: state, cls: "state" },
      component.pid ?? "",
      { text: String(component.restarts ?? 0), cls: "num" },
      { text: rateText(component.in_per_s), cls: "num" },
      { text: rateText(component.out_per_s), cls: "num" },
      { text: problems, cls: "wrap" },
    ],
    { "data-name": component.name, "data-state": state },
  );
}

export function deadLetterRow(letter) {
  const payload = letter.payload ?? "";
  return rowOf([
    timeText(letter.refused_at),
    letter.service,
    letter.subject,
    { text: letter.reason, cls: "wrap" },
    { text: payload.length > 120 ? `${payload.slice(0, 120)}…` : payload, cls: "wrap", title: payload },
  ]);
}
