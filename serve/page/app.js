// pcapflow's page: a query box, the flow table, a timeline, a flow's
// detail and its conversation as Wireshark's Follow TCP Stream shows it.
// Plain JavaScript, no library; the state is the query string.
"use strict";

const PAGE = 100;
const $ = (id) => document.getElementById(id);

// The token, if the server wants one, comes once in the fragment
// (#token=...), which browsers do not send, and is kept for the tab.
(function takeToken() {
  const m = location.hash.match(/token=([^&]+)/);
  if (m) {
    sessionStorage.setItem("pcapflow-token", decodeURIComponent(m[1]));
    history.replaceState(null, "", location.pathname + location.search);
  }
})();
const token = () => sessionStorage.getItem("pcapflow-token");

function headers() {
  const t = token();
  return t ? { Authorization: "Bearer " + t } : {};
}

class APIError extends Error {
  constructor(status, body) {
    super(body.error || ("HTTP " + status));
    this.status = status;
    this.offset = body.offset;
  }
}

async function api(path, params) {
  const u = new URL(path, location.href);
  for (const [k, v] of Object.entries(params || {})) {
    if (v !== "" && v !== undefined && v !== null && v !== false) u.searchParams.set(k, v === true ? "1" : v);
  }
  const r = await fetch(u, { headers: headers() });
  if (!r.ok) {
    let body = {};
    try { body = await r.json(); } catch (e) { /* not JSON */ }
    throw new APIError(r.status, body);
  }
  return r;
}

function apiURL(path, params) {
  const u = new URL(path, location.href);
  for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== undefined) u.searchParams.set(k, v);
  return u.toString();
}

// The view's state, read from and written to the query string.
const state = { q: "", sort: "id", rev: false, page: 0, bidir: false, flow: 0, hex: false };

function readState() {
  const p = new URLSearchParams(location.search);
  state.q = p.get("q") || "";
  state.sort = p.get("sort") || "id";
  state.rev = p.get("rev") === "1";
  state.page = Math.max(0, parseInt(p.get("page") || "0", 10) || 0);
  state.bidir = p.get("bidir") === "1";
  state.flow = parseInt(p.get("flow") || "0", 10) || 0;
  state.hex = p.get("hex") === "1";
}

function writeState(push) {
  const p = new URLSearchParams();
  if (state.q) p.set("q", state.q);
  if (state.sort !== "id") p.set("sort", state.sort);
  if (state.rev) p.set("rev", "1");
  if (state.page) p.set("page", String(state.page));
  if (state.bidir) p.set("bidir", "1");
  if (state.flow) p.set("flow", String(state.flow));
  if (state.hex) p.set("hex", "1");
  const url = location.pathname + (p.toString() ? "?" + p : "");
  if (push) history.pushState(null, "", url); else history.replaceState(null, "", url);
}

