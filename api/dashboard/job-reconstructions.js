// The job page's reconstructions: start, poll, cancel, play and download (JobView methods).

import { getBlob, getJSON, postJSON } from "./api.js";
import { $, badge, FINAL, h, shortId } from "./dom.js";
import { downloadLink } from "./downloads.js";
import { fmtDuration, fmtTime } from "./format.js";

const RECON_POLL_MS = 2000;

export const reconstructionMethods = {
  async reconstruct(k, button) {
    const card = button.closest(".iter-card");
    const errNode = $(".card-error", card);
    errNode.textContent = "";
    button.disabled = true;
    try {
      const rec = await postJSON(`v1/jobs/${this.id}/reconstructions`, {
        iteration: k,
        video: true,
      });
      if (!this.alive) return;
      this.recs = [rec, ...this.recs.filter((r) => r.id !== rec.id)];
      this.renderRecs();
      this.recNodes.get(rec.id)?.scrollIntoView({ block: "nearest", behavior: "smooth" });
      this.pollReconstructions();
    } catch (err) {
      errNode.textContent = `Could not reconstruct: ${err.message}`;
    } finally {
      button.disabled = false;
    }
  },

  pollReconstructions() {
    clearTimeout(this.recTimer);
    if (!this.recs.some((r) => !FINAL.has(r.state))) return;
    this.recTimer = setTimeout(async () => {
      try {
        const page = await getJSON(`v1/jobs/${this.id}/reconstructions?limit=100`, {
          signal: this.abort.signal,
        });
        if (!this.alive) return;
        this.recs = page.items;
        this.renderRecs();
      } catch (err) {
        if (err.name === "AbortError" || !this.alive) return;
      }
      this.pollReconstructions();
    }, RECON_POLL_MS);
  },

  renderRecs() {
    this.recsEmpty.hidden = this.recs.length > 0;
    const nodes = this.recs.map((rec) => {
      let node = this.recNodes.get(rec.id);
      if (!node) {
        node = this.buildRec(rec);
        this.recNodes.set(rec.id, node);
      }
      this.updateRec(node, rec);
      return node;
    });
    this.recsNode.replaceChildren(...nodes);
  },

  buildRec(rec) {
    const cancel = h(
      "button",
      {
        type: "button",
        class: "secondary small",
        onclick: async (e) => {
          e.currentTarget.disabled = true;
          try {
            const updated = await postJSON(`v1/reconstructions/${rec.id}/cancel`, {});
            this.recs = this.recs.map((r) => (r.id === updated.id ? updated : r));
            this.renderRecs();
          } catch (err) {
            $(".rec-error", node).textContent = err.message;
          }
        },
      },
      "Cancel",
    );
    const node = h(
      "article",
      { class: "rec", "data-rec": rec.id, "data-iteration": rec.iteration },
      h(
        "div",
        { class: "rec-head" },
        h("h3", {}, `Iteration ${rec.iteration}`),
        h("span", { class: "rec-badge" }),
        h("progress", { max: 1, value: 0, "aria-label": `reconstruction progress, iteration ${rec.iteration}` }),
        h("span", { class: "rec-meta muted" }),
        cancel,
      ),
      h("p", { class: "rec-error", role: "alert" }),
      h("div", { class: "rec-body" }),
    );
    node.cancelButton = cancel;
    return node;
  },

  updateRec(node, rec) {
    $(".rec-badge", node).replaceChildren(badge(rec.state));
    $("progress", node).value = rec.progress || 0;
    $("progress", node).hidden = FINAL.has(rec.state);
    node.cancelButton.hidden = FINAL.has(rec.state);
    node.dataset.state = rec.state;
    const meta =
      rec.state === "succeeded"
        ? `done in ${fmtDuration(rec.started_at, rec.finished_at)} · ${fmtTime(rec.finished_at)}`
        : rec.state === "running"
          ? `${Math.round((rec.progress || 0) * 100)}%`
          : rec.state === "queued"
            ? "waiting for a worker"
            : fmtTime(rec.finished_at);
    $(".rec-meta", node).textContent = meta;
    if (rec.error) $(".rec-error", node).textContent = rec.error;
    if (rec.state === "succeeded" && !node.mediaBuilt) {
      node.mediaBuilt = true;
      this.buildRecMedia(node, rec);
    }
  },

  buildRecMedia(node, rec) {
    const body = $(".rec-body", node);
    const links = h("div", { class: "rec-downloads" });
    if (rec.tiff_url) {
      links.append(
        downloadLink(rec.tiff_url, `reconstruction-iteration_${rec.iteration}-${shortId(rec.id)}.tif`, "Download TIFF", "the reconstructed stack, float32", "button secondary"),
      );
    }
    if (rec.mp4_url) {
      links.append(
        downloadLink(rec.mp4_url, `reconstruction-iteration_${rec.iteration}-${shortId(rec.id)}.mp4`, "Download MP4", "8-bit video of the reconstruction", "button secondary"),
      );
    }
    body.append(links);
    for (const note of rec.notes || []) body.append(h("p", { class: "banner warning" }, note));
    if (!rec.mp4_url) return;
    const video = h("video", {
      controls: true,
      loop: true,
      muted: true,
      playsinline: true,
      preload: "metadata",
      "aria-label": `reconstruction video, iteration ${rec.iteration}`,
    });
    const note = h("p", { class: "hint codec-note", hidden: true });
    body.prepend(h("div", { class: "video-wrap" }, video), note);
    const unplayable = () => {
      note.textContent =
        "This browser cannot play this MP4 (H.264); download it and play it locally.";
      note.hidden = false;
    };
    video.addEventListener("error", unplayable);
    if (!video.canPlayType('video/mp4; codecs="avc1.64001E"') && !video.canPlayType("video/mp4")) {
      unplayable();
    }
    getBlob(rec.mp4_url, { signal: this.abort.signal })
      .then((blob) => {
        if (!this.alive) return;
        // The <video> element cannot send the key: play the bytes from an object URL.
        const typed = blob.type === "video/mp4" ? blob : new Blob([blob], { type: "video/mp4" });
        video.dataset.blobType = typed.type;
        video.dataset.blobSize = String(typed.size);
        video.src = this.objectUrl(typed);
      })
      .catch((err) => {
        if (err.name === "AbortError" || !this.alive) return;
        note.textContent = `Could not load the video: ${err.message}`;
        note.hidden = false;
      });
  },
};
