// GlobalMart dashboard: reads /api/v1 with an HttpOnly session cookie, for which the link's or
// the form's API key was exchanged once (the page never holds the key).
"use strict";

const LIVE_REFRESH_MS = 10000;
const SLOW_REFRESH_MS = 60000;
const usd = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD", maximumFractionDigits: 0 });
const usd2 = new Intl.NumberFormat("en-US", { style: "currency", currency: "USD" });
const num = new Intl.NumberFormat("en-US");
const PLOT_CONFIG = { displaylogo: false, displayModeBar: false, responsive: true,
                      topojsonURL: "/dashboard/static/geo/" };
const FONT = { family: "DejaVu Sans, Segoe UI, Roboto, sans-serif", size: 12, color: "#1d2433" };
const BLUE = "#2f6fec";

function showKeyForm(message) {
  document.getElementById("key-form").hidden = false;
  document.getElementById("forget-key").hidden = true;
  showError(message);
}

function showError(message) {
  const box = document.getElementById("error");
  box.hidden = !message;
  box.textContent = message || "";
}

class AuthError extends Error {}

async function api(path) {
  const response = await fetch("/api/v1" + path, { credentials: "same-origin" });
  if (response.status === 401) {
    throw new AuthError("Enter an API key (globalmart apikey create NAME), or open the link globalmart up printed.");
  }
  if (response.status === 403) {
    throw new AuthError("The session expired or its key was revoked; enter a valid key.");
  }
  if (!response.ok) throw new Error(`${path}: HTTP ${response.status}`);
  return response.json();
}

function layout(extra) {
  return Object.assign({ font: FONT, margin: { l: 60, r: 20, t: 10, b: 40 },
                         paper_bgcolor: "rgba(0,0,0,0)", plot_bgcolor: "rgba(0,0,0,0)" }, extra);
}

async function draw(id, traces, lay) {
  const div = document.getElementById(id);
  if (div.dataset.empty) {
    div.replaceChildren();
    delete div.dataset.empty;
  }
  await Plotly.react(div, traces, layout(lay), PLOT_CONFIG);
  div.dataset.drawn = "1";
}

// A chart without data says what it waits for instead of drawing bare axes.
function showEmpty(id, text) {
  const div = document.getElementById(id);
  Plotly.purge(div);
  const note = document.createElement("p");
  note.className = "empty waiting";
  note.textContent = text;
  div.replaceChildren(note);
  div.dataset.empty = "1";
  div.dataset.drawn = "1";
}

const WAITING_FOR_STREAM = "No sales yet in this period: the stream writes them as the generator's events arrive.";
const WAITING_FOR_DAGSTER = "No snapshot yet: Dagster builds it once a whole day has landed in the raw layer " +
  "(a first start of globalmart up seeds a few past days for this; the Dagster UI shows the runs).";

function setText(id, text) { document.getElementById(id).textContent = text; }

async function loadKpis() {
  const d = await api("/monitoring/dashboard");
  setText("kpi-revenue", usd.format(d.total_revenue_today));
  setText("kpi-orders", num.format(d.total_transactions_today));
  setText("kpi-aov", usd2.format(d.avg_transaction_value));
  setText("kpi-active", num.format(d.active_users));
  setText("kpi-active-note", `last ${d.active_window_minutes} min · ${num.format(d.active_users_today)} today`);
  setText("kpi-anomalies", num.format(d.anomalies_count));
  const late = (await api("/sales/summary?period=today")).left_out_late;
  setText("kpi-orders-note", late.transaction_count
    ? `transactions · ${num.format(late.transaction_count)} arrived too late to count here (${usd.format(late.total_revenue)}); the warehouse has them`
    : "transactions");
  setText("as-of", d.data_as_of ? "Data as of " + new Date(d.data_as_of).toUTCString() : "No data yet");
}

async function loadLive() {
  const d = await api("/sales/timeline?minutes=60");
  if (d.points.length === 0) return showEmpty("chart-live", "No sales in the last 60 minutes: the stream writes each minute as events arrive.");
  const x = d.points.map(p => p.window_start);
  await draw("chart-live", [{
    x, y: d.points.map(p => p.revenue), type: "scatter", mode: "lines+markers", name: "Revenue",
    line: { color: BLUE, width: 2 }, fill: "tozeroy", fillcolor: "rgba(47,111,236,.12)",
    hovertemplate: "%{x|%H:%M} UTC<br>%{y:$,.2f}<extra></extra>",
  }], { xaxis: { title: { text: "Minute (UTC)" }, type: "date" },
        yaxis: { title: { text: "Revenue (USD / min)" }, tickprefix: "$", rangemode: "tozero" } });
}

async function loadMap() {
  const d = await api("/sales/by-country?period=week");
  if (d.countries.length === 0) return showEmpty("chart-map", WAITING_FOR_STREAM);
  await draw("chart-map", [{
    type: "choropleth", locationmode: "ISO-3", locations: d.countries.map(c => c.iso3),
    z: d.countries.map(c => c.revenue), text: d.countries.map(c => c.country),
    customdata: d.countries.map(c => [c.orders, c.avg_order_value]),
    colorscale: [[0, "#cfe0fc"], [1, "#1742a8"]], marker: { line: { color: "#fff", width: 0.5 } },
    colorbar: { title: { text: "USD" }, tickprefix: "$", thickness: 12 },
    hovertemplate: "<b>%{text}</b><br>Revenue %{z:$,.0f}<br>Orders %{customdata[0]:,}<br>AOV %{customdata[1]:$,.2f}<extra></extra>",
  }], { margin: { l: 0, r: 0, t: 0, b: 0 },
        geo: { projection: { type: "natural earth" }, showframe: false, showcoastlines: false,
               showland: true, landcolor: "#e9edf3", showcountries: true, countrycolor: "#fff",
               lataxis: { range: [20, 72] }, lonaxis: { range: [-135, 30] },
               bgcolor: "rgba(0,0,0,0)" } });
}

