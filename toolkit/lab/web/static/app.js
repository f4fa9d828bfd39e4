// obslab live lab dashboard: polls the dashboard's JSON endpoints and draws tiles,
// uPlot charts, the cohort table, the request explorer, drills and the control panel.
// Plain browser JavaScript, no build step, no network beyond this page's own origin.
"use strict";

const state = {
  info: null,
  windowKey: "lab",
  refreshMs: 5000,
  timer: null,
  charts: {},
  token: sessionStorage.getItem("obslab-admin-token") || "",
  lastSnapshotAsOf: null,
  haveSli: false,
};

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) {
    if (c === null || c === undefined) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
};

async function getJSON(path, options = {}) {
  const resp = await fetch(path, options);
  let body = null;
  try { body = await resp.json(); } catch (_) { body = null; }
  return { ok: resp.ok, status: resp.status, body };
}

// Every state-changing request carries the dashboard's CSRF token (GET api/csrf; a page on
// another origin cannot read it). A dashboard restarted meanwhile has a new one: fetch, retry once.
let csrfToken = null;
async function fetchCsrfToken() {
  const r = await getJSON("api/csrf");
  csrfToken = r.ok ? r.body.token : null;
  return csrfToken;
}
async function changeJSON(path, options) {
  const send = async () => getJSON(path, { ...options, headers: { ...(options.headers || {}), "X-CSRF-Token": csrfToken || await fetchCsrfToken() || "" } });
  let r = await send();
  if (r.status === 403 && r.body && r.body.error && /X-CSRF-Token/.test(r.body.error.message || "")) {
    await fetchCsrfToken();
    r = await send();
  }
  return r;
}

// ---------- formatting: every figure says what it is ----------
const pct = (x, digits = 2) => (x === null || x === undefined) ? "–" : (100 * x).toFixed(digits) + " %";
const ms = (seconds) => {
  if (seconds === null || seconds === undefined) return "–";
  const v = seconds * 1000;
  return v >= 1000 ? (v / 1000).toFixed(2) + " s" : v.toFixed(0) + " ms";
};
const count = (n) => (n === null || n === undefined) ? "–" : Number(n).toLocaleString("en-US");
const timeOf = (iso) => iso ? iso.replace("T", " ").replace(/\.\d+Z$/, "Z").replace("Z", " UTC") : "–";

function setTile(id, { value, detail, definition, status, data }) {
  const tile = document.getElementById(id);
  // Exact figures behind the rounded text, for scripts and tests that compare with `obslab sli`.
  for (const [k, v] of Object.entries(data || {})) tile.dataset[k] = v === null || v === undefined ? "" : String(v);
  $(".value", tile).replaceChildren(value instanceof Node ? value : document.createTextNode(value));
  const d = $(".detail", tile);
  d.replaceChildren(...(Array.isArray(detail) ? detail : [detail]).map(x => x instanceof Node ? x : el("div", { text: x })));
  if (definition) {
    $(".tip", tile).textContent = definition;
    tile.setAttribute("title", definition);
  }
  tile.classList.remove("ok", "warn", "bad");
  if (status) tile.classList.add(status);
}

// ---------- tiles ----------
function renderSnapshot(s) {
  state.lastSnapshotAsOf = s.as_of;
  const asof = $("#asof");
  asof.textContent = `as of ${timeOf(s.as_of)} · window ${timeOf(s.window.start)} → ${timeOf(s.window.end)} (${s.window.label}) · ${s.synthetic}`;
  asof.dataset.asOf = s.as_of;
  asof.dataset.windowStart = s.window.start;
  asof.classList.remove("stale");

  const su = s.success;
  state.haveSli = su.value !== null;
  setTile("tile-success", {
    value: pct(su.value),
    detail: [`${count(su.good)} succeeded / ${count(su.total)} attempts`,
             `${count(su.failed)} failed · ${count(su.abandoned)} abandoned · ${count(su.in_flight)} in flight · ${count(su.cancelled)} cancelled (excluded)`,
             `objective ${pct(su.objective, 1)}`],
    definition: su.definition,
    status: su.value === null ? null : (su.value >= su.objective ? "ok" : "bad"),
    data: { value: su.value, good: su.good, total: su.total, failed: su.failed, abandoned: su.abandoned },
  });
  const la = s.latency;
  for (const [key, label] of [["p50", "p50"], ["p95", "p95"], ["p99", "p99"]]) {
    const v = la[key + "_s"];
    setTile("tile-" + key, {
      value: ms(v),
      detail: [`${label} of ${count(la.count)} published (exact)`,
               `threshold ${ms(la.threshold_s)}: ${pct(la.good_ratio)} within (objective ${pct(la.objective, 0)})`],
      definition: la.definition,
      status: v === null ? null : (v <= la.threshold_s ? "ok" : (key === "p50" ? "bad" : "warn")),
      data: { seconds: v, count: la.count },
    });
  }
  // Every budget figure named with its period, the words `obslab budget` and `obslab top` use.
  const budgetLines = s.budgets.map(b => `${b.slo}: ${b.summary} (${count(b.bad)} bad / ${count(b.total)}; data covers ${b.data_covers})`);
  const worst = s.budgets.reduce((m, b) => (b.remaining !== null && (m === null || b.remaining < m.remaining)) ? b : m, null);
  setTile("tile-budget", {
    value: worst ? `${pct(worst.remaining, 2)} remaining` : "–",
    detail: budgetLines.concat(worst ? [`(lowest: ${worst.slo})`] : [],
      // Which period the budget covers and since when there is data: an old incident stays in it until
      // the period moves past it, or `obslab lab --fresh` starts over.
      s.budgets.length ? [`period: ${s.budgets[0].period} from ${timeOf(s.budgets[0].period_start)} to ${timeOf(s.budgets[0].period_end)}`,
                          `data began ${timeOf(s.budgets[0].data_began)} (obslab lab --fresh starts over)`] : []),
    definition: s.budgets.length ? s.budgets[0].definition : "",
    data: Object.assign(
      Object.fromEntries(s.budgets.map(b => [b.slo.replace(/-(.)/g, (m, c) => c.toUpperCase()), b.remaining])),
      Object.fromEntries(s.budgets.map(b => [b.slo.replace(/-(.)/g, (m, c) => c.toUpperCase()) + "Spent", b.spent]))),
    status: worst === null ? null : (worst.remaining > 0.5 ? "ok" : worst.remaining > 0 ? "warn" : "bad"),
  });
  renderBurn(s.burn, s.scenario);
}

