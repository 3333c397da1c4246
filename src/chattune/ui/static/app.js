// chattune ui: plain JavaScript, no build step. Every view reads the JSON API in app.py.
"use strict";

const $main = document.getElementById("main");
const COLORS = ["#2563eb", "#ea580c", "#16a34a", "#9333ea", "#dc2626", "#0891b2", "#ca8a04", "#db2777"];
let cleanup = [];  // timers, event sources and charts of the current view

// ---- helpers -------------------------------------------------------------------------------------
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : v);
  }
  for (const c of children.flat()) if (c !== null && c !== undefined) el.append(c instanceof Node ? c : String(c));
  return el;
}
async function api(path, opts = {}) {
  const init = { ...opts, headers: { "x-chattune": "1", ...(opts.headers || {}) } };
  if (opts.json !== undefined) { init.method = init.method || "POST"; init.body = JSON.stringify(opts.json); init.headers["content-type"] = "application/json"; }
  const r = await fetch(path, init);
  const body = (r.headers.get("content-type") || "").includes("json") ? await r.json() : await r.text();
  if (!r.ok && !opts.allowError) throw new Error(body.detail ? JSON.stringify(body.detail) : String(body));
  return opts.allowError ? { status: r.status, body } : body;
}
const fmt = (v, d = 4) => v === null || v === undefined || Number.isNaN(v) ? "" : (typeof v === "number" ? (Math.abs(v) >= 1000 ? v.toFixed(0) : +v.toPrecision(d)) : v);
// small values (learning rates) need exponents, or every tick reads 0
const axisNum = v => v == null ? "" : v === 0 ? "0" : Math.abs(v) < 0.01 || Math.abs(v) >= 1e5 ? v.toExponential(1) : +v.toPrecision(3);
const dur = s => s == null ? "" : s < 90 ? `${s.toFixed(0)} s` : s < 5400 ? `${(s / 60).toFixed(1)} min` : `${(s / 3600).toFixed(1)} h`;
const badge = s => h("span", { class: `badge s-${String(s).split(" ")[0]}` }, s);
const enc = s => s.split("/").map(encodeURIComponent).join("/");

// ---- charts (uPlot) ------------------------------------------------------------------------------
// Train and eval records are logged at different steps: align them on the union of steps, null where a
// series has no value (spanGaps joins the dots).
function align(recordsBySeries) {
  const steps = [...new Set(recordsBySeries.flatMap(s => s.points.map(p => p[0])))].sort((a, b) => a - b);
  const index = new Map(steps.map((s, i) => [s, i]));
  const cols = recordsBySeries.map(s => { const c = new Array(steps.length).fill(null); for (const [x, y] of s.points) c[index.get(x)] = y; return c; });
  return [steps, ...cols];
}
function chart(container, title, series, opts = {}) {
  const box = h("div", { class: "chart", "data-title": title }, h("div", {}, h("b", {}, title)));
  container.append(box);
  const state = { plot: null, box, series };
  state.update = (series) => {
    const live = series.filter(s => s.points.length);
    const key = live.map(s => s.label).join("|");
    if (!live.length) { if (!box.querySelector(".empty")) box.append(h("div", { class: "empty" }, "no data yet")); return; }
    box.querySelector(".empty")?.remove();
    const data = align(live);
    if (state.plot && state.key === key) { state.plot.setData(data); return; }
    state.plot?.destroy(); state.key = key;
    const width = Math.max(300, box.clientWidth - 16);
    state.plot = new uPlot({
      width, height: 220, scales: { x: { time: false }, y: opts.log ? { distr: 3 } : {} },
      axes: [{ label: "step" }, { size: 64, values: (u, vals) => vals.map(axisNum) }],
      series: [{ label: "step" }, ...live.map((s, i) => ({ label: s.label, stroke: s.color || COLORS[i % COLORS.length], width: 1.5, spanGaps: true,
        points: { show: s.sparse ? true : undefined, size: 6 } }))],
    }, data, box);
    cleanup.push(() => state.plot?.destroy());
  };
  state.update(series);
  return state;
}
const pts = (records, split, key) => records.filter(r => r.split === split && typeof r[key] === "number" && Number.isFinite(r[key])).map(r => [r.step, r[key]]);
function runCharts(records) {
  const evalKeys = [...new Set(records.filter(r => r.split === "eval").flatMap(Object.keys))].filter(k => !["step", "split", "val_loss", "val_tokens"].includes(k));
  return [
    ["loss", [{ label: "train loss", points: pts(records, "train", "loss") }, { label: "val loss", points: pts(records, "eval", "val_loss"), sparse: true }]],
    ["learning rate", [{ label: "lr", points: pts(records, "train", "lr") }]],
    ["validation metrics", evalKeys.map(k => ({ label: k, points: pts(records, "eval", k), sparse: true }))],
    ["tokens / s", [{ label: "tokens/s", points: pts(records, "train", "tokens_per_second") }]],
    ["memory (GB)", [{ label: "peak RSS GB", points: pts(records, "train", "peak_rss_gb") }]],
  ];
}

