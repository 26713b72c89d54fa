// The operator's dashboard: polls the front door's JSON endpoints and redraws. Every text from
// the log (prompts, agent ids, errors) goes in as text, never as markup.
"use strict";

const EVERY_MS = Number(new URLSearchParams(location.search).get("every") || 2000);
let picked = decodeURIComponent((location.hash.match(/task=([^&]+)/) || [])[1] || "");

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    node.append(child instanceof Node ? child : document.createTextNode(child ?? ""));
  }
  return node;
}

function svg(tag, attrs) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  return node;
}

async function get(path) {
  const response = await fetch(path, { cache: "no-store" });
  const body = await response.json();
  if (!response.ok) throw new Error(body.error ? body.error.message : response.statusText);
  return body;
}

const money = (x) => (x == null ? "–" : Number(x).toPrecision(3));
const percent = (x) => (x == null ? "–" : `${Math.round(100 * x)}%`);
const clock = (iso) => (iso ? new Date(iso).toLocaleTimeString() : "–");
const text = (id, value) => { document.getElementById(id).textContent = value; };

function badge(status) {
  return el("span", { class: `status ${status}` }, status);
}

function showOverview(o) {
  text("open", o.open);
  text("waiting", o.waiting);
  text("closed", o.closed);
  text("reasons", Object.entries(o.closed_by_reason).map(([r, n]) => `${r} ${n}`).join(", "));
  text("pass-rate", o.verified ? percent(o.passed / o.verified) : "–");
  const answered = o.answered ? `; ${o.answered} answered` : "";
  text("verified", `${o.passed} of ${o.verified} verified${answered}`);
  text("spend", money(o.spend));
  text("dead-letters-count", o.dead_letters.count);
  document.getElementById("dead-letters").classList.toggle("alarm", o.dead_letters.count > 0);
  const list = document.getElementById("letters");
  list.replaceChildren(
    ...(o.dead_letters.latest.length
      ? o.dead_letters.latest.map((d) =>
          el("li", {}, `${clock(d.occurred_at)} ${d.topic} (${d.consumer || "?"}): ${d.error}`))
      : [el("li", { class: "quiet" }, "none")]),
  );
}

function showAuctions(auctions) {
  const rows = auctions.map((a) => {
    const row = el("tr", { "data-task-id": a.task_id },
      el("td", {}, a.task_id), el("td", {}, badge(a.status)), el("td", {}, a.mechanism || "–"),
      el("td", {}, a.winner_agent_id || "–"), el("td", { class: "num" }, String(a.bids)),
      el("td", { class: "num" }, money(a.cost)), el("td", {}, a.tenant || "–"),
      el("td", {}, clock(a.posted_at)));
    row.title = a.prompt || "";
    if (a.task_id === picked) row.classList.add("picked");
    row.addEventListener("click", () => pick(a.task_id));
    return row;
  });
  document.querySelector("#auctions tbody").replaceChildren(...rows);
  if (!picked && auctions.length) pick(auctions[0].task_id);
}

function showAgents(agents) {
  const rows = agents.map((a) =>
    el("tr", { "data-agent-id": a.agent_id },
      el("td", {}, a.agent_id),
      el("td", {}, a.status ? badge(a.status) : "–", " ", clock(a.seen)),
      el("td", { class: "num" }, String(a.bids)), el("td", { class: "num" }, String(a.wins)),
      el("td", { class: "num" }, percent(a.pass_rate)), el("td", { class: "num" }, money(a.cost)),
      el("td", { class: "num" }, String(a.tokens))));
  document.querySelector("#agents tbody").replaceChildren(...rows);
}

function showSeries(points) {
  const chart = document.getElementById("chart");
  const width = 1000, height = 160, n = Math.max(points.length, 1);
  const top = Math.max(...points.map((p) => p.cost), 1e-12);
  const shapes = [20, 80, 140].map((y) => svg("line", { class: "grid", x1: 0, x2: width, y1: y, y2: y }));
  const step = width / n;
  points.forEach((p, i) => {
    const h = (p.cost / top) * (height - 20);
    shapes.push(svg("rect", { class: "cost", x: i * step + step * 0.15, width: step * 0.7,
                              y: height - h, height: h }));
  });
  const line = [], window = [];
  points.forEach((p, i) => {
    if (p.passed != null) window.push(p.passed ? 1 : 0);
    if (window.length > 10) window.shift();
    if (window.length) {
      const rate = window.reduce((a, b) => a + b, 0) / window.length;
      line.push(`${(i + 0.5) * step},${height - 10 - rate * (height - 20)}`);
    }
  });
  if (line.length) shapes.push(svg("polyline", { class: "rate", points: line.join(" ") }));
  chart.replaceChildren(...shapes);
  text("chart-from", points.length ? clock(points[0].at) : "no closed auctions yet");
  text("chart-cost", points.length ? `tallest bar: cost ${money(top)}; line: 0–100% passed` : "");
  text("chart-to", points.length ? clock(points[points.length - 1].at) : "");
}

async function pick(taskId) {
  picked = taskId;
  history.replaceState(null, "", `#task=${encodeURIComponent(taskId)}`);
  for (const row of document.querySelectorAll("#auctions tbody tr")) {
    row.classList.toggle("picked", row.dataset.taskId === taskId);
  }
  await showStory();
}

async function showStory() {
  if (!picked) return;
  try {
    const story = await get(`/api/auctions/${encodeURIComponent(picked)}`);
    text("story-task", `${story.task_id} (${story.status || "?"})`);
    text("story", story.story);
  } catch (error) {
    text("story", String(error.message));
  }
}

async function refresh() {
  const problem = document.getElementById("problem");
  try {
    const [overview, auctions, agents, series] = await Promise.all([
      get("/api/overview"), get("/api/auctions?limit=50"), get("/api/agents"),
      get("/api/series?limit=200"),
    ]);
    showOverview(overview);
    showAuctions(auctions.auctions);
    showAgents(agents.agents);
    showSeries(series.points);
    await showStory();
    problem.hidden = true;
    text("refreshed", `refreshed ${new Date().toLocaleTimeString()}, every ${EVERY_MS / 1000} s`);
  } catch (error) {
    problem.hidden = false;
    problem.textContent = `The log cannot be read: ${error.message}`;
  }
}

refresh();
setInterval(refresh, EVERY_MS);