// Two sources evaluate the same alert rules: the toolkit over the events, Prometheus over its scrapes.
// Both are shown, each labelled with its source, so a disagreement (a scrape interval or two) is visible
// instead of one source silently hiding the other.
function alertSummary(alerts) {
  const firing = alerts.filter(a => a.state === "firing"), pending = alerts.filter(a => a.state === "pending");
  return firing.length ? `${firing.length} firing` : (pending.length ? `${pending.length} pending` : "none firing");
}

function renderBurn(burn, scenario) {
  const eventAlerts = burn.event_alerts || [];
  // While a drill runs at a speed, the windows are in its scenario time: each shows its wall length beside it.
  const inScenario = scenario && scenario.speed !== 1;
  const span = (w, side) => inScenario ? `${w["scenario_" + side]} (${w[side]} wall)` : w[side];
  const prom = burn.prometheus || "not configured";
  const promAlerts = burn.prometheus_alerts || [];
  const promText = prom === "answered" ? alertSummary(promAlerts) : prom;
  const value = el("span", {},
    el("span", { "data-testid": "burn-events-state" }, `events (toolkit): ${alertSummary(eventAlerts)}`), " · ",
    el("span", { "data-testid": "burn-prometheus-state" }, `Prometheus: ${promText}`));
  const all = eventAlerts.concat(promAlerts);
  const firing = all.filter(a => a.state === "firing"), pending = all.filter(a => a.state === "pending");
  const table = el("table", { class: "grid burn-table", "data-testid": "burn-table" });
  table.append(el("thead", {}, el("tr", {},
    el("th", { text: "SLO · severity" }), el("th", { text: "long window" }), el("th", { text: "short window" }),
    el("th", { text: "threshold" }), el("th", { text: "events (toolkit)" }), el("th", { text: "Prometheus alert" }))));
  const tb = el("tbody");
  for (const w of burn.windows) {
    const fmt = (b) => b === null || b === undefined ? "–" : b.toFixed(2) + "×";
    tb.append(el("tr", {},
      el("td", { text: `${w.slo} · ${w.severity}` }),
      el("td", { text: `${fmt(w.long_burn)} over ${span(w, "long")}` }),
      el("td", { text: `${fmt(w.short_burn)} over ${span(w, "short")}` }),
      el("td", { text: `${w.burn_rate_threshold}×` }),
      el("td", { class: w.firing ? "firing" : "quiet", text: w.firing ? "firing" : "ok" }),
      promCell(w.prometheus, prom)));
  }
  table.append(tb);
  const pills = (list) => list.length ? list.flatMap(a => [el("span", { class: "pill " + a.state, text: `${a.name} ${a.state}` }), " "])
                                      : [el("span", { class: "pill ok", text: "none firing" })];
  const alerts = el("div", { class: "alert-sources" },
    el("div", { "data-testid": "alerts-events" }, "events (the toolkit's burn-rate evaluation): ", ...pills(eventAlerts)),
    el("div", { "data-testid": "alerts-prometheus" }, "Prometheus (lab rules): ",
      ...(prom === "answered" ? pills(promAlerts) : [el("span", { class: "pill", text: prom })])));
  const timing = inScenario ? [el("div", { class: "scenario-time", "data-testid": "burn-scenario" },
    scenario.text)] : [];
  setTile("tile-burn", {
    value, detail: [...timing, table, alerts], definition: burn.definition,
    status: firing.length ? "bad" : (pending.length ? "warn" : "ok"),
  });
}

function promCell(p, status) {
  if (!p) return el("td", { class: "muted", text: status === "answered" ? "–" : status });
  const state = p.state === "inactive" ? "inactive" : p.state;
  return el("td", { class: p.state === "firing" ? "firing" : (p.state === "pending" ? "pending" : "quiet"),
                    title: p.name || "", text: p.name ? `${state} (${p.name})` : state });
}

// ---------- charts ----------
// Time axis labels in UTC (as the page's other times), as precise as the tick step needs: uPlot's
// default ("12:05:30pm" plus a date line) is wider than its 50 px tick spacing at a 5-minute window.
const pad2 = (n) => String(n).padStart(2, "0");
function timeLabels(u, splits, axisIdx, space, incr) {
  return splits.map(v => {
    const d = new Date(v * 1000);
    const hm = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}`;
    if (incr < 60) return `${hm}:${pad2(d.getUTCSeconds())}`;
    if (incr >= 86400) return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())}`;
    return hm;
  });
}

// The legend shows the latest bucket's values when the cursor is not on the chart (uPlot shows "--"):
// the latest bucket where the chart's first series has a value (a bucket with no outcome has no rate).
function latestIndex(u) {
  const n = u.data[0] ? u.data[0].length : 0, first = u.data[1] || [];
  for (let i = n - 1; i >= 0; i--) if (first[i] !== null && first[i] !== undefined) return i;
  return n ? n - 1 : null;
}
function showLatestWhenIdle(u) {
  if (u.cursor.idx === null || u.cursor.idx === undefined || u.cursor.left < 0) {
    const idx = latestIndex(u);
    if (idx !== null) u.setLegend({ idx }, false);
  }
}

function chartOpts(title, series, yFormat, height = 200) {
  const width = Math.max(380, (document.getElementById("chart-success").clientWidth || 460) - 10);
  return {
    title, width, height,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true } },
    series: [{ label: "bucket end (UTC)", value: (u, v) => v === null || v === undefined ? "–" : timeLabels(u, [v], 0, 0, 1)[0] }].concat(series),
    // space: at least this many pixels between ticks, wider than the widest label ("12:05:30").
    axes: [{ space: 80, values: timeLabels }, { values: (u, vals) => vals.map(yFormat), size: 64, space: 30 }],
    legend: { live: true },
    hooks: { ready: [showLatestWhenIdle], setData: [showLatestWhenIdle], setCursor: [showLatestWhenIdle] },
  };
}

