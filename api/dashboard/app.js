// SAFT dashboard: sign in, list jobs, submit a job, follow one job live, reconstruct.
// Plain ES modules, no build step and no third-party code; everything goes through /v1.

import {
  ApiError,
  apiUrl,
  clearKey,
  download,
  getBlob,
  getJSON,
  getKey,
  onUnauthorized,
  postJSON,
  setKey,
  upload,
} from "./api.js";
import { formatNumber, lineChart } from "./chart.js";
import { followEvents } from "./sse.js";

const FINAL = new Set(["succeeded", "failed", "cancelled"]);
const LIST_REFRESH_MS = 5000;
const RECON_POLL_MS = 2000;
const JOBS_PAGE = 25;

const LOSS_SERIES = [
  ["total", "total", "#1f2933"],
  ["degradation", "degradation", "#0072b2"],
  ["hessian", "hessian", "#e69f00"],
  ["sparse", "sparse", "#009e73"],
  ["rotation", "rotation", "#cc79a7"],
  ["haze", "haze", "#d62728"],
  ["den", "DEN", "#56b4e9"],
  ["wsf", "WSF", "#d55e00"],
];
const EXTRA_COLORS = ["#8c564b", "#7f7f7f", "#bcbd22", "#17becf"];
const METRIC_SERIES = [
  ["rse", "RSE", "#0072b2"],
  ["rsp", "RSP", "#d55e00"],
  ["resolution", "resolution (SR px)", "#009e73"],
];

// What each preset of saft_core/params.py (PRESETS) sets, over the reference defaults. The
// service resolves the preset itself; these only fill the form (lr and consistency level
// are typed-in values, the advanced fields' empty value means "the preset's": shown as the
// placeholder). The browser test checks a form submitted with a preset stores exactly the
// service's own resolution.
const PRESET_FIELDS = {
  reference: {
    lr: "1e-5",
    consistency_level: "1",
    tile: "64",
    windows_per_tile: "1",
    background: "fit",
    ema: "0",
    warmup: "0",
    haze_level: "0",
  },
  adaptive: {
    lr: "1e-3",
    consistency_level: "0.1",
    tile: "32",
    windows_per_tile: "4",
    background: "map",
    ema: "0.95",
    warmup: "30",
    haze_level: "0.3",
  },
};
const PRESET_VALUE_FIELDS = new Set(["lr", "consistency_level"]);

// ---- small DOM helpers ------------------------------------------------------------------

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];

/** h("button", {class: "x", onclick: fn, "aria-label": "..."}, "text", childNode, null) */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on") && typeof v === "function") node.addEventListener(k.slice(2), v);
    else if (k === "class") node.className = v;
    else if (k === "text") node.textContent = v;
    else if (v === true) node.setAttribute(k, "");
    else node.setAttribute(k, String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return node;
}

const shortId = (id) => (id ? id.slice(0, 8) : "");

function fmtTime(iso) {
  if (!iso) return "–";
  const d = new Date(iso);
  return d.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "medium" });
}

function fmtAgo(iso) {
  if (!iso) return "";
  const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
  if (s < 60) return "just now";
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return new Date(iso).toLocaleDateString();
}

function fmtDuration(a, b) {
  if (!a) return "–";
  const s = Math.max(0, ((b ? new Date(b) : new Date()) - new Date(a)) / 1000);
  if (s < 60) return `${s.toFixed(0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

function fmtCount(n) {
  if (!Number.isFinite(n)) return "";
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)}k`;
  return String(n);
}

