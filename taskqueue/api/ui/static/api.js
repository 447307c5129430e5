// The REST API as the pages use it: the session cookie authenticates, writes carry the CSRF
// token the page was served with, and a lapsed session goes back to the login page.

const meta = (name) => document.querySelector(`meta[name="taskqueue-${name}"]`)?.content ?? "";

export const session = { scope: meta("scope"), csrf: meta("csrf"), auth: meta("auth") === "on" };
/** Whether this session may act (an admin token, or no tokens configured). */
export const canAct = session.scope === "admin";

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
  }
}

/** Call ``path`` (under the daemon) with ``body`` (sent as JSON) and return its JSON; ApiError
 * with the problem's detail. */
export async function api(path, { method = "GET", query = {}, body, signal } = {}) {
  const url = new URL(path, location.origin);
  for (const [key, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(key, value);
  }
  const headers = { Accept: "application/json" };
  if (method !== "GET") headers["X-CSRF-Token"] = session.csrf;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(url, {
    method, headers, signal, credentials: "same-origin", body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (response.status === 401 && session.auth) {
    location.assign("/ui/login");
    throw new ApiError(401, "the session has ended");
  }
  const type = response.headers.get("content-type") ?? "";
  const reply = type.includes("json") ? await response.json() : null;
  if (!response.ok) throw new ApiError(response.status, reply?.detail ?? response.statusText);
  return reply;
}

/** Watch task events (the REST API's Server-Sent Events) until the returned function runs. */
export function watch(query, onEvent, onState = () => {}) {
  const url = new URL("/api/v1/events", location.origin);
  for (const [key, value] of Object.entries(query)) url.searchParams.set(key, value);
  const source = new EventSource(url);
  source.addEventListener("task", (event) => onEvent(JSON.parse(event.data)));
  source.addEventListener("open", () => onState(true));
  source.addEventListener("error", () => onState(false));
  return () => source.close();
}

/** Whether ``error`` only says the page went away (its fetch was aborted). */
export const aborted = (error) => error?.name === "AbortError";