function drawChart(key, title, series, yFormat, data) {
  const target = document.getElementById("chart-" + key);
  if (!state.charts[key]) {
    state.charts[key] = new uPlot(chartOpts(title, series, yFormat), data, target);
  } else {
    state.charts[key].setData(data);
  }
}

function renderSeries(sr) {
  $("#series-caption").textContent = `${sr.step_s} s buckets by terminal event time, ${sr.synthetic}; latency = processing (upload_completed → publish_succeeded)`;
  const t = sr.t;
  drawChart("success", "publish success rate (per bucket)",
    [{ label: "success rate", stroke: "#1a7f37", value: (u, v) => v === null ? "–" : (100 * v).toFixed(2) + " %" },
     { label: "objective", stroke: "#999", dash: [4, 4], value: (u, v) => v === null ? "–" : (100 * v).toFixed(1) + " %" }],
    v => (100 * v).toFixed(1) + "%",
    [t, sr.success_rate, t.map(() => sr.objective)]);
  drawChart("latency", "processing latency (per bucket, exact)",
    [{ label: "p50", stroke: "#2f5fd0", value: (u, v) => ms(v) },
     { label: "p95", stroke: "#b7791f", value: (u, v) => ms(v) },
     { label: "p99", stroke: "#c62828", value: (u, v) => ms(v) },
     { label: "threshold", stroke: "#999", dash: [4, 4], value: (u, v) => ms(v) }],
    v => ms(v),
    [t, sr.p50_s, sr.p95_s, sr.p99_s, t.map(() => sr.threshold_s)]);
  drawChart("throughput", "attempts ending per bucket",
    [{ label: "succeeded", stroke: "#1a7f37" }, { label: "failed", stroke: "#c62828" }, { label: "abandoned", stroke: "#b7791f" }],
    v => String(v),
    [t, sr.succeeded, sr.failed, sr.abandoned]);
  const burnSeries = Object.keys(sr.burn);
  drawChart("burn", `burn rate of ${sr.burn_slo} (events)`,
    burnSeries.map((k, i) => ({ label: k, stroke: ["#c62828", "#2f5fd0", "#b7791f", "#6b7280"][i % 4],
                                value: (u, v) => v === null ? "–" : v.toFixed(2) + "×" })),
    v => v.toFixed(1) + "×",
    [t, ...burnSeries.map(k => sr.burn[k])]);
}

// ---------- cohorts ----------
function renderCohorts(c) {
  const worstCohort = c.worst ? c.worst.cohort : null;
  $("#cohort-caption").textContent = `${c.window_label}, ${c.synthetic}`;
  const why = $("#cohort-worst");
  why.textContent = c.worst ? c.worst.reason : "";
  why.classList.toggle("flagged", worstCohort !== null);
  const table = $("#cohort-table");
  $("thead", table).replaceChildren(el("tr", {},
    el("th", { text: c.dimension }), el("th", { text: "attempts" }), el("th", { text: "succeeded" }),
    el("th", { text: "failed" }), el("th", { text: "abandoned" }), el("th", { text: "success rate" }),
    el("th", { text: "p95 processing" }), el("th", { text: "published" })));
  const rows = c.rows;
  $("tbody", table).replaceChildren(...rows.map(r => el("tr", { class: worstCohort !== null && r.cohort === worstCohort ? "worst" : null },
    el("td", { text: r.cohort }), el("td", { text: count(r.total) }), el("td", { text: count(r.succeeded) }),
    el("td", { text: count(r.failed) }), el("td", { text: count(r.abandoned) }), el("td", { text: pct(r.success_rate) }),
    el("td", { text: ms(r.p95_s) }), el("td", { text: count(r.latency_count) }))));
}

