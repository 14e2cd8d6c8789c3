// The fleet dashboard of `make run`: the admin read API (GET /admin/...)
// drawn as a page. No framework and no build step. Live by following the
// change feed: the summary gives the feed's head, /admin/events?after= is
// polled every second, and any event refreshes the summary, the page on
// screen and the open detail. Everything an agent sent (names, cards,
// errors) is set as text, never as HTML.
"use strict";

const STATUSES = ["online", "degraded", "offline", "provisioning", "failed", "paused", "hibernated", "removed"];
const DEFAULT_STATUSES = STATUSES.filter((s) => s !== "removed");
const POLL_MS = 1000;
const REFRESH_MS = 10000; // summary and page, even without events (heartbeat ages)
// The local server logs every request; it leaves the dashboard's own out.
const HEADERS = { Accept: "application/json", "X-Registry-Dashboard": "1" };

const state = {
  statuses: null, // null: every status but removed
  q: "", skill: "", tag: "", since: "", limit: 50,
  cursors: [null], // the cursor of each page shown so far (paging back and forth)
  page: 0,
  next: null,
  rows: new Map(), // id -> the list item
  names: new Map(), // id -> a display name, for the live events
  open: null, // the workspace in the detail panel
  feed: null, // the change feed cursor
  changed: new Set(),
  refreshing: false,
  again: false,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("data-")) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

async function get(path, params) {
  const query = new URLSearchParams();
  for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined && v !== "") query.set(k, v);
  const url = path + (query.toString() ? `?${query}` : "");
  const response = await fetch(url, { headers: HEADERS, cache: "no-store" });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`${response.status} ${body.error || body.message || response.statusText}`);
  return body;
}

function ago(stamp) {
  if (!stamp) return "never";
  const s = Math.max(0, Math.round((Date.now() - Date.parse(stamp)) / 1000));
  if (s < 60) return `${s} s ago`;
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return `${Math.floor(s / 86400)} d ago`;
}

function clock(stamp) {
  return stamp ? new Date(stamp).toLocaleTimeString([], { hour12: false }) : "";
}

function shortJson(value) {
  if (value === null || value === undefined) return "";
  const text = JSON.stringify(value);
  return text.length > 160 ? text.slice(0, 157) + "..." : text;
}

function displayName(w) {
  return w.card_name || (w.agent_card && typeof w.agent_card.name === "string" && w.agent_card.name) || w.name || w.id;
}

