// anyotp observer: plain JavaScript, no build step. Everything comes from /api/ (the JSON
// form of docs/guide/observer.md). Text from the node is only ever set as textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const el = (tag, cls, text) => {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
};

const state = {
  info: null,
  tree: null,
  rows: new Map(),        // key -> {tr, cells, item, parentKey, depth, hasChildren, sig}
  order: "",              // the keys in display order, joined
  collapsed: new Set(),
  autoCollapsed: false,
  search: "",
  selected: null,         // key of the selected row
  events: [],
  samples: [],
  paused: false,
  held: document.createDocumentFragment(), // events that arrived while paused
  token: null,
};

const EVENT_LIMIT = 1000;
const GROUPS = [
  ["start", "starts"], ["exit", "exits"], ["crash", "crashes"], ["restart", "restarts"],
  ["giveup", "give-ups"], ["dead", "dead letters"], ["overflow", "overflows"],
  ["node", "nodes"], ["other", "other"],
];
const enabled = new Set(GROUPS.map((g) => g[0]));

// ---------------------------------------------------------------------------- helpers

function reasonText(r) {
  if (r === null || r === undefined) return "";
  if (typeof r === "string") return r;
  if (typeof r === "object" && r.type === "exception") return `${r.class}: ${r.message}`;
  if (typeof r === "object" && r.type === "ref") return refText(r);
  return JSON.stringify(r);
}

const refNames = new Map(); // ref id -> child id, for actors without a registered name
const unnamed = new Map();  // ref id -> [event cells written before its name was known]

function refText(r) {
  if (!r) return "";
  const who = r.name !== null && r.name !== undefined ? r.name : (refNames.get(r.id) || "");
  return `${who}#${r.id}${r.node ? "@" + r.node : ""}`;
}