// ---------- on-call and delivery (the figures `obslab oncall` prints, from the same function) ----------
const secs = (v) => (v === null || v === undefined) ? "–" : v.toFixed(1) + " s";
function scaledText(v) {
  if (v === null || v === undefined) return "–";
  const a = Math.abs(v), sign = v < 0 ? "−" : "";
  return sign + (a >= 3600 ? (a / 3600).toFixed(1) + " h" : a >= 60 ? (a / 60).toFixed(1) + " min" : a.toFixed(0) + " s");
}
function renderOncall(r) {
  const table = $("#oncall-table");
  if (!r.scope) {
    $("#oncall-caption").textContent = "no events yet";
    $("tbody", table).replaceChildren();
    return;
  }
  $("#oncall-caption").textContent = `scope ${timeOf(r.scope.start)} → ${timeOf(r.scope.end)} · ${r.profile} profile, `
    + `1 lab s = ${r.time_compression} s lab-scaled · ${r.synthetic === "included" ? "synthetic traffic included" : "synthetic " + r.synthetic}`;
  $("thead", table).replaceChildren(el("tr", {}, el("th", { text: "figure" }), el("th", { text: "value" }),
    el("th", { text: "lab-scaled" }), el("th", { class: "text", text: "behind it" })));
  const rows = [], defs = [];
  // The exact value in data-value (for scripts and tests), the rounded one with its unit in the cell.
  const row = (key, name, value, shown, scaled, behind, definition) => {
    rows.push(el("tr", { "data-oncall": key, "data-value": value === null || value === undefined ? "" : String(value), title: definition },
      el("td", { text: name }), el("td", { text: shown }),
      el("td", { text: scaled }), el("td", { class: "text", text: behind })));
    defs.push(el("div", {}, el("b", { text: name + ": " }), definition));
  };
  for (const key of ["pages", "tickets"]) {
    const f = r[key].per_week;
    row(key + "_per_week", `${key} per week`, f.value, f.value === null ? "–" : f.value.toFixed(2), "(scaled)",
        `${f.numerator} ${key} (${r[key].open} open) in ${f.denominator.toPrecision(3)} scaled weeks`, r[key].definition + ". " + f.definition);
  }
  for (const f of Object.values(r.response)) {
    row(f.name, f.name.replace(/_/g, " ") + " (median)", f.value, secs(f.value), scaledText(f.scaled_value),
        `${f.n} incident(s); mean ${secs(f.mean)}`, f.definition);
  }
  const d = r.delivery;
  row("changes", "changes", d.changes.value, count(d.changes.value), "", "", d.changes.definition);
  row("rollbacks", "rollbacks", d.rollbacks.value, count(d.rollbacks.value), "", "", d.rollbacks.definition);
  for (const key of ["change_failure_rate", "rollback_rate"]) {
    const f = d[key];
    row(key, key.replace(/_/g, " "), f.value, pct(f.value, 1), "", `${f.numerator} / ${f.denominator}`, f.definition);
  }
  $("tbody", table).replaceChildren(...rows);
  const inc = $("#oncall-incidents");
  if (!r.incidents.length) inc.replaceChildren(el("div", { class: "muted", text: "no page started in the scope" }));
  else inc.replaceChildren(el("table", { class: "grid" },
    el("thead", {}, el("tr", {}, ...["page start", "page end", "cause", "detect", "mitigate", "resolve"].map(h => el("th", { class: h === "cause" ? "text" : null, text: h })))),
    el("tbody", {}, ...r.incidents.map(i => el("tr", { "data-incident": i.page.start },
      el("td", { text: timeOf(i.page.start) }), el("td", { text: i.page.end ? timeOf(i.page.end) : "open" }),
      el("td", { class: "text", text: i.cause || "unknown" }), el("td", { text: secs(i.time_to_detect_s) }),
      el("td", { text: secs(i.time_to_mitigate_s) }), el("td", { text: secs(i.time_to_resolve_s) }))))));
  defs.push(el("div", {}, el("b", { text: "incident cause: " }), r.incident_join.definition));
  $("#oncall-definitions").replaceChildren(...defs);
}

async function loadOncall(w) {
  const r = await getJSON("api/oncall?window=" + w);
  if (r.ok) renderOncall(r.body);
  else $("#oncall-caption").textContent = "on-call figures failed: " + errText(r);
}

// ---------- request explorer ----------
async function loadRecent() {
  const r = await getJSON("api/requests/recent");
  if (!r.ok) return;
  $("#recent-requests").replaceChildren(...r.body.request_ids.map(id =>
    el("a", { "data-request-id": id, onclick: () => { $("#request-id").value = id; explore(id); } }, id)));
}

async function explore(requestId, again = false) {
  const out = $("#explorer-result");
  clearTimeout(state.exploreRetry);
  if (!again) out.replaceChildren(el("div", { class: "muted", text: "loading…" }));
  const r = await getJSON("api/requests/" + encodeURIComponent(requestId));
  if (!r.ok) {
    out.replaceChildren(el("div", { class: "error-line", text: r.body && r.body.error ? r.body.error.message : `HTTP ${r.status}` }));
    return;
  }
  const d = r.body;
  const t0 = d.events.length ? Date.parse(d.events[0].ts) : 0;
  const evTable = el("table", { class: "grid", "data-testid": "event-timeline" });
  evTable.append(el("thead", {}, el("tr", {},
    el("th", { text: "ts (UTC)" }), el("th", { text: "+ms" }), el("th", { text: "event" }), el("th", { text: "service" }),
    el("th", { class: "text", text: "details" }), el("th", { text: "span_id" }))));
  const tb = el("tbody");
  for (const e of d.events) {
    const details = [];
    for (const k of ["chunk_index", "attempt", "duration_ms", "error_class", "status"]) if (e[k] !== undefined && e[k] !== null) details.push(`${k}=${e[k]}`);
    const cls = ["event-row", ["publish_failed", "chunk_failed", "transcode_failed"].includes(e.event) ? "failure" : "",
                 ["publish_succeeded", "publish_failed", "upload_cancelled"].includes(e.event) ? "terminal" : ""].join(" ");
    tb.append(el("tr", { class: cls, "data-event": e.event },
      el("td", { class: "mono", text: e.ts }), el("td", { text: (Date.parse(e.ts) - t0).toFixed(0) }),
      el("td", { text: e.event }), el("td", { text: e.service }), el("td", { class: "text", text: details.join(" ") }),
      el("td", { class: "mono", text: e.span_id || "" })));
  }
  evTable.append(tb);
  const cohort = d.events.length ? d.events[0] : {};
  const header = el("div", {},
    el("div", {}, el("b", { text: "request_id " }), el("span", { class: "mono", text: d.request_id }),
      ` · upload ${cohort.upload_id || "–"} · ${cohort.region || ""} ${cohort.app_version || ""} ${cohort.network_type || ""} ${cohort.media_size_bucket || ""}`,
      ` · flags ${JSON.stringify(cohort.flags || {})} · outcome `, el("b", { text: d.outcome || "in flight" })),
    el("div", { class: "muted", text: `${d.events.length} events · trace ${d.trace_ids.join(", ") || "–"} · ${d.spans.length} spans (${d.spans_source})` }));
  out.replaceChildren(header, evTable, renderWaterfall(d.spans, d.spans_status));
  // Spans still in the service's batch exporter: ask again once they should be written.
  const st = d.spans_status || {};
  if (st.state === "pending" && $("#request-id").value.trim() === requestId) {
    state.exploreRetry = setTimeout(() => explore(requestId, true), 1000 * Math.max(1, st.retry_after_s || 5));
  }
}

