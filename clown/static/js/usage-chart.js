// The usage chart: tokens per day as bars, cost per day as a line, drawn in SVG.

const SVG = "http://www.w3.org/2000/svg";
const WIDTH = 760;
const HEIGHT = 260;
const PAD = { top: 16, right: 64, bottom: 40, left: 64 };

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

export function dayTokens(tokens = {}) {
  return (tokens.input_tokens || 0) + (tokens.output_tokens || 0)
    + (tokens.cache_creation_input_tokens || 0) + (tokens.cache_read_input_tokens || 0);
}

function niceMax(value) {
  if (value <= 0) return 1;
  const power = 10 ** Math.floor(Math.log10(value));
  for (const step of [1, 2, 4, 6, 8, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

const compact = new Intl.NumberFormat(undefined, { notation: "compact", maximumFractionDigits: 1 });

/**
 * Draw the chart into `container` from `byDay` ({"YYYY-MM-DD": {tokens, cost}}). Each bar
 * carries data-day, data-tokens and data-cost; the SVG has a text summary for screen readers.
 */
export function drawUsageChart(container, byDay) {
  const days = Object.keys(byDay || {}).sort();
  container.replaceChildren();
  if (!days.length) {
    container.append(Object.assign(document.createElement("p"), { className: "empty", textContent: "No usage in this period." }));
    return;
  }
  const points = days.map((day) => ({ day, tokens: dayTokens(byDay[day].tokens), cost: (byDay[day].cost && byDay[day].cost.total_cost) || 0 }));
  const maxTokens = niceMax(Math.max(...points.map((p) => p.tokens)));
  const maxCost = niceMax(Math.max(...points.map((p) => p.cost)));
  const plotW = WIDTH - PAD.left - PAD.right;
  const plotH = HEIGHT - PAD.top - PAD.bottom;
  const slot = plotW / points.length;
  const barW = Math.max(2, Math.min(40, slot * 0.7));
  const y = (v, max) => PAD.top + plotH - (v / max) * plotH;

  const totalTokens = points.reduce((s, p) => s + p.tokens, 0);
  const totalCost = points.reduce((s, p) => s + p.cost, 0);
  const chart = svg("svg", { viewBox: `0 0 ${WIDTH} ${HEIGHT}`, role: "img", class: "usage-chart", "aria-labelledby": "usage-chart-title" });
  chart.append(svg("title", { id: "usage-chart-title" },
    `Tokens and cost per day, ${days[0]} to ${days[days.length - 1]}: ${totalTokens.toLocaleString()} tokens, $${totalCost.toFixed(2)}`));

  const grid = svg("g", { class: "grid" });
  for (let i = 0; i <= 4; i++) {
    const gy = PAD.top + (plotH * i) / 4;
    grid.append(svg("line", { x1: PAD.left, x2: WIDTH - PAD.right, y1: gy, y2: gy }));
    grid.append(svg("text", { x: PAD.left - 6, y: gy + 4, "text-anchor": "end", class: "axis tokens-axis" }, compact.format(maxTokens * (1 - i / 4))));
    grid.append(svg("text", { x: WIDTH - PAD.right + 6, y: gy + 4, "text-anchor": "start", class: "axis cost-axis" }, `$${(maxCost * (1 - i / 4)).toFixed(maxCost < 4 ? 2 : 0)}`));
  }
  chart.append(grid);

  const bars = svg("g", { class: "bars" });
  const labelEvery = Math.ceil(points.length / 12);
  points.forEach((p, i) => {
    const cx = PAD.left + slot * (i + 0.5);
    const top = y(p.tokens, maxTokens);
    const bar = svg("rect", { x: cx - barW / 2, y: top, width: barW, height: PAD.top + plotH - top, class: "bar", "data-day": p.day, "data-tokens": p.tokens, "data-cost": p.cost });
    bar.append(svg("title", {}, `${p.day}: ${p.tokens.toLocaleString()} tokens, $${p.cost.toFixed(4)}`));
    bars.append(bar);
    if (i % labelEvery === 0) bars.append(svg("text", { x: cx, y: HEIGHT - PAD.bottom + 16, "text-anchor": "middle", class: "axis" }, p.day.slice(5)));
  });
  chart.append(bars);

  const line = points.map((p, i) => `${i ? "L" : "M"}${(PAD.left + slot * (i + 0.5)).toFixed(1)},${y(p.cost, maxCost).toFixed(1)}`).join(" ");
  chart.append(svg("path", { d: line, class: "cost-line" }));
  points.forEach((p, i) => chart.append(svg("circle", { cx: PAD.left + slot * (i + 0.5), cy: y(p.cost, maxCost), r: 3, class: "cost-point" })));

  const legend = svg("g", { class: "legend", transform: `translate(${PAD.left}, ${HEIGHT - 10})` });
  legend.append(svg("rect", { x: 0, y: -9, width: 10, height: 10, class: "bar" }), svg("text", { x: 14, y: 0 }, "tokens (left axis)"));
  legend.append(svg("line", { x1: 150, x2: 164, y1: -4, y2: -4, class: "cost-line" }), svg("text", { x: 168, y: 0 }, "cost (right axis)"));
  chart.append(legend);
  container.append(chart);
}