// ---- runs table ----------------------------------------------------------------------------------
const RUN_COLS = [["name", "run"], ["state", "status"], ["model", "model"], ["method", "method"], ["steps", "steps", 1],
  ["best", "best metric", 1], ["duration_s", "duration", 1], ["peak_memory_gb", "peak memory", 1]];
let runSort = { key: "updated", dir: -1 };
async function viewRuns() {
  const filter = h("input", { type: "text", placeholder: "filter by name, model, method…", id: "run-filter", size: 30 });
  const stateSel = h("select", { id: "state-filter" }, ["", "running", "finished", "failed", "stopped"].map(s => h("option", { value: s }, s || "any status")));
  const compareBtn = h("button", { id: "compare-btn", disabled: true }, "Compare selected");
  const table = h("table", { id: "runs-table" });
  const note = h("p", { class: "muted" });
  $main.replaceChildren(h("h1", {}, "Runs"), h("div", { class: "toolbar" }, filter, stateSel, compareBtn, h("span", { class: "muted" }, "refreshes every 3 s")), table, note);
  const selected = new Set();
  let runs = [];
  compareBtn.onclick = () => location.hash = `#/compare/${[...selected].map(encodeURIComponent).join(",")}`;
  const render = () => {
    const q = filter.value.toLowerCase();
    const rows = runs.filter(r => (!stateSel.value || r.state === stateSel.value) && (!q || [r.id, r.model, r.method].join(" ").toLowerCase().includes(q)));
    rows.sort((a, b) => { const x = a[runSort.key], y = b[runSort.key]; return (x === y ? 0 : x == null ? 1 : y == null ? -1 : x < y ? -1 : 1) * runSort.dir; });
    const head = h("tr", {}, h("th", {}, ""), RUN_COLS.map(([k, label, num]) => h("th", { class: `sortable ${num ? "num" : ""}`, onclick: () => { runSort = { key: k, dir: runSort.key === k ? -runSort.dir : 1 }; render(); } },
      label + (runSort.key === k ? (runSort.dir > 0 ? " ▲" : " ▼") : ""))));
    const body = rows.map(r => h("tr", { class: "clickable", "data-run": r.id, onclick: e => { if (e.target.type !== "checkbox") location.hash = `#/run/${enc(r.id)}`; } },
      h("td", {}, h("input", { type: "checkbox", checked: selected.has(r.id), onchange: e => { e.target.checked ? selected.add(r.id) : selected.delete(r.id); compareBtn.disabled = selected.size < 2; } })),
      h("td", {}, h("a", { href: `#/run/${enc(r.id)}` }, r.id)), h("td", { title: r.note || "" }, badge(r.state)), h("td", {}, r.model || ""), h("td", {}, r.method || ""),
      h("td", { class: "num" }, r.max_steps ? `${r.steps} / ${r.max_steps}` : r.steps), h("td", { class: "num" }, r.best == null ? "" : `${r.metric} ${fmt(r.best)}`),
      h("td", { class: "num" }, dur(r.duration_s)), h("td", { class: "num" }, r.peak_memory_gb == null ? "" : `${r.peak_memory_gb.toFixed(2)} GB`)));
    table.replaceChildren(h("thead", {}, head), h("tbody", {}, body));
    note.textContent = runs.length ? `${rows.length} of ${runs.length} runs in ${root}` : `no runs yet in ${root}: start one from Launch`;
  };
  let root = "";
  const load = async () => { const r = await api("/api/runs"); runs = r.runs; root = r.root; render(); };
  filter.oninput = render; stateSel.onchange = render;
  await load();
  const t = setInterval(load, 3000); cleanup.push(() => clearInterval(t));
}

