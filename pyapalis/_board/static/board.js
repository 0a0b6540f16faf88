// The board's page: talks to /api only, and writes every value with textContent
// (never innerHTML), so task args or errors holding markup show as text.
"use strict";

const CSRF = document.querySelector('meta[name="csrf-token"]').content;
const STATUSES = ["Pending", "Queued", "Running", "Done", "Failed", "Killed"];
const REFRESH_MS = 2000;
let can = {};
let queue = "";  // the queue shown ("" = the board's URL's queue), kept in the address

// An address in the page: a route and its parameters, the queue carried along.
function route(path, params) {
  const query = new URLSearchParams(params || {});
  if (queue) query.set("queue", queue);
  const text = query.toString();
  return "#" + path + (text ? "?" + text : "");
}

// An API path with the queue added to its query.
function scoped(path) {
  if (!queue) return path;
  return path + (path.includes("?") ? "&" : "?") + "queue=" + encodeURIComponent(queue);
}

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "on") { for (const [ev, fn] of Object.entries(value)) node.addEventListener(ev, fn); }
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function text(value) {
  if (value === null || value === undefined) return "-";
  return typeof value === "string" ? value : JSON.stringify(value);
}

function ago(iso) {
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  return seconds < 120 ? seconds + " s ago" : Math.round(seconds / 60) + " min ago";
}

function badge(status) { return el("span", { class: "status s-" + status }, status); }

async function api(path, options) {
  const response = await fetch("/api" + scoped(path), Object.assign({ credentials: "same-origin" }, options));
  const raw = await response.text();
  let body = null;
  try { body = JSON.parse(raw); } catch (_) { /* a plain-text refusal (401, 400) */ }
  if (!response.ok) throw new Error((body && body.error) || raw || response.statusText);
  if (body === null) throw new Error("the board answered something that is not JSON");
  return body;
}

function post(path, body) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", "X-CSRF-Token": CSRF },
    body: JSON.stringify(body || {}),
  });
}

// One line under the header: what an action did, or why it or a refresh failed.
// A refresh's failure is cleared by the next successful refresh; an action's
// outcome (done or refused) stays until the person moves to another page.
function notice(message, ok, fromAction) {
  const box = document.getElementById("notice");
  box.textContent = message || "";
  box.className = ok ? "ok" : "";
  box.dataset.kind = message && !ok && !fromAction ? "refresh-error" : "";
}

function table(columns, rows, onClick) {
  const head = el("tr", {}, ...columns.map((c) => el("th", {}, c.title)));
  const body = rows.map((row) => {
    const tr = el("tr", onClick ? { class: "link", "data-id": row.id } : {},
      ...columns.map((c) => el("td", c.cls ? { class: c.cls } : {}, c.cell(row))));
    if (onClick) tr.addEventListener("click", () => onClick(row));
    return tr;
  });
  return el("table", {}, el("thead", {}, head), el("tbody", {}, ...body));
}

function chart(points, interval) {
  const width = 600, height = 160, pad = 30;
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("class", "chart");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  const max = Math.max(1, ...points.map((p) => p.per_minute));
  const span = Math.max(60, ...points.map((p) => p.ago + interval));
  const xy = points.map((p) => [
    pad + (width - 2 * pad) * (1 - p.ago / span),
    height - pad - (height - 2 * pad) * (p.per_minute / max),
  ]);
  const line = document.createElementNS(svg.namespaceURI, "polyline");
  line.setAttribute("points", xy.map((p) => p.join(",")).join(" "));
  svg.append(line);
  const label = (x, y, value) => {
    const t = document.createElementNS(svg.namespaceURI, "text");
    t.setAttribute("x", x); t.setAttribute("y", y); t.textContent = value;
    svg.append(t);
  };
  label(4, pad - 8, Math.round(max) + " tasks/min");
  if (!points.length) label(width / 2 - 80, height / 2, "collecting samples every " + interval + " s…");
  label(pad, height - 8, "-" + Math.round(span / 60) + " min");
  label(width - pad - 20, height - 8, "now");
  return svg;
}

