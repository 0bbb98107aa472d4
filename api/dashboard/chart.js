// A small hand-written SVG line chart (no library: the dashboard loads nothing from the
// network). A figure holds one or more stacked panels sharing the x axis (iterations); each
// panel has its own y axis, linear or log10.

const SVG_NS = "http://www.w3.org/2000/svg";

function el(name, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

export function formatNumber(v) {
  if (v === null || v === undefined || !Number.isFinite(v)) return "–";
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1e4 || a < 1e-3) return v.toExponential(2);
  if (a >= 100) return v.toFixed(1);
  return v.toPrecision(3);
}

function niceStep(span, count) {
  const raw = span / Math.max(count, 1);
  const mag = 10 ** Math.floor(Math.log10(raw));
  const norm = raw / mag;
  // Nearest nice step (not the next larger one): 3 to 6 ticks rather than sometimes 2.
  const nice = norm < 1.5 ? 1 : norm < 3 ? 2 : norm < 7 ? 5 : 10;
  return nice * mag;
}

function linearTicks(lo, hi, count = 4) {
  const step = niceStep(hi - lo, count);
  const ticks = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) {
    ticks.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  }
  ticks.step = step;
  return ticks;
}

/** A tick label with as many decimals as the tick step needs (0.14378 vs 0.14380). */
function tickLabel(v, step) {
  if (!step) return formatNumber(v);
  if (v === 0) return "0";
  const a = Math.abs(v);
  const digits = Math.ceil(Math.log10(a / step) + 1e-9);
  if (a >= 1e5 || a < 1e-3) return v.toExponential(Math.max(1, Math.min(6, digits)));
  const mag = Math.floor(Math.log10(step) + 1e-9);
  return v.toFixed(Math.max(0, Math.min(8, -mag)));
}

/** y domain (padded) and ticks for the values of one panel. */
function yScale(values, log, count) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (log) {
    let a = Math.log10(lo);
    let b = Math.log10(hi);
    if (b - a < 1e-9) {
      a -= 0.5;
      b += 0.5;
    }
    const pad = (b - a) * 0.08;
    a -= pad;
    b += pad;
    let ticks;
    if (b - a >= 1.5) {
      ticks = [];
      for (let e = Math.ceil(a); e <= Math.floor(b); e += 1) ticks.push(10 ** e);
    } else {
      const lin = linearTicks(10 ** a, 10 ** b, count);
      ticks = lin.filter((t) => t > 0);
      ticks.step = lin.step;
    }
    return { lo: a, hi: b, map: (v) => Math.log10(v), ticks, step: ticks.step };
  }
  if (hi - lo < 1e-12 * Math.max(1, Math.abs(hi))) {
    const d = Math.abs(hi) * 0.05 || 1;
    lo -= d;
    hi += d;
  }
  const pad = (hi - lo) * 0.08;
  lo -= pad;
  hi += pad;
  const ticks = linearTicks(lo, hi, count);
  return { lo, hi, map: (v) => v, ticks, step: ticks.step };
}

/**
 * Build an <svg> figure.
 * opts: {title, xMax, highlight (x or null), width, panelHeight,
 *        panels: [{label, log, series: [{key, name, color, points: [[x, y], ...]}]}]}
 * Non-finite points, and points <= 0 on a log panel, are left out (the line breaks there).
 */