// ---- one run -------------------------------------------------------------------------------------
async function viewRun(id) {
  const r = await api(`/api/runs/${enc(id)}/detail`, { allowError: true });
  if (r.status === 404) {  // a job just started: its process writes the run directory in a few seconds
    $main.replaceChildren(h("h1", {}, id), h("p", { class: "muted", id: "run-waiting" }, "waiting for the run to start… (see its log under Launch → Jobs)"));
    const t = setTimeout(() => { if (location.hash === `#/run/${enc(id)}`) route(); }, 1500); cleanup.push(() => clearTimeout(t));
    return;
  }
  if (r.status >= 400) throw new Error(JSON.stringify(r.body.detail));
  const d = r.body;
  const stateEl = h("span", { id: "run-state" }, badge(d.state));
  const stopBtn = h("button", { class: "danger", id: "stop-btn", onclick: async () => { await api(`/api/runs/${enc(id)}/stop`, { method: "POST" }); stopBtn.disabled = true; stopBtn.textContent = "stopping…"; } }, "Stop");
  const resumeBtn = h("button", { id: "resume-btn", onclick: async () => { await api(`/api/runs/${enc(id)}/resume`, { method: "POST" }); resumeBtn.disabled = true; } }, "Resume");
  const setState = s => { stateEl.replaceChildren(badge(s)); stopBtn.hidden = s !== "running"; resumeBtn.hidden = s === "running" || s === "finished"; };
  setState(d.state);
  const charts = h("div", { class: "charts", id: "run-charts" });
  const counter = h("span", { class: "muted", id: "point-count" }, "0 records");
  $main.replaceChildren(
    h("h1", {}, `${d.id} `, stateEl, " ", stopBtn, " ", resumeBtn),
    h("p", { class: "muted" }, `${d.model || ""} · ${d.method || ""} · ${d.path}`, " · ", counter),
    charts);
  let records = [];
  const states = runCharts(records).map(([title, series]) => chart(charts, title, series, { log: false }));
  const redraw = () => { runCharts(records).forEach(([, series], i) => states[i].update(series)); counter.textContent = `${records.length} records, last step ${records.length ? records[records.length - 1].step : 0}`; };
  const es = new EventSource(`/api/runs/${enc(id)}/events`);
  es.addEventListener("metrics", e => { records = records.concat(JSON.parse(e.data)); redraw(); });
  es.addEventListener("reset", () => { records = []; redraw(); });
  es.addEventListener("status", e => setState(JSON.parse(e.data).state));
  cleanup.push(() => es.close());

  $main.append(h("h2", {}, "Checkpoints"), d.checkpoints.length ? h("table", {}, h("tr", {}, h("th", {}, "name"), h("th", { class: "num" }, "step"), h("th", { class: "num" }, "best metric"), h("th", { class: "num" }, "size"), h("th", {}, "")),
    d.checkpoints.map(c => h("tr", {}, h("td", {}, c.name), h("td", { class: "num" }, c.step), h("td", { class: "num" }, fmt(c.best_metric)), h("td", { class: "num" }, `${c.size_mb} MB`),
      h("td", {}, h("a", { href: `#/chat?model=${encodeURIComponent(c.path)}` }, "chat"))))) : h("p", { class: "muted" }, "none yet"));
  if (d.final) $main.append(h("p", {}, "final model: ", h("code", {}, d.final), " · ", h("a", { href: `#/chat?model=${encodeURIComponent(d.path)}` }, "chat with it"), " · ",
    h("a", { href: `#/launch?kind=eval&model=${encodeURIComponent(d.id)}` }, "evaluate"), " · ", h("a", { href: `#/launch?kind=export&model=${encodeURIComponent(d.id)}` }, "export")));
  const reports = Object.entries(d.reports);
  if (reports.length) {
    const frame = h("div");
    $main.append(h("h2", {}, "Reports"), h("div", { class: "toolbar" }, reports.map(([name, url]) => h("button", { onclick: () => frame.replaceChildren(url.endsWith(".png") ? h("img", { src: url, style: "max-width:100%" }) : h("iframe", { class: "report", src: url })) }, `open ${name} report`))), frame);
  }
  $main.append(h("h2", {}, "Resolved config"), h("pre", { id: "run-config" }, d.config));
}