function fmtBytes(n) {
  if (!Number.isFinite(n)) return "";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function badge(state) {
  return h("span", { class: `badge state-${state}`, "data-state": state }, state);
}

const MODE_NAMES = { saft: "SAFT", wsf: "SAFT-WSF" };

// ---- caches of names (ids are what the API returns; people recognise file names) -------

const datasetNames = new Map(); // id -> Promise<dataset|null>
const modelsById = new Map(); // id -> model (uploaded ones; "default" is per kind)

function datasetInfo(id) {
  if (!id) return Promise.resolve(null);
  if (!datasetNames.has(id)) {
    datasetNames.set(
      id,
      getJSON(`v1/datasets/${encodeURIComponent(id)}`).catch(() => {
        datasetNames.delete(id);
        return null;
      }),
    );
  }
  return datasetNames.get(id);
}

function modelLabel(id, kind) {
  if (!id) return "none";
  if (id === "default") return `default ${kind.toUpperCase()} network`;
  const m = modelsById.get(id);
  return m ? `${m.name} (${shortId(id)})` : shortId(id);
}

// ---- session ----------------------------------------------------------------------------

const app = {
  jobsFilter: "",
  jobsShown: JOBS_PAGE,
  listTimer: null,
  listSignature: "",
  view: null, // the JobView shown, if any
  uploaded: new Map(), // file identity -> dataset id (a corrected form is not re-uploaded)
  submitting: false,
};

function showSignIn(message = "") {
  stopWorkspace();
  $("#workspace").hidden = true;
  $("#session").hidden = true;
  $("#signin").hidden = false;
  $("#signin-error").textContent = message;
  $("#api-key").setAttribute("aria-invalid", message ? "true" : "false");
  $("#api-key").focus();
}

function showWorkspace() {
  $("#signin").hidden = true;
  $("#workspace").hidden = false;
  $("#session").hidden = false;
  $("#whoami").textContent = `signed in with key ${shortId(getKey())}…`;
  startJobList();
  loadModels();
  route();
}

function stopWorkspace() {
  clearInterval(app.listTimer);
  app.listTimer = null;
  app.listSignature = "";
  if (app.view) app.view.destroy();
  app.view = null;
  $("#job-list").replaceChildren();
  app.uploaded.clear();
  datasetNames.clear();
  modelsById.clear();
}

function signOut(message) {
  clearKey();
  showSignIn(message);
}

async function signIn(ev) {
  ev.preventDefault();
  const input = $("#api-key");
  const key = input.value.trim();
  const error = $("#signin-error");
  if (!key) {
    error.textContent = "Enter your API key.";
    input.setAttribute("aria-invalid", "true");
    input.focus();
    return;
  }
  const button = $("#signin-submit");
  button.disabled = true;
  error.textContent = "";
  try {
    await getJSON("v1/jobs?limit=1", { key });
    setKey(key);
    input.value = "";
    input.setAttribute("aria-invalid", "false");
    showWorkspace();
  } catch (err) {
    error.textContent =
      err.status === 401 ? `Sign-in failed: ${err.message}.` : `Cannot sign in: ${err.message}`;
    input.setAttribute("aria-invalid", "true");
    input.select();
  } finally {
    button.disabled = false;
  }
}

// ---- job list ---------------------------------------------------------------------------

function startJobList() {
  clearInterval(app.listTimer);
  refreshJobs();
  app.listTimer = setInterval(() => {
    if ($("#auto-refresh").checked && document.visibilityState === "visible") refreshJobs();
  }, LIST_REFRESH_MS);
}

async function fetchJobs() {
  const params = new URLSearchParams({ limit: String(Math.min(app.jobsShown, 100)) });
  if (app.jobsFilter) params.set("state", app.jobsFilter);
  let page = await getJSON(`v1/jobs?${params}`);
  const items = [...page.items];
  while (page.next && items.length < app.jobsShown) {
    page = await getJSON(page.next);
    items.push(...page.items);
  }
  return { items: items.slice(0, app.jobsShown), total: page.total };
}

async function refreshJobs() {
  if (!getKey()) return;
  const status = $("#jobs-status");
  let result;
  try {
    result = await fetchJobs();
  } catch (err) {
    if (err.status !== 401) status.textContent = `Could not load jobs: ${err.message}`;
    return;
  }
  const { items, total } = result;
  status.textContent =
    `${total} job${total === 1 ? "" : "s"}${app.jobsFilter ? ` ${app.jobsFilter}` : ""}` +
    ` · updated ${new Date().toLocaleTimeString()}`;
  $("#jobs-more").hidden = items.length >= total;
  await Promise.all(items.map((j) => datasetInfo(j.lr_dataset)));
  // Rebuild only when something changed: a rebuild would drop keyboard focus in the list.
  const signature = JSON.stringify(
    items.map((j) => [j.id, j.state, j.progress, j.iterations_done, j.cancel_requested]),
  );
  if (signature !== app.listSignature) {
    app.listSignature = signature;
    const list = $("#job-list");
    const nodes = [];
    for (const job of items) nodes.push(await jobListItem(job));
    if (!items.length) {
      nodes.push(
        h("li", { class: "empty muted" }, app.jobsFilter ? "No jobs in this state." : "No jobs yet."),
      );
    }
    list.replaceChildren(...nodes);
  } else {
    // Relative times still move on.
    for (const job of items) {
      const ago = $(`[data-job="${job.id}"] .job-ago`);
      if (ago) ago.textContent = fmtAgo(job.created_at);
    }
  }
  markCurrentJob();
}

async function jobListItem(job) {
  const ds = await datasetInfo(job.lr_dataset);
  const done = job.iterations_done;
  const total = job.iterations_total;
  return h(
    "li",
    {},
    h(
      "a",
      { class: "job-item", href: `#/jobs/${job.id}`, "data-job": job.id },
      h(
        "span",
        { class: "job-line" },
        badge(job.state),
        h("span", { class: "job-name" }, ds ? ds.filename : `job ${shortId(job.id)}`),
      ),
      h(
        "span",
        { class: "job-line job-meta" },
        h("span", {}, `${MODE_NAMES[job.mode] || job.mode} · ${shortId(job.id)}`),
        h("span", { class: "job-ago" }, fmtAgo(job.created_at)),
      ),
      h(
        "span",
        { class: "job-line" },
        h("progress", {
          max: 1,
          value: job.progress,
          "aria-label": `progress of job ${shortId(job.id)}`,
        }),
        h("span", { class: "job-iters" }, `${done}/${total} it.`),
      ),
    ),
  );
}

function markCurrentJob() {
  const current = app.view ? app.view.id : null;
  for (const a of $$(".job-item")) {
    if (a.dataset.job === current) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
}

// ---- routing ----------------------------------------------------------------------------

function route() {
  if (!getKey()) return;
  const m = /^#\/jobs\/([0-9A-Za-z_-]+)$/.exec(location.hash);
  if (m) {
    if (!app.view || app.view.id !== m[1]) {
      if (app.view) app.view.destroy();
      $("#view-new").hidden = true;
      const section = $("#view-job");
      section.hidden = false;
      app.view = new JobView(m[1], section);
      app.view.start();
    }
  } else {
    if (app.view) app.view.destroy();
    app.view = null;
    $("#view-job").hidden = true;
    $("#view-job").replaceChildren();
    $("#view-new").hidden = false;
  }
  markCurrentJob();
  $("#content").scrollTop = 0;
}

// ---- submit form ------------------------------------------------------------------------

async function loadModels() {
  for (const kind of ["sr", "den"]) {
    const select = $(`#f-${kind}-model`);
    try {
      const page = await getJSON(`v1/models?kind=${kind}&limit=100`);
      const previous = select.value;
      const options = page.items.map((m) => {
        if (!m.default) modelsById.set(m.id, m);
        const bits = [m.name];
        if (m.parameters) bits.push(`${fmtCount(m.parameters)} parameters`);
        if (!m.default) bits.push(shortId(m.id));
        return h("option", { value: m.id }, bits.join(" · "));
      });
      select.replaceChildren(...options);
      if ([...select.options].some((o) => o.value === previous)) select.value = previous;
    } catch (err) {
      if (err.status !== 401) setFieldError(`${kind}_model`, `Could not list models: ${err.message}`);
    }
  }
}

function formMode() {
  return $('input[name="mode"]:checked').value;
}

let iterationsTouched = false;

function onModeChange() {
  const wsf = formMode() === "wsf";
  $("#smlm-field").hidden = !wsf;
  $("#den-field").hidden = wsf; // SAFT-WSF fine-tunes against the SMLM image: no DEN
  if (!iterationsTouched) $("#f-iterations").value = wsf ? "3" : "5";
}

/** A preset fills the fields it governs: typed values for lr and the consistency level,
 * placeholders (over emptied fields) for the advanced ones. */
function onPresetChange() {
  const values = PRESET_FIELDS[$("#f-preset").value] || PRESET_FIELDS.reference;
  for (const [name, value] of Object.entries(values)) {
    const input = $(`#f-${name}`);
    if (PRESET_VALUE_FIELDS.has(name)) input.value = value;
    else if (input.tagName === "SELECT") {
      input.value = "";
      input.options[0].textContent = `preset's (${value})`;
    } else {
      input.value = "";
      input.placeholder = value;
    }
  }
}

function onSigmaAuto() {
  const auto = $("#f-sigma-auto").checked;
  $("#f-sigma").disabled = auto;
}

function fieldBox(field) {
  return $(`#job-form [data-field="${CSS.escape(field)}"]`);
}

function setFieldError(field, message) {
  const box = fieldBox(field);
  if (!box) return false;
  box.classList.add("invalid");
  const err = $(".field-error", box);
  err.textContent = message;
  if (!err.id) err.id = `err-${field.replace(/\W/g, "-")}`;
  for (const input of $$("input, select", box)) {
    input.setAttribute("aria-invalid", "true");
    const ids = new Set((input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
    ids.add(err.id);
    input.setAttribute("aria-describedby", [...ids].join(" "));
  }
  return true;
}

function clearFormErrors() {
  const banner = $("#form-error");
  banner.hidden = true;
  banner.textContent = "";
  for (const box of $$("#job-form .field.invalid")) {
    box.classList.remove("invalid");
    $(".field-error", box).textContent = "";
    for (const input of $$("input, select", box)) input.removeAttribute("aria-invalid");
  }
}

/** Show errors [[field, message]]; those naming no known field go to the banner. */
function showFormErrors(errors, detail) {
  const unplaced = [];
  let first = null;
  for (const [field, message] of errors) {
    if (setFieldError(field, message)) first ??= fieldBox(field);
    else unplaced.push(field && field !== "body" ? `${field}: ${message}` : message);
  }
  const banner = $("#form-error");
  const lines = [...unplaced];
  if (!errors.length && detail) lines.push(detail);
  if (lines.length || first) {
    banner.textContent = lines.length
      ? lines.join(" · ")
      : `The job was not submitted: correct the marked field${errors.length > 1 ? "s" : ""}.`;
    banner.hidden = false;
  }
  const target = first ? $("input:not([type=hidden]):not(:disabled), select", first) : banner;
  target?.scrollIntoView({ block: "center", behavior: "smooth" });
  if (first) target?.focus({ preventScroll: true });
}

/** The parameters typed in; empty fields are left out (the API applies the preset's values). */
function collectParams(errors) {
  const params = {};
  const num = (name) => {
    const input = $(`#f-${name}`);
    if (input.disabled) return undefined;
    if (input.validity.badInput) {
      errors.push([`params.${name}`, "enter a number"]);
      return undefined;
    }
    const raw = input.value.trim();
    return raw === "" ? undefined : Number(raw);
  };
  for (const name of [
    "iterations",
    "lr",
    "ksize",
    "continuity_level",
    "sparse_level",
    "consistency_level",
    "seed",
    "tile",
    "window",
    "ema",
    "warmup",
    "haze_level",
  ]) {
    const v = num(name);
    if (v !== undefined) params[name] = v;
  }
  if ($("#f-sigma-auto").checked) params.sigma = "auto";
  else {
    const v = num("sigma");
    if (v !== undefined) params.sigma = v;
  }
  // A number or "auto"; anything else is sent as typed, for the service to name the field.
  const windows = $("#f-windows_per_tile").value.trim();
  if (windows !== "") {
    const n = Number(windows);
    params.windows_per_tile =
      windows.toLowerCase() === "auto" ? "auto" : Number.isInteger(n) ? n : windows;
  }
  const background = $("#f-background").value;
  if (background) params.background = background;
  params.early_stop = $("#f-early_stop").checked;
  params.preset = $("#f-preset").value;
  return params;
}

class UploadError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

async function uploadOnce(file, field, status) {
  const identity = `${file.name}|${file.size}|${file.lastModified}`;
  if (app.uploaded.has(identity)) return app.uploaded.get(identity);
  const form = new FormData();
  form.append("file", file, file.name);
  const bar = $("#upload-progress");
  bar.hidden = false;
  bar.value = 0;
  status(`Uploading ${file.name} (${fmtBytes(file.size)})…`);
  try {
    const ds = await upload("v1/datasets", form, {
      onProgress: (f) => {
        bar.value = f;
      },
    });
    app.uploaded.set(identity, ds.id);
    datasetNames.set(ds.id, Promise.resolve(ds));
    return ds.id;
  } catch (err) {
    if (err instanceof ApiError && err.status !== 401) {
      // The upload endpoint names its own field ("file"): place it on this file input.
      throw new UploadError(field, `${file.name}: ${err.message}`);
    }
    throw err;
  } finally {
    bar.hidden = true;
  }
}

async function submitJob(ev) {
  ev.preventDefault();
  if (app.submitting) return;
  clearFormErrors();
  const status = (text) => {
    $("#submit-status").textContent = text;
  };
  const mode = formMode();
  const errors = [];
  const lrFile = $("#f-lr-file").files[0];
  const edgeFile = $("#f-edge-file").files[0];
  const smlmFile = mode === "wsf" ? $("#f-smlm-file").files[0] : undefined;
  if (!lrFile) errors.push(["lr_dataset", "Choose the low-resolution TIFF stack."]);
  if (mode === "wsf" && !smlmFile) {
    errors.push(["smlm_dataset", "SAFT-WSF needs the SMLM image of the same field of view."]);
  }
  const params = collectParams(errors);
  if (errors.length) {
    showFormErrors(errors);
    return;
  }
  app.submitting = true;
  const button = $("#submit-job");
  button.disabled = true;
  try {
    const ids = {};
    for (const [field, file] of [
      ["lr_dataset", lrFile],
      ["edge_dataset", edgeFile],
      ["smlm_dataset", smlmFile],
    ]) {
      if (file) ids[field] = await uploadOnce(file, field, status);
    }
    status("Submitting the job…");
    const body = {
      mode,
      lr_dataset: ids.lr_dataset,
      edge_dataset: ids.edge_dataset ?? null,
      smlm_dataset: ids.smlm_dataset ?? null,
      sr_model: $("#f-sr-model").value,
      den_model: mode === "wsf" ? null : $("#f-den-model").value,
      params,
    };
    const job = await postJSON("v1/jobs", body);
    status(`Job ${shortId(job.id)} submitted.`);
    app.listSignature = "";
    refreshJobs();
    location.hash = `#/jobs/${job.id}`;
  } catch (err) {
    status("");
    if (err instanceof UploadError) showFormErrors([[err.field, err.message]]);
    else if (err instanceof ApiError) {
      if (err.status !== 401) {
        showFormErrors(
          err.fieldErrors.map((e) => [e.field, e.message]),
          err.message,
        );
      }
    } else showFormErrors([], `Unexpected error: ${err.message}`);
  } finally {
    app.submitting = false;
    button.disabled = false;
  }
}

// ---- one job ----------------------------------------------------------------------------

class JobView {
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
              "frame; resolution: decorrelation estimate in SR pixels (lower is finer).",
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
    this.subtitle.textContent = "";
    datasetInfo(job.lr_dataset).then((ds) => {
      const what = ds ? `${ds.filename} (${ds.shape.join(" × ")})` : shortId(job.lr_dataset);
      this.subtitle.textContent = `${MODE_NAMES[job.mode] || job.mode} on ${what} · submitted ${fmtTime(job.created_at)}`;
    });
    const active = !FINAL.has(job.state);
    this.cancelButton.hidden = !active;
    this.cancelButton.disabled = job.cancel_requested;
    if (job.cancel_requested) this.cancelButton.textContent = "Cancelling…";
  }

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
  }

  // -- live events --

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
  }

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
  }

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
  }

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
  }

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
  }

  // -- charts --

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
        title: "RSE, RSP and resolution per iteration",
        xMax,
        highlight,
        panelHeight: 62,
        panels: METRIC_SERIES.map(([key, name, color]) => ({
          label: key === "resolution" ? "resol." : name,
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
  }

  renderTable(series) {
    const head = ["iteration", ...series.map((s) => s.name), "RSE", "RSP", "resolution", "seconds"];
    const rows = this.iterations.map((it) =>
      h(
        "tr",
        { class: it.recommended ? "recommended" : null },
        h("th", { scope: "row" }, String(it.iteration), it.recommended ? " ★" : ""),
        ...series.map((s) => h("td", {}, formatNumber(it.losses?.[s.key]))),
        h("td", {}, formatNumber(it.rse)),
        h("td", {}, formatNumber(it.rsp)),
        h("td", {}, formatNumber(it.resolution)),
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
  }

  // -- gallery --

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
  }

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
  }

  updateCard(card, it) {
    card.classList.toggle("recommended", Boolean(it.recommended));
    $(".recommended-tag", card).hidden = !it.recommended;
    const rows = [];
    if (Number.isFinite(it.losses?.total)) rows.push(["total loss", it.losses.total]);
    rows.push(["RSE", it.rse], ["RSP", it.rsp], ["resolution", it.resolution]);
    $("dl", card).replaceChildren(
      ...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, formatNumber(v))]),
    );
  }

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
  }

  openPreview(k) {
    const url = this.previewUrls.get(k);
    if (!url) return;
    $("#lightbox-title").textContent = `Iteration ${k}: SR preview of frame 0`;
    const img = $("#lightbox-img");
    img.src = url;
    img.alt = `SR preview of frame 0 after iteration ${k}, enlarged`;
    $("#lightbox").showModal();
  }

  // -- reconstructions --

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
  }

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
  }

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
  }

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
  }

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
  }

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
  }

  // -- parameters --

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
  }

  datasetCell(id) {
    const node = h("span", {}, shortId(id));
    datasetInfo(id).then((ds) => {
      if (ds) node.textContent = `${ds.filename} (${ds.shape.join(" × ")}, ${ds.dtype})`;
    });
    return node;
  }
}