function uptime(s) {
  if (!s) return "";
  s = Math.floor(s);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

function statusOf(item) {
  if (item.alive) return "alive";
  return item.restarting ? "restarting" : "dead";
}

function toast(text, bad) {
  const box = el("div", bad ? "bad" : "", text);
  $("toast").appendChild(box);
  setTimeout(() => box.remove(), bad ? 6000 : 3000);
}

// ---------------------------------------------------------------------------- the tree

function flatten(tree) {
  const out = [];
  const visit = (item, parentKey, depth) => {
    const key = parentKey === null ? item.id : `${parentKey}/${item.id}`;
    const children = item.type === "supervisor" ? item.children : [];
    out.push({ key, item, parentKey, depth, hasChildren: children.length > 0 });
    for (const child of children) visit(child, key, depth + 1);
  };
  for (const child of tree.children) visit(child, null, 0);
  return out;
}

const COLS = ["name", "kind", "strategy", "restart", "status", "restarts", "mailbox", "high", "handled", "uptime", "act"];

function makeRow(entry) {
  const tr = el("tr");
  tr.dataset.key = entry.key;
  const cells = {};
  for (const c of COLS) {
    const td = el("td", `c-${c}`);
    if (["restarts", "mailbox", "high", "handled", "uptime"].includes(c)) td.classList.add("num");
    cells[c] = td;
    tr.appendChild(td);
  }
  const caret = el("span", "caret");
  const label = el("span", "label");
  cells.name.append(caret, label);
  cells.caret = caret;
  cells.label = label;
  tr.addEventListener("click", (ev) => {
    if (ev.target.closest("button")) return;
    if (ev.target === caret && state.rows.get(entry.key).hasChildren) {
      toggle(entry.key);
      return;
    }
    select(entry.key);
  });
  return { tr, cells, sig: {} };
}

function setCell(row, name, text, cls) {
  if (row.sig[name] === text + "|" + (cls || "")) return;
  row.sig[name] = text + "|" + (cls || "");
  const cell = name === "label" ? row.cells.label : row.cells[name];
  cell.textContent = text;
  if (cls !== undefined) cell.className = `c-${name === "label" ? "name" : name} ${cls}`;
}

function updateRow(row, entry) {
  const it = entry.item;
  const prev = row.item;
  row.item = it;
  row.parentKey = entry.parentKey;
  row.depth = entry.depth;
  row.hasChildren = entry.hasChildren;
  const sup = it.type === "supervisor";
  row.tr.classList.toggle("sup", sup);
  row.tr.dataset.id = it.id;
  row.tr.dataset.ref = it.ref ? String(it.ref.id) : "";
  row.tr.dataset.status = statusOf(it);
  row.tr.dataset.restarts = String(it.restarts);
  row.cells.name.style.paddingLeft = `${6 + entry.depth * 16}px`;
  const caret = entry.hasChildren ? (state.collapsed.has(entry.key) ? "▸" : "▾") : "";
  if (row.cells.caret.textContent !== caret) row.cells.caret.textContent = caret;
  let label = it.id;
  if (it.name && it.name !== it.id) label += ` (${it.name})`;
  setCell(row, "label", label);
  setCell(row, "kind", sup ? "supervisor" : it.behaviour, sup ? "kind-sup" : "kind-worker");
  setCell(row, "strategy", sup ? it.strategy : "");
  setCell(row, "restart", it.restart || "");
  const status = statusOf(it);
  setCell(row, "status", status, `status-${status}`);
  setCell(row, "restarts", String(it.restarts), it.restarts ? "num hot" : "num");
  const mb = it.mailbox;
  setCell(row, "mailbox", sup ? "" : String(it.mailbox_depth), it.mailbox_depth ? "num hot" : "num");
  setCell(row, "high", mb ? String(mb.high_water) : "");
  setCell(row, "handled", sup ? "" : String(it.messages_handled));
  setCell(row, "uptime", sup ? "" : uptime(it.uptime));
  if (prev && (prev.restarts !== it.restarts || (prev.alive && !it.alive))) {
    row.tr.classList.remove("flash");
    void row.tr.offsetWidth; // restart the animation
    row.tr.classList.add("flash");
  }
  const actions = state.info && state.info.actions && it.ref && it.alive;
  const want = actions ? "on" : "off";
  if (row.sig.act !== want) {
    row.sig.act = want;
    row.cells.act.replaceChildren();
    if (actions) {
      for (const action of ["stop", "kill", "restart"]) {
        const b = el("button", `small act-${action}`, action);
        b.type = "button";
        b.addEventListener("click", () => act(row, action));
        row.cells.act.appendChild(b);
      }
    }
  }
}

function renderTree(tree) {
  state.tree = tree;
  const flat = flatten(tree);
  if (!state.autoCollapsed && flat.length > 1) {
    // Large trees open with the big supervisors folded.
    state.autoCollapsed = true;
    if (flat.length > 200) {
      for (const e of flat) if (e.item.type === "supervisor" && e.item.children.length > 20) state.collapsed.add(e.key);
    }
  }
  const order = flat.map((e) => e.key).join("\n");
  const seen = new Set();
  for (const entry of flat) {
    let row = state.rows.get(entry.key);
    if (!row) {
      row = makeRow(entry);
      state.rows.set(entry.key, row);
    }
    seen.add(entry.key);
    updateRow(row, entry);
    if (entry.item.ref && !refNames.has(entry.item.ref.id)) {
      const refId = entry.item.ref.id;
      refNames.set(refId, entry.item.id);
      for (const [cell, ev] of unnamed.get(refId) || []) cell.textContent = whoOf(ev);
      unnamed.delete(refId);
      if (refNames.size > 20000) refNames.delete(refNames.keys().next().value);
    }
  }
  if (order !== state.order) {
    for (const [key, row] of state.rows) {
      if (!seen.has(key)) {
        row.tr.remove();
        state.rows.delete(key);
      }
    }
    const body = $("tree-body");
    const frag = document.createDocumentFragment();
    for (const entry of flat) frag.appendChild(state.rows.get(entry.key).tr);
    body.replaceChildren(frag);
    state.order = order;
  }
  applyVisibility();
  let alive = 0, restarts = 0;
  for (const e of flat) { alive += e.item.alive ? 1 : 0; restarts += e.item.restarts; }
  $("totals").textContent = `${alive}/${flat.length} alive · restarts ${restarts}`;
  if (state.selected && !state.rows.has(state.selected)) state.selected = null;
}

function matches(row, q) {
  const it = row.item;
  return it.id.toLowerCase().includes(q) || (it.name || "").toLowerCase().includes(q) ||
    (it.behaviour || "").toLowerCase().includes(q);
}

function applyVisibility() {
  const q = state.search.trim().toLowerCase();
  const show = new Set();
  if (q) {
    for (const [key, row] of state.rows) {
      if (matches(row, q)) {
        let k = key;
        while (k !== null && !show.has(k)) {
          show.add(k);
          k = state.rows.get(k).parentKey;
        }
      }
    }
  }
  let shown = 0;
  for (const [key, row] of state.rows) {
    let visible;
    if (q) {
      visible = show.has(key);
    } else {
      visible = true;
      let k = row.parentKey;
      while (k !== null) {
        if (state.collapsed.has(k)) { visible = false; break; }
        k = state.rows.get(k).parentKey;
      }
    }
    if (row.tr.hidden === visible) row.tr.hidden = !visible;
    if (visible) shown++;
    const caret = row.hasChildren ? (state.collapsed.has(key) && !q ? "▸" : "▾") : "";
    if (row.cells.caret.textContent !== caret) row.cells.caret.textContent = caret;
    row.tr.classList.toggle("selected", key === state.selected);
  }
  $("shown").textContent = shown === state.rows.size ? "" : `${shown} of ${state.rows.size} shown`;
}

function toggle(key) {
  if (state.collapsed.has(key)) state.collapsed.delete(key); else state.collapsed.add(key);
  applyVisibility();
}

// ---------------------------------------------------------------------------- one actor

let detailTimer = null;

function select(key) {
  state.selected = key;
  applyVisibility();
  loadDetail();
  clearInterval(detailTimer);
  detailTimer = setInterval(loadDetail, 1000);
}

async function loadDetail() {
  const row = state.rows.get(state.selected);
  if (!row || !row.item.ref) {
    $("detail").replaceChildren(el("p", "dim", row ? "Not running now." : "Select an actor in the tree."));
    return;
  }
  const id = row.item.ref.id;
  let data;
  try {
    const response = await fetch(`/api/actors/${id}`, { cache: "no-store" });
    data = await response.json();
    if (!response.ok) throw new Error(data.error || response.statusText);
  } catch (err) {
    $("detail").replaceChildren(el("p", "dim", String(err.message || err)));
    return;
  }
  if (state.selected !== row.tr.dataset.key) return;
  renderDetail(data);
}

function dl(pairs) {
  const list = el("dl");
  for (const [k, v] of pairs) list.append(el("dt", "", k), el("dd", "", v === null || v === undefined ? "" : String(v)));
  return list;
}

function renderDetail(d) {
  const s = d.snapshot;
  $("detail-title").textContent = `${s.type === "supervisor" ? "Supervisor" : "Actor"} ${s.id}`;
  const parts = [];
  const st = d.statistics;
  const pairs = [
    ["ref", refText(s.ref)], ["status", statusOf(s)], ["supervisor", refText(d.supervisor)],
    ["restart", s.restart || "(not supervised)"], ["restarts", s.restarts],
  ];
  if (s.type === "supervisor") pairs.push(["strategy", s.strategy], ["children", s.children.length]);
  else pairs.push(["behaviour", s.behaviour]);
  parts.push(dl(pairs));
  if (st) {
    parts.push(el("h3", "", "statistics"));
    const m = st.mailbox;
    parts.push(dl([
      ["messages handled", st.messages_handled], ["uptime", uptime(st.uptime)],
      ["mailbox depth", m.depth], ["high water", m.high_water], ["enqueued", m.enqueued],
      ["dropped", m.dropped], ["blocked senders", m.blocked_senders],
      ["capacity", m.capacity === null ? "unbounded" : m.capacity], ["overflow", m.overflow],
    ]));
  }
  parts.push(el("h3", "", `state${d.state_source ? " (" + d.state_source + ")" : ""}`));
  parts.push(el("pre", "", d.state_error ? d.state_error : JSON.stringify(d.state, null, 2)));
  for (const [name, label] of [["links", "links"], ["monitors", "monitors"], ["monitored_by", "monitored by"]]) {
    parts.push(el("h3", "", label));
    const refs = d[name];
    if (refs === null || refs === undefined) parts.push(el("p", "dim", "not available in this version"));
    else if (!refs.length) parts.push(el("p", "dim", "none"));
    else parts.push(el("p", "", refs.map(refText).join(", ")));
  }
  if (d.trap_exit !== null && d.trap_exit !== undefined) parts.push(dl([["traps exits", d.trap_exit ? "yes" : "no"]]));
  $("detail").replaceChildren(...parts);
}

// ---------------------------------------------------------------------------- actions

async function post(path, body) {
  if (!state.token) {
    toast("actions need the token: paste it in the box at the top (it was printed at start-up)", true);
    $("token-box").hidden = false;
    throw new Error("no token");
  }
  const response = await fetch(path, {
    method: "POST",
    headers: { "Authorization": `Bearer ${state.token}`, "Content-Type": "application/json" },
    body: JSON.stringify(body || {}),
  });
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) {
    toast(`refused (${response.status}): ${data.error}`, true);
    if (response.status === 401) $("token-box").hidden = false;
    throw new Error(data.error);
  }
  return data;
}