// ---- compare -------------------------------------------------------------------------------------
async function viewCompare(ids) {
  const d = await api(`/api/compare?ids=${ids.map(encodeURIComponent).join(",")}`);
  const charts = h("div", { class: "charts", id: "compare-charts" });
  $main.replaceChildren(h("h1", {}, "Compare runs"), h("p", {}, d.runs.map((r, i) => h("span", { style: `color:${COLORS[i % COLORS.length]};margin-right:14px` }, "■ ", h("a", { href: `#/run/${enc(r.id)}` }, r.id), " ", badge(r.state)))), charts);
  const series = (split, key) => d.runs.map((r, i) => ({ label: `${r.id} ${key}`, color: COLORS[i % COLORS.length], points: pts(d.metrics[r.id], split, key), sparse: split === "eval" }));
  chart(charts, "train loss", series("train", "loss"));
  chart(charts, "validation loss", series("eval", "val_loss"));
  chart(charts, "learning rate", series("train", "lr"));
  chart(charts, "tokens / s", series("train", "tokens_per_second"));
  const cols = d.runs.map(r => r.id);
  $main.append(h("h2", {}, `Config: ${d.config_diff.length} differing keys`), d.config_diff.length ? h("table", { id: "config-diff" }, h("tr", {}, h("th", {}, "key"), cols.map(c => h("th", {}, c))),
    d.config_diff.map(row => h("tr", {}, h("td", {}, h("code", {}, row.key)), cols.map(c => h("td", {}, JSON.stringify(row.values[c])))))) : h("p", { class: "muted" }, "the configs are the same"));
}

// ---- sweeps --------------------------------------------------------------------------------------
async function viewSweeps() {
  const list = await api("/api/sweeps");
  $main.replaceChildren(h("h1", {}, "Sweeps"), list.length ? h("table", {}, h("tr", {}, h("th", {}, "sweep"), h("th", { class: "num" }, "trials")),
    list.map(s => h("tr", {}, h("td", {}, h("a", { href: `#/sweep/${encodeURIComponent(s.id)}` }, s.id)), h("td", { class: "num" }, s.trials)))) : h("p", { class: "muted" }, "no sweeps (folders with trials.csv) under the runs folder; start one with `chattune sweep CONFIG`"));
}
async function viewSweep(id) {
  const d = await api(`/api/sweeps/${encodeURIComponent(id)}`);
  const cols = d.trials.length ? Object.keys(d.trials[0]).filter(c => c !== "run_dir") : [];
  const runIds = d.trials.map(t => `${id}/trials/trial-${String(t.number).padStart(4, "0")}`);
  $main.replaceChildren(h("h1", {}, `Sweep ${id}`),
    h("div", { class: "toolbar" }, h("a", { href: `#/compare/${runIds.map(encodeURIComponent).join(",")}` }, "compare all trials"), d.summary ? h("a", { href: d.summary, target: "_blank" }, "summary.html") : null),
    h("h2", {}, "Trials"), h("table", {}, h("tr", {}, cols.map(c => h("th", {}, c))), d.trials.map(t => h("tr", {}, cols.map(c => h("td", {}, c === "number" ? h("a", { href: `#/run/${enc(`${id}/trials/trial-${String(t.number).padStart(4, "0")}`)}` }, t[c]) : fmt(isNaN(+t[c]) || t[c] === "" ? t[c] : +t[c])))))),
    h("h2", {}, "Plots (parameter importance, history)"), h("div", { class: "charts" }, d.plots.map(p => h("img", { src: p, style: "max-width:100%;background:#fff" }))),
    h("h2", {}, "Best config"), d.best_config ? h("pre", {}, d.best_config) : h("p", { class: "muted" }, "no complete trial yet"));
}

