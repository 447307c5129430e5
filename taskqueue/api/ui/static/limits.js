// Limits: each task type's rate, burst, concurrency, per-group (fair share) concurrency and
// rate, and pause as a submission gets them, and
// whether a limit holds its tasks back now (the stats' held_by_limit); pause, resume and edit
// a type's limits for an admin session. A change rewrites the type's live policy layer as a
// whole (the API replaces it), so the other live settings are read first and kept.
import { aborted, api, canAct } from "./api.js";
import { el, num, table, toast } from "./dom.js";

const REFRESH_MS = 5000;
const LIMITS = ["rate_limit", "rate_burst", "concurrency", "group_concurrency", "group_rate_limit"];
const RATES = new Set(["rate_limit", "group_rate_limit"]);

export function render(main, { query, signal }) {
  const list = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  const form = canAct ? limitsForm(query.get("type") ?? "") : null;
  main.replaceChildren(el("h1", {}, "Limits and pause"),
    el("p", { class: "muted" }, "Per task type, across every worker. A value from the daemons' config "
      + "(or a plugin) is marked config; one set here is live, and an empty field clears it."),
    list, form?.node ?? "");
  const timer = setInterval(load, REFRESH_MS);
  signal.addEventListener("abort", () => clearInterval(timer));
  load();

  async function load() {
    try {
      const stats = await api("/api/v1/queues", { signal });
      const policies = stats.policy?.types ?? {};
      const names = [...new Set([...Object.keys(policies), ...Object.keys(stats.by_type), ...stats.served_types])].sort();
      list.replaceChildren(names.length ? limitsTable(names, stats, policies) : el("p", { class: "muted" }, "No task types yet."));
    } catch (error) {
      if (!aborted(error)) list.replaceChildren(el("p", { class: "error", role: "alert" }, error.message));
    }
  }

  function limitsTable(names, stats, policies) {
    const columns = [["Type"], ["Rate limit"], ["Burst", "num"], ["Concurrency", "num"],
      ["Per group", "num"], ["Group rate"], ["Paused"],
      ["Held now"], ["Pending", "num"], ["Active", "num"]];
    if (canAct) columns.push(["Actions"]);
    return table("Limits by type", columns, names.map((name) => {
      const scope = policies[name];
      const paused = scope?.effective.paused === true;
      const held = stats.held_by_limit[name];
      return el("tr", { "data-type": name, "data-paused": String(paused) },
        el("td", {}, el("a", { href: `/ui/tasks?state=pending&type=${encodeURIComponent(name)}` }, name)),
        el("td", { "data-limit": "rate_limit" }, setting(scope, "rate_limit")),
        el("td", { class: "num", "data-limit": "rate_burst" }, setting(scope, "rate_burst")),
        el("td", { class: "num", "data-limit": "concurrency" }, setting(scope, "concurrency")),
        el("td", { class: "num", "data-limit": "group_concurrency" }, setting(scope, "group_concurrency")),
        el("td", { "data-limit": "group_rate_limit" }, setting(scope, "group_rate_limit")),
        el("td", {}, paused ? el("span", { class: "badge s-cancelled" }, "paused") : "no"),
        el("td", { "data-held": held ?? "" }, held ? el("span", { class: "warn" }, `by ${held}`) : el("span", { class: "muted" }, "—")),
        el("td", { class: "num" }, num(stats.by_type[name]?.pending)),
        el("td", { class: "num" }, num(stats.by_type[name]?.active)),
        canAct ? el("td", { class: "actions" },
          el("button", { class: "secondary", onclick: () => setPaused(name, !paused) }, paused ? "Resume" : "Pause"),
          el("button", { class: "secondary", onclick: () => form.edit(name, scope) }, "Edit limits")) : "");
    }));
  }

  async function setPaused(name, paused) {
    try {
      await change(name, paused ? { paused: true } : { paused: null });
      toast(`${paused ? "Paused" : "Resumed"} ${name}.`);
    } catch (error) {
      if (!aborted(error)) toast(`Failed: ${error.message}`);
    }
    load();
  }

  /** Set (or, given null, unset) live settings of ``name``, its other live settings kept. */
  async function change(name, settings) {
    const path = `/api/v1/policy/${encodeURIComponent(name)}`;
    const { live } = await api(path, { signal });
    const body = { ...live, ...settings };
    for (const [key, value] of Object.entries(body)) if (value === null) delete body[key];
    return api(path, { method: "PUT", body, signal });
  }

  function limitsForm(initial) {
    const field = (id, label, attrs = {}) => el("div", {}, el("label", { for: id }, label),
      el("input", { id, name: id, autocomplete: "off", ...attrs }));
    const error = el("p", { class: "error", role: "alert", id: "limits-error" });
    const node = el("form", { class: "toolbar", onsubmit: save },
      field("l-type", "Type", { required: true, size: 16, value: initial }),
      field("l-rate_limit", "Rate limit", { placeholder: "e.g. 100/s", size: 10 }),
      field("l-rate_burst", "Burst", { type: "number", min: 1, step: 1, size: 6 }),
      field("l-concurrency", "Concurrency", { type: "number", min: 1, step: 1, size: 6 }),
      field("l-group_concurrency", "Per group", { type: "number", min: 1, step: 1, size: 6 }),
      field("l-group_rate_limit", "Group rate", { placeholder: "e.g. 10/min", size: 10 }),
      el("button", { type: "submit" }, "Save limits"));
    const card = el("section", { class: "card form", "aria-labelledby": "h-limits" },
      el("h2", { id: "h-limits" }, "Set a type's limits"), node, error);
    return { node: card, edit };

    /** Fill the form with ``name``'s live limits (the config's as placeholders). */
    function edit(name, scope) {
      node.elements["l-type"].value = name;
      for (const key of LIMITS) {
        const input = node.elements[`l-${key}`];
        input.value = scope?.live[key] ?? "";
        const config = scope?.config[key];
        input.placeholder = config !== undefined && config !== null ? `config: ${config}` : RATES.has(key) ? "e.g. 100/s" : "";
      }
      error.textContent = "";
      node.elements["l-rate_limit"].focus();
    }

    async function save(event) {
      event.preventDefault();
      error.textContent = "";
      const name = node.elements["l-type"].value.trim();
      const settings = {};
      for (const key of LIMITS) {
        const text = node.elements[`l-${key}`].value.trim();
        settings[key] = text === "" ? null : RATES.has(key) ? text : Number(text);
      }
      try {
        await change(name, settings);
        toast(`Saved the limits of ${name}.`);
        load();
      } catch (problem) {
        if (!aborted(problem)) error.textContent = problem.message;
      }
    }
  }
}

/** A type's effective setting, marked "config" when no live one sets it. */
function setting(scope, key) {
  const value = scope?.effective[key];
  if (value === undefined || value === null) return el("span", { class: "muted" }, "—");
  const live = scope.live[key] !== undefined && scope.live[key] !== null;
  return el("span", {}, String(value), live ? "" : el("span", { class: "muted" }, " (config)"));
}
