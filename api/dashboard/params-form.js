// The job form's parameter fields, built from GET /v1/params (saft_core's one declaration of
// every parameter), so the form cannot drift from the service. Choosing a preset fills every
// field with its value; a job sends the preset plus only the fields the user changed, and the
// service resolves the rest from the preset itself.

import { getJSON } from "./api.js";
import { $, $$, h } from "./dom.js";

// Labels that say more than the parameter's name (the names are the paper's and the API's).
const LABELS = {
  lr: "SR learning rate (SRlr)",
  sigma: "RSF sigma",
  ksize: "RSF kernel size (ksize)",
  tile: "Training tile",
  window: "Frame window",
  ema: "Weight averaging (EMA)",
  warmup: "Warm-up steps",
};
const PRESET_NOTES = { reference: "the authors' schedule", adaptive: "this project's schedule" };

const form = {
  spec: null, // the GET /v1/params answer
  dirty: new Set(), // names of the fields changed since the preset filled them
};

const label = (f) => LABELS[f.name] ?? f.name[0].toUpperCase() + f.name.slice(1).replace(/_/g, " ");

/** A number as typed in the form: short exponents for small rates (1e-5, not 0.00001). */
function shownValue(v) {
  if (typeof v !== "number") return v === null || v === undefined ? "" : String(v);
  return v !== 0 && Math.abs(v) < 0.01 ? v.toExponential().replace("e+", "e") : String(v);
}

/** The allowed range, unit and special words of a number field: "(0, 1e-3]", "1–50 LR px". */
function rangeHint(f) {
  if (f.type !== "int" && f.type !== "float") return "";
  const lo = f.min ?? null;
  const hi = f.max ?? null;
  let text = "";
  if (lo !== null && hi !== null) {
    text =
      f.min_exclusive || f.max_exclusive
        ? `${f.min_exclusive ? "(" : "["}${shownValue(lo)}, ${shownValue(hi)}` +
          `${f.max_exclusive ? ")" : "]"}`
        : `${shownValue(lo)}–${shownValue(hi)}`;
  } else if (lo !== null) text = `${f.min_exclusive ? ">" : "≥"} ${shownValue(lo)}`;
  else if (hi !== null) text = `${f.max_exclusive ? "<" : "≤"} ${shownValue(hi)}`;
  if (f.unit) text += ` ${f.unit}`;
  if (f.special?.length) text += `; or ${f.special.join(", ")}`;
  return text.trim();
}

function fieldNode(f) {
  const id = `f-${f.name}`;
  const box = h("div", { class: "field", "data-field": `params.${f.name}`, "data-param": f.name });
  const hint = rangeHint(f);
  if (f.type === "bool") {
    box.append(
      h(
        "label",
        { class: "check", title: f.help },
        h("input", { id, name: f.name, type: "checkbox" }),
        ` ${label(f)}`,
      ),
      h("p", { class: "hint" }, f.help),
    );
  } else if (f.type === "choice") {
    const options = (f.choices || []).map((c) => h("option", { value: c }, c));
    box.append(
      h("label", { for: id, title: f.help }, label(f)),
      h("select", { id, name: f.name }, ...options),
      h("p", { class: "hint" }, f.help.split(":")[0]), // the choices' meanings: in the title
    );
  } else {
    const number = f.type === "int" || f.type === "float";
    const input = h("input", {
      id,
      name: f.name,
      type: number ? "number" : "text",
      step: f.type === "int" ? "1" : number ? "any" : null,
      inputmode: f.type === "int" ? "numeric" : null,
      spellcheck: number ? null : "false",
      placeholder: f.nullable && f.null_means ? f.null_means : null,
      title: f.help,
    });
    const specials = (f.special || []).map((word) =>
      h(
        "label",
        { class: "check" },
        h("input", { id: `${id}-${word}`, type: "checkbox", "data-special": word }),
        ` ${word}`,
      ),
    );
    box.append(
      h("label", { for: id, title: f.help }, label(f)),
      specials.length ? h("div", { class: "inline" }, input, ...specials) : input,
      h("p", { class: "hint" }, hint),
    );
  }
  box.append(h("p", { class: "field-error" }));
  return box;
}

