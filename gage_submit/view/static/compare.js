// Compare: a metric against a flag (scatter) and parallel coordinates of
// the selected runs, drawn with plotly.js as the plotly package ships it.
// plotly.js reads a few HTML-like tags in its texts, so every text from a
// run reaches it with <, > and & as entities: it shows them, never parses them.
// The parallel coordinates are line traces over one axis per column, drawn
// as SVG: plotly's own `parcoords` needs WebGL and eval, which this page's
// Content-Security-Policy does not allow.
"use strict";

(() => {
  const scatter = document.getElementById("scatter");
  if (!scatter || typeof Plotly === "undefined") return;
  const xSelect = document.getElementById("plot-x");
  const ySelect = document.getElementById("plot-y");
  const CONFIG = { displaylogo: false, responsive: true };

  function esc(value) {
    return String(value).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
  }

  function short(name) {
    return name.length > 32 ? `${name.slice(0, 31)}\u2026` : name;
  }

  function isNumber(v) {
    return typeof v === "number" && Number.isFinite(v);
  }

  function fillSelect(select, columns, preferred) {
    select.replaceChildren(...columns.map((c, i) => Gage.el("option", { value: i, text: c.name })));
    if (preferred >= 0) select.value = String(preferred);
  }

  function drawScatter(data, columns) {
    const xi = Number(xSelect.value);
    const yi = Number(ySelect.value);
    const x = columns[xi];
    const y = columns[yi];
    const rows = data.rows;
    Plotly.react(scatter, [{
      type: "scatter",
      mode: "markers+text",
      x: rows.map((r) => r.values[x.index]),
      y: rows.map((r) => r.values[y.index]),
      text: rows.map((r) => esc(r.name)),
      textposition: "top center",
      hovertext: rows.map((r) => `${esc(r.name)}<br>${esc(x.name)}: ${esc(r.values[x.index])}<br>${esc(y.name)}: ${esc(r.values[y.index])}`),
      hoverinfo: "text",
      marker: { size: 11 },
    }], {
      margin: { t: 30, r: 20 },
      xaxis: { title: { text: esc(x.name) } },
      yaxis: { title: { text: esc(y.name) } },
    }, CONFIG).then(() => { scatter.dataset.plotted = String(rows.length); });
  }

  // One axis per column that has a value: numbers scaled to [0, 1] between
  // their min and max, other values as evenly spaced categories.
  function axes(data, columns) {
    const result = [];
    for (const column of columns) {
      const values = data.rows.map((r) => r.values[column.index]);
      const present = values.filter((v) => v !== null && v !== undefined);
      if (!present.length) continue;
      if (present.every(isNumber)) {
        const min = Math.min(...present);
        const max = Math.max(...present);
        const scale = (v) => (isNumber(v) ? (max === min ? 0.5 : (v - min) / (max - min)) : null);
        result.push({ column, scale, low: min, high: max });
      } else {
        const cats = [...new Set(present.map(String))].sort();
        const scale = (v) => (v === null || v === undefined ? null
          : cats.length === 1 ? 0.5 : cats.indexOf(String(v)) / (cats.length - 1));
        result.push({ column, scale, low: cats[0], high: cats[cats.length - 1] });
      }
    }
    return result;
  }

  function drawParallel(data, columns) {
    const element = document.getElementById("parallel");
    const list = axes(data, columns);
    const xs = list.map((_, i) => i);
    const traces = data.rows.map((r) => ({
      type: "scatter",
      mode: "lines+markers",
      name: esc(r.name),
      x: xs,
      y: list.map((a) => a.scale(r.values[a.column.index])),
      hovertext: list.map((a) => `${esc(r.name)}<br>${esc(a.column.name)}: ${esc(r.values[a.column.index])}`),
      hoverinfo: "text",
      connectgaps: false,
    }));
    const shapes = xs.map((i) => ({ type: "line", x0: i, x1: i, y0: 0, y1: 1, line: { color: "#999", width: 1 } }));
    const annotations = list.flatMap((a, i) => [
      { x: i, y: 1, yshift: 12, text: esc(a.high), showarrow: false, font: { size: 10 } },
      { x: i, y: 0, yshift: -12, text: esc(a.low), showarrow: false, font: { size: 10 } },
    ]);
    Plotly.react(element, traces, {
      margin: { t: 40, b: 60, l: 30, r: 20 },
      xaxis: { tickvals: xs, ticktext: list.map((a) => esc(short(a.column.name))), automargin: true, showgrid: false, zeroline: false, range: [-0.3, Math.max(1, xs.length - 0.7)] },
      yaxis: { visible: false, range: [-0.12, 1.12] },
      shapes,
      annotations,
      showlegend: data.rows.length <= 30,
    }, CONFIG).then(() => { element.dataset.plotted = String(data.rows.length); });
  }

  async function main() {
    const response = await fetch(`/api/compare${location.search}`, { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    const columns = [
      ...data.flags.map((name, index) => ({ name, index, kind: "flag" })),
      ...data.metrics.map((name, index) => ({ name, index: data.flags.length + index, kind: "metric" })),
    ];
    if (!columns.length) return;
    const firstFlag = columns.findIndex((c) => c.kind === "flag");
    const firstMetric = columns.findIndex((c) => c.kind === "metric");
    fillSelect(xSelect, columns, firstFlag >= 0 ? firstFlag : 0);
    fillSelect(ySelect, columns, firstMetric >= 0 ? firstMetric : columns.length - 1);
    const redraw = () => drawScatter(data, columns);
    xSelect.addEventListener("change", redraw);
    ySelect.addEventListener("change", redraw);
    redraw();
    drawParallel(data, columns);
  }

  main();
})();
