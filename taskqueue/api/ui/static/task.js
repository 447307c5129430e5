// One task: its payload, result, error and traceback, attempts and timeline, kept current by
// its own event stream (progress included); cancel and requeue for an admin session.
import { aborted, api, canAct, watch } from "./api.js";
import { badge, duration, el, time, toast } from "./dom.js";

const TERMINAL = new Set(["succeeded", "dead", "cancelled"]);

export function render(main, { params, signal, setLive }) {
  const [id] = params;
  const body = el("div", {}, el("p", { class: "muted" }, "Loading…"));
  main.replaceChildren(el("h1", {}, "Task ", el("span", { class: "mono" }, id)), body);
  let pending = false;
  let latest = 0; // loads may overlap: only the last one started is shown

  const stop = watch({ task_id: id }, () => {
    if (!pending) {
      pending = true;
      setTimeout(() => { pending = false; load(); }, 200);
    }
  }, (on) => {
    if (on) load(); // what changed before the watch was live sent no event
    setLive(on);
  });
  signal.addEventListener("abort", stop);
  load();

  async function load() {
    const mine = ++latest;
    try {
      const t = await api(`/api/v1/tasks/${id}`, { signal });
      if (mine === latest) show(t);
    } catch (error) {
      if (aborted(error)) return;
      body.replaceChildren(el("p", { class: "error", role: "alert" },
        error.status === 404 ? "No task has this id (it never existed, or its record expired)." : error.message));
    }
  }

  async function act(path, done) {
    try {
      await api(path, { method: "POST", signal });
      toast(done);
      await load();
    } catch (error) {
      if (!aborted(error)) toast(`Failed: ${error.message}`);
    }
  }

  function show(t) {
    const actions = el("div", { class: "toolbar" });
    if (canAct && !TERMINAL.has(t.state)) {
      actions.append(el("button", { class: "danger", onclick: () => act(`/api/v1/tasks/${id}/cancel`, "Cancellation requested.") },
        t.cancel_requested ? "Cancel requested…" : "Cancel task"));
    }
    if (canAct && t.state === "dead") {
      actions.append(el("button", { onclick: () => act(`/api/v1/dead-letters/${id}/requeue`, "Requeued.") }, "Requeue"));
    }
    const wait = t.started_ms !== null ? t.started_ms - t.ready_ms : null;
    const run = t.finished_ms !== null && t.started_ms !== null ? t.finished_ms - t.started_ms : null;
    const step = (label, ms) => el("li", { class: ms === null ? "pending-step" : "" }, `${label} `, time(ms));
    body.replaceChildren(
      actions,
      el("div", { class: "grid" },
        el("section", { class: "card", "aria-labelledby": "h-props" },
          el("h2", { id: "h-props" }, "Task"),
          el("dl", { class: "props" },
            el("dt", {}, "State"), el("dd", { id: "task-state" }, badge(t.state)),
            el("dt", {}, "Type"), el("dd", {}, t.type),
            el("dt", {}, "Priority"), el("dd", {}, t.priority),
            el("dt", {}, "Attempts"), el("dd", { id: "task-attempts" }, `${t.attempt} of ${t.max_retries + 1} (${t.attempts_left} left)`
              + (t.snoozes ? `, snoozed ${t.snoozes}×` : "")),
            el("dt", {}, "Group"), el("dd", { id: "task-group", class: "mono" }, t.group ?? "—"),
            el("dt", {}, "Deadline"), el("dd", { id: "task-deadline" }, t.expires_ms !== null ? time(t.expires_ms) : "—"),
            el("dt", {}, "Timeout"), el("dd", {}, duration(t.timeout_ms)),
            el("dt", {}, "Worker"), el("dd", { class: "mono" }, t.worker_id ?? "—"),
            el("dt", {}, "Idempotency key"), el("dd", { class: "mono" }, t.idempotency_key ?? "—"),
            el("dt", {}, "Waited"), el("dd", {}, duration(wait)),
            el("dt", {}, "Ran"), el("dd", {}, duration(run)))),
        el("section", { class: "card", "aria-labelledby": "h-time" },
          el("h2", { id: "h-time" }, "Timeline"),
          el("ol", { class: "timeline" },
            step("created", t.created_ms), step("ready", t.ready_ms),
            step("started", t.started_ms), step(t.finished_ms !== null ? t.state : "finished", t.finished_ms)),
          t.progress !== null ? el("div", {}, el("h2", {}, "Progress"), json(t.progress, "progress")) : "")),
      el("section", { class: "card", "aria-labelledby": "h-payload" },
        el("h2", { id: "h-payload" }, "Payload"), json(t.payload, "payload"),
        Object.keys(t.headers ?? {}).length ? el("div", {}, el("h2", {}, "Headers"), json(t.headers, "headers")) : "",
        el("h2", {}, "Result"), json(t.result, "result"),
        t.error !== null ? el("div", {}, el("h2", {}, "Error"), el("pre", { id: "error", class: "bad" }, t.error)) : "",
        t.traceback !== null ? el("div", {}, el("h2", {}, "Traceback"), el("pre", { id: "traceback" }, t.traceback)) : ""));
  }
}

function json(value, name) {
  return el("pre", { id: name, tabindex: 0, "aria-label": name }, JSON.stringify(value, null, 2));
}
