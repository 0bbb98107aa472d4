// One job's page: loads the job, builds the page skeleton once and keeps it up to date.
// The page's parts live in their own modules as JobView methods (status, live events, charts,
// gallery, reconstructions, parameters), mixed into the class below.

import { getJSON } from "./api.js";
import { h, shortId } from "./dom.js";
import { chartMethods } from "./job-charts.js";
import { eventMethods } from "./job-events.js";
import { galleryMethods } from "./job-gallery.js";
import { paramsMethods } from "./job-params.js";
import { reconstructionMethods } from "./job-reconstructions.js";
import { statusMethods } from "./job-status.js";

export class JobView {
  constructor(id, root) {
    this.id = id;
    this.root = root;
    this.abort = new AbortController();
    this.objectUrls = new Set();
    this.job = null;
    this.iterations = [];
    this.recs = [];
    this.progressInfo = null;
    this.logScale = null; // null: chosen from the data until the user toggles it
    this.hiddenSeries = new Set();
    this.cards = new Map(); // iteration -> card element
    this.previewUrls = new Map(); // iteration -> object URL
    this.recNodes = new Map(); // reconstruction id -> element
    this.reloadTimer = null;
    this.recTimer = null;
    this.cancelArmed = null;
  }

  get alive() {
    return !this.abort.signal.aborted;
  }

  destroy() {
    this.abort.abort();
    clearTimeout(this.reloadTimer);
    clearTimeout(this.recTimer);
    clearTimeout(this.cancelArmed);
    for (const url of this.objectUrls) URL.revokeObjectURL(url);
    this.objectUrls.clear();
  }

  objectUrl(blob) {
    const url = URL.createObjectURL(blob);
    this.objectUrls.add(url);
    return url;
  }

  async start() {
    this.root.replaceChildren(h("p", { class: "muted" }, "Loading job…"));
    const signal = this.abort.signal;
    try {
      const [job, its, recs] = await Promise.all([
        getJSON(`v1/jobs/${this.id}`, { signal }),
        getJSON(`v1/jobs/${this.id}/iterations`, { signal }),
        getJSON(`v1/jobs/${this.id}/reconstructions?limit=100`, { signal }),
      ]);
      if (!this.alive) return;
      this.job = job;
      this.iterations = its.items;
      this.recs = recs.items;
    } catch (err) {
      if (!this.alive || err.name === "AbortError") return;
      this.root.replaceChildren(
        h("h1", {}, `Job ${shortId(this.id)}`),
        h("p", { class: "banner error", role: "alert" }, err.message),
        h("p", {}, h("a", { href: "#/new" }, "Submit a new job")),
      );
      return;
    }
    this.build();
    this.renderAll();
    this.follow();
    this.pollReconstructions();
  }

  // -- skeleton, built once; the parts below are updated in place --

  build() {
    const job = this.job;
    this.cancelButton = h(
      "button",
      { type: "button", class: "danger", onclick: () => this.onCancel() },
      "Cancel job",
    );
    this.liveNode = h("span", { class: "live", "data-status": "connecting" }, "connecting…");
    // Not a live region itself (it changes every second while running): only state
    // changes are announced, through the visually hidden announcer.
    this.statusNode = h("div", { class: "job-status card" });
    this.announcer = h("p", { class: "sr-only", "aria-live": "polite" });
    this.lossChart = h("div", { class: "chart-box", id: "loss-chart" });
    this.lossLegend = h("div", { class: "legend", role: "group", "aria-label": "loss series" });
    this.logToggle = h("input", {
      type: "checkbox",
      id: "log-scale",
      onchange: (e) => {
        this.logScale = e.target.checked;
        this.renderCharts();
      },
    });
    this.metricChart = h("div", { class: "chart-box", id: "metric-chart" });
    this.table = h("div", { class: "table-wrap" });
    this.gallery = h("div", { class: "gallery", id: "gallery" });
    this.recsNode = h("div", { class: "recs", id: "reconstructions" });
    this.recsEmpty = h(
      "p",
      { class: "muted" },
      "None yet: pick an iteration above and press Reconstruct to apply it to the whole stack.",
    );
    this.paramsNode = h("dl", { class: "params" });
    this.logNode = h("ol", { class: "event-log" });

    const title = h("h1", {}, "Job ", h("code", {}, shortId(job.id)));
    this.subtitle = h("p", { class: "muted" });
    this.root.replaceChildren(
      h(
        "header",
        { class: "job-head" },
        h("div", {}, title, this.subtitle),
        h("div", { class: "job-actions" }, this.liveNode, this.cancelButton),
      ),
      this.announcer,
      this.statusNode,
      h(
        "div",
        { class: "charts" },
        h(
          "section",
          { class: "card", "aria-labelledby": "loss-heading" },
          h(
            "div",
            { class: "card-head" },
            h("h2", { id: "loss-heading" }, "Losses"),
            h("label", { class: "check" }, this.logToggle, " log scale"),
          ),
          this.lossChart,
          this.lossLegend,
        ),
        h(
          "section",
          { class: "card", "aria-labelledby": "metric-heading" },
          h(
            "div",
            { class: "card-head" },
            h("h2", { id: "metric-heading" }, "Quality vs the LR input"),
          ),
          this.metricChart,
          h(
            "p",
            { class: "hint" },
            "RSE / RSP: SQUIRREL error and Pearson correlation of the degraded SR frame vs the LR " +
              "frame; decorrelation and FRC resolution in SR pixels (lower is finer). The " +
              "recommendation judges the fidelity and refuses iterations whose FRC resolution " +
              "(even vs odd frames: texture made from noise does not count) or RSE got worse.",
          ),
        ),
      ),
      h(
        "details",
        { class: "card values" },
        h("summary", {}, "Table of values"),
        this.table,
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "gallery-heading" },
        h(
          "div",
          { class: "card-head" },
          h("h2", { id: "gallery-heading" }, "Iterations"),
          h("span", { class: "hint" }, "preview of SR frame 0 · iteration 0 is the pretrained network"),
        ),
        this.gallery,
      ),
      h(
        "section",
        { class: "card", "aria-labelledby": "recs-heading" },
        h("h2", { id: "recs-heading" }, "Reconstructions"),
        this.recsEmpty,
        this.recsNode,
      ),
      h(
        "div",
        { class: "two-col" },
        h(
          "section",
          { class: "card", "aria-labelledby": "params-heading" },
          h("h2", { id: "params-heading" }, "Parameters"),
          this.paramsNode,
        ),
        h(
          "section",
          { class: "card", "aria-labelledby": "log-heading" },
          h("h2", { id: "log-heading" }, "Event log"),
          this.logNode,
        ),
      ),
    );
  }

  renderAll() {
    this.renderStatus();
    this.renderCharts();
    this.renderGallery();
    this.renderRecs();
    this.renderParams();
  }
}

Object.assign(
  JobView.prototype,
  statusMethods,
  eventMethods,
  chartMethods,
  galleryMethods,
  reconstructionMethods,
  paramsMethods,
);