async function act(row, action) {
  const id = row.item.ref && row.item.ref.id;
  if (!id) return;
  try {
    const data = await post(`/api/actors/${id}/${action}`);
    toast(`${action}: ${refText(data.actor)}`);
  } catch (err) { /* shown */ }
}

// ---------------------------------------------------------------------------- events

function groupOf(ev) {
  switch (ev.kind) {
    case "started": return "start";
    case "exited": return ev.reason && ev.reason.type === "exception" ? "crash" : "exit";
    case "restarted": case "restart_failed": return "restart";
    case "gave_up": return "giveup";
    case "dead_letter": return "dead";
    case "overflow": return "overflow";
    case "nodeup": case "nodedown": return "node";
    default: return "other";
  }
}

function whoOf(ev) {
  if (ev.kind === "gave_up") return refText(ev.supervisor);
  let who = refText(ev.actor);
  if (ev.supervisor) who += (who ? " under " : "") + (ev.supervisor.name || refText(ev.supervisor));
  return who;
}

function eventRow(ev) {
  const g = groupOf(ev);
  const row = el("div", `event g-${g}`);
  row.dataset.kind = ev.kind;
  row.dataset.group = g;
  const time = (ev.timestamp || "").slice(11, 23);
  let what = reasonText(ev.reason);
  if (ev.detail !== null && ev.detail !== undefined) what += (what ? " · " : "") + reasonText(ev.detail);
  const who = el("span", "w", whoOf(ev));
  const a = ev.actor;
  if (a && a.type === "ref" && (a.name === null || a.name === undefined) && !refNames.has(a.id)) {
    // Named once the tree shows this incarnation (a start comes before the tree).
    if (!unnamed.has(a.id)) unnamed.set(a.id, []);
    unnamed.get(a.id).push([who, ev]);
    if (unnamed.size > 2000) unnamed.delete(unnamed.keys().next().value);
  }
  row.append(el("span", "t", time), el("span", "k", ev.kind), who, el("span", "r", what));
  row.title = JSON.stringify(ev);
  return row;
}

