// Tasks: one state at a time (optionally one type), paged by the API's cursors; the count
// comes from the O(1) queue stats, so a state holding 100,000 tasks costs one page.
import { aborted, api } from "./api.js";
import { TASK_STATES, badge, el, num, table, time } from "./dom.js";

const PAGE = 50;
const ID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

export function render(main, { query, signal, navigate }) {
  const stateName = TASK_STATES.includes(query.get("state")) ? query.get("state") : "pending";
  const type = query.get("type") ?? "";
  const cursors = [null]; // the cursor of each page seen, for "previous"
  let page = 0;

  const stateSelect = el("select", { id: "state", name: "state" },
    TASK_STATES.map((s) => el("option", { value: s, selected: s === stateName }, s)));
  const typeInput = el("input", { id: "type", name: "type", value: type, list: "types", placeholder: "any type", size: 16 });
  const types = el("datalist", { id: "types" });
  const search = el("input", { id: "search", name: "id", placeholder: "task id or idempotency key", size: 38, autocomplete: "off" });
  const message = el("p", { class: "error", role: "alert" });
  const count = el("p", { class: "muted", id: "count" });
  const list = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  const prev = el("button", { class: "secondary", disabled: true, onclick: () => load(page - 1) }, "← Previous");
  const next = el("button", { class: "secondary", disabled: true, onclick: () => load(page + 1) }, "Next →");
  const status = el("span", { class: "muted", "aria-live": "polite" });

  main.replaceChildren(
    el("h1", {}, "Tasks"),
    el("div", { class: "toolbar" },
      el("form", { class: "toolbar", onsubmit: (event) => {
        event.preventDefault();
        const params = new URLSearchParams({ state: stateSelect.value });
        if (typeInput.value.trim()) params.set("type", typeInput.value.trim());
        navigate(`/ui/tasks?${params}`);
      } },
        el("div", {}, el("label", { for: "state" }, "State"), stateSelect),
        el("div", {}, el("label", { for: "type" }, "Type"), typeInput, types),
        el("button", { type: "submit" }, "Filter")),
      el("form", { class: "toolbar", role: "search", onsubmit: async (event) => {
        event.preventDefault();
        const text = search.value.trim();
        if (!text) return;
        message.textContent = "";
        try {
          const id = await find(text, signal);
          if (id) navigate(`/ui/tasks/${id}`);
          else message.textContent = `No task has the id or idempotency key “${text}”.`;
        } catch (error) {
          if (!aborted(error)) message.textContent = error.message;
        }
      } },
        el("div", {}, el("label", { for: "search" }, "Find a task by id or idempotency key"), search),
        el("button", { type: "submit", class: "secondary" }, "Open"))),
    message, count, list, el("div", { class: "pager" }, prev, next, status));

  stateSelect.addEventListener("change", () => stateSelect.form.requestSubmit());
  showCount();
  load(0);

  async function showCount() {
    try {
      const stats = await api("/api/v1/queues", { signal });
      const n = type ? stats.by_type[type]?.[stateName] : stats.by_state[stateName];
      const typed = type ? ` of type ${type}` : "";
      count.textContent = n === undefined
        ? `Tasks ${stateName}${typed}`
        : `${num(n)} task${n === 1 ? "" : "s"} ${stateName}${typed}`;
      types.replaceChildren(...[...new Set([...Object.keys(stats.by_type), ...stats.served_types])]
        .sort().map((name) => el("option", { value: name })));
    } catch (error) {
      if (!aborted(error)) count.textContent = "";
    }
  }

  async function load(index) {
    prev.disabled = next.disabled = true;
    status.textContent = "Loading…";
    try {
      const result = await api("/api/v1/tasks", {
        query: { state: stateName, type, limit: PAGE, cursor: cursors[index] }, signal });
      page = index;
      cursors[index + 1] = result.next_cursor;
      list.replaceChildren(result.tasks.length ? taskTable(result.tasks) : el("p", { class: "muted" }, "No tasks here."));
      prev.disabled = index === 0;
      next.disabled = !result.next_cursor;
      status.textContent = `Page ${index + 1}`;
    } catch (error) {
      if (aborted(error)) return;
      status.textContent = "";
      message.textContent = error.message;
    }
  }
}

export function taskTable(tasks) {
  return table("Tasks", [["Id"], ["Type"], ["State"], ["Priority"], ["Attempt", "num"], ["Created"], ["Finished"]],
    tasks.map((t) => el("tr", { "data-task": t.id },
      el("td", { class: "mono" }, el("a", { href: `/ui/tasks/${t.id}` }, t.id)),
      el("td", {}, t.type),
      el("td", {}, badge(t.state)),
      el("td", {}, t.priority),
      el("td", { class: "num" }, `${t.attempt} / ${t.max_retries + 1}`),
      el("td", {}, time(t.created_ms)),
      el("td", {}, time(t.finished_ms)))));
}

/** The id of the task ``text`` names: a task id, else an idempotency key (clients often use
 * UUIDs as keys, so an id-shaped text that is no task's id is tried as a key); null if none. */
async function find(text, signal) {
  const id = text.toLowerCase();
  if (ID.test(id)) {
    try {
      return (await api(`/api/v1/tasks/${id}`, { signal })).id;
    } catch (error) {
      if (error.status !== 404) throw error;
    }
  }
  try {
    return (await api("/api/v1/tasks/by-idempotency-key", { query: { key: text }, signal })).id;
  } catch (error) {
    if (error.status === 404) return null;
    throw error;
  }
}
