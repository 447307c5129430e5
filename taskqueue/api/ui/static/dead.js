// Dead letters: the tasks that failed their last attempt, newest first, with their error;
// requeue one, the selected or all (of a type), and purge after a confirmation.
import { aborted, api, canAct } from "./api.js";
import { confirmDialog, el, num, time, toast } from "./dom.js";

const PAGE = 50;

export function render(main, { query, signal, navigate }) {
  const type = query.get("type") ?? "";
  const cursors = [null];
  let page = 0;
  const typeSelect = el("select", { id: "dead-type", onchange: () => {
    navigate(typeSelect.value ? `/ui/dead-letters?type=${encodeURIComponent(typeSelect.value)}` : "/ui/dead-letters");
  } }, el("option", { value: "" }, "every type"));
  const count = el("p", { class: "muted", id: "count" });
  const list = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  const prev = el("button", { class: "secondary", disabled: true, onclick: () => load(page - 1) }, "← Previous");
  const next = el("button", { class: "secondary", disabled: true, onclick: () => load(page + 1) }, "Next →");
  const scope = type ? `of type ${type}` : "";
  const actions = canAct
    ? [
      el("button", { id: "requeue-selected", class: "secondary", onclick: requeueSelected }, "Requeue selected"),
      el("button", { id: "requeue-all", onclick: requeueAll }, type ? `Requeue all ${type}` : "Requeue all"),
      el("button", { id: "purge", class: "danger", onclick: purge }, type ? `Purge all ${type}` : "Purge all"),
    ]
    : [];

  main.replaceChildren(
    el("h1", {}, "Dead letters"),
    el("div", { class: "toolbar" },
      el("div", {}, el("label", { for: "dead-type" }, "Type"), typeSelect), ...actions),
    count, list, el("div", { class: "pager" }, prev, next));
  refresh();

  function refresh() {
    showCount();
    cursors.length = 1;
    load(0);
  }

  async function showCount() {
    try {
      const stats = await api("/api/v1/queues", { signal });
      const deadTypes = Object.entries(stats.by_type).filter(([, c]) => c.dead).map(([name]) => name);
      if (type && !deadTypes.includes(type)) deadTypes.push(type);
      typeSelect.replaceChildren(el("option", { value: "" }, "every type"),
        ...deadTypes.sort().map((name) => el("option", { value: name, selected: name === type }, name)));
      const n = type ? stats.by_type[type]?.dead ?? 0 : stats.by_state.dead;
      count.textContent = `${num(n)} dead task${n === 1 ? "" : "s"} ${scope}`;
    } catch (error) {
      if (!aborted(error)) count.textContent = "";
    }
  }

  async function load(index) {
    prev.disabled = next.disabled = true;
    try {
      const result = await api("/api/v1/dead-letters", { query: { type, limit: PAGE, cursor: cursors[index] }, signal });
      page = index;
      cursors[index + 1] = result.next_cursor;
      list.replaceChildren(result.tasks.length ? deadTable(result.tasks) : el("p", { class: "muted" }, "No dead letters."));
      prev.disabled = index === 0;
      next.disabled = !result.next_cursor;
    } catch (error) {
      if (!aborted(error)) list.replaceChildren(el("p", { class: "error", role: "alert" }, error.message));
    }
  }

  function deadTable(tasks) {
    const columns = [["Id"], ["Type"], ["Error"], ["Attempts", "num"], ["Died"]];
    if (canAct) columns.unshift([el("span", { class: "muted" }, "Select")]), columns.push(["Action"]);
    return el("div", { class: "scroll" }, el("table", { "aria-label": "Dead letters" },
      el("thead", {}, el("tr", {}, columns.map(([text, cls]) => el("th", { scope: "col", class: cls }, text)))),
      el("tbody", {}, tasks.map((t) => el("tr", { "data-task": t.id },
        canAct ? el("td", {}, el("input", { type: "checkbox", value: t.id, "aria-label": `Select ${t.id}` })) : "",
        el("td", { class: "mono" }, el("a", { href: `/ui/tasks/${t.id}` }, t.id.slice(0, 13) + "…")),
        el("td", {}, t.type),
        el("td", { class: "err", title: t.error ?? "" }, (t.error ?? "").split("\n")[0]),
        el("td", { class: "num" }, String(t.attempt)),
        el("td", {}, time(t.finished_ms)),
        canAct ? el("td", {}, el("button", { class: "secondary", onclick: () => requeue([t.id]) }, "Requeue")) : "")))));
  }

  async function requeue(ids) {
    let done = 0;
    for (const id of ids) {
      try {
        await api(`/api/v1/dead-letters/${id}/requeue`, { method: "POST", signal });
        done += 1;
      } catch (error) {
        if (aborted(error)) return;
        toast(`Failed to requeue ${id}: ${error.message}`);
      }
    }
    if (done) toast(`Requeued ${num(done)} task${done === 1 ? "" : "s"}.`);
    refresh();
  }

  function requeueSelected() {
    const ids = [...list.querySelectorAll("input[type=checkbox]:checked")].map((box) => box.value);
    if (ids.length) requeue(ids);
    else toast("Select the tasks to requeue first.");
  }

  async function requeueAll() {
    if (!(await confirmDialog(`Requeue every dead task ${scope}?`, "Requeue them", false))) return;
    bulk("POST", "/api/v1/dead-letters/requeue", (r) => `Requeued ${num(r.requeued)}.`);
  }

  async function purge() {
    if (!(await confirmDialog(`Delete every dead task ${scope} for good?`, "Purge them"))) return;
    bulk("DELETE", "/api/v1/dead-letters", (r) => `Purged ${num(r.purged)}.`);
  }

  async function bulk(method, path, say) {
    try {
      toast(say(await api(path, { method, query: { type }, signal })));
    } catch (error) {
      if (!aborted(error)) toast(`Failed: ${error.message}`);
    }
    refresh();
  }
}
