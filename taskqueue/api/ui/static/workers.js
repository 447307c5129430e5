// Workers: every registered worker as its last heartbeat left it, refreshed every few seconds
// (workers send no task events). One silent longer than the daemon's worker timeout is marked
// dead (the API says so) until a reaper forgets it: its slots count as none.
import { aborted, api } from "./api.js";
import { duration, el, num, table, time } from "./dom.js";

const REFRESH_MS = 5000;

export function render(main, { signal }) {
  const list = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  const summary = el("p", { class: "muted", id: "count" });
  main.replaceChildren(el("h1", {}, "Workers"), summary, list);
  const timer = setInterval(load, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
  load();

  async function load() {
    try {
      const { workers, dead_after_seconds: deadAfter } = await api("/api/v1/workers", { signal });
      const live = workers.filter((w) => !w.dead);
      const busy = live.reduce((sum, w) => sum + w.in_flight, 0);
      const slots = live.reduce((sum, w) => sum + w.concurrency, 0);
      const dead = workers.length - live.length;
      summary.textContent = `${num(live.length)} worker${live.length === 1 ? "" : "s"}, ${num(busy)} of ${num(slots)} slots busy`
        + (dead ? `; ${num(dead)} dead (silent over ${duration(deadAfter * 1000)})` : "");
      list.replaceChildren(workers.length ? workerTable(workers) : el("p", { class: "muted" }, "No live worker."));
    } catch (error) {
      if (!aborted(error)) list.replaceChildren(el("p", { class: "error", role: "alert" }, error.message));
    }
  }
}

function workerTable(workers) {
  return table("Workers", [["State"], ["Host"], ["PID", "num"], ["Version"], ["Types"], ["Busy", "num"],
    ["Processed", "num"], ["Failed", "num"], ["Uptime"], ["Last heartbeat"]],
  workers.map((w) => {
    const versions = [...new Set(Object.values(w.task_types))].filter(Boolean);
    const state = w.dead ? "dead" : "live";
    return el("tr", { "data-worker": w.id, "data-worker-state": state, class: w.dead ? "muted" : "", title: w.id },
      el("td", {}, el("span", { class: `badge ${w.dead ? "s-dead" : "s-succeeded"}` }, state)),
      el("td", {}, w.host),
      el("td", { class: "num" }, String(w.pid)),
      el("td", {}, versions.join(", ") || "—"),
      el("td", {}, Object.keys(w.task_types).sort().join(", ")),
      el("td", { class: "num" }, `${w.in_flight} / ${w.concurrency}`),
      el("td", { class: "num" }, num(w.processed)),
      el("td", { class: "num" }, num(w.failed)),
      el("td", {}, duration(Date.now() - w.started_ms)),
      el("td", {}, time(w.last_heartbeat_ms)));
  }));
}
