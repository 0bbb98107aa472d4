// The job page's status card and its two-step cancel button (JobView methods).

import { postJSON } from "./api.js";
import { badge, FINAL, h, MODE_NAMES, shortId } from "./dom.js";
import { fmtDuration, fmtTime } from "./format.js";
import { formatNumber } from "./chart.js";
import { refreshJobs } from "./job-list.js";
import { datasetInfo } from "./names.js";

export const statusMethods = {
  renderStatus() {
    const job = this.job;
    const pct = Math.round((job.progress || 0) * 100);
    const done = job.iterations_done;
    const total = job.iterations_total;
    let text;
    if (job.state === "queued") text = "Waiting for a worker.";
    else if (job.state === "running") {
      const k = Math.min(done + 1, total);
      text = `Fine-tuning iteration ${k} of ${total} · ${pct}%`;
      // Progress events are throttled: only show a loss that belongs to this iteration.
      if (this.progressInfo?.iteration === k && Number.isFinite(this.progressInfo.loss)) {
        text += ` · loss ${formatNumber(this.progressInfo.loss)}`;
      }
    } else if (job.state === "succeeded") {
      text = `Finished ${done} iteration${done === 1 ? "" : "s"} in ${fmtDuration(job.started_at, job.finished_at)}.`;
      text +=
        job.recommended_iteration !== null && job.recommended_iteration !== undefined
          ? ` Recommended: iteration ${job.recommended_iteration}.`
          : " No iteration met the recommendation rule.";
    } else if (job.state === "failed") text = `Failed after ${done} iteration${done === 1 ? "" : "s"}.`;
    else text = `Cancelled after ${done} iteration${done === 1 ? "" : "s"}.`;
    if (job.cancel_requested && !FINAL.has(job.state)) {
      text += " Cancel requested: the worker stops at its next step.";
    }
    this.statusNode.replaceChildren(
      h(
        "div",
        { class: "status-line" },
        badge(job.state),
        h("progress", { max: 1, value: job.progress || 0, "aria-label": "job progress" }),
        h("span", { class: "pct" }, `${pct}%`),
        h("span", { class: "iters" }, `${done} / ${total} iterations`),
      ),
      h("p", { class: "status-text" }, text),
    );
    if (job.error) this.statusNode.append(h("p", { class: "banner error", role: "alert" }, job.error));
    // What the worker could not do (e.g. "metrics unavailable: nanopyx is not installed").
    for (const note of job.notes || []) {
      this.statusNode.append(h("p", { class: "banner warning job-note" }, note));
    }
    this.subtitle.textContent = "";
    datasetInfo(job.lr_dataset).then((ds) => {
      const what = ds ? `${ds.filename} (${ds.shape.join(" × ")})` : shortId(job.lr_dataset);
      this.subtitle.textContent = `${MODE_NAMES[job.mode] || job.mode} on ${what} · submitted ${fmtTime(job.created_at)}`;
    });
    const active = !FINAL.has(job.state);
    this.cancelButton.hidden = !active;
    this.cancelButton.disabled = job.cancel_requested;
    if (job.cancel_requested) this.cancelButton.textContent = "Cancelling…";
  },

  async onCancel() {
    // Two steps: an accidental click must not throw away hours of GPU time.
    if (!this.cancelArmed) {
      this.cancelButton.textContent = "Confirm cancel";
      this.cancelButton.classList.add("armed");
      this.cancelArmed = setTimeout(() => {
        this.cancelArmed = null;
        this.cancelButton.textContent = "Cancel job";
        this.cancelButton.classList.remove("armed");
      }, 4000);
      return;
    }
    clearTimeout(this.cancelArmed);
    this.cancelArmed = null;
    this.cancelButton.classList.remove("armed");
    this.cancelButton.disabled = true;
    try {
      this.job = await postJSON(`v1/jobs/${this.id}/cancel`, {});
    } catch (err) {
      this.addLog(`cancel failed: ${err.message}`);
      this.cancelButton.textContent = "Cancel job";
    }
    this.renderStatus();
    refreshJobs();
  },
};
