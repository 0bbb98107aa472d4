// DOM helpers and the small vocabulary every part of the dashboard shares.

import { apiUrl } from "./api.js";

// Job states are declared once (saft_core/states.py) and served by GET /v1/vocabulary.
const VOCABULARY = await fetch(apiUrl("v1/vocabulary"), { cache: "no-store" }).then((r) =>
  r.json(),
);
export const FINAL = new Set(VOCABULARY.final_states);
export const MODE_NAMES = { saft: "SAFT", wsf: "SAFT-WSF" };

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** h("button", {class: "x", onclick: fn, "aria-label": "..."}, "text", childNode, null) */
export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

export const shortId = (id) => (id ? id.slice(0, 8) : "");

export function badge(state) {
  return h("span", { class: `badge state-${state}`, "data-state": state }, state);
}
