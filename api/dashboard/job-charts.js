// The job page's loss and metric charts and the table of values per iteration
// (JobView methods).

import { formatNumber, lineChart } from "./chart.js";
import { $$, h } from "./dom.js";

const LOSS_SERIES = [
  ["total", "total", "#1f2933"],
  ["degradation", "degradation", "#0072b2"],
  ["hessian", "hessian", "#e69f00"],
  ["sparse", "sparse", "#009e73"],
  ["rotation", "rotation", "#cc79a7"],
  ["haze", "haze", "#d62728"],
  ["den", "DEN", "#56b4e9"],
  ["wsf", "WSF", "#d55e00"],
  // What the recommendation judges: fidelity on fixed windows (iteration 0 included).
  ["fidelity", "fidelity (judged)", "#000000"],
  ["objective", "objective", "#7f7f7f"],
];
const EXTRA_COLORS = ["#8c564b", "#7f7f7f", "#bcbd22", "#17becf"];
const METRIC_SERIES = [
  ["rse", "RSE", "#0072b2"],
  ["rsp", "RSP", "#d55e00"],
  ["resolution", "decorrelation res. (SR px)", "#009e73"],
  // The resolution the recommendation guards: FRC of even vs odd frames (not fooled by texture).
  ["frc_resolution", "FRC res. (SR px, guarded)", "#cc79a7"],
  // Haze the fine-tuning added: SR where the pretrained output is empty / on its structure.
  ["haze_ratio", "haze ratio (guarded)", "#d62728"],
];

export const chartMethods = {
  renderCharts() {
    const its = this.iterations;
    const keys = [];
    for (const it of its) for (const k of Object.keys(it.losses || {})) if (!keys.includes(k)) keys.push(k);
    const known = LOSS_SERIES.filter(([k]) => keys.includes(k));
    const extra = keys
      .filter((k) => !LOSS_SERIES.some(([n]) => n === k))
      .map((k, i) => [k, k, EXTRA_COLORS[i % EXTRA_COLORS.length]]);
    const series = [...known, ...extra].map(([key, name, color]) => ({
      key,
      name,
      color,
      points: its
        .filter((it) => it.losses && typeof it.losses[key] === "number")
        .map((it) => [it.iteration, it.losses[key]]),
    }));
    const values = series.flatMap((s) => s.points.map(([, y]) => y)).filter(Number.isFinite);
    const positive = values.filter((v) => v > 0);
    if (this.logScale === null) {
      // Components differ by orders of magnitude: log by default when the data spans them.
      const spread = positive.length ? Math.max(...positive) / Math.min(...positive) : 1;
      this.logToggle.checked = positive.length === values.length && spread > 30;
    }
    const log = this.logToggle.checked;
    const xMax = Math.max(this.job.iterations_total, ...its.map((it) => it.iteration), 1);
    const highlight = this.job.recommended_iteration ?? null;
    this.lossChart.replaceChildren(
      lineChart({
        title: "Training losses per iteration",
        xMax,
        highlight,
        panelHeight: 236,
        panels: [
          {
            label: "loss",
            log,
            series: series.filter((s) => !this.hiddenSeries.has(s.key)),
          },
        ],
      }),
    );
    this.lossLegend.replaceChildren(
      ...series.map((s) =>
        h(
          "button",
          {
            type: "button",
            class: "legend-item",
            "aria-pressed": String(!this.hiddenSeries.has(s.key)),
            title: `show or hide ${s.name}`,
            onclick: () => {
              if (this.hiddenSeries.has(s.key)) this.hiddenSeries.delete(s.key);
              else this.hiddenSeries.add(s.key);
              this.renderCharts();
            },
          },
          h("span", { class: "swatch", "data-color": s.color }),
          s.name,
        ),
      ),
    );
    // Colours are data, set through the CSSOM (allowed by the page's CSP, unlike style="").
    for (const sw of $$(".swatch", this.lossLegend)) sw.style.background = sw.dataset.color;

    this.metricChart.replaceChildren(
      lineChart({
        title: "RSE, RSP and resolution (decorrelation, FRC) per iteration",
        xMax,
        highlight,
        panelHeight: 62,
        panels: METRIC_SERIES.map(([key, name, color]) => ({
          label: { resolution: "decorr.", frc_resolution: "FRC", haze_ratio: "haze" }[key] || name,
          log: false,
          series: [
            {
              key,
              name,
              color,
              points: its.filter((it) => Number.isFinite(it[key])).map((it) => [it.iteration, it[key]]),
            },
          ],
        })),
      }),
    );
    this.renderTable(series);
  },

  renderTable(series) {
    const head = ["iteration", ...series.map((s) => s.name), "RSE", "RSP", "decorr. res.", "FRC res.", "haze ratio", "seconds"];
    const rows = this.iterations.map((it) =>
      h(
        "tr",
        { class: it.recommended ? "recommended" : null },
        h("th", { scope: "row" }, String(it.iteration), it.recommended ? " ★" : ""),
        ...series.map((s) => h("td", {}, formatNumber(it.losses?.[s.key]))),
        h("td", {}, formatNumber(it.rse)),
        h("td", {}, formatNumber(it.rsp)),
        h("td", {}, formatNumber(it.resolution)),
        h("td", {}, formatNumber(it.frc_resolution)),
        h("td", {}, formatNumber(it.haze_ratio)),
        h("td", {}, formatNumber(it.seconds)),
      ),
    );
    this.table.replaceChildren(
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ...head.map((c) => h("th", { scope: "col" }, c)))),
        h("tbody", {}, ...rows),
      ),
    );
  },
};