function renderWaterfall(spans, status) {
  const box = el("div", { class: "waterfall", "data-testid": "span-waterfall" });
  if (!spans.length) {
    box.append(el("div", { class: "muted", "data-testid": "spans-status", "data-state": (status || {}).state || "",
                           text: (status && status.message) || "no spans in the local span files for this trace" }));
    return box;
  }
  const start = Math.min(...spans.map(s => s.start_ns));
  const end = Math.max(...spans.map(s => s.end_ns));
  const total = Math.max(1, end - start);
  // Depth from parent links, so children sit under their parents.
  const byId = Object.fromEntries(spans.map(s => [s.span_id, s]));
  const depth = (s) => { let d = 0, p = s; while (p && p.parent_span_id && byId[p.parent_span_id] && d < 20) { p = byId[p.parent_span_id]; d++; } return d; };
  box.append(el("div", { class: "muted", text: `trace waterfall: ${spans.length} spans over ${(total / 1e6).toFixed(1)} ms` }));
  for (const s of spans) {
    const left = 100 * (s.start_ns - start) / total, width = Math.max(0.2, 100 * (s.end_ns - s.start_ns) / total);
    const bar = el("div", { class: "wf-bar" + (s.status === "ERROR" ? " error" : ""), style: `left:${left}%;width:${width}%`,
                             title: `${s.name} · ${s.service} · ${JSON.stringify(s.attributes || {})}` });
    box.append(el("div", { class: "wf-row", "data-span-name": s.name },
      el("div", { class: "wf-name", style: `padding-left:${depth(s) * 14}px`, text: `${s.service}: ${s.name}` }),
      el("div", { class: "wf-track" }, bar),
      el("div", { class: "wf-dur", text: ((s.end_ns - s.start_ns) / 1e6).toFixed(1) + " ms" })));
  }
  return box;
}

// ---------- drills ----------
async function loadDrills() {
  const r = await getJSON("api/drills");
  const box = $("#drills");
  if (!r.ok || !r.body.available) {
    box.replaceChildren(el("div", { class: "muted", text: (r.body && r.body.reason) || "drills are not available" }));
    return;
  }
  const d = r.body;
  $("#drills-caption").textContent = d.active ? `${d.active.phase}: ${d.active.name}` : `${d.drills.length} drills`;
  const speed = el("select", { id: "drill-speed", "data-testid": "drill-speed" },
    el("option", { value: "1", text: "real time (as scripted)" }),
    el("option", { value: "5", text: "5× faster" }),
    el("option", { value: "10", text: "10× faster (alert windows shrink alike)" }));
  if (state.drillSpeed) speed.value = state.drillSpeed;
  speed.addEventListener("change", () => { state.drillSpeed = speed.value; });
  const items = d.drills.map(dr => el("div", { class: "drill", "data-drill": dr.name },
    el("h3", { text: `${dr.title || dr.name}` }),
    el("div", { class: "muted", text: [dr.name, dr.difficulty, dr.duration].filter(Boolean).join(" · ") }),
    el("div", { class: "summary", title: dr.summary || "", text: dr.summary || "" }),
    el("button", { "data-testid": "drill-start-" + dr.name, onclick: () => startDrill(dr.name), disabled: (d.active && !d.active.finished) ? "disabled" : null }, "Start")));
  const active = d.active ? renderActiveDrill(d.active) : null;
  // A re-render (the run's phase changed, say from running to finished) keeps what the run's output box shows:
  // the learner's report must not vanish because the poll noticed the drill ended a moment after they asked for it.
  const shownRun = $("[data-testid=drill-active]"), shownOutput = $("#drill-output");
  if (active && shownRun && shownOutput && shownRun.dataset.run === active.dataset.run) {
    active.querySelector("#drill-output").replaceWith(shownOutput);
  }
  box.replaceChildren(...(active ? [active] : []), el("div", { class: "drill-pace" }, "pace: ", speed),
    el("div", { class: "drill-list" }, ...items));
  if (active) await loadMitigation();
}

// The mitigation step (drills that have one): one action a run, then the recovery figure with its window.
// The choices come in the run's shuffled order; whether the action was right shows only in the report.
async function loadMitigation() {
  const box = $("#drill-mitigation");
  if (!box) return;
  const r = await getJSON("api/drills/active/mitigation");
  if (!r.ok || !r.body.available) { box.replaceChildren(); return; }
  const m = r.body;
  const out = el("div", { "data-testid": "drill-mitigation-output" });
  if (!m.taken) {
    const action = el("select", { name: "action", required: "required", "data-testid": "drill-mitigation-action" },
      el("option", { value: "", text: "— choose —", selected: "selected" }),
      ...m.choices.map(c => el("option", { value: c, text: c })));
    const form = el("form", { onsubmit: async (ev) => {
        ev.preventDefault();
        const res = await postJSON("api/drills/active/mitigate", { action: action.value });
        if (!res.ok) { out.replaceChildren(el("div", { class: "error-line", text: errText(res) })); return; }
        await loadMitigation();
        $("[data-testid=drill-mitigation-output]").replaceChildren(el("div", { text: res.body.text }));
      } },
      el("label", {}, "mitigation (one a run) ", action), " ",
      el("button", { type: "submit", "data-testid": "drill-mitigate", disabled: m.phase === "running" ? null : "disabled" }, "Mitigate"));
    box.replaceChildren(form, out);
    return;
  }
  const rate = el("input", { name: "success_rate", size: 8, placeholder: "0.997", "data-testid": "drill-recovery-rate" });
  const since = el("input", { name: "since", size: 28, value: m.taken.since });
  const until = el("input", { name: "until", size: 28, placeholder: "(now)" });
  const form = el("form", { onsubmit: async (ev) => {
      ev.preventDefault();
      const res = await postJSON("api/drills/active/recovery", { success_rate: rate.value, since: since.value, until: until.value });
      out.replaceChildren(res.ok ? el("div", { text: res.body.text }) : el("div", { class: "error-line", text: errText(res) }));
    } },
    el("div", { class: "muted", text: `mitigation taken: ${m.taken.action} at t=${Math.round(m.taken.at_scenario_s)} s. `
                                      + "Show the recovery: the publish success rate over a window after it (obslab sli --since …)." }),
    el("label", {}, "success rate ", rate), " ", el("label", {}, "since ", since), " ", el("label", {}, "until ", until), " ",
    el("button", { type: "submit", "data-testid": "drill-recovery" }, "Report recovery"));
  box.replaceChildren(form, out);
}

