// Schedules: every periodic task as the API reads it back (definition, state, next ticks, the
// last task's state), refreshed every few seconds (a schedule's state sends no event); pause,
// resume, delete after a confirmation and create one, for an admin session.
import { aborted, api, canAct } from "./api.js";
import { badge, confirmDialog, el, num, table, time, toast } from "./dom.js";

const REFRESH_MS = 5000;
const PAGE = 1000; // the API's largest page: few namespaces hold more

export function render(main, { signal }) {
  const list = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  const count = el("p", { class: "muted", id: "count" });
  main.replaceChildren(el("h1", {}, "Schedules"), count, list, canAct ? createForm() : "");
  const timer = setInterval(load, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
  load();

  async function load() {
    try {
      const schedules = [];
      let cursor = null;
      do {
        const page = await api("/api/v1/schedules", { query: { limit: PAGE, cursor }, signal });
        schedules.push(...page.schedules);
        cursor = page.next_cursor;
      } while (cursor);
      const paused = schedules.filter((s) => s.paused).length;
      count.textContent = `${num(schedules.length)} schedule${schedules.length === 1 ? "" : "s"}`
        + (paused ? `, ${num(paused)} paused` : "");
      list.replaceChildren(schedules.length ? scheduleTable(schedules) : el("p", { class: "muted" }, "No schedules."));
    } catch (error) {
      if (!aborted(error)) list.replaceChildren(el("p", { class: "error", role: "alert" }, error.message));
    }
  }

  function scheduleTable(schedules) {
    const columns = [["Name"], ["Type"], ["When"], ["Missed"], ["State"], ["Last run"], ["Next runs"],
      ["Last task"], ["Fired", "num"]];
    if (canAct) columns.push(["Actions"]);
    return table("Schedules", columns, schedules.map((s) => el("tr", { "data-schedule": s.spec.name },
      el("td", { class: "mono nowrap" }, s.spec.name),
      el("td", {}, el("a", { href: `/ui/tasks?state=pending&type=${encodeURIComponent(s.spec.type)}` }, s.spec.type)),
      el("td", {}, timing(s.spec)),
      el("td", {}, s.spec.missed),
      el("td", { "data-paused": String(s.paused) }, s.paused
        ? el("span", { class: "badge s-cancelled" }, "paused") : el("span", { class: "badge s-succeeded" }, "active"),
      s.last_error ? el("div", { class: "bad", title: s.last_error }, "last firing failed") : ""),
      el("td", {}, time(s.last_run_ms)),
      el("td", {}, upcoming(s)),
      el("td", {}, s.last_task_id
        ? el("a", { href: `/ui/tasks/${s.last_task_id}`, title: s.last_task_id },
          s.last_task_state ? badge(s.last_task_state) : el("span", { class: "muted" }, "expired"))
        : el("span", { class: "muted" }, "—")),
      el("td", { class: "num" }, num(s.fired)),
      canAct ? el("td", { class: "actions" },
        el("button", { class: "secondary", onclick: () => pause(s.spec.name, !s.paused) }, s.paused ? "Resume" : "Pause"),
        el("button", { class: "danger", onclick: () => remove(s.spec.name) }, "Delete")) : "")));
  }

  async function pause(name, paused) {
    const verb = paused ? "pause" : "resume";
    try {
      await api(`/api/v1/schedules/${encodeURIComponent(name)}/${verb}`, { method: "POST", signal });
      toast(`${paused ? "Paused" : "Resumed"} ${name}.`);
    } catch (error) {
      if (!aborted(error)) toast(`Failed: ${error.message}`);
    }
    load();
  }

  async function remove(name) {
    if (!(await confirmDialog(`Delete the schedule ${name}? The tasks it submitted are left alone.`, "Delete it"))) return;
    try {
      await api(`/api/v1/schedules/${encodeURIComponent(name)}`, { method: "DELETE", signal });
      toast(`Deleted ${name}.`);
    } catch (error) {
      if (!aborted(error)) toast(`Failed: ${error.message}`);
    }
    load();
  }

  function createForm() {
    const field = (id, label, attrs = {}) => el("div", {}, el("label", { for: id }, label),
      el("input", { id, name: id, autocomplete: "off", ...attrs }));
    const missed = el("select", { id: "s-missed", name: "missed" },
      el("option", { value: "skip" }, "skip"), el("option", { value: "once" }, "once"));
    const error = el("p", { class: "error", role: "alert", id: "schedule-error" });
    const form = el("form", { class: "toolbar", "aria-labelledby": "h-create", onsubmit: create },
      field("s-name", "Name", { required: true, size: 16 }),
      field("s-type", "Type", { required: true, size: 14 }),
      field("s-cron", "Cron", { placeholder: "0 3 * * *", size: 12 }),
      field("s-every", "or every (seconds)", { type: "number", min: 1, step: "any", size: 8 }),
      field("s-timezone", "Time zone", { value: "UTC", size: 14 }),
      el("div", {}, el("label", { for: "s-missed" }, "Missed ticks"), missed),
      field("s-payload", "Payload (JSON)", { placeholder: "null", size: 18 }),
      el("button", { type: "submit" }, "Create"));
    return el("section", { class: "card" }, el("h2", { id: "h-create" }, "New schedule"), form, error);

    async function create(event) {
      event.preventDefault();
      error.textContent = "";
      const value = (name) => form.elements[name].value.trim();
      const body = { name: value("s-name"), type: value("s-type"), timezone: value("s-timezone") || "UTC", missed: missed.value };
      if (value("s-cron")) body.cron = value("s-cron");
      if (value("s-every")) body.every = Number(value("s-every"));
      if (value("s-payload")) {
        try {
          body.payload = JSON.parse(value("s-payload"));
        } catch {
          error.textContent = "payload: not JSON";
          return;
        }
      }
      try {
        await api("/api/v1/schedules", { method: "POST", body, signal });
        toast(`Created ${body.name}.`);
        form.reset();
        load();
      } catch (problem) {
        if (!aborted(problem)) error.textContent = problem.message;
      }
    }
  }
}

/** "cron 0 3 * * * Europe/Berlin" or "every 5 min", as the command line says it. */
function timing(spec) {
  if (spec.cron) return el("span", {}, el("code", {}, spec.cron), " ", el("span", { class: "muted" }, spec.timezone ?? "UTC"));
  const s = spec.every;
  const text = s % 3600 === 0 ? `${s / 3600} h` : s % 60 === 0 ? `${s / 60} min` : `${s} s`;
  return `every ${text}`;
}

/** The next tick relative to now (or "paused"), the two after it below, all five on hover. */
function upcoming(s) {
  const ticks = s.upcoming_at.map((text) => Date.parse(text));
  if (s.paused) return el("span", { class: "muted", title: s.upcoming_at.join("\n") }, "paused");
  const node = el("div", { title: s.upcoming_at.join("\n") }, time(s.next_run_ms ?? ticks[0] ?? null));
  const later = ticks.slice(1, 3);
  if (later.length) node.append(el("div", { class: "muted small" }, `then ${later.map((t) => TICK.format(t)).join(", ")}`));
  return node;
}

const TICK = new Intl.DateTimeFormat(undefined, { dateStyle: "short", timeStyle: "medium" });
