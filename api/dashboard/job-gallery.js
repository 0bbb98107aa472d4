// The job page's iteration cards: preview, metrics, downloads, Reconstruct (JobView methods).

import { getBlob } from "./api.js";
import { formatNumber } from "./chart.js";
import { $, FINAL, h, shortId } from "./dom.js";
import { downloadLink } from "./downloads.js";

export const galleryMethods = {
  renderGallery() {
    const job = this.job;
    const byK = new Map(this.iterations.map((it) => [it.iteration, it]));
    const last = Math.max(job.iterations_total, ...this.iterations.map((it) => it.iteration), 0);
    const nodes = [];
    for (let k = 0; k <= last; k += 1) {
      const it = byK.get(k);
      if (!it) {
        if (FINAL.has(job.state)) continue; // never ran (stopped early, cancelled, failed)
        nodes.push(
          h(
            "article",
            { class: "iter-card pending", "data-iteration": k },
            h("div", { class: "thumb placeholder" }, job.state === "running" ? "running…" : "pending"),
            h("h3", {}, `Iteration ${k}`),
          ),
        );
        continue;
      }
      let card = this.cards.get(k);
      if (!card) {
        card = this.buildCard(it);
        this.cards.set(k, card);
      }
      this.updateCard(card, it);
      nodes.push(card);
    }
    this.gallery.replaceChildren(...nodes);
  },

  buildCard(it) {
    const k = it.iteration;
    const img = h("img", {
      alt: `SR preview of frame 0 after iteration ${k}`,
      width: 256,
      height: 256,
    });
    const thumb = h(
      "button",
      {
        type: "button",
        class: "thumb",
        "aria-label": `Enlarge the preview of iteration ${k}`,
        onclick: () => this.openPreview(k),
      },
      img,
    );
    const card = h(
      "article",
      { class: "iter-card", "data-iteration": k },
      thumb,
      h(
        "div",
        { class: "iter-title" },
        h("h3", {}, `Iteration ${k}`),
        k === 0 ? h("span", { class: "tag" }, "pretrained") : null,
        h("span", { class: "tag recommended-tag", hidden: true }, "★ recommended"),
      ),
      h("dl", { class: "mini" }),
      h(
        "div",
        { class: "iter-actions" },
        h(
          "button",
          {
            type: "button",
            class: "primary small reconstruct",
            "aria-label": `Reconstruct the stack with iteration ${k}`,
            onclick: (e) => this.reconstruct(k, e.currentTarget),
          },
          "Reconstruct",
        ),
        downloadLink(it.preview_tif_url, `job-${shortId(this.id)}-iteration_${k}.tif`, "TIFF", `float32 preview of iteration ${k}`),
        downloadLink(it.checkpoint_url, `job-${shortId(this.id)}-iteration_${k}.pth`, "checkpoint", `SR network after iteration ${k}`),
      ),
      h("p", { class: "card-error", role: "alert" }),
    );
    this.loadPreview(it, img);
    return card;
  },

  updateCard(card, it) {
    card.classList.toggle("recommended", Boolean(it.recommended));
    $(".recommended-tag", card).hidden = !it.recommended;
    const rows = [];
    if (Number.isFinite(it.losses?.total)) rows.push(["total loss", it.losses.total]);
    rows.push(["fidelity", it.losses?.fidelity], ["FRC res.", it.frc_resolution]);
    rows.push(["haze ratio", it.haze_ratio]);
    rows.push(["RSE", it.rse], ["RSP", it.rsp], ["decorr. res.", it.resolution]);
    $("dl", card).replaceChildren(
      ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, formatNumber(v))]),
    );
  },

  async loadPreview(it, img) {
    try {
      const blob = await getBlob(it.preview_url, { signal: this.abort.signal });
      if (!this.alive) return;
      const url = this.objectUrl(blob);
      this.previewUrls.set(it.iteration, url);
      img.src = url;
    } catch (err) {
      if (err.name === "AbortError" || !this.alive) return;
      img.alt = `preview of iteration ${it.iteration} unavailable: ${err.message}`;
      img.classList.add("broken");
    }
  },

  openPreview(k) {
    const url = this.previewUrls.get(k);
    if (!url) return;
    $("#lightbox-title").textContent = `Iteration ${k}: SR preview of frame 0`;
    const img = $("#lightbox-img");
    img.src = url;
    img.alt = `SR preview of frame 0 after iteration ${k}, enlarged`;
    $("#lightbox").showModal();
  },
};
