// The dashboard's router: one HTML shell, a page module per path, links followed in place.
import { session } from "./api.js";
import { refreshTimes } from "./dom.js";
import * as dead from "./dead.js";
import * as limits from "./limits.js";
import * as overview from "./overview.js";
import * as schedules from "./schedules.js";
import * as task from "./task.js";
import * as tasks from "./tasks.js";
import * as workers from "./workers.js";

const ROUTES = [
  [/^\/ui\/?$/, overview, "overview", "Overview"],
  [/^\/ui\/tasks\/?$/, tasks, "tasks", "Tasks"],
  [/^\/ui\/tasks\/([0-9a-f-]{36})$/, task, "tasks", "Task"],
  [/^\/ui\/dead-letters\/?$/, dead, "dead", "Dead letters"],
  [/^\/ui\/workers\/?$/, workers, "workers", "Workers"],
  [/^\/ui\/schedules\/?$/, schedules, "schedules", "Schedules"],
  [/^\/ui\/limits\/?$/, limits, "limits", "Limits"],
];

const main = document.getElementById("main");
const live = document.getElementById("live");
let current = null;

function setLive(on) {
  live.className = `live ${on ? "on" : "off"}`;
  live.textContent = on ? "live" : "reconnecting…";
}

function show(focus) {
  current?.abort();
  current = new AbortController();
  live.textContent = "";
  live.className = "live";
  const path = location.pathname;
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  const [pattern, page, nav, title] = found ?? ROUTES[0];
  for (const link of document.querySelectorAll("[data-nav]")) {
    if (link.dataset.nav === nav) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  document.title = `${title} · taskqueue`;
  page.render(main, {
    params: path.match(pattern)?.slice(1) ?? [],
    query: new URLSearchParams(location.search),
    signal: current.signal,
    setLive,
    navigate,
  });
  if (focus) main.focus();
}

/** Go to ``url`` inside the dashboard without reloading it. */
export function navigate(url, replace = false) {
  if (replace) history.replaceState(null, "", url);
  else history.pushState(null, "", url);
  show(!replace);
}

document.addEventListener("click", (event) => {
  const link = event.target.closest("a[href]");
  if (!link || event.defaultPrevented || event.button !== 0 || event.metaKey || event.ctrlKey
      || event.shiftKey || event.altKey || link.target) return;
  const url = new URL(link.href);
  if (url.origin !== location.origin || !url.pathname.startsWith("/ui")
      || url.pathname.startsWith("/ui/static/")) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});
addEventListener("popstate", () => show(true));
setInterval(refreshTimes, 15000);

if (session.auth) {
  document.getElementById("logout").hidden = false;
  document.getElementById("scope").textContent = session.scope === "admin" ? "admin" : "read-only";
}
show(false);