// ---- launch --------------------------------------------------------------------------------------
async function viewLaunch(params) {
  const kind = h("select", { id: "job-kind" }, ["train", "prepare", "eval", "export"].map(k => h("option", { value: k }, k)));
  const name = h("input", { type: "text", id: "job-name", value: "ui-run", size: 18 });
  const gutter = h("div", { class: "gutter" });
  const text = h("textarea", { id: "config-editor", spellcheck: "false" });
  const problems = h("div", { id: "problems" });
  const models = await api("/api/models");
  const model = h("select", { id: "job-model" }, models.map(m => h("option", { value: m.value }, m.label)));
  const args = h("input", { type: "text", id: "job-args", size: 40, placeholder: "extra arguments, e.g. --max-items 5" });
  const start = h("button", { class: "primary", id: "start-job" }, "Start");
  const jobsEl = h("div", { id: "jobs" });
  const logEl = h("pre", { id: "job-log", hidden: true });
  const cfgBox = h("div", {}, h("div", { class: "editor" }, gutter, text), problems);
  const modelBox = h("div", {}, h("label", {}, "model ", model));
  $main.replaceChildren(h("h1", {}, "Launch"), h("div", { class: "toolbar" }, h("label", {}, "job ", kind), h("label", {}, "name ", name), args, start), cfgBox, modelBox, h("h2", {}, "Jobs"), jobsEl, logEl);
  text.value = (await api("/api/template")).yaml;
  let errLines = new Set();
  const paintGutter = () => { const n = text.value.split("\n").length; gutter.replaceChildren(...Array.from({ length: n }, (_, i) => h("div", { class: errLines.has(i + 1) ? "err" : "" }, i + 1))); };
  const showProblems = list => {
    errLines = new Set(list.map(p => p.line).filter(Boolean)); paintGutter();
    problems.replaceChildren(list.length ? h("ul", { class: "problems" }, list.map(p => h("li", {}, p.line ? `line ${p.line}: ` : "", p.message))) : h("p", { class: "ok" }, "config is valid"));
  };
  let timer;
  const validate = async () => showProblems((await api("/api/validate", { json: { config: text.value, name: name.value } })).problems);
  text.oninput = () => { paintGutter(); clearTimeout(timer); timer = setTimeout(validate, 400); };
  text.onscroll = () => gutter.scrollTop = text.scrollTop;
  const setKind = () => { const usesConfig = ["train", "prepare"].includes(kind.value); cfgBox.hidden = !usesConfig; modelBox.hidden = usesConfig; name.parentElement.hidden = !usesConfig; };
  kind.onchange = setKind;
  if (params.get("kind")) kind.value = params.get("kind");
  if (params.get("model")) { const m = models.find(x => x.value.endsWith(params.get("model"))); if (m) model.value = m.value; }
  setKind(); paintGutter(); validate();
  start.onclick = async () => {
    const body = { kind: kind.value, args: args.value };
    if (cfgBox.hidden) body.model = model.value; else { body.config = text.value; body.name = name.value; }
    const r = await api("/api/jobs", { json: body, allowError: true });
    if (r.status === 422 && r.body.problems) showProblems(r.body.problems);
    else if (r.status >= 400) problems.replaceChildren(h("p", { class: "problems" }, JSON.stringify(r.body.detail)));
    else { loadJobs(); if (r.body.run && kind.value === "train") location.hash = `#/run/${enc(r.body.run)}`; }
  };
  const showLog = async id => { const j = await api(`/api/jobs/${id}`); logEl.hidden = false; logEl.textContent = `$ chattune ${j.argv.slice(2).join(" ")}\n\n${j.log_tail}`; };
  const loadJobs = async () => {
    const list = await api("/api/jobs");
    jobsEl.replaceChildren(list.length ? h("table", {}, h("tr", {}, ["job", "kind", "state", "command", ""].map(c => h("th", {}, c))), list.map(j => h("tr", {},
      h("td", {}, j.run ? h("a", { href: `#/run/${enc(j.run)}` }, j.id) : j.id), h("td", {}, j.kind), h("td", {}, badge(j.state)), h("td", {}, h("code", {}, j.argv.slice(2).join(" "))),
      h("td", {}, h("button", { onclick: () => showLog(j.id) }, "log"), " ", j.state === "running" ? h("button", { class: "danger", onclick: async () => { await api(`/api/jobs/${j.id}/stop`, { method: "POST" }); loadJobs(); } }, "stop") : null)))) : h("p", { class: "muted" }, "no jobs started from this dashboard yet"));
  };
  await loadJobs();
  const t = setInterval(loadJobs, 3000); cleanup.push(() => clearInterval(t));
}