function connection(kind, text) {
  $("connection").dataset.state = kind;
  $("connection-text").textContent = text;
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

// ---------------------------------------------------------------- summary

function drawSummary(summary) {
  const box = $("status-counts");
  box.replaceChildren();
  const selected = state.statuses ? new Set(state.statuses) : null;
  const all = el("button", { type: "button", class: "count" + (selected ? "" : " selected"), "data-status": "all" },
    el("span", { class: "n" }, DEFAULT_STATUSES.reduce((n, s) => n + summary.workspaces[s].count, 0)),
    el("span", { class: "label" }, "all but removed"));
  all.addEventListener("click", () => setStatuses(null));
  box.append(all);
  for (const status of STATUSES) {
    const c = summary.workspaces[status] || { count: 0, estimated: false };
    const button = el("button", {
      type: "button",
      class: "count" + (c.count ? "" : " zero") + (selected && selected.has(status) ? " selected" : ""),
      "data-status": status,
      title: c.estimated ? "estimated (over 10,000)" : "",
    }, el("span", { class: "n" }, (c.estimated ? "~" : "") + c.count.toLocaleString()), el("span", { class: "label" }, status));
    button.addEventListener("click", () => setStatuses(selected && selected.size === 1 && selected.has(status) ? null : [status]));
    box.append(button);
  }
  $("fleet-size").textContent = `${summary.fleet.toLocaleString()} live`;
  const sp = summary.self_preservation;
  $("self-preservation").textContent = sp.state;
  $("self-preservation").className = sp.state === "normal" ? "" : "warn";
  const ev = summary.events;
  $("pending-events").textContent = ev.pending + (ev.pending_at_least ? "+" : "") +
    (ev.oldest_pending_age_seconds ? ` (oldest ${Math.round(ev.oldest_pending_age_seconds)} s)` : "");
  $("pending-events").className = ev.pending ? "warn" : "";
  $("last-sweep").textContent = sp.last_sweep_at ? ago(sp.last_sweep_at) : "not yet";
}

function setStatuses(statuses) {
  state.statuses = statuses;
  resetPaging();
  refresh();
}

// ------------------------------------------------------------------- list

function listParams() {
  return {
    status: state.statuses ? state.statuses.join(",") : "",
    q: state.q, skill: state.skill, tag: state.tag, updated_since: state.since,
    limit: state.limit, cursor: state.cursors[state.page],
  };
}

function drawList(page) {
  const body = $("workspaces").tBodies[0];
  const rows = [];
  state.rows = new Map();
  for (const w of page.workspaces) {
    state.rows.set(w.id, w);
    state.names.set(w.id, displayName(w));
    const problem = w.last_sample_error || "";
    const tr = el("tr", { "data-id": w.id, "data-status": w.status || "", class: (state.open === w.id ? "open " : "") + (state.changed.has(w.id) ? "changed" : "") },
      el("td", {}, el("span", { class: "badge", "data-status": w.status || "" }, w.status || "-")),
      el("td", { class: "name", title: displayName(w) }, displayName(w)),
      el("td", { class: "id", title: w.id }, w.id.slice(0, 8)),
      el("td", { class: "num" }, `${w.active_tasks ?? 0}/${w.max_concurrent_tasks ?? 1}`),
      el("td", { class: "num heartbeat", "data-at": w.last_heartbeat_at || "" }, ago(w.last_heartbeat_at)),
      el("td", { class: "num" }, (w.last_error_rate ?? 0).toFixed(2)),
      el("td", { class: "skills", title: w.skills.join(", ") }, w.skills.join(", ") || "-"),
      el("td", { class: problem ? "err" : "", title: problem || w.current_task || "" }, problem || w.current_task || ""));
    tr.addEventListener("click", () => openDetail(w.id));
    rows.push(tr);
  }
  body.replaceChildren(...rows);
  nameFeed();
  state.changed.clear();
  state.next = page.next_cursor;
  $("empty").hidden = page.workspaces.length > 0;
  $("older").disabled = !page.next_cursor;
  $("first").disabled = state.page === 0;
  const start = state.page * state.limit;
  $("range").textContent = page.workspaces.length ? `${start + 1}–${start + page.workspaces.length}${page.next_cursor ? " of more" : ""}` : "";
  const filters = [state.q && `“${state.q}”`, state.skill && `skill ${state.skill}`, state.tag && `tag ${state.tag}`, state.since && `changed in ${state.since}`]
    .filter(Boolean);
  $("filter-status").textContent = filters.length ? `filtered by ${filters.join(", ")}` : "";
}

function resetPaging() {
  state.cursors = [null];
  state.page = 0;
}

// ----------------------------------------------------------------- detail

function drawDetail(found) {
  const w = found.workspace;
  state.names.set(w.id, displayName(w));
  $("detail").hidden = false;
  $("detail").dataset.id = w.id;
  $("detail-name").textContent = displayName(w);
  $("detail-status").textContent = w.status || "-";
  $("detail-status").dataset.status = w.status || "";
  const record = [
    ["id", w.id, "mono"], ["status", w.status], ["url", w.url || "-"], ["role", w.role || "-"],
    ["card version", (w.agent_card && w.agent_card.version) || "-"],
    ["last heartbeat", `${ago(w.last_heartbeat_at)}${w.last_heartbeat_at ? " (" + new Date(w.last_heartbeat_at).toLocaleString() + ")" : ""}`],
    ["tasks", `${w.active_tasks ?? 0} of ${w.max_concurrent_tasks ?? 1}`], ["current task", w.current_task || "-"],
    ["error rate", (w.last_error_rate ?? 0).toFixed(2)], ["last error", w.last_sample_error || "-"],
    ["uptime", `${w.uptime_seconds ?? 0} s`], ["sequence", w.revision], ["registered", w.created_at ? new Date(w.created_at).toLocaleString() : "-"],
    ["tokens", w.live_tokens.map((t) => `${t.prefix}… ${t.confirmed ? "confirmed" : "unconfirmed"}`).join(", ") || "none"],
    ["registration secret", w.registration_secret_set ? "set, unused" : "none"],
  ];
  $("detail-record").replaceChildren(...record.flatMap(([k, v, cls]) => [el("dt", {}, k), el("dd", { class: cls || null, "data-field": k }, v)]));
  const redis = found.redis;
  const held = [];
  if (!redis.available) held.push(["redis", "unavailable"]);
  else {
    const live = redis.liveness;
    held.push(["liveness key", live.value ? `${live.key} = ${live.value}, ${Math.round(live.ttl_seconds)} s left` : `${live.key} absent`]);
    const runtime = { ...redis.runtime.fields };
    delete runtime.last_heartbeat_at;
    held.push(["runtime", Object.keys(runtime).length ? shortJson(runtime) : "no overrides"]);
    held.push(["auth cache", redis.auth_cache.token_cached ? `${redis.auth_cache.fields.status || "?"}, ${Math.round(redis.auth_cache.ttl_seconds)} s left` : "not cached"]);
  }
  $("detail-redis").replaceChildren(...held.flatMap(([k, v]) => [el("dt", {}, k), el("dd", { "data-field": k }, v)]));
  const events = found.recent_events.flatMap((e) => [
    el("tr", { "data-type": e.event_type, class: "event" },
      el("td", { class: "mono" }, clock(e.occurred_at)), el("td", { class: "type" }, e.event_type),
      el("td", { class: "mono seq" }, `#${e.sequence ?? "-"}${e.pending ? " pending" : ""}`)),
    el("tr", { class: "payload-row" }, el("td", { class: "payload", colSpan: 3 }, shortJson(e.payload))),
  ]);
  $("detail-events").tBodies[0].replaceChildren(...events);
  $("detail-card").textContent = w.agent_card === null ? `(not shown: ${w.agent_card_bytes} bytes)` : JSON.stringify(w.agent_card, null, 2);
  for (const tr of $("workspaces").tBodies[0].rows) tr.classList.toggle("open", tr.dataset.id === w.id);
}

async function openDetail(id) {
  state.open = id;
  if (location.hash !== `#${id}`) history.replaceState(null, "", `#${id}`);
  try {
    drawDetail(await get(`/admin/workspaces/${encodeURIComponent(id)}`));
  } catch (err) {
    showError(`workspace ${id}: ${err.message}`);
  }
}

function closeDetail() {
  state.open = null;
  $("detail").hidden = true;
  history.replaceState(null, "", location.pathname);
  for (const tr of $("workspaces").tBodies[0].rows) tr.classList.remove("open");
}

// ------------------------------------------------------------------- live

async function refresh() {
  // One at a time; a request for another while one runs is kept for after it.
  if (state.refreshing) { state.again = true; return; }
  state.refreshing = true;
  try {
    do {
      state.again = false;
      const open = state.open;
      const [summary, page, detail] = await Promise.all([
        get("/admin/summary"),
        get("/admin/workspaces", listParams()),
        open ? get(`/admin/workspaces/${encodeURIComponent(open)}`).catch(() => null) : null,
      ]);
      if (state.feed === null) state.feed = summary.events.cursor;
      drawSummary(summary);
      drawList(page);
      if (detail && state.open === open) drawDetail(detail);
      showError(null);
      connection("live", `live, updated ${new Date().toLocaleTimeString([], { hour12: false })}`);
    } while (state.again);
  } catch (err) {
    connection("error", "cannot reach the registry; retrying");
    showError(err.message);
  } finally {
    state.refreshing = false;
  }
}

function drawFeed(events) {
  const list = $("feed-list");
  for (const e of events) {
    list.prepend(el("li", { "data-type": e.event_type, "data-workspace": e.workspace_id || "", class: state.seeded ? "fresh" : "" },
      el("span", { class: "t" }, clock(e.occurred_at)), el("span", { class: "type" }, e.event_type),
      el("span", { class: "who", "data-id": e.workspace_id || "" }, e.workspace_id ? e.workspace_id.slice(0, 8) : "registry"),
      el("span", { class: "mono" }, shortJson(e.payload))));
  }
  while (list.children.length > 50) list.lastChild.remove();
  state.seeded = true;
  nameFeed();
}

// Events carry ids; names are learnt from the list and the detail.
function nameFeed() {
  for (const span of document.querySelectorAll("#feed-list .who[data-id]")) {
    const name = state.names.get(span.dataset.id);
    if (name) { span.textContent = name; span.removeAttribute("data-id"); }
  }
}

async function follow() {
  let wait = POLL_MS;
  try {
    if (state.feed !== null) {
      const page = await get("/admin/events", { after: state.feed, limit: 200 });
      state.feed = page.next_cursor;
      if (page.events.length) {
        for (const e of page.events) if (e.workspace_id) state.changed.add(e.workspace_id);
        drawFeed(page.events);
        await refresh();
      }
      if (page.has_more) wait = 0;
    }
  } catch (err) {
    connection("error", "cannot reach the registry; retrying");
    wait = 3000;
  }
  setTimeout(follow, wait);
}

// ------------------------------------------------------------------ input

function debounce(fn, ms) {
  let timer = null;
  return (...args) => { clearTimeout(timer); timer = setTimeout(() => fn(...args), ms); };
}

function bind() {
  const filter = debounce(() => {
    state.q = $("q").value.trim();
    state.skill = $("skill").value.trim();
    state.tag = $("tag").value.trim();
    resetPaging();
    refresh();
  }, 250);
  for (const id of ["q", "skill", "tag"]) $(id).addEventListener("input", filter);
  $("since").addEventListener("change", () => { state.since = $("since").value; resetPaging(); refresh(); });
  $("limit").addEventListener("change", () => { state.limit = Number($("limit").value); resetPaging(); refresh(); });
  $("older").addEventListener("click", () => {
    if (!state.next) return;
    state.cursors[state.page + 1] = state.next;
    state.page += 1;
    refresh();
  });
  $("first").addEventListener("click", () => { resetPaging(); refresh(); });
  $("detail-close").addEventListener("click", closeDetail);
  document.addEventListener("keydown", (e) => { if (e.key === "Escape") closeDetail(); });
  // Heartbeat ages move on between refreshes.
  setInterval(() => {
    for (const td of document.querySelectorAll("td.heartbeat")) td.textContent = ago(td.dataset.at);
  }, 1000);
  setInterval(refresh, REFRESH_MS);
}

async function start() {
  bind();
  const wanted = location.hash.slice(1);
  try {
    // The last few events for context, and the cursor to follow from.
    const recent = await get("/admin/events", { tail: 15 });
    state.feed = recent.next_cursor;
    drawFeed(recent.events);
  } catch (err) {
    showError(err.message); // the summary's head is the fallback (refresh)
  }
  await refresh();
  if (/^[0-9a-fA-F-]{36}$/.test(wanted)) openDetail(wanted);
  follow();
}

document.addEventListener("DOMContentLoaded", start);