function renderActiveDrill(a) {
  const answerFields = (a.questions || []).map((q, i) => el("div", {},
    el("label", {}, q.text || q.prompt || q.id, " ",
      // No choice is preselected: an empty first option, the run's shuffled choices after it.
      q.choices ? el("select", { name: q.id, required: "required" },
                     el("option", { value: "", text: "— choose —", selected: "selected" }),
                     ...q.choices.map(c => el("option", { value: c, text: c })))
                : el("input", { name: q.id, size: 30 }))));
  const form = a.kind === "rollout" ? renderRolloutBox(a.rollout)
    : el("form", { "data-testid": "drill-answer-form", onsubmit: (ev) => { ev.preventDefault(); answerDrill(form); } },
      ...answerFields, el("button", { type: "submit" }, "Submit answer"));
  return el("div", { class: "drill active", "data-testid": "drill-active", "data-name": a.name, "data-phase": a.phase,
                     "data-run": `${a.name}@${a.started_at}` },
    el("h3", { text: `${a.phase === "running" ? "Running" : "Drill " + a.phase}: ${a.title || a.name}` }),
    el("div", { class: "muted", "data-testid": "drill-clock" },
      `started ${timeOf(a.started_at)} · speed ×${a.speed} · scenario time ${Math.round(a.elapsed_s)} s, `
        + `${Math.round(a.remaining_s)} s left${a.paused ? " (paused)" : ""} · `,
      el("span", { "data-testid": "drill-answer-count" }, answersText(a.answers))),
    el("pre", { text: a.briefing || "" }),
    el("div", {}, el("button", { onclick: () => hintDrill(a), "data-testid": "drill-hint",
                                 title: `each new hint costs ${a.hint_cost} points` }, `Hint (−${a.hint_cost} points)`), " ",
      a.phase === "running" ? el("button", { onclick: () => pauseDrill(!a.paused), "data-testid": "drill-pause" },
                                 a.paused ? "Resume clock" : "Pause clock") : "", " ",
      el("button", { onclick: reportDrill, "data-testid": "drill-report",
                     disabled: a.phase === "stopping" ? "disabled" : null }, "Report"), " ",
      el("button", { onclick: stopDrill, "data-testid": "drill-stop" }, "Stop")),
    el("div", { id: "drill-hints" }, ...(a.hints_shown || []).map(h => el("div", { text: "hint: " + h }))),
    form, el("div", { id: "drill-mitigation", "data-testid": "drill-mitigation" }),
    el("div", { id: "drill-output", class: "report" }), renderStoryPanel());
}

// A rollout drill: where the rollout stands, and the stage's call once it is due (obslab drill decide).
function rolloutText(r) {
  if (!r || r.percent === null) return "rollout: not started yet";
  const calls = (r.calls || []).map(c => `${c.percent} %: ${c.call}`).join(", ");
  const where = `stage ${r.percent} % since ${timeOf(r.stage_started_at)} (round ${r.round + 1})`;
  const what = r.phase === "collecting" ? `collecting data, call due in ${Math.round(r.seconds_left)} s`
    : r.phase === "call_due" ? `call due: ${Math.round(r.seconds_left)} s left, ${r.holds_left} hold(s) left`
      + (r.due && r.due.variant_outcomes !== undefined ? ` · this stage: ${r.due.control_outcomes} control and `
        + `${r.due.variant_outcomes} variant publishes ended, power ${r.due.power_detect_drop} to roll back a 2 pp drop (always-valid)` : "")
    : `rollout ended (${(r.ended || "").replace("_", " ")})`;
  return `${where}: ${what}` + (calls ? ` · calls: ${calls}` : "");
}
function renderRolloutBox(r) {
  const due = r && r.phase === "call_due";
  const button = (call, label) => el("button", { onclick: () => decideDrill(call), "data-testid": "drill-decide-" + call,
                                                 disabled: due ? null : "disabled" }, label);
  return el("div", { "data-testid": "drill-rollout" },
    el("div", { "data-testid": "drill-rollout-status", text: rolloutText(r) }),
    el("div", {}, button("continue", "Continue"), " ", button("hold", "Hold"), " ", button("rollback", "Roll back")));
}
async function decideDrill(call) {
  const r = await postJSON("api/drills/active/decide", { call });
  $("#drill-output").replaceChildren(el("pre", { text: r.ok ? r.body.text : errText(r) }));
  await loadDrills();
}

// Your own story of the drill: a skeleton to write in, then every number and metric checked
// against what the drill measured (obslab story template / check; docs/story-rubric.md).
function renderStoryPanel() {
  const text = el("textarea", { id: "story-text", "data-testid": "story-text", rows: 18, cols: 100,
    placeholder: "Your story: Situation, Task, Action, Result, Tradeoff, Reflection, and the metric definitions" });
  if (state.storyText) text.value = state.storyText;
  text.addEventListener("input", () => { state.storyText = text.value; });
  return el("details", { class: "story", "data-testid": "story-panel", open: state.storyText ? "open" : null },
    el("summary", { text: "Your impact story (after the drill ends)" }),
    el("div", {}, el("button", { onclick: storyTemplate, "data-testid": "story-template" }, "Write story"), " ",
      el("button", { onclick: storyCheck, "data-testid": "story-check" }, "Check story"),
      el("span", { class: "muted", text: " rubric: docs/story-rubric.md" })),
    text, el("div", { id: "story-feedback", "data-testid": "story-feedback" }));
}
async function storyTemplate() {
  const r = await getJSON("api/drills/active/story/template");
  if (!r.ok) { $("#story-feedback").replaceChildren(el("div", { class: "error-line", text: errText(r) })); return; }
  if (!$("#story-text").value.trim()) { $("#story-text").value = r.body.text; state.storyText = r.body.text; }
}
async function storyCheck() {
  const r = await postJSON("api/drills/active/story/check", { text: $("#story-text").value });
  if (!r.ok) { $("#story-feedback").replaceChildren(el("div", { class: "error-line", text: errText(r) })); return; }
  const res = r.body.result;
  const mark = { matched: "ok", wrong: "wrong", unverifiable: "?" };
  $("#story-feedback").replaceChildren(
    el("div", {}, el("b", { text: `story score ${res.score} / ${res.max_score}` })),
    el("table", { class: "grid story-numbers" }, el("tbody", {}, ...res.numbers.map(n => el("tr", { class: "story-" + n.status },
      el("td", { text: mark[n.status] }), el("td", { text: "line " + n.line }), el("td", { class: "text", text: n.text }),
      el("td", { class: "text", text: n.status === "matched" ? `${n.figure} (${n.measured})` : n.note }))))),
    el("ul", {}, ...res.issues.map(i => el("li", { text: i.message }))),
    el("pre", { text: r.body.text }));
}

