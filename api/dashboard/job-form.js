// The job form: inputs, networks and parameters; uploads the stacks, then submits the job.
// Errors from the service are shown next to the field they name.

import { ApiError, getJSON, postJSON, upload } from "./api.js";
import { $, $$, h, shortId } from "./dom.js";
import { fmtBytes, fmtCount } from "./format.js";
import { reloadJobs } from "./job-list.js";
import { datasetNames, modelsById } from "./names.js";
import { collectParams } from "./params-form.js";

const uploaded = new Map(); // file identity -> dataset id (a corrected form is not re-uploaded)
let submitting = false;

export async function loadModels() {
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

function onModeChange() {
  const wsf = formMode() === "wsf";
  $("#smlm-field").hidden = !wsf;
  $("#den-field").hidden = wsf; // SAFT-WSF fine-tunes against the SMLM image: no DEN
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
  const closed = first?.closest("details:not([open])");
  if (closed) closed.open = true; // an advanced field's error must be seen
  const target = first ? $("input:not([type=hidden]):not(:disabled), select", first) : banner;
  target?.scrollIntoView({ block: "center", behavior: "smooth" });
  if (first) target?.focus({ preventScroll: true });
}

class UploadError extends Error {
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

async function uploadOnce(file, field, status) {
  const identity = `${file.name}|${file.size}|${file.lastModified}`;
  if (uploaded.has(identity)) return uploaded.get(identity);
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
    uploaded.set(identity, ds.id);
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
  if (submitting) return;
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
  submitting = true;
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
    reloadJobs();
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
    submitting = false;
    button.disabled = false;
  }
}

/** Forget the uploads of this key (the next key may not see those datasets). */
export function clearUploads() {
  uploaded.clear();
}

export function initJobForm() {
  $("#job-form").addEventListener("submit", submitJob);
  for (const r of $$('input[name="mode"]')) r.addEventListener("change", onModeChange);
  // A field's error goes as soon as it is edited.
  $("#job-form").addEventListener("input", (ev) => {
    const box = ev.target.closest(".field.invalid");
    if (!box) return;
    box.classList.remove("invalid");
    $(".field-error", box).textContent = "";
    for (const input of $$("input, select", box)) input.removeAttribute("aria-invalid");
  });
  onModeChange();
}