// -- views ---------------------------------------------------------------------

function showSummary(summary) {
  can = summary.can;
  document.getElementById("backend").textContent = summary.backend;
  const select = document.getElementById("queue");
  const names = summary.queues.map((row) => row.queue);
  if (select.dataset.names !== names.join("\n")) {
    select.replaceChildren(...names.map((name) => el("option", { value: name }, name)));
    select.dataset.names = names.join("\n");
  }
  select.value = summary.queue || "";
}

async function queuesView() {
  const summary = await api("/summary");
  showSummary(summary);
  const cards = STATUSES.map((status) =>
    el("div", { class: "card", "data-status": status, on: { click: () => { location.hash = route("/tasks", { status: status }); } } },
      badge(status), el("div", { class: "n" }, summary.counts[status] || 0)));
  const columns = [
    { title: "Queue", cell: (row) => row.queue },
    ...STATUSES.map((status) => ({ title: status, cell: (row) => row.counts[status] || 0 })),
    { title: "Total", cell: (row) => row.total },
  ];
  const rows = summary.queues.map((row) => Object.assign({ id: row.queue }, row));
  const overview = table(columns, rows, (row) => { queue = row.queue; location.hash = route("/"); });
  overview.id = "queues";
  return [
    el("h2", {}, "Queues"),
    overview,
    el("h2", {}, "Queue " + (summary.queue || "") + ": tasks by status (" + summary.total + ")"),
    el("div", { class: "cards" }, ...cards),
    el("h2", {}, "Finished per minute, last minutes (all queues)"),
    chart(summary.throughput, summary.throughput_interval),
  ];
}

async function tasksView(params) {
  const status = params.get("status") || "";
  const page = Math.max(1, parseInt(params.get("page") || "1", 10));
  const query = new URLSearchParams({ page: page, page_size: 20 });
  if (status) query.set("status", status);
  const [list, summary] = await Promise.all([api("/tasks?" + query), api("/summary")]);
  showSummary(summary);
  const go = (s, p) => { location.hash = route("/tasks", Object.assign({ page: p }, s ? { status: s } : {})); };
  const select = el("select", { id: "status-filter", on: { change: (e) => go(e.target.value, 1) } },
    el("option", { value: "" }, "any status"), ...STATUSES.map((s) => el("option", { value: s }, s)));
  select.value = status;
  const purge = el("button", { id: "purge", on: { click: async () => {
    if (!status) return;
    if (!confirm("Delete every " + status + " task?")) return;
    try { const r = await post("/purge", { status: status }); notice("deleted " + r.deleted + " " + status + " task(s)", true); render(); }
    catch (error) { notice(error.message, false, true); }
  } } }, "Purge " + (status || "…"));
  if (!status || !can.purge || status === "Running" || status === "Queued") purge.disabled = true;
  const toolbar = el("div", { class: "toolbar" }, "Status: ", select,
    el("button", { id: "prev", on: { click: () => go(status, page - 1) } }, "‹ Previous"),
    el("span", { id: "page" }, "page " + page),
    el("button", { id: "next", on: { click: () => go(status, page + 1) } }, "Next ›"),
    purge);
  if (page <= 1) toolbar.querySelector("#prev").disabled = true;
  if (list.tasks.length < list.page_size) toolbar.querySelector("#next").disabled = true;
  const columns = [
    { title: "Id", cls: "mono", cell: (t) => t.id },
    { title: "Status", cell: (t) => badge(t.status) },
    { title: "Attempts", cell: (t) => t.attempts },
    { title: "Run at", cell: (t) => text(t.run_at) },
    { title: "Args", cls: "args", cell: (t) => text(t.args) },
  ];
  const rows = list.tasks.length
    ? table(columns, list.tasks, (t) => { location.hash = route("/task/" + encodeURIComponent(t.id)); })
    : el("p", {}, "No tasks.");
  return [el("h2", {}, status ? status + " tasks" : "Tasks"), toolbar, rows];
}