function eventVisible(row) {
  if (!enabled.has(row.dataset.group)) return false;
  const q = $("event-search").value.trim().toLowerCase();
  return !q || row.textContent.toLowerCase().includes(q);
}

function addEvents(list) {
  const log = $("events");
  const frag = state.held;
  state.held = document.createDocumentFragment();
  for (const ev of list) {
    state.events.push(ev);
    const row = eventRow(ev);
    row.hidden = !eventVisible(row);
    frag.prepend(row);
  }
  if (state.paused) {
    state.held.prepend(frag);
    while (state.held.childElementCount > EVENT_LIMIT) state.held.lastElementChild.remove();
    return;
  }
  log.prepend(frag);
  while (log.childElementCount > EVENT_LIMIT) log.lastElementChild.remove();
  if (state.events.length > EVENT_LIMIT * 2) state.events.splice(0, state.events.length - EVENT_LIMIT);
}

function refilterEvents() {
  for (const row of $("events").children) row.hidden = !eventVisible(row);
}

function buildFilters() {
  const box = $("filters");
  for (const [g, label] of GROUPS) {
    const l = el("label");
    const c = el("input");
    c.type = "checkbox";
    c.checked = true;
    c.dataset.group = g;
    c.addEventListener("change", () => {
      if (c.checked) enabled.add(g); else enabled.delete(g);
      refilterEvents();
    });
    l.append(c, document.createTextNode(" " + label));
    box.appendChild(l);
  }
}