const answersText = (n) => `${n} answer${n === 1 ? "" : "s"} recorded`;

// Each poll (and each answer) updates the running drill's status in place: re-rendering the panel would
// clear what the learner is typing. A drill started or stopped elsewhere re-renders it.
async function refreshDrillStatus() {
  const r = await getJSON("api/drills");
  if (!r.ok || !r.body.available) return;
  const a = r.body.active, shown = $("[data-testid=drill-active]");
  if (!a !== !shown || (a && (shown.dataset.name !== a.name || shown.dataset.phase !== a.phase))) { await loadDrills(); return; }
  if (a) $("[data-testid=drill-answer-count]").textContent = answersText(a.answers);
  if (a && a.kind === "rollout") {
    const box = $("[data-testid=drill-rollout]");
    if (box) box.replaceWith(renderRolloutBox(a.rollout));
  }
}

async function postJSON(path, body) {
  return changeJSON(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body || {}) });
}
async function startDrill(name) {
  const r = await postJSON("api/drills/" + encodeURIComponent(name) + "/start", { speed: Number($("#drill-speed").value) });
  if (!r.ok) alertLine("#drills", r);
  await loadDrills();
}
async function hintDrill(a) {
  const taken = (a.hints_shown || []).length;
  if (taken < a.hints_total && !window.confirm(`Hint ${taken + 1}/${a.hints_total} costs ${a.hint_cost} points off your score. Take it?`)) return;
  const r = await postJSON("api/drills/active/hint", { accept_cost: true });
  if (r.ok) {
    a.hints_shown = [...(a.hints_shown || []), r.body.hint];
    $("#drill-hints").append(el("div", { text: "hint: " + r.body.hint }));
  }
  else alertLine("#drill-hints", r);
}
async function pauseDrill(pause) {
  const r = await postJSON("api/drills/active/" + (pause ? "pause" : "resume"));
  if (!r.ok) alertLine("#drills", r);
  await loadDrills();
}
async function answerDrill(form) {
  const answers = Object.fromEntries(new FormData(form).entries());
  const r = await postJSON("api/drills/active/answer", { answers });
  $("#drill-output").replaceChildren(el("pre", { text: r.ok ? (r.body.text || JSON.stringify(r.body, null, 2)) : errText(r) }));
  await refreshDrillStatus();
}
async function reportDrill() {
  const r = await postJSON("api/drills/active/report");
  if (!r.ok) { $("#drill-output").replaceChildren(el("div", { class: "error-line", text: errText(r) })); return; }
  const g = r.body.score || {};
  $("#drill-output").replaceChildren(
    el("div", {}, el("b", { text: `score ${g.total ?? "–"} / ${g.max ?? "–"}` }), ` · written to ${r.body.path}`),
    // The server renders the markdown with raw HTML disabled and links validated (drills.render_report_html).
    (() => { const doc = el("div", { class: "report-html", "data-testid": "report-html" }); doc.innerHTML = r.body.html; return doc; })());
}
async function stopDrill() {
  const r = await postJSON("api/drills/active/stop");
  if (!r.ok) alertLine("#drills", r);
  await loadDrills();
}
const errText = (r) => (r.body && r.body.error) ? r.body.error.message : `HTTP ${r.status}`;
function alertLine(sel, r) { $(sel).prepend(el("div", { class: "error-line", text: errText(r) })); }

// ---------- faults and flags (control API through the dashboard) ----------
function authHeaders() { return { "Authorization": "Bearer " + state.token, "Content-Type": "application/json" }; }

async function loadControl() {
  const box = $("#control");
  if (!state.token) { box.replaceChildren(el("div", { class: "muted", text: "enter the admin token to see and change faults and flags" })); return; }
  const [faults, flags] = await Promise.all([
    getJSON("api/control/faults", { headers: authHeaders() }), getJSON("api/control/flags", { headers: authHeaders() })]);
  if (!faults.ok || !flags.ok) { box.replaceChildren(el("div", { class: "error-line", "data-testid": "control-error", text: errText(faults.ok ? flags : faults) })); return; }
  const faultList = listOf(faults.body, "faults");
  const flagList = listOf(flags.body, "flags");
  const faultTable = el("table", { class: "grid", "data-testid": "faults-table" },
    el("thead", {}, el("tr", {}, el("th", { text: "fault" }), el("th", { class: "text", text: "definition" }), el("th", { text: "" }))),
    el("tbody", {}, ...(faultList.length ? faultList.map(f => el("tr", { "data-fault": f.name },
      el("td", { text: f.name }), el("td", { class: "text mono", text: JSON.stringify(withoutName(f)) }),
      el("td", {}, el("button", { onclick: () => deleteFault(f.name) }, "clear")))) : [el("tr", {}, el("td", { text: "no fault active" }))])));
  const flagTable = el("table", { class: "grid", "data-testid": "flags-table" },
    el("thead", {}, el("tr", {}, el("th", { text: "flag" }), el("th", { class: "text", text: "rollout" }))),
    el("tbody", {}, ...flagList.map(f => el("tr", { "data-flag": f.name },
      el("td", { text: f.name }), el("td", { class: "text mono", text: JSON.stringify(withoutName(f)) })))));
  // Bodies exactly as the control API takes them (PUT /admin/faults/{name}, PUT /admin/flags/{name}).
  const faultName = el("input", { size: 24, "data-testid": "fault-name", value: "slow-transcoder" });
  const faultText = el("textarea", { rows: 6, "data-testid": "fault-json" });
  faultText.value = JSON.stringify({ kind: "latency", target: "transcoder", params: { latency_ms: 1500 },
                                     selector: { region: ["eu-west"] }, percentage: 50, duration_s: 300 }, null, 2);
  const flagName = el("select", { "data-testid": "flag-name" }, ...flagList.map(f => el("option", { value: f.name, text: f.name })));
  const flagText = el("textarea", { rows: 6, "data-testid": "flag-json" });
  flagText.value = JSON.stringify({ default: "stable", rollout: { canary: 5 } }, null, 2);
  flagName.addEventListener("change", () => {
    const f = flagList.find(x => x.name === flagName.value);
    if (f) flagText.value = JSON.stringify({ default: f.default, rollout: f.rollout || {} }, null, 2);
  });
  flagName.value = "release";
  box.replaceChildren(el("div", { class: "control-grid" },
    el("div", {}, el("h3", { text: "Faults" }), faultTable,
      el("div", {}, "name ", faultName), faultText,
      el("button", { onclick: () => putNamed("faults", faultName.value, faultText.value) }, "Set fault")),
    el("div", {}, el("h3", { text: "Flags" }), flagTable,
      el("div", {}, "flag ", flagName), flagText,
      el("button", { onclick: () => putNamed("flags", flagName.value, flagText.value) }, "Set flag"))),
    el("div", { id: "control-msg" }));
}

