// Overview: counts from the O(1) queue stats, refreshed when task events say something changed
// (the Server-Sent Events stream), throughput from the lifetime totals, latency from a sample
// of recently finished tasks, worker count and Redis health.
import { aborted, api, watch } from "./api.js";
import { lineChart } from "./chart.js";
import { PRIORITIES, TASK_STATES, el, fixed, num, table } from "./dom.js";

const TICK_MS = 1000;
const SLOW_MS = 10000; // workers and Redis health: they send no task events
const LATENCY_MS = 5000;
const KEEP_MS = 3600_000;
const WINDOWS = [[5, "5 min"], [15, "15 min"], [60, "1 hour"]];

export function render(main, { signal, setLive }) {
  const state = {
    dirty: true, busy: false, last: null, lastSlow: 0, lastLatency: 0, succeededSince: 0,
    throughput: [], latency: [], perType: new Map(), windowMs: 5 * 60000, stats: null,
  };
  const cards = el("div", { class: "stats", "aria-label": "Tasks by state" });
  const health = el("p", { class: "muted", id: "health" }, "Loading…");
  const priorities = el("div", { class: "card" });
  const types = el("div", { class: "card" });
  const groups = el("div", { class: "card", id: "groups" });
  const throughput = lineChart("throughput", "Throughput (per second)", [
    { key: "submitted", label: "submitted" }, { key: "succeeded", label: "succeeded" },
    { key: "failed", label: "failed" }], "/s");
  const latency = lineChart("latency", "Latency of recent tasks", [
    { key: "wait50", label: "wait p50" }, { key: "wait95", label: "wait p95" },
    { key: "run50", label: "run p50" }, { key: "run95", label: "run p95" }], "ms");
  const windowSelect = el("select", { id: "window", onchange: () => {
    state.windowMs = Number(windowSelect.value) * 60000;
    draw();
  } }, WINDOWS.map(([minutes, label]) => el("option", { value: minutes }, label)));

  main.replaceChildren(
    el("h1", {}, "Overview"), health, cards,
    el("div", { class: "toolbar" }, el("div", {}, el("label", { for: "window" }, "Chart window"), windowSelect)),
    el("div", { class: "grid" }, throughput.node, latency.node),
    el("div", { class: "grid" }, priorities, types), groups);

  const stop = watch({}, (event) => {
    state.dirty = true;
    if (event.state === "succeeded" || event.state === "dead") {
      const counts = state.perType.get(event.type) ?? { succeeded: 0, dead: 0 };
      counts[event.state] += 1;
      state.perType.set(event.type, counts);
    }
  }, (on) => {
    // Opened (or reopened): what changed before the watch was live has sent no event.
    if (on) state.dirty = true;
    setLive(on);
  });
  const timer = setInterval(tick, TICK_MS);
  signal.addEventListener("abort", () => { stop(); clearInterval(timer); });
  tick();

  function draw() {
    throughput.draw(state.throughput, state.windowMs);
    latency.draw(state.latency, state.windowMs);
  }

  async function tick() {
    if (state.busy) return;
    state.busy = true;
    const now = Date.now();
    try {
      if (now - state.lastSlow >= SLOW_MS) {
        state.lastSlow = now;
        state.dirty = true; // events a slow watcher lost (see EventHub) show here at the latest
        await refreshHealth();
      }
      if (state.dirty || !state.last) {
        state.dirty = false;
        const stats = await api("/api/v1/queues", { signal });
        sample(stats, Date.now());
        showStats(stats);
      } else {
        state.throughput.push({ t: now, v: { submitted: 0, succeeded: 0, failed: 0 } });
        state.last.t = now; // nothing changed since: the next rate starts here
      }
      if (state.succeededSince > 0 && now - state.lastLatency >= LATENCY_MS) {
        state.lastLatency = now;
        state.succeededSince = 0;
        await sampleLatency(now);
      }
      prune(now);
      draw();
    } catch (error) {
      if (!aborted(error)) health.textContent = `Cannot read the queues: ${error.message}`;
    } finally {
      state.busy = false;
    }
  }

  function sample(stats, t) {
    const totals = stats.totals;
    if (state.last) {
      const seconds = Math.max((t - state.last.t) / 1000, 0.001);
      const rate = (key) => Math.max(0, (totals[key] ?? 0) - (state.last.totals[key] ?? 0)) / seconds;
      state.throughput.push({ t, v: { submitted: rate("submitted"), succeeded: rate("succeeded"), failed: rate("failed") } });
      state.succeededSince += (totals.succeeded ?? 0) - (state.last.totals.succeeded ?? 0);
    } else {
      state.throughput.push({ t, v: { submitted: 0, succeeded: 0, failed: 0 } }); // the baseline
    }
    state.last = { t, totals };
  }

  async function sampleLatency(t) {
    const page = await api("/api/v1/tasks", { query: { state: "succeeded", limit: 100 }, signal });
    const done = page.tasks.filter((task) => task.started_ms !== null && task.finished_ms !== null);
    if (!done.length) return;
    const newest = Math.max(...done.map((task) => task.finished_ms));
    const recent = done.filter((task) => task.finished_ms >= newest - 60000);
    const waits = recent.map((task) => task.started_ms - task.ready_ms);
    const runs = recent.map((task) => task.finished_ms - task.started_ms);
    state.latency.push({ t, v: {
      wait50: quantile(waits, 0.5), wait95: quantile(waits, 0.95),
      run50: quantile(runs, 0.5), run95: quantile(runs, 0.95) } });
  }

  function prune(now) {
    for (const list of [state.throughput, state.latency]) {
      while (list.length && list[0].t < now - KEEP_MS) list.shift();
    }
  }

  async function refreshHealth() {
    const [workers, ready] = await Promise.all([
      api("/api/v1/workers", { signal }),
      api("/readyz", { signal }).catch((error) => {
        if (aborted(error)) throw error;
        return { redis: error.message };
      }),
    ]);
    const redisOk = ready.redis === "ok";
    const unserved = state.stats?.unserved_types ?? [];
    const live = workers.workers.filter((w) => !w.dead).length;
    const dead = workers.workers.length - live;
    health.replaceChildren(
      el("span", { "data-workers": live }, `${num(live)} worker${live === 1 ? "" : "s"}`),
      dead ? el("a", { class: "warn", href: "/ui/workers", "data-dead-workers": dead }, ` (${num(dead)} dead)`) : "",
      " · Redis ",
      el("span", { class: redisOk ? "ok" : "bad", "data-redis": redisOk ? "ok" : "down" }, redisOk ? "ok" : `down (${ready.redis})`),
      unserved.length ? el("span", { class: "warn" }, ` · no worker serves ${unserved.join(", ")}`) : "");
  }

  function showStats(stats) {
    state.stats = stats;
    cards.replaceChildren(...TASK_STATES.map((name) => el("div", { class: "stat", "data-state": name },
      el("a", { href: `/ui/tasks?state=${name}` },
        el("span", { class: "n" }, num(stats.by_state[name])),
        el("span", { class: `l s-${name}` }, name)))));

    const pending = stats.pending_by_priority;
    const total = PRIORITIES.reduce((sum, p) => sum + (pending[p] ?? 0), 0);
    const bars = el("div", { class: "bars", role: "presentation" });
    for (const p of PRIORITIES) {
      if (!pending[p]) continue;
      const span = el("span", { class: `b-${p}`, title: `${p}: ${num(pending[p])}` });
      span.style.width = `${(100 * pending[p]) / total}%`;
      bars.append(span);
    }
    priorities.replaceChildren(el("h2", {}, "Pending by priority"), bars,
      table("Pending tasks by priority", [["Priority"], ["Pending", "num"]],
        PRIORITIES.map((p) => el("tr", { "data-priority": p }, el("td", {}, el("span", { class: `b-${p} swatch` }), p),
          el("td", { class: "num" }, num(pending[p]))))));

    const served = new Set(stats.served_types);
    const names = [...new Set([...Object.keys(stats.by_type), ...stats.served_types])].sort();
    types.replaceChildren(el("h2", {}, "Task types"), names.length
      ? table("Tasks by type", [["Type"], ["Pending", "num"], ["Scheduled", "num"], ["Active", "num"],
        ["Dead", "num"], ["Failed rate", "num"], ["Served"], ["Limits"]], names.map((name) => {
        const counts = stats.by_type[name] ?? {};
        const live = state.perType.get(name);
        const finished = live ? live.succeeded + live.dead : 0;
        return el("tr", { "data-type": name },
          el("td", {}, el("a", { href: `/ui/tasks?type=${encodeURIComponent(name)}` }, name)),
          el("td", { class: "num" }, num(counts.pending)),
          el("td", { class: "num" }, num(counts.scheduled)),
          el("td", { class: "num" }, num(counts.active)),
          el("td", { class: "num" }, counts.dead ? el("a", { href: `/ui/dead-letters?type=${encodeURIComponent(name)}` }, num(counts.dead)) : "0"),
          el("td", { class: "num", title: "Of the tasks that ended since this page opened, the share that died" },
            finished ? `${fixed((100 * live.dead) / finished)} %` : "—"),
          el("td", {}, served.has(name) ? "yes" : el("span", { class: "warn" }, "no")),
          el("td", {}, limitsOf(stats, name)));
      }))
      : el("p", { class: "muted" }, "No tasks yet."));

    // Fair share: per grouped type, how many groups wait and run, and the top ten by backlog.
    const grouped = stats.groups ?? [];
    groups.replaceChildren(...(grouped.length ? [el("h2", {}, "Top groups by backlog"),
      table("Top groups by backlog", [["Type"], ["Group"], ["Pending", "num"], ["Active", "num"]],
        grouped.flatMap((g) => [
          el("tr", { "data-groups-of": g.type },
            el("td", {}, g.type), el("td", { class: "muted" }, `${num(g.groups_pending)} waiting, ${num(g.groups_active)} running`),
            el("td", {}), el("td", {})),
          ...g.top.map((load) => el("tr", { "data-group": `${g.type}/${load.group}` },
            el("td", {}), el("td", { class: "mono" }, load.group),
            el("td", { class: "num" }, num(load.pending)), el("td", { class: "num" }, num(load.active)))),
        ]))] : []));
  }
}

/** A type's limits in a few words, as the limits page has them: "paused · 100/s · 5 at once". */
function limitsOf(stats, name) {
  const effective = stats.policy?.types[name]?.effective ?? {};
  const words = [effective.paused ? "paused" : "", effective.rate_limit ?? "",
    effective.concurrency ? `${effective.concurrency} at once` : ""].filter(Boolean);
  const held = stats.held_by_limit[name];
  return el("a", { href: "/ui/limits", class: "plain" }, words.length ? words.join(" · ") : el("span", { class: "muted" }, "—"),
    held ? el("span", { class: "warn", "data-held": held }, ` (held by ${held})`) : "");
}

function quantile(values, q) {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}
