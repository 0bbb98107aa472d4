// The job page's live updates: the SSE stream, the event log and throttled reloads
// (JobView methods).

import { getJSON } from "./api.js";
import { formatNumber } from "./chart.js";
import { FINAL, h, shortId } from "./dom.js";
import { refreshJobs } from "./job-list.js";
import { followEvents } from "./sse.js";

export const eventMethods = {
  follow() {
    followEvents(
      `v1/jobs/${this.id}/events`,
      {
        onEvent: (ev) => this.onEvent(ev),
        onStatus: (s) => this.setLive(s),
        isDone: () => FINAL.has(this.job.state),
        onFatal: (err) => this.addLog(`live updates stopped: ${err.message}`),
      },
      this.abort.signal,
    );
  },

  setLive(status) {
    const text = {
      connecting: "connecting…",
      live: "live",
      reconnecting: "reconnecting…",
      ended: "finished",
      error: "no live updates",
    }[status];
    this.liveNode.dataset.status = status;
    this.liveNode.textContent = text || status;
  },

  onEvent({ event, data }) {
    if (!this.alive) return;
    const at = data?.at;
    if (event === "state") {
      const wasFinal = FINAL.has(this.job.state);
      if (wasFinal) {
        // History replayed for a finished job: the job loaded with the page is newer.
        this.addLog(`state → ${data.state}${data.error ? `: ${data.error}` : ""}`, at);
        return;
      }
      this.job.state = data.state;
      if (data.state === "succeeded") this.job.progress = 1;
      if (data.error) this.job.error = data.error;
      if (data.recommended_iteration !== undefined) {
        this.job.recommended_iteration = data.recommended_iteration;
      }
      this.addLog(`state → ${data.state}${data.error ? `: ${data.error}` : ""}`, at);
      this.announcer.textContent = `Job ${shortId(this.id)} ${data.state}.`;
      this.renderStatus();
      this.scheduleReload();
      refreshJobs();
    } else if (event === "progress") {
      if (FINAL.has(this.job.state)) return; // history replayed after the end
      this.job.progress = data.progress;
      this.progressInfo = data;
      this.renderStatus();
    } else if (event === "iteration") {
      const loss = data.losses?.total;
      this.addLog(
        `iteration ${data.iteration} done` +
          (Number.isFinite(loss) ? ` · total loss ${formatNumber(loss)}` : " (pretrained)"),
        at,
      );
      this.job.iterations_done = Math.max(this.job.iterations_done, data.iteration);
      this.scheduleReload();
    } else if (event === "log") {
      this.addLog(data.message ?? JSON.stringify(data), at);
    }
  },

  addLog(message, at) {
    const time = at ? new Date(at) : new Date();
    this.logNode.append(
      h(
        "li",
        {},
        h("time", { datetime: time.toISOString() }, time.toLocaleTimeString()),
        " ",
        message,
      ),
    );
    while (this.logNode.children.length > 200) this.logNode.firstElementChild.remove();
    this.logNode.scrollTop = this.logNode.scrollHeight;
  },

  /** Re-read the job and its iterations, at most every 300 ms (events come in bursts). */
  scheduleReload() {
    if (this.reloadTimer) return;
    this.reloadTimer = setTimeout(async () => {
      this.reloadTimer = null;
      const signal = this.abort.signal;
      try {
        const [job, its] = await Promise.all([
          getJSON(`v1/jobs/${this.id}`, { signal }),
          getJSON(`v1/jobs/${this.id}/iterations`, { signal }),
        ]);
        if (!this.alive) return;
        this.job = job;
        this.iterations = its.items;
        this.renderAll();
      } catch (err) {
        if (err.name !== "AbortError" && this.alive) this.addLog(`refresh failed: ${err.message}`);
      }
    }, 300);
  },
};