function build(spec) {
  const presetSelect = h(
    "select",
    { id: "f-preset", name: "preset", "aria-describedby": "f-preset-hint" },
    ...Object.keys(spec.presets).map((name) =>
      h("option", { value: name }, PRESET_NOTES[name] ? `${name}: ${PRESET_NOTES[name]}` : name),
    ),
  );
  presetSelect.value = spec.default_preset;
  presetSelect.addEventListener("change", () => fillFromPreset());
  const grid = (fields) =>
    h("div", { class: "grid-4" }, ...fields.filter((f) => f.type !== "bool").map(fieldNode));
  const checks = (fields) => fields.filter((f) => f.type === "bool").map(fieldNode);
  const basic = spec.fields.filter((f) => !f.advanced);
  const advanced = spec.fields.filter((f) => f.advanced);
  $("#params-fields").replaceChildren(
    h(
      "div",
      { class: "grid-2" },
      h(
        "div",
        { class: "field", "data-field": "params.preset" },
        h("label", { for: "f-preset" }, "Preset"),
        presetSelect,
        h(
          "p",
          { class: "hint", id: "f-preset-hint" },
          "Fills every field below; the fields you change win over the preset's values.",
        ),
        h("p", { class: "field-error" }),
      ),
    ),
    grid(basic),
    ...checks(basic),
    advanced.length
      ? h(
          "details",
          { class: "advanced" },
          h("summary", {}, "Advanced"),
          grid(advanced),
          ...checks(advanced),
        )
      : null,
  );
  // "input" only: every edit fires it (selects and checkboxes too), while "change" also fires
  // on leaving a field typed in before a preset replaced its value.
  for (const box of $$("#params-fields [data-param]")) {
    box.addEventListener("input", () => form.dirty.add(box.dataset.param));
  }
  for (const special of $$("#params-fields [data-special]")) {
    special.addEventListener("change", () => {
      $("input:not([data-special])", special.closest(".field")).disabled = special.checked;
    });
  }
}

/** Every field shows the chosen preset's value; nothing counts as changed any more. */
export function fillFromPreset() {
  const spec = form.spec;
  if (!spec) return;
  const values = spec.presets[$("#f-preset").value] ?? spec.presets[spec.default_preset];
  for (const f of spec.fields) {
    const value = values[f.name] ?? null;
    const input = $(`#f-${f.name}`);
    if (f.type === "bool") input.checked = Boolean(value);
    else input.value = shownValue(value);
    for (const special of $$("[data-special]", input.closest(".field"))) {
      special.checked = value === special.dataset.special;
      input.disabled = special.checked;
      if (special.checked) input.value = "";
    }
  }
  form.dirty.clear();
}

/** Fetch the spec and build the fields; an error is shown in their place (retried later). */
export async function loadParamsForm() {
  if (form.spec) return;
  const box = $("#params-fields");
  try {
    const spec = await getJSON("v1/params");
    if (form.spec) return;
    form.spec = spec;
  } catch (err) {
    box.replaceChildren(
      h(
        "p",
        { class: "banner error", role: "alert" },
        `Could not load the parameters: ${err.message}`,
      ),
    );
    return;
  }
  build(form.spec);
  fillFromPreset();
}

function readField(f, errors) {
  const input = $(`#f-${f.name}`);
  if (f.type === "bool") return input.checked;
  const special = $$("[data-special]", input.closest(".field")).find((s) => s.checked);
  if (special) return special.dataset.special;
  if (input.validity?.badInput) {
    errors.push([`params.${f.name}`, "enter a number"]);
    return undefined;
  }
  const raw = input.value.trim();
  if (raw === "") return f.nullable ? null : undefined; // empty: the preset's value
  return f.type === "int" || f.type === "float" ? Number(raw) : raw;
}

/** The request's parameters: the preset plus the fields changed since it filled them. */
export function collectParams(errors) {
  const params = {};
  for (const f of form.spec?.fields ?? []) {
    if (!form.dirty.has(f.name)) continue;
    const value = readField(f, errors);
    if (value !== undefined) params[f.name] = value;
  }
  const preset = $("#f-preset");
  if (preset) params.preset = preset.value;
  return params;
}