// ---- chat ----------------------------------------------------------------------------------------
async function viewChat(params) {
  const models = await api("/api/models");
  const ctl = (id, label, value, attrs) => h("label", {}, `${label} `, h("input", { type: "number", id, value, style: "width:80px", ...attrs }));
  const controls = h("div", { class: "toolbar controls" }, ctl("temperature", "temperature", 0.7, { step: 0.1, min: 0, max: 2 }), ctl("top_p", "top_p", 0.9, { step: 0.05, min: 0.05, max: 1 }),
    ctl("max_new_tokens", "max new tokens", 128, { min: 1, max: 4096 }), ctl("seed", "seed", "", { placeholder: "random" }),
    h("label", {}, h("input", { type: "checkbox", id: "side-by-side" }), " side by side"));
  const panes = [0, 1].map(i => {
    const sel = h("select", { id: `model-${i}` }, models.map(m => h("option", { value: m.value }, m.label)));
    const msgs = h("div", { class: "msgs", id: `msgs-${i}` });
    return { sel, msgs, history: [], el: h("div", { class: "chatpane" }, h("div", { class: "toolbar" }, "model ", sel), msgs) };
  });
  if (params.get("model")) { const want = params.get("model"); if (!models.some(m => m.value === want)) panes[0].sel.append(h("option", { value: want }, want)); panes[0].sel.value = want; }
  const embedded = models.find(m => m.value === "embedded"); if (embedded) panes[1].sel.value = "embedded";
  const input = h("input", { type: "text", id: "chat-input", placeholder: "Type a message and press Enter", style: "flex:1" });
  const send = h("button", { class: "primary", id: "chat-send" }, "Send");
  const clear = h("button", { onclick: () => panes.forEach(p => { p.history = []; p.msgs.replaceChildren(); }) }, "Clear");
  const grid = h("div", { class: "cols" }, panes[0].el, panes[1].el);
  const sbs = controls.querySelector("#side-by-side");
  const layout = () => { panes[1].el.hidden = !sbs.checked; grid.style.gridTemplateColumns = sbs.checked ? "1fr 1fr" : "1fr"; };
  sbs.onchange = layout; layout();
  $main.replaceChildren(h("h1", {}, "Chat playground"), controls, grid, h("div", { class: "toolbar", style: "margin-top:10px" }, input, send, clear));
  const num = id => { const v = controls.querySelector(`#${id}`).value; return v === "" ? null : Number(v); };
  async function stream(pane, text) {
    pane.history.push({ role: "user", content: text });
    pane.msgs.append(h("div", { class: "msg user" }, text));
    const out = h("div", { class: "msg assistant" }); const stats = h("div", { class: "stats" }, "…");
    pane.msgs.append(out, stats);
    const body = { model: pane.sel.value, messages: pane.history, temperature: num("temperature"), top_p: num("top_p"), max_new_tokens: num("max_new_tokens"), seed: num("seed") };
    const r = await fetch("/api/chat", { method: "POST", headers: { "content-type": "application/json", "x-chattune": "1" }, body: JSON.stringify(body) });
    if (!r.ok) { out.className = "msg error"; out.textContent = await r.text(); return; }
    const reader = r.body.getReader(); const dec = new TextDecoder(); let buf = "", reply = "";
    for (;;) {
      const { value, done } = await reader.read(); if (done) break;
      buf += dec.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf("\n\n")) >= 0) {
        const ev = buf.slice(0, i); buf = buf.slice(i + 2);
        if (!ev.startsWith("data: ")) continue;
        const m = JSON.parse(ev.slice(6));
        if (m.piece) { reply += m.piece; out.textContent = reply; pane.msgs.scrollTop = pane.msgs.scrollHeight; }
        if (m.error) { out.className = "msg error"; out.textContent = m.error; }
        if (m.done) stats.textContent = `${m.stats.completion_tokens} tokens · ${m.stats.tokens_per_second.toFixed(1)} tok/s · first token ${(m.stats.time_to_first_token || 0).toFixed(2)} s · ${m.stats.finish_reason}`;
      }
    }
    pane.history.push({ role: "assistant", content: reply });
  }
  const go = () => { const text = input.value.trim(); if (!text) return; input.value = ""; send.disabled = true;
    Promise.all(panes.filter(p => !p.el.hidden).map(p => stream(p, text))).finally(() => send.disabled = false); };
  send.onclick = go; input.onkeydown = e => { if (e.key === "Enter") go(); };
}