export function lineChart(opts) {
  const width = opts.width ?? 560;
  const panelH = opts.panelHeight ?? 200;
  const gap = 18;
  const m = { left: 84, right: 16, top: 14, bottom: 34 };
  const panels = opts.panels;
  const height = m.top + panels.length * panelH + (panels.length - 1) * gap + m.bottom;
  const svg = el("svg", {
    viewBox: `0 0 ${width} ${height}`,
    class: "chart",
    role: "img",
    "aria-label": opts.title,
  });
  svg.append(el("title", {}, opts.title));

  const xMax = Math.max(1, opts.xMax ?? 1);
  const plotW = width - m.left - m.right;
  const X = (x) => m.left + (x / xMax) * plotW;
  const xStep = Math.max(1, Math.ceil(xMax / 10));

  panels.forEach((panel, i) => {
    const top = m.top + i * (panelH + gap);
    const bottom = top + panelH;
    const g = el("g", { class: "panel", "data-panel": panel.label });
    svg.append(g);
    const pts = (s) =>
      s.points.filter(([, y]) => Number.isFinite(y) && (!panel.log || y > 0));
    const values = panel.series.flatMap((s) => pts(s).map(([, y]) => y));

    g.append(el("rect", { x: m.left, y: top, width: plotW, height: panelH, class: "plot-bg" }));
    // x grid and, on the last panel, x tick labels
    for (let x = 0; x <= xMax; x += xStep) {
      g.append(el("line", { x1: X(x), x2: X(x), y1: top, y2: bottom, class: "grid" }));
      if (i === panels.length - 1) {
        g.append(el("text", { x: X(x), y: bottom + 16, class: "tick x" }, String(x)));
      }
    }
    // panel label (y axis title), written vertically beside the axis
    const cy = top + panelH / 2;
    g.append(
      el(
        "text",
        { x: 12, y: cy, class: "axis-label", transform: `rotate(-90 12 ${cy})` },
        panel.label + (panel.log ? " (log)" : ""),
      ),
    );
    if (opts.highlight !== null && opts.highlight !== undefined) {
      const hx = X(opts.highlight);
      g.append(el("line", { x1: hx, x2: hx, y1: top, y2: bottom, class: "highlight" }));
      if (i === 0) {
        // Left of the line when there is no room on its right.
        const right = hx + 80 < m.left + plotW;
        g.append(
          el(
            "text",
            { x: right ? hx + 4 : hx - 4, y: top + 12, class: "highlight-label", "text-anchor": right ? "start" : "end" },
            "recommended",
          ),
        );
      }
    }
    if (!values.length) {
      g.append(
        el("text", { x: m.left + plotW / 2, y: cy, class: "empty" }, "no values yet"),
      );
      return;
    }
    // About one tick per 45 px: small panels stay legible.
    const ys = yScale(values, panel.log, Math.max(2, Math.floor(panelH / 45)));
    const Y = (v) => bottom - ((ys.map(v) - ys.lo) / (ys.hi - ys.lo)) * panelH;
    // Thin the ticks of a short panel so that their labels never touch.
    let ticks = ys.ticks;
    while (ticks.length > Math.max(2, Math.floor(panelH / 20))) {
      ticks = ticks.filter((_, j) => j % 2 === 0);
    }
    for (const t of ticks) {
      const y = Y(t);
      if (y < top - 0.5 || y > bottom + 0.5) continue;
      g.append(el("line", { x1: m.left, x2: m.left + plotW, y1: y, y2: y, class: "grid" }));
      g.append(el("text", { x: m.left - 6, y: y + 4, class: "tick y" }, tickLabel(t, ys.step)));
    }
    for (const s of panel.series) {
      const p = pts(s);
      if (!p.length) continue;
      const sg = el("g", { class: "series", "data-series": s.key });
      // Break the line where a point is missing rather than bridging the gap.
      let d = "";
      let prev = null;
      for (const [x, y] of p) {
        d += `${prev !== null && x === prev + 1 ? "L" : "M"}${X(x).toFixed(1)},${Y(y).toFixed(1)}`;
        prev = x;
      }
      sg.append(el("path", { d, stroke: s.color, class: "line" }));
      for (const [x, y] of p) {
        const c = el("circle", { cx: X(x), cy: Y(y), r: 3.2, fill: s.color, class: "point" });
        c.append(el("title", {}, `${s.name}, iteration ${x}: ${formatNumber(y)}`));
        sg.append(c);
      }
      g.append(sg);
    }
  });
  svg.append(
    el("text", { x: m.left + plotW / 2, y: height - 4, class: "axis-label" }, "iteration"),
  );
  return svg;
}
