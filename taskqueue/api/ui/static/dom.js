// Small DOM and formatting helpers shared by the pages.

/** An element: el("a", {href: "/x", class: "c"}, "text", child). Never parses HTML. */
export function el(tag, attrs = {}, ...children) {
  const node = tag === "svg" || SVG_TAGS.has(tag)
    ? document.createElementNS("http://www.w3.org/2000/svg", tag)
    : document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  node.append(...children.flat().filter((c) => c !== null && c !== undefined && c !== false));
  return node;
}
const SVG_TAGS = new Set(["polyline", "line", "text", "g", "rect", "title"]);

const numbers = new Intl.NumberFormat();
export const num = (n) => numbers.format(n ?? 0);
export const fixed = (n, digits = 1) => (n ?? 0).toFixed(digits);

const absolute = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });
const relativeFormat = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });

/** "3 min ago" for epoch milliseconds. */
export function relative(ms) {
  const seconds = Math.round((ms - Date.now()) / 1000);
  const abs = Math.abs(seconds);
  if (abs < 60) return relativeFormat.format(seconds, "second");
  if (abs < 3600) return relativeFormat.format(Math.round(seconds / 60), "minute");
  if (abs < 86400) return relativeFormat.format(Math.round(seconds / 3600), "hour");
  return relativeFormat.format(Math.round(seconds / 86400), "day");
}

/** A <time> showing ``ms`` relative to now, the absolute time on hover (kept fresh). */
export function time(ms) {
  if (ms === null || ms === undefined) return el("span", { class: "muted" }, "—");
  return el("time", { datetime: new Date(ms).toISOString(), title: absolute.format(ms), "data-ms": ms },
    relative(ms));
}

/** Refresh every relative time on the page (called on a timer by app.js). */
export function refreshTimes() {
  for (const node of document.querySelectorAll("time[data-ms]")) {
    node.textContent = relative(Number(node.dataset.ms));
  }
}

/** "1.2 s", "340 ms", "3 min 20 s". */
export function duration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "—";
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60000) return `${(ms / 1000).toFixed(1)} s`;
  const minutes = Math.floor(ms / 60000);
  if (minutes < 60) return `${minutes} min ${Math.round((ms % 60000) / 1000)} s`;
  const hours = Math.floor(minutes / 60);
  return hours < 48 ? `${hours} h ${minutes % 60} min` : `${Math.floor(hours / 24)} d ${hours % 24} h`;
}

export const badge = (state) => el("span", { class: `badge s-${state}` }, state);

/** A table in a horizontally scrolling box: columns as [label, className?]. */
export function table(label, columns, rows) {
  return el("div", { class: "scroll" },
    el("table", { "aria-label": label },
      el("thead", {}, el("tr", {}, columns.map(([text, cls]) => el("th", { scope: "col", class: cls }, text)))),
      el("tbody", {}, rows)));
}

/** Say something in the page's status region (read out by screen readers). */
export function toast(message) {
  const box = document.getElementById("toast");
  box.textContent = message;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => { box.textContent = ""; }, 6000);
}

/** Ask before a destructive action, with a modal <dialog>; resolves true to go on. */
export function confirmDialog(question, action, danger = true) {
  return new Promise((resolve) => {
    const dialog = el("dialog", { "aria-labelledby": "confirm-q" },
      el("p", { id: "confirm-q" }, question),
      el("form", { method: "dialog", class: "actions" },
        el("button", { value: "no", class: "secondary" }, "Go back"),
        el("button", { value: "yes", class: danger ? "danger" : "" }, action)));
    dialog.addEventListener("close", () => { resolve(dialog.returnValue === "yes"); dialog.remove(); });
    document.body.append(dialog);
    dialog.showModal();
  });
}

export const TASK_STATES = ["blocked", "pending", "scheduled", "active", "succeeded", "dead", "cancelled", "expired"];
export const PRIORITIES = ["critical", "high", "medium", "low"];