// ---- data ----------------------------------------------------------------------------------------
async function viewData(params) {
  const sets = await api("/api/datasets");
  const dir = h("input", { type: "text", id: "data-dir", list: "datasets", size: 40, value: params.get("dir") || sets[0] || "", placeholder: "prepared data folder (data prepare's output_dir)" });
  const facetsEl = h("span", { class: "facets" });
  const table = h("div"); const record = h("div", { id: "record" });
  $main.replaceChildren(h("h1", {}, "Data"), h("datalist", { id: "datasets" }, sets.map(s => h("option", { value: s }))),
    h("div", { class: "toolbar" }, dir, h("button", { onclick: () => load() }, "Open"), facetsEl), table, record);
  const filters = { source: "", status: "", reason: "", fix: "" };
  async function load() {
    if (!dir.value) { table.replaceChildren(h("p", { class: "muted" }, "no prepared data set found; run `chattune data prepare` or type its folder")); return; }
    const q = new URLSearchParams({ dir: dir.value, ...filters });
    const d = await api(`/api/data?${q}`);
    facetsEl.replaceChildren(...Object.entries(d.facets).map(([k, counts]) => h("select", { onchange: e => { filters[k] = e.target.value; load(); } },
      h("option", { value: "" }, `any ${k}`), Object.entries(counts).map(([v, n]) => h("option", { value: v, selected: filters[k] === v }, `${v} (${n})`)))));
    table.replaceChildren(h("p", { class: "muted" }, `${d.matched} of ${d.total} records`), h("table", {}, h("tr", {}, ["#", "source", "where", "status", "reason / fixes", "split"].map(c => h("th", {}, c))),
      d.entries.map(e => h("tr", { class: "clickable", onclick: () => openRecord(e.index) }, h("td", {}, e.index), h("td", {}, e.source), h("td", {}, `${e.file}:${e.line ?? e.index}`), h("td", {}, e.status),
        h("td", {}, e.reason ? `${e.reason}${e.detail ? ": " + e.detail : ""}` : (e.fixes || []).join(", ")), h("td", {}, e.split || "")))));
  }
  async function openRecord(i) {
    const r = await api(`/api/data/record?${new URLSearchParams({ dir: dir.value, index: i })}`);
    const pretty = v => v == null ? "(not available)" : typeof v === "string" ? v : JSON.stringify(v, null, 2);
    record.replaceChildren(h("h2", {}, `Record ${i}: ${r.entry.status}`), h("div", { class: "cols" }, h("div", {}, h("b", {}, "as it was"), h("pre", {}, pretty(r.before))), h("div", {}, h("b", {}, "as it came out"), h("pre", {}, pretty(r.after)))),
      h("b", {}, "diff"), h("pre", { class: "diff" }, r.diff.length ? r.diff.map(l => h("div", { class: l.startsWith("@@") ? "hunk" : l.startsWith("+") ? "add" : l.startsWith("-") ? "del" : "" }, l)) : "no changes"));
    record.scrollIntoView();
  }
  load();
}

// ---- router --------------------------------------------------------------------------------------
async function route() {
  cleanup.forEach(f => f()); cleanup = [];
  const [path, query] = location.hash.slice(1).split("?");
  const params = new URLSearchParams(query || "");
  const parts = (path || "/runs").split("/").filter(Boolean);
  document.querySelectorAll("[data-nav]").forEach(a => a.classList.toggle("active", a.dataset.nav === parts[0] || (parts[0] === "run" && a.dataset.nav === "runs")));
  try {
    if (parts[0] === "run") await viewRun(parts.slice(1).map(decodeURIComponent).join("/"));
    else if (parts[0] === "compare") await viewCompare(decodeURIComponent(parts.slice(1).join("/")).split(","));
    else if (parts[0] === "sweeps") await viewSweeps();
    else if (parts[0] === "sweep") await viewSweep(decodeURIComponent(parts[1]));
    else if (parts[0] === "launch") await viewLaunch(params);
    else if (parts[0] === "chat") await viewChat(params);
    else if (parts[0] === "data") await viewData(params);
    else await viewRuns();
  } catch (e) { $main.replaceChildren(h("h1", {}, "Error"), h("pre", {}, String(e.message || e))); }
}
window.addEventListener("hashchange", route);
route();