// ---------------------------------------------------------------------------- charts

function drawChart(canvas, samples, series) {
  const ratio = window.devicePixelRatio || 1;
  const w = canvas.clientWidth, h = canvas.clientHeight;
  if (canvas.width !== w * ratio) { canvas.width = w * ratio; canvas.height = h * ratio; }
  const g = canvas.getContext("2d");
  g.setTransform(ratio, 0, 0, ratio, 0, 0);
  g.clearRect(0, 0, w, h);
  const left = 44, bottom = h - 16, top = 8, right = w - 6;
  let max = 1;
  for (const s of samples) for (const [key] of series) max = Math.max(max, s[key] || 0);
  max = niceCeil(max);
  g.strokeStyle = "#2a323c"; g.fillStyle = "#8593a3"; g.font = "10px ui-monospace, monospace";
  for (let i = 0; i <= 4; i++) {
    const y = bottom - (bottom - top) * i / 4;
    g.beginPath(); g.moveTo(left, y); g.lineTo(right, y); g.stroke();
    g.fillText(shortNum(max * i / 4), 2, y + 3);
  }
  g.fillText("-5 min", left, h - 3);
  g.fillText("now", right - 20, h - 3);
  const span = 300; // seconds shown
  const now = samples.length ? samples[samples.length - 1].t : 0;
  for (const [key, color] of series) {
    g.strokeStyle = color; g.lineWidth = 1.5; g.beginPath();
    let first = true;
    for (const s of samples) {
      const x = right - (now - s.t) / span * (right - left);
      if (x < left) continue;
      const y = bottom - (s[key] || 0) / max * (bottom - top);
      if (first) { g.moveTo(x, y); first = false; } else g.lineTo(x, y);
    }
    g.stroke();
  }
}

function niceCeil(v) {
  const p = Math.pow(10, Math.floor(Math.log10(v)));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * p) return m * p;
  return 10 * p;
}

function shortNum(v) {
  if (v >= 1e6) return (v / 1e6).toFixed(1) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return String(Math.round(v * 10) / 10);
}

function drawCharts() {
  drawChart($("chart-throughput"), state.samples, [["handled_per_s", "#58a6ff"], ["published_per_s", "#d29922"]]);
  drawChart($("chart-mailbox"), state.samples, [["mailbox_total", "#58a6ff"], ["mailbox_max", "#d29922"]]);
}

// ---------------------------------------------------------------------------- topics, cluster

function renderTopics(t) {
  const s = t.statistics;
  $("broker-stats").textContent =
    `published ${s.published} · delivered ${s.delivered} · dropped ${s.dropped} · dead letters ${s.dead_letters}`;
  const body = $("topics").tBodies[0];
  const rows = t.topics.map((r) => {
    const tr = el("tr");
    tr.append(el("td", "", r.topic), el("td", "num", String(r.subscribers)), el("td", r.dead_letters ? "num hot" : "num", String(r.dead_letters)));
    return tr;
  });
  if (!rows.length) { const tr = el("tr"); tr.append(el("td", "dim", "no subscriptions yet")); rows.push(tr); }
  body.replaceChildren(...rows);
}