// Formatting for people.
function human(n) {
  const u = ["B", "kB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1000 && i < u.length - 1) { n /= 1000; i++; }
  return (i ? n.toFixed(n < 10 ? 2 : n < 100 ? 1 : 0) : String(n)) + " " + u[i];
}
function count(n) { return Number(n).toLocaleString("en-US"); }
function when(s) { return s ? s.replace("T", " ").replace(/(\.\d{6})\d*Z$/, "$1 UTC") : ""; }
function secs(d) {
  d = Number(d);
  if (d < 1e-3) return (d * 1e6).toFixed(0) + " µs";
  if (d < 1) return (d * 1e3).toFixed(1) + " ms";
  if (d < 120) return d.toFixed(2) + " s";
  return (d / 60).toFixed(1) + " min";
}

// Columns: [title, field, sort key or "", numeric, format].
const FLOW_COLS = [
  ["ID", "id", "id", true, String], ["proto", "proto", "", false, String],
  ["src", "src", "", false, String], ["sport", "sport", "", true, String],
  ["dst", "dst", "", false, String], ["dport", "dport", "", true, String],
  ["packets", "packets", "packets", true, count], ["bytes", "bytes", "bytes", true, human],
  ["first", "first", "first", false, when], ["last", "last", "last", false, when],
  ["duration", "duration", "duration", true, secs], ["state", "state", "", false, (s) => s || ""],
  ["context", "", "", false, null],
];
const CONV_COLS = [
  ["conv", "conv", "id", true, String], ["proto", "proto", "", false, String],
  ["A", "a", "", false, String], ["port", "aport", "", true, String],
  ["B", "b", "", false, String], ["port", "bport", "", true, String],
  ["A→B pkts", "a_to_b_packets", "packets", true, count], ["A→B bytes", "a_to_b_bytes", "bytes", true, human],
  ["B→A pkts", "b_to_a_packets", "", true, count], ["B→A bytes", "b_to_a_bytes", "", true, human],
  ["first", "first", "first", false, when], ["last", "last", "last", false, when],
  ["duration", "duration", "duration", true, secs], ["context", "", "", false, null],
];

function context(r) {
  const parts = (r.vlan || []).map((v) => "vlan " + v);
  if (r.tunnel) parts.push(r.tunnel.type + " " + r.tunnel.id);
  return parts.join(", ");
}

let rows = [];
let cursor = -1;

function renderHead() {
  const cols = state.bidir ? CONV_COLS : FLOW_COLS;
  const tr = $("head");
  tr.textContent = "";
  for (const [title, , key, num] of cols) {
    const th = document.createElement("th");
    th.textContent = title;
    if (num) th.className = "num";
    if (key) {
      th.tabIndex = 0;
      th.title = "sort by " + key;
      if (state.sort === key) {
        th.setAttribute("aria-sort", state.rev ? "descending" : "ascending");
        th.textContent += state.rev ? " ▼" : " ▲";
      }
      const sortBy = () => {
        if (state.sort === key) state.rev = !state.rev; else { state.sort = key; state.rev = key !== "id"; }
        state.page = 0;
        run(true);
      };
      th.onclick = sortBy;
      th.onkeydown = (e) => { if (e.key === "Enter") sortBy(); };
    }
    tr.appendChild(th);
  }
}

function renderRows() {
  const cols = state.bidir ? CONV_COLS : FLOW_COLS;
  const body = $("rows");
  body.textContent = "";
  rows.slice(0, PAGE).forEach((r, i) => {
    const tr = document.createElement("tr");
    tr.dataset.id = state.bidir ? r.flows[0] : r.id;
    for (const [, field, , num, fmt] of cols) {
      const td = document.createElement("td");
      td.textContent = fmt ? fmt(r[field]) : context(r);
      if (num) td.className = "num";
      tr.appendChild(td);
    }
    tr.onclick = () => { cursor = i; mark(); openFlow(Number(tr.dataset.id), true); };
    body.appendChild(tr);
  });
  cursor = Math.min(cursor, rows.length - 1);
  mark();
  $("prev").disabled = state.page === 0;
  $("next").disabled = rows.length <= PAGE;
  const first = state.page * PAGE;
  $("pageinfo").textContent = rows.length ? `rows ${first + 1}–${first + Math.min(rows.length, PAGE)}` : "no rows";
}

function mark() {
  [...$("rows").children].forEach((tr, i) => tr.classList.toggle("sel", i === cursor));
  const tr = $("rows").children[cursor];
  if (tr) tr.scrollIntoView({ block: "nearest" });
}

function showError(err) {
  const box = $("qerr");
  if (err && err.offset !== undefined) {
    box.textContent = state.q + "\n" + " ".repeat(err.offset) + "^ " + err.message;
  } else if (err) {
    box.textContent = err.message;
  }
  box.hidden = !err;
}

async function run(push) {
  state.q = $("q").value.trim();
  state.bidir = $("bidir").checked;
  writeState(push);
  renderHead();
  showError(null);
  $("plan").hidden = true;
  try {
    const c = await (await api("api/count", { filter: state.q })).json();
    $("summary").textContent = `${count(c.flows)} flows, ${count(c.packets)} packets, ${human(c.bytes)}`;
    const r = await api("api/flows", {
      filter: state.q, sort: state.sort, reverse: state.rev, bidir: state.bidir,
      limit: PAGE + 1, offset: state.page * PAGE,
    });
    const text = await r.text();
    rows = text.split("\n").filter((l) => l).map((l) => JSON.parse(l));
    renderRows();
    $("dlsel").href = apiURL("api/extract", { filter: state.q });
    timeline();
  } catch (e) {
    showError(e);
    rows = [];
    renderRows();
    $("summary").textContent = "";
  }
  if (state.flow) openFlow(state.flow, false); else closeFlow(false);
}

// The timeline: packets per bucket as bars; dragging a range narrows the
// filter to the flows with packets in it.
async function timeline() {
  const box = $("timeline");
  let t;
  try {
    t = await (await api("api/timeline", { filter: state.q, buckets: 120 })).json();
  } catch (e) { box.textContent = ""; return; }
  const W = 1200, H = 90, n = t.packets.length;
  const top = Math.max(1, ...t.packets);
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", `packets over time, ${when(t.start)} to ${when(t.end)}`);
  t.packets.forEach((p, i) => {
    const h = (H - 14) * p / top;
    const r = document.createElementNS(ns, "rect");
    r.setAttribute("class", "bar");
    r.setAttribute("x", i * W / n);
    r.setAttribute("width", Math.max(1, W / n - 1));
    r.setAttribute("y", H - 12 - h);
    r.setAttribute("height", h);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${count(p)} packets, ${human(t.bytes[i])}`;
    r.appendChild(title);
    svg.appendChild(r);
  });
  for (const [x, s, anchor] of [[2, t.start, "start"], [W - 2, t.end, "end"]]) {
    const tx = document.createElementNS(ns, "text");
    tx.setAttribute("x", x); tx.setAttribute("y", H - 1); tx.setAttribute("text-anchor", anchor);
    tx.textContent = when(s);
    svg.appendChild(tx);
  }
  const sel = document.createElementNS(ns, "rect");
  sel.setAttribute("class", "sel"); sel.setAttribute("y", 0); sel.setAttribute("height", H - 12);
  svg.appendChild(sel);
  const start = Date.parse(t.start), span = Math.max(1, Date.parse(t.end) - start);
  const toX = (e) => {
    const b = svg.getBoundingClientRect();
    return Math.min(W, Math.max(0, (e.clientX - b.left) / b.width * W));
  };
  let x0 = null;
  svg.onmousedown = (e) => { x0 = toX(e); sel.setAttribute("x", x0); sel.setAttribute("width", 0); };
  svg.onmousemove = (e) => {
    if (x0 === null) return;
    const x = toX(e);
    sel.setAttribute("x", Math.min(x, x0)); sel.setAttribute("width", Math.abs(x - x0));
  };
  svg.onmouseup = (e) => {
    if (x0 === null) return;
    const x1 = toX(e), a = Math.min(x0, x1), b = Math.max(x0, x1);
    x0 = null;
    if (b - a < 3) return;
    const iso = (x) => new Date(start + span * x / W).toISOString();
    const range = `after ${iso(a)} and before ${iso(b)}`;
    $("q").value = state.q ? `(${state.q}) and ${range}` : range;
    state.page = 0;
    run(true);
  };
  box.textContent = "";
  box.appendChild(svg);
}

async function explain() {
  try {
    const p = await (await api("api/explain", { filter: $("q").value.trim() })).json();
    $("plan").textContent = `filter: ${p.filter || "(none: every flow)"}\nsource: ${p.source}\n` +
      p.steps.map((s) => "  " + s).join("\n") + `\nmatching flows: ${p.matching}`;
    $("plan").hidden = false;
    showError(null);
  } catch (e) { showError(e); }
}

// A flow's detail: every field, downloads, the conversation.
async function openFlow(id, push) {
  state.flow = id;
  writeState(push);
  const d = $("detail");
  d.hidden = false;
  $("dtitle").textContent = "flow " + id;
  $("hex").checked = state.hex;
  try {
    const f = JSON.parse((await (await api("api/flows", { filter: "flow " + id })).text()).split("\n")[0]);
    const dl = $("fields");
    dl.textContent = "";
    for (const [k, v] of Object.entries(f)) {
      const dt = document.createElement("dt"), dd = document.createElement("dd");
      dt.textContent = k;
      dd.textContent = typeof v === "object" ? JSON.stringify(v) : String(v);
      dl.append(dt, dd);
    }
    $("dlflow").href = apiURL("api/extract", { filter: "flow " + id });
    $("dlconv").href = apiURL("api/extract", { filter: f.peer ? `flow ${id} or flow ${f.peer}` : "flow " + id });
    $("dlstream").href = apiURL("api/streams/" + id, {});
    await follow(id);
  } catch (e) {
    $("fields").textContent = e.message;
    $("follow").textContent = "";
  }
}

function closeFlow(push) {
  state.flow = 0;
  $("detail").hidden = true;
  if (push !== false) writeState(push);
}

function b64(s) {
  const bin = atob(s || "");
  const b = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) b[i] = bin.charCodeAt(i);
  return b;
}

async function follow(id) {
  const pre = $("follow");
  pre.textContent = "…";
  let c;
  try { c = await (await api("api/follow/" + id, {})).json(); } catch (e) { pre.textContent = e.message; return; }
  pre.textContent = "";
  const head = document.createElement("div");
  head.textContent = `${c.proto} conversation ${c.conv}: A ${c.a}  B ${c.b}`;
  pre.appendChild(head);
  for (const ch of c.chunks || []) {
    const side = ch.from_b ? "b" : "a";
    if (ch.missing) {
      const g = document.createElement("span");
      g.className = "gap " + side;
      g.textContent = `[${ch.missing} bytes missing]`;
      pre.appendChild(g);
      continue;
    }
    const bytes = b64(ch.data);
    const span = document.createElement("span");
    span.className = side;
    span.title = `${side.toUpperCase()} at ${when(ch.time)}, offset ${ch.offset}`;
    if (state.hex) span.textContent = hexdump(bytes, ch.offset - 1);
    else text(span, bytes);
    pre.appendChild(span);
  }
  if (c.truncated) {
    const t = document.createElement("div");
    t.textContent = "[cut at 1 MiB: download the stream for the rest]";
    pre.appendChild(t);
  }
}

// text shows printable bytes as text and the others as \xNN.
function text(span, bytes) {
  let run = "";
  const flush = () => { if (run) { span.appendChild(document.createTextNode(run)); run = ""; } };
  for (const c of bytes) {
    if (c === 10 || c === 9 || (c >= 32 && c < 127)) { run += String.fromCharCode(c); continue; }
    if (c === 13) continue; // \r\n shows as a line end, as Wireshark does
    flush();
    const e = document.createElement("span");
    e.className = "esc";
    e.textContent = "\\x" + c.toString(16).padStart(2, "0");
    span.appendChild(e);
  }
  flush();
}

function hexdump(b, off) {
  let out = "";
  for (let i = 0; i < b.length; i += 16) {
    const row = b.slice(i, i + 16);
    const hex = [...row].map((x) => x.toString(16).padStart(2, "0")).join(" ");
    const asc = [...row].map((x) => (x >= 32 && x < 127 ? String.fromCharCode(x) : ".")).join("");
    out += (off + i).toString(16).padStart(8, "0") + "  " + hex.padEnd(48) + " |" + asc + "|\n";
  }
  return out;
}

// Downloads: a plain link streams; with a token the bytes are fetched
// with it and saved from memory.
document.addEventListener("click", async (e) => {
  const a = e.target.closest("a.button");
  if (!a || !token()) return;
  e.preventDefault();
  const r = await fetch(a.href, { headers: headers() });
  if (!r.ok) { alert((await r.json()).error); return; }
  const name = (r.headers.get("Content-Disposition") || "").match(/filename="([^"]+)"/);
  const url = URL.createObjectURL(await r.blob());
  const tmp = document.createElement("a");
  tmp.href = url; tmp.download = name ? name[1] : "download";
  tmp.click();
  URL.revokeObjectURL(url);
});

$("qform").onsubmit = (e) => { e.preventDefault(); state.page = 0; run(true); };
$("explain").onclick = explain;
$("bidir").onchange = () => { state.page = 0; state.sort = state.sort === "last" ? "id" : state.sort; run(true); };
$("prev").onclick = () => { if (state.page > 0) { state.page--; run(true); } };
$("next").onclick = () => { if (rows.length > PAGE) { state.page++; run(true); } };
$("close").onclick = () => closeFlow(true);
$("hex").onchange = () => { state.hex = $("hex").checked; writeState(false); if (state.flow) follow(state.flow); };
window.onpopstate = () => { readState(); $("q").value = state.q; $("bidir").checked = state.bidir; run(false); };

document.addEventListener("keydown", (e) => {
  const typing = e.target.tagName === "INPUT";
  if (e.key === "Escape") { if (!$("detail").hidden) closeFlow(true); else if (typing) e.target.blur(); return; }
  if (typing) return;
  switch (e.key) {
    case "/": e.preventDefault(); $("q").focus(); break;
    case "j": cursor = Math.min(cursor + 1, Math.min(rows.length, PAGE) - 1); mark(); break;
    case "k": cursor = Math.max(cursor - 1, 0); mark(); break;
    case "Enter": { const tr = $("rows").children[cursor]; if (tr) openFlow(Number(tr.dataset.id), true); break; }
    case "]": $("next").click(); break;
    case "[": $("prev").click(); break;
    case "b": $("bidir").checked = !$("bidir").checked; $("bidir").onchange(); break;
  }
});

// What the command line warns of before every answer (captures cut
// short, damaged, grown since they were indexed), once, above the table.
async function warnings() {
  let st;
  try { st = await (await api("api/status", {})).json(); } catch (e) { return; }
  const ul = $("warnings");
  ul.replaceChildren(...(st.warnings || []).map((w) => { const li = document.createElement("li"); li.textContent = w; return li; }));
  ul.hidden = !ul.children.length;
}

readState();
$("q").value = state.q;
$("bidir").checked = state.bidir;
run(false);
warnings();
