// The job page's list of the job's inputs and stored parameters (JobView methods).

import { formatNumber } from "./chart.js";
import { h, MODE_NAMES, shortId } from "./dom.js";
import { fmtTime } from "./format.js";
import { datasetInfo, modelLabel } from "./names.js";

export const paramsMethods = {
  renderParams() {
    const job = this.job;
    const p = job.params || {};
    const rows = [
      ["mode", MODE_NAMES[job.mode] || job.mode],
      ["LR stack", this.datasetCell(job.lr_dataset)],
      ["edge map", job.edge_dataset ? this.datasetCell(job.edge_dataset) : "computed by the worker"],
    ];
    if (job.mode === "wsf") rows.push(["SMLM image", this.datasetCell(job.smlm_dataset)]);
    rows.push(["SR model", modelLabel(job.sr_model, "sr")]);
    if (job.mode !== "wsf") rows.push(["DEN model", modelLabel(job.den_model, "den")]);
    rows.push(
      ["iterations", p.iterations],
      ["SR learning rate (SRlr)", p.lr],
      [
        "sigma",
        p.sigma === "auto"
          ? `auto${Number.isFinite(job.sigma_used) ? ` → ${formatNumber(job.sigma_used)}` : ""}`
          : p.sigma,
      ],
      ["ksize", p.ksize],
      ["continuity level", p.continuity_level],
      ["sparse level", p.sparse_level],
      ["consistency level", p.consistency_level],
      ["seed", p.seed],
      ["early stop", p.early_stop ? "yes" : "no"],
      ["tile / window", `${p.tile ?? "–"} / ${p.window ?? "–"}`],
      // Jobs from before these parameters existed have no such keys: shown as "–".
      ["windows per tile", "windows_per_tile" in p ? (p.windows_per_tile ?? "auto") : undefined],
      ["background", p.background],
      ["weight averaging (EMA)", p.ema],
      ["warm-up steps", p.warmup],
      ["haze level", p.haze_level],
      ["device", job.device || "–"],
      ["attempts", job.attempts],
      ["started", fmtTime(job.started_at)],
      ["finished", fmtTime(job.finished_at)],
      ["software", job.software_version],
      ["job id", h("code", {}, job.id)],
    );
    this.paramsNode.replaceChildren(
      ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v ?? "–")]),
    );
  },

  datasetCell(id) {
    const node = h("span", {}, shortId(id));
    datasetInfo(id).then((ds) => {
      if (ds) node.textContent = `${ds.filename} (${ds.shape.join(" × ")}, ${ds.dtype})`;
    });
    return node;
  },
};