function listOf(body, key) {
  const v = body && (body[key] !== undefined ? body[key] : body);
  if (Array.isArray(v)) return v;
  if (v && typeof v === "object") return Object.entries(v).map(([name, def]) => Object.assign({ name }, typeof def === "object" ? def : { value: def }));
  return [];
}
function withoutName(o) { const c = Object.assign({}, o); delete c.name; return c; }

async function putNamed(kind, name, text) {
  let body;
  try { body = JSON.parse(text); } catch (e) { $("#control-msg").replaceChildren(el("div", { class: "error-line", text: "not valid JSON: " + e.message })); return; }
  if (!name) { $("#control-msg").replaceChildren(el("div", { class: "error-line", text: "give the fault a name" })); return; }
  const r = await changeJSON(`api/control/${kind}/${encodeURIComponent(name)}`, { method: "PUT", headers: authHeaders(), body: JSON.stringify(body) });
  await loadControl();
  if (!r.ok) $("#control-msg").replaceChildren(el("div", { class: "error-line", text: errText(r) }));
}
async function deleteFault(name) {
  const r = await changeJSON(`api/control/faults/${encodeURIComponent(name)}`, { method: "DELETE", headers: authHeaders() });
  await loadControl();
  if (!r.ok) $("#control-msg").replaceChildren(el("div", { class: "error-line", text: errText(r) }));
}

// ---------- refresh loop ----------
async function refresh() {
  const w = encodeURIComponent(state.windowKey);
  try {
    const [snap, series, cohorts] = await Promise.all([
      getJSON("api/snapshot?window=" + w), getJSON("api/series?window=" + w),
      getJSON(`api/cohorts?window=${w}&dimension=${encodeURIComponent($("#cohort-dimension").value || "region")}`)]);
    if (snap.ok) renderSnapshot(snap.body); else $("#asof").textContent = "snapshot failed: " + errText(snap);
    if (series.ok) renderSeries(series.body);
    if (cohorts.ok) renderCohorts(cohorts.body);
    loadOncall(w);  // not awaited: the tiles do not wait for the history's replay
    if (!document.getElementById("request-id").value) loadRecent();
    refreshDrillStatus();
  } catch (e) {
    // The lab stopped or restarted: say so on the page, keep polling.
    $("#asof").classList.add("stale");
    $("#asof").textContent = "dashboard unreachable (lab stopped?) · last as of " + timeOf(state.lastSnapshotAsOf);
  }
}

// The next refresh is scheduled when this one is done, so a slow computation (a long lab run)
// spaces refreshes out instead of piling them up.
// Until the first attempt has an outcome, poll every second: a fresh lab shows its first SLI sooner.
const nextDelay = () => state.haveSli ? state.refreshMs : 1000;

async function tick() {
  await refresh();
  if ($("#live").checked) state.timer = setTimeout(tick, nextDelay());
}

function schedule() {
  clearTimeout(state.timer);
  if ($("#live").checked) state.timer = setTimeout(tick, nextDelay());
}

async function init() {
  const r = await getJSON("api/info");
  state.info = r.body;
  state.refreshMs = 1000 * (state.info.refresh_s || 5);
  $("#refresh-s").textContent = state.info.refresh_s || 5;
  $("#links").replaceChildren(...state.info.links.map(l => el("a", { href: l.url, target: "_blank", rel: "noopener", text: l.name })));
  $("#cohort-dimension").replaceChildren(...state.info.dimensions.map(d => el("option", { value: d, text: d })));
  $("#token-hint").textContent = state.info.admin_token_file ? `the lab wrote it to ${state.info.admin_token_file}` : "";
  $("#footer").textContent = `profile ${state.info.profile} · SLO spec ${state.info.spec} · events ${state.info.events_path} · alerts from ${state.info.alerts_source}`;
  $("#admin-token").value = state.token;
  $("#window-select").addEventListener("change", (ev) => { state.windowKey = ev.target.value; refresh(); });
  $("#cohort-dimension").addEventListener("change", refresh);
  $("#live").addEventListener("change", schedule);
  $("#explorer-form").addEventListener("submit", (ev) => { ev.preventDefault(); const id = $("#request-id").value.trim(); if (id) explore(id); });
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault(); state.token = $("#admin-token").value.trim();
    sessionStorage.setItem("obslab-admin-token", state.token); loadControl();
  });
  loadDrills();
  loadControl();
  await refresh();
  schedule();
}

init();