function treeLines(tree) {
  const lines = [];
  for (const e of flatten(tree)) {
    const it = e.item;
    lines.push(`${"  ".repeat(e.depth)}${it.id}  ${it.type === "supervisor" ? it.strategy : it.behaviour}  ${statusOf(it)}  restarts ${it.restarts}`);
  }
  return lines.join("\n") || "(no actors)";
}

function renderNodes(n) {
  $("cluster-note").textContent = n.cluster
    ? `${n.nodes.length} node(s) on ${n.broker}`
    : `one node: ${n.broker} does not reach other nodes (use otp.redis.RedisBroker for a cluster)`;
  const cards = n.nodes.map((node) => {
    const card = el("div", "node-card");
    card.dataset.node = node.name;
    card.append(el("strong", "", node.name + (node.self ? " (this node)" : "")));
    if (node.tree) {
      const d = el("details");
      d.open = !node.self && n.nodes.length <= 4;
      d.append(el("summary", "dim", "tree"), el("pre", "", treeLines(node.tree)));
      card.append(d);
    } else {
      card.append(el("p", "dim", node.error || ""));
    }
    return card;
  });
  $("cluster").replaceChildren(...cards);
}

// ---------------------------------------------------------------------------- wiring

function connect() {
  const source = new EventSource("/api/events");
  source.addEventListener("open", () => { $("link").className = "link up"; $("link").textContent = "live"; });
  source.addEventListener("error", () => { $("link").className = "link down"; $("link").textContent = "reconnecting"; });
  source.addEventListener("hello", (m) => applyInfo(JSON.parse(m.data)));
  source.addEventListener("tree", (m) => renderTree(JSON.parse(m.data)));
  source.addEventListener("event", (m) => addEvents([JSON.parse(m.data)]));
  source.addEventListener("gap", () => toast("some events were missed (too many at once)", true));
  source.addEventListener("sample", (m) => {
    state.samples.push(JSON.parse(m.data));
    if (state.samples.length > 300) state.samples.shift();
    drawCharts();
  });
  source.addEventListener("topics", (m) => renderTopics(JSON.parse(m.data)));
  source.addEventListener("nodes", (m) => renderNodes(JSON.parse(m.data)));
}

function applyInfo(info) {
  state.info = info;
  $("node").textContent = info.node;
  $("broker").textContent = info.broker;
  $("crash").hidden = !(info.actions && info.demo);
  $("token-box").hidden = !info.actions || !!state.token;
  document.title = `${info.node} · anyotp observer`;
  for (const row of state.rows.values()) row.sig.act = null;
  if (state.tree) renderTree(state.tree);
}

function readToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("otp-observer-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname); // keep it out of the address bar
  }
  state.token = sessionStorage.getItem("otp-observer-token");
}

async function start() {
  readToken();
  buildFilters();
  $("search").addEventListener("input", (e) => { state.search = e.target.value; applyVisibility(); });
  $("expand").addEventListener("click", () => { state.collapsed.clear(); applyVisibility(); });
  $("collapse").addEventListener("click", () => {
    for (const [key, row] of state.rows) if (row.hasChildren) state.collapsed.add(key);
    applyVisibility();
  });
  $("event-search").addEventListener("input", refilterEvents);
  $("pause").addEventListener("change", (e) => {
    state.paused = e.target.checked;
    if (!state.paused) addEvents([]); // shows what arrived meanwhile
  });
  $("token-save").addEventListener("click", () => {
    state.token = $("token").value.trim();
    sessionStorage.setItem("otp-observer-token", state.token);
    $("token-box").hidden = true;
    toast("token saved for this tab");
  });
  $("crash").addEventListener("click", async () => {
    try {
      const data = await post("/api/demo/crash");
      toast(`crash injected into ${refText(data.actor)}`);
    } catch (err) { /* shown */ }
  });
  window.addEventListener("resize", drawCharts);
  try {
    const r = await fetch("/api/samples", { cache: "no-store" });
    state.samples = (await r.json()).samples;
    drawCharts();
  } catch (err) { /* the stream brings new ones */ }
  connect();
}

start();