/** An <a> to an artifact that downloads it with the key (a plain link would get a 401). */
function downloadLink(path, filename, text, what, cls = "link") {
  const a = h(
    "a",
    {
      href: apiUrl(path),
      class: cls,
      download: filename,
      // The visible text first (what speech-input users say), then what it is.
      "aria-label": `${text} (${what})`,
      "data-download": filename,
    },
    text,
  );
  a.addEventListener("click", async (ev) => {
    ev.preventDefault();
    if (a.getAttribute("aria-busy") === "true") return;
    a.setAttribute("aria-busy", "true");
    const label = a.textContent;
    a.textContent = `${label}…`;
    try {
      await download(path, filename);
    } catch (err) {
      a.title = `download failed: ${err.message}`;
    } finally {
      a.textContent = label;
      a.removeAttribute("aria-busy");
    }
  });
  return a;
}

// ---- start ------------------------------------------------------------------------------

function init() {
  onUnauthorized(() => {
    if (getKey()) signOut("The service rejected your API key (revoked or wrong); sign in again.");
  });
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", () => signOut(""));
  $("#job-form").addEventListener("submit", submitJob);
  for (const r of $$('input[name="mode"]')) r.addEventListener("change", onModeChange);
  $("#f-iterations").addEventListener("input", () => {
    iterationsTouched = true;
  });
  $("#f-sigma-auto").addEventListener("change", onSigmaAuto);
  $("#f-preset").addEventListener("change", onPresetChange);
  // A field's error goes as soon as it is edited.
  $("#job-form").addEventListener("input", (ev) => {
    const box = ev.target.closest(".field.invalid");
    if (!box) return;
    box.classList.remove("invalid");
    $(".field-error", box).textContent = "";
    for (const input of $$("input, select", box)) input.removeAttribute("aria-invalid");
  });
  $("#state-filter").addEventListener("change", (ev) => {
    app.jobsFilter = ev.target.value;
    app.jobsShown = JOBS_PAGE;
    app.listSignature = "";
    refreshJobs();
  });
  $("#refresh-jobs").addEventListener("click", () => {
    refreshJobs();
  });
  $("#jobs-more").addEventListener("click", () => {
    app.jobsShown += JOBS_PAGE;
    refreshJobs();
  });
  $("#lightbox").addEventListener("click", (ev) => {
    if (ev.target === ev.currentTarget) ev.currentTarget.close(); // click on the backdrop
  });
  window.addEventListener("hashchange", route);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible" && getKey()) refreshJobs();
  });
  onModeChange();
  onSigmaAuto();
  onPresetChange();

  const key = getKey();
  if (!key) {
    showSignIn();
    return;
  }
  // A stored key is checked before the workspace shows; a service that is down is not a
  // reason to sign out (the list shows the error and retries).
  getJSON("v1/jobs?limit=1", { key })
    .then(() => showWorkspace())
    .catch((err) => {
      if (err.status === 401) {
        clearKey();
        showSignIn("Your stored API key was rejected; sign in again.");
      } else showWorkspace();
    });
}

init();
