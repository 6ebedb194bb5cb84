// The live graph page (router/live/page.py serves it): polls graph/stats once a second, draws
// the graph's boxes where the router laid them out (router/live/layout.py), and writes each
// node's and step's figures into them. Plain DOM and SVG, no library.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const POLL_MS = 1000; // the router's window moves by the second; polling faster shows nothing new
const FAILING = 0.05; // a step or node whose error rate reaches 5% is drawn red
const HEADER = 52; // as router/live/layout.py's HEADER_HEIGHT
const ROW = 58; // ROW_HEIGHT

let layoutKey = null; // the layout drawn, as JSON text: redrawn only when a reload changes it
let selected = null; // the trace whose path is shown
let updates = 0;

function el(tag, attrs, parent, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  if (parent) parent.appendChild(node);
  return node;
}

function cut(text, chars) {
  return text.length > chars ? text.slice(0, chars - 1) + "…" : text;
}

function ms(value) {
  if (value === null || value === undefined) return "–";
  return value < 10 ? value.toFixed(2) + " ms" : value < 1000 ? value.toFixed(0) + " ms"
    : (value / 1000).toFixed(2) + " s";
}

function percent(value) {
  return value === null || value === undefined ? "–" : (value * 100).toFixed(value < 0.1 ? 1 : 0) + "%";
}

function rate(value) {
  return value.toFixed(value < 10 ? 1 : 0) + "/s";
}

function draw(layout) {
  const svg = document.getElementById("graph");
  svg.replaceChildren();
  svg.setAttribute("width", layout.width);
  svg.setAttribute("height", layout.height);
  svg.setAttribute("viewBox", `0 0 ${layout.width} ${layout.height}`);
  const defs = el("defs", {}, svg);
  // In user units, so a highlighted (thicker) edge keeps the same arrowhead.
  const marker = el("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5,
    markerWidth: 9, markerHeight: 9, markerUnits: "userSpaceOnUse", orient: "auto" }, defs);
  el("path", { d: "M0,0 L10,5 L0,10 z", class: "arrow" }, marker);
  const boxes = Object.fromEntries(layout.nodes.map((n) => [n.name, n]));
  const edges = el("g", {}, svg);
  for (const node of layout.nodes) {
    const g = el("g", { class: "node idle", "data-node": node.name }, svg);
    el("rect", { class: "box", x: node.x, y: node.y, width: node.width, height: node.height,
      rx: 6 }, g);
    el("rect", { class: "header", x: node.x + 1, y: node.y + 1, width: node.width - 2,
      height: HEADER - 2, rx: 5 }, g);
    el("text", { class: "title", x: node.x + 10, y: node.y + 20 }, g, cut(node.name, 28));
    el("text", { class: "kind", x: node.x + node.width - 10, y: node.y + 20,
      "text-anchor": "end" }, g, node.kind);
    el("text", { class: "figures", "data-figures": "", x: node.x + 10, y: node.y + 40 }, g, "–");
    for (const step of node.steps) {
      const row = el("g", { class: "step idle", "data-node": node.name, "data-step": step.key,
        "data-child": step.node ?? "" }, svg);
      el("rect", { class: "row", x: node.x + 6, y: step.y + 3, width: node.width - 12,
        height: ROW - 6, rx: 4 }, row);
      const what = step.node ? `→ node ${step.node}` : `→ ${step.target}`;
      const tags = (step.shadow ? " (shadow)" : "");
      el("text", { x: node.x + 14, y: step.y + 18 }, row,
        cut(`${step.key} ${what}${tags}`, 50));
      el("text", { class: "figures", "data-figures": "", x: node.x + 14, y: step.y + 33 }, row,
        step.node ? "" : "–");
      el("text", { class: "figures", "data-extra": "", x: node.x + 14, y: step.y + 48 }, row, "");
      if (step.node && boxes[step.node]) {
        const child = boxes[step.node];
        const x1 = node.x + node.width, y1 = step.y + ROW / 2;
        const x2 = child.x, y2 = child.y + HEADER / 2;
        const bend = (x2 - x1) / 2;
        el("path", { class: "edge" + (step.shadow ? " shadow" : ""), "data-node": node.name,
          "data-step": step.key, "data-child": step.node, "marker-end": "url(#arrow)",
          d: `M${x1},${y1} C${x1 + bend},${y1} ${x2 - bend},${y2} ${x2},${y2}` }, edges);
      }
    }
  }
}

function state(figures) {
  if (figures.breaker === "open") return "failing";
  if (figures.count && figures.errorRate >= FAILING) return "failing";
  if (figures.breaker === "half_open" || (figures.count && figures.errorRate > 0)) return "warn";
  if (figures.count || figures.share) return "ok";
  return "idle";
}

// The figures' line, and for a step the line of its route share and breaker.
function describe(figures) {
  const calls = figures.rate === undefined ? "" : [rate(figures.rate),
    "err " + percent(figures.count ? figures.errorRate : null),
    `p50 ${ms(figures.p50Ms)}`, `p99 ${ms(figures.p99Ms)}`].join("  ");
  const extra = [];
  if ("share" in figures) extra.push("share " + percent(figures.share));
  if (figures.breaker) extra.push("breaker " + figures.breaker.replace("_", "-"));
  return [calls, extra.join("  ")];
}