async function loadCategories() {
  const d = await api("/sales/by-category?period=week");
  if (d.categories.length === 0) return showEmpty("chart-categories", WAITING_FOR_STREAM);
  const rows = d.categories.slice(0, 12).reverse();
  await draw("chart-categories", [{
    type: "bar", orientation: "h", y: rows.map(c => c.category), x: rows.map(c => c.revenue),
    marker: { color: BLUE }, customdata: rows.map(c => [c.units_sold, c.share * 100]),
    hovertemplate: "<b>%{y}</b><br>%{x:$,.0f}<br>%{customdata[0]:,} units · %{customdata[1]:.1f}%<extra></extra>",
  }], { margin: { l: 130, r: 20, t: 10, b: 40 }, xaxis: { title: { text: "Revenue (USD)" }, tickprefix: "$" } });
}

async function loadSegments() {
  const d = await api("/customers/segments/distribution");
  if (d.segments.length === 0) return showEmpty("chart-segments", WAITING_FOR_DAGSTER);
  await draw("chart-segments", [{
    type: "pie", hole: 0.45, labels: d.segments.map(s => s.segment),
    values: d.segments.map(s => s.customer_count), sort: false,
    customdata: d.segments.map(s => s.avg_customer_value),
    hovertemplate: "<b>%{label}</b><br>%{value:,} customers (%{percent})<br>avg %{customdata:$,.2f}<extra></extra>",
  }], { margin: { l: 10, r: 10, t: 10, b: 10 }, legend: { orientation: "v" } });
}

async function loadProducts() {
  const d = await api("/products/top-performers?top_n=10");
  if (d.top_products.length === 0) return showEmpty("chart-products", WAITING_FOR_DAGSTER);
  const rows = d.top_products.slice().reverse();
  await draw("chart-products", [{
    type: "bar", orientation: "h", y: rows.map(p => p.product_name), x: rows.map(p => p.total_revenue),
    marker: { color: "#12b886" }, customdata: rows.map(p => [p.category, p.units_sold]),
    hovertemplate: "<b>%{y}</b> (%{customdata[0]})<br>%{x:$,.0f} · %{customdata[1]:,} units<extra></extra>",
  }], { margin: { l: 170, r: 20, t: 10, b: 40 }, xaxis: { title: { text: "Revenue (USD)" }, tickprefix: "$" },
        yaxis: { automargin: true } });
}

async function loadAlerts() {
  const d = await api("/alerts?hours=24&limit=10");
  const body = document.querySelector("#alerts tbody");
  body.replaceChildren();
  if (d.items.length === 0) {
    const row = body.insertRow();
    const cell = row.insertCell();
    cell.colSpan = 5; cell.className = "empty"; cell.textContent = "No alerts in the last 24 hours";
  }
  for (const a of d.items) {
    const row = body.insertRow();
    row.insertCell().textContent = new Date(a.created_at).toISOString().slice(0, 19).replace("T", " ");
    const badge = document.createElement("span");
    badge.className = "sev sev-" + a.severity; badge.textContent = a.severity;
    row.insertCell().appendChild(badge);
    row.insertCell().textContent = a.alert_type;
    row.insertCell().textContent = a.entity_id;
    row.insertCell().textContent = a.message;
  }
  document.getElementById("alerts").dataset.drawn = "1";
}

async function run(loaders) {
  const results = await Promise.allSettled(loaders.map(load => load()));
  const failed = results.filter(r => r.status === "rejected").map(r => r.reason);
  if (failed.some(e => e instanceof AuthError)) {
    showKeyForm(failed.find(e => e instanceof AuthError).message);
    return false;
  }
  showError(failed.length ? "Some panels failed to load: " + failed.map(e => e.message).join("; ") : "");
  document.getElementById("forget-key").hidden = false;
  return true;
}

let timers = [];

async function start() {
  timers.forEach(clearInterval);
  timers = [];
  const ok = await run([loadKpis, loadLive, loadMap, loadCategories, loadSegments, loadProducts, loadAlerts]);
  document.body.dataset.loaded = ok ? "1" : "0";
  if (!ok) return;
  timers.push(setInterval(() => run([loadKpis, loadLive]), LIVE_REFRESH_MS));
  timers.push(setInterval(() => run([loadMap, loadCategories, loadAlerts]), SLOW_REFRESH_MS));
  timers.push(setInterval(() => run([loadSegments, loadProducts]), 5 * SLOW_REFRESH_MS));
}

document.getElementById("key-form").addEventListener("submit", async event => {
  event.preventDefault();
  const input = document.getElementById("key-input");
  const key = input.value.trim();
  if (!key) return;
  const response = await fetch("/dashboard/session", {
    method: "POST", credentials: "same-origin", headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ key }) });
  input.value = "";
  if (!response.ok) return showKeyForm("The API key was refused; enter a valid key.");
  document.getElementById("key-form").hidden = true;
  start();
});

document.getElementById("forget-key").addEventListener("click", async () => {
  timers.forEach(clearInterval);
  await fetch("/dashboard/session", { method: "DELETE", credentials: "same-origin" });
  showKeyForm("");
});

if (window.location.hash === "#key-refused") {
  history.replaceState(null, "", window.location.pathname);
  showKeyForm("The API key in the link was refused; enter a valid key.");
} else {
  start();
}