async function taskView(id) {
  const [task, summary] = await Promise.all([api("/tasks/" + encodeURIComponent(id)), api("/summary")]);
  showSummary(summary);
  const act = (name) => async () => {
    try { await post("/tasks/" + encodeURIComponent(id) + "/" + name); notice(name + ": done", true); render(); }
    catch (error) { notice(error.message, false, true); }
  };
  const retry = el("button", { id: "retry", on: { click: act("retry") } }, "Retry");
  const kill = el("button", { id: "kill", on: { click: act("kill") } }, "Kill");
  if (!can.retry || !["Failed", "Killed"].includes(task.status)) retry.disabled = true;
  if (!can.kill || ["Done", "Failed", "Killed"].includes(task.status)) kill.disabled = true;
  const field = (name, value, cls) => [el("dt", {}, name), el("dd", cls ? { class: cls, id: "f-" + name } : { id: "f-" + name }, value)];
  const timeline = el("ul", {}, ...task.timeline.map((e) => el("li", {}, (e.at ? e.at + " — " : "") + e.what)));
  return [
    el("h2", {}, "Task ", el("span", { class: "mono" }, task.id)),
    el("div", { class: "toolbar" }, retry, kill),
    el("dl", {},
      ...field("status", badge(task.status)),
      ...field("args", el("pre", {}, JSON.stringify(task.args, null, 2)), "mono"),
      ...field("attempts", task.attempts + (task.max_attempts ? " of " + task.max_attempts : "")),
      ...field("run_at", text(task.run_at)),
      ...field("created_at", text(task.created_at)),
      ...field("priority", task.priority),
      ...field("error", text(task.error), "mono"),
      ...field("result", text(task.result), "mono"),
      ...field("timeline", timeline)),
  ];
}

async function workersView() {
  const summary = await api("/summary");
  showSummary(summary);
  if (!summary.can.workers) return [el("h2", {}, "Workers"), el("p", {}, summary.backend + " does not list workers.")];
  const list = await api("/workers");
  const columns = [
    { title: "Name", cell: (w) => w.name },
    { title: "Id", cls: "mono", cell: (w) => text(w.id) },
    { title: "Host", cell: (w) => text(w.host) },
    { title: "Pid", cell: (w) => w.pid },
    { title: "Last heartbeat", cell: (w) => w.last_seen + " (" + ago(w.last_seen) + ")" },
  ];
  return [el("h2", {}, "Workers"), list.workers.length ? table(columns, list.workers) : el("p", {}, "No live worker.")];
}

// -- routing and live refresh ----------------------------------------------------

let rendering = false;

async function render() {
  if (rendering) return;
  rendering = true;
  try {
    const hash = location.hash.slice(1) || "/";
    const [path, query] = hash.split("?");
    const params = new URLSearchParams(query || "");
    queue = params.get("queue") || "";
    for (const a of document.querySelectorAll("nav a")) a.href = route(a.dataset.path);
    let name = "queues", content;
    if (path.startsWith("/task/")) { name = "tasks"; content = await taskView(decodeURIComponent(path.slice(6))); }
    else if (path === "/tasks") { name = "tasks"; content = await tasksView(params); }
    else if (path === "/workers") { name = "workers"; content = await workersView(); }
    else content = await queuesView();
    for (const a of document.querySelectorAll("nav a")) a.classList.toggle("active", a.dataset.nav === name);
    document.getElementById("view").replaceChildren(...content);
    document.getElementById("live").textContent = "live · " + new Date().toLocaleTimeString();
    if (document.getElementById("notice").dataset.kind === "refresh-error") notice("");
  } catch (error) {
    document.getElementById("live").textContent = "offline";
    notice(error.message);
  } finally {
    rendering = false;
  }
}

window.addEventListener("hashchange", () => { notice(""); render(); });
document.getElementById("queue").addEventListener("change", (event) => {
  queue = event.target.value;
  location.hash = route("/");
});
render();
// Live: redraw every REFRESH_MS, unless the tab is hidden or a list is open in a select.
setInterval(() => {
  if (!document.hidden && !(document.activeElement instanceof HTMLSelectElement)) render();
}, REFRESH_MS);