function show(element, figures) {
  element.classList.remove("idle", "ok", "warn", "failing");
  element.classList.add(state(figures));
  const [calls, extra] = describe(figures);
  const text = element.querySelector("[data-figures]");
  text.textContent = calls || text.textContent;
  const more = element.querySelector("[data-extra]");
  if (more) more.textContent = extra;
  for (const name of ["rate", "errorRate", "p50Ms", "p95Ms", "p99Ms", "share", "breaker",
    "count"]) {
    if (name in figures) element.dataset[name] = figures[name] ?? "";
  }
}

function update(data) {
  const key = JSON.stringify(data.layout);
  if (key !== layoutKey) {
    draw(data.layout);
    layoutKey = key;
  }
  document.getElementById("graph-name").textContent = data.graph;
  for (const [name, value] of Object.entries(data.request)) {
    const target = document.querySelector(`[data-total="${name}"]`);
    if (!target) continue;
    target.textContent = name === "rate" ? value.toFixed(1) : name === "errorRate"
      ? percent(data.request.count ? value : null) : ms(value);
  }
  document.getElementById("workers").textContent = data.workers.length === 1
    ? `worker ${data.workers[0].pid}`
    : `${data.workers.length} workers summed (` +
      data.workers.map((w) => `${w.pid}: ${w.requests}`).join(", ") + ")";
  document.getElementById("window").textContent = `last ${data.windowSeconds} s`;
  for (const [name, node] of Object.entries(data.nodes)) {
    const box = document.querySelector(`g.node[data-node="${CSS.escape(name)}"]`);
    if (box) show(box, node);
    for (const [step, figures] of Object.entries(node.steps)) {
      const row = document.querySelector(
        `g.step[data-node="${CSS.escape(name)}"][data-step="${CSS.escape(step)}"]`);
      if (row) show(row, figures);
    }
  }
  listTraces(data.traces);
  updates += 1;
  document.body.dataset.updates = updates;
}

function listTraces(traces) {
  const body = document.querySelector("#traces tbody");
  body.replaceChildren();
  for (const trace of traces) {
    const row = document.createElement("tr");
    row.dataset.trace = trace.id;
    if (selected && selected.id === trace.id) row.classList.add("selected");
    const cells = [new Date(trace.time * 1000).toLocaleTimeString(), trace.status,
      trace.durationMs.toFixed(1), `${trace.method} ${trace.path}`, trace.worker];
    cells.forEach((value, i) => {
      const cell = document.createElement("td");
      cell.textContent = value;
      if (i === 1 && !(trace.status >= 200 && trace.status < 300)) cell.className = "bad";
      row.appendChild(cell);
    });
    row.addEventListener("click", () => choose(trace));
    body.appendChild(row);
  }
}

function choose(trace) {
  selected = trace;
  for (const row of document.querySelectorAll("#traces tbody tr")) {
    row.classList.toggle("selected", row.dataset.trace === trace.id);
  }
  document.getElementById("trace-detail").hidden = false;
  document.getElementById("trace-title").textContent =
    `${trace.method} ${trace.path} → ${trace.status} (${trace.durationMs.toFixed(1)} ms)`;
  const body = document.querySelector("#trace-events tbody");
  body.replaceChildren();
  for (const event of trace.events) {
    const row = document.createElement("tr");
    row.className = "event";
    const what = event.kind === "decision" ? `${event.decision}: ${event.outcome}` : event.kind;
    const cells = [event.startMs.toFixed(2), what, event.node, event.step ?? "",
      event.status ?? "", event.durationMs === undefined ? "" : event.durationMs.toFixed(2),
      event.error ?? event.detail ?? ""];
    for (const value of cells) {
      const cell = document.createElement("td");
      cell.textContent = value;
      row.appendChild(cell);
    }
    body.appendChild(row);
  }
  // The path on the picture: the nodes and steps the request went through.
  for (const item of document.querySelectorAll(".on-path")) item.classList.remove("on-path");
  const nodes = new Set(trace.events.filter((e) => e.kind === "node").map((e) => e.node));
  for (const event of trace.events) {
    if (event.kind === "node") {
      document.querySelector(`g.node[data-node="${CSS.escape(event.node)}"]`)
        ?.classList.add("on-path");
      // The nodeName step that ran it: a step of a node this request went through.
      for (const item of document.querySelectorAll(
        `[data-child="${CSS.escape(event.node)}"]`)) {
        if (nodes.has(item.dataset.node)) item.classList.add("on-path");
      }
    } else if (event.kind === "step" || (event.kind === "decision" && event.outcome !== "failed"
      && event.step !== undefined)) {
      for (const item of document.querySelectorAll(
        `[data-node="${CSS.escape(event.node)}"][data-step="${CSS.escape(event.step)}"]`)) {
        if (!item.matches("g.node")) item.classList.add("on-path");
      }
    }
  }
}

async function poll() {
  const problem = document.getElementById("problem");
  try {
    const response = await fetch("graph/stats", { cache: "no-store" });
    if (!response.ok) throw new Error(`graph/stats answered ${response.status}`);
    update(await response.json());
    problem.hidden = true;
  } catch (error) {
    problem.textContent = `No live figures: ${error.message}`;
    problem.hidden = false;
  }
  setTimeout(poll, POLL_MS);
}

poll();
