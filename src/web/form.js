// Section 2, the settings: the form rendered from the engine's flag table
// (src/config/flags.rs), the model menu, the network diagram, and the settings in the URL.
import { $, el, grouped, hideError, initialParams, showError, state } from "./page.js";

// Plain words first and the seed's flag second; the few everyday settings up front, the rest
// under "All settings".
export function buildForm() {
  state.flags = Array.from(state.engine.flagTable());
  const range = (f) => (f.min == null ? "" : ` (${f.min} to ${f.max})`);
  const row = (flag) => {
    const id = `flag-${flag.name}`;
    const input = flag.choices
      ? el("select", { id, name: flag.name }, flag.choices.map((c) => el("option", { value: c }, c)))
      : el("input", { id, name: flag.name, type: "text", inputMode: "decimal", autocomplete: "off" });
    input.setAttribute("aria-describedby", `${id}-help`);
    return el("div", { className: "flag", dataset: { flag: flag.name } },
      el("label", { htmlFor: id }, `${flag.label} `, el("code", {}, `--${flag.name}`)), input,
      el("span", { className: "help", id: `${id}-help` }, flag.help + range(flag)));
  };
  const groups = [...new Set(state.flags.map((f) => f.group))];
  const fieldsets = groups.map((group) => el("fieldset", { dataset: { group } }, el("legend", {}, group),
    el("div", { className: "flags" }, state.flags.filter((f) => f.group === group && !f.everyday).map(row))));
  $("settings-form").replaceChildren(
    el("div", { className: "flags everyday" }, state.flags.filter((f) => f.everyday).map(row)),
    el("details", { id: "all-settings" }, el("summary", {}, "All settings (the seed's flags)"), ...fieldsets));
  $("settings-form").addEventListener("input", () => {
    clearFlagErrors();
    syncUrl();
    drawDiagram();
  });
}

// The model menu, from the engine's list; a choice loads that model's own settings.
export function buildModelMenu() {
  state.families = Array.from(state.engine.modelFamilies());
  $("model-select").replaceChildren(...state.families.map((f) => el("option", { value: f.name }, f.label)));
  $("model-select").addEventListener("change", () => {
    const family = state.families.find((f) => f.name === $("model-select").value);
    applyConfig(family.config);
  });
}

// Shows only the settings that mean something for the chosen model, and what it is.
export function showModel(name) {
  const family = state.families.find((f) => f.name === name);
  $("model-explanation").textContent = family ? family.explanation : "";
  for (const flag of state.flags) {
    $(`flag-${flag.name}`).closest(".flag").hidden = !flag.families.includes(name);
  }
  for (const fieldset of document.querySelectorAll("#settings-form fieldset")) {
    fieldset.hidden = !fieldset.querySelector(".flag:not([hidden])");
  }
}

export function applyConfig(config) {
  $("model-select").value = config.model.family;
  showModel(config.model.family);
  const values = state.engine.flagValues(config);
  for (const flag of state.flags) $(`flag-${flag.name}`).value = values[flag.name];
  syncUrl();
  drawDiagram();
}

// The form as a TrainingConfig; throws the engine's `{ kind: "flag", flag, message }`.
export function readConfig() {
  const family = $("model-select").value;
  const values = {};
  for (const flag of state.flags.filter((f) => f.families.includes(family))) {
    values[flag.name] = $(`flag-${flag.name}`).value.trim();
  }
  return state.engine.configFromFlags(family, values);
}

// The network the settings make, drawn as the data flows through it (sizes from the engine),
// redrawn as a setting changes.
export function drawDiagram() {
  const figure = $("network-diagram");
  if (!state.summary) return figure.replaceChildren();
  let shape;
  try {
    const { n_images: _, height, width, n_neurons: neurons } = state.summary;
    shape = state.engine.networkShape(readConfig(), height, width, neurons);
  } catch (error) {
    return figure.replaceChildren(el("p", { className: "hint" }, `No network to draw: ${error.message}`));
  }
  const box = (title, detail) => el("li", {}, el("strong", {}, title), el("span", {}, detail));
  const { summary } = state;
  const parts = [box("image", `${summary.height} × ${summary.width} pixels`)];
  if (shape.gabor_features) {
    parts.push(box("Gabor bank", `${shape.gabor_features} fixed features`), box("ridge", "one per neuron"));
  }
  for (const [i, layer] of (shape.architecture ? shape.architecture.conv : []).entries()) {
    const [f, h, w] = layer.output;
    parts.push(box(`layer ${i + 1}`, `${layer.filters} filters ${layer.kernel}×${layer.kernel}, ` +
      `max-pool → ${f}×${h}×${w}`));
  }
  if (shape.architecture && shape.architecture.hidden > 0) {
    parts.push(box("hidden", `${shape.architecture.hidden} units (dropout)`));
  }
  parts.push(box("output", `${summary.n_neurons} neurons`));
  const weights = shape.n_params ? ` · ${grouped(shape.n_params)} weights` : "";
  const members = shape.architecture && shape.architecture.members > 1 ? ` ` +
    `· ${shape.architecture.members} networks averaged` : "";
  const list = el("ol", { className: "diagram" }, parts);
  figure.replaceChildren(list, el("figcaption", {}, `The network these settings make${weights}${members}.`));
  const words = parts.map((p) => `${p.firstChild.textContent}: ${p.lastChild.textContent}`);
  figure.setAttribute("aria-label", `The network: ${words.join(" → ")}`);
}

// `error`: { flag?, message } — the engine's structured error, or the form's own.
export function showSettingsError({ flag, message }) {
  const input = flag && $(`flag-${flag}`);
  if (input) {
    const all = input.closest("details");
    if (all) all.open = true;
    input.setAttribute("aria-invalid", "true");
    input.focus();
  }
  showError("settings-error", flag ? `--${flag}: ${message}` : message);
}

export function clearFlagErrors() {
  document.querySelectorAll("[aria-invalid]").forEach((el) => el.removeAttribute("aria-invalid"));
  hideError("settings-error");
}

// Settings live in the URL query so that a teacher can share a link.
export function syncUrl() {
  const params = new URLSearchParams();
  params.set("model", $("model-select").value);
  for (const flag of state.flags) params.set(flag.name, $(`flag-${flag.name}`).value);
  params.set("backend", $("backend-select").value);
  if (state.datasetName && !state.datasetName.startsWith("upload:")) params.set("dataset", state.datasetName);
  history.replaceState(null, "", `${location.pathname}?${params}`);
}

export function applyUrl() {
  const params = initialParams;
  if (params.get("preset")) {
    try {
      applyConfig(state.engine.presetConfig(params.get("preset")));
    } catch (error) {
      showSettingsError({ message: String(error) });
    }
  }
  const family = state.families.find((f) => f.name === params.get("model"));
  if (family && !params.get("preset")) applyConfig(family.config);
  for (const flag of state.flags) {
    if (params.has(flag.name)) $(`flag-${flag.name}`).value = params.get(flag.name);
  }
  drawDiagram();
  if (["auto", "wgpu", "cpu"].includes(params.get("backend"))) $("backend-select").value = params.get("backend");
}

// Every setting of the run that matters for its model, on one line (the engine's wording).
export function settingsText(flags) {
  try {
    return state.engine.settingsText(flags);
  } catch {
    return "(settings of an older version)";
  }
}
