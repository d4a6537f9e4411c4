// Section 4, the plots (drawn by the engine on this thread: src/web/plots.rs), their text
// alternatives, the per-neuron table, and the comparison of two runs.
import { $, el, state } from "./page.js";
import { findRun } from "./runs.js";

export function setupCanvases() {
  const resize = () => {
    for (const canvas of [$("progress-canvas"), $("pearson-canvas")]) {
      const ratio = window.devicePixelRatio || 1;
      canvas.width = Math.round(canvas.clientWidth * ratio);
      canvas.height = Math.round(canvas.clientHeight * ratio);
    }
    drawPlots();
  };
  new ResizeObserver(resize).observe($("plots-section"));
  new ResizeObserver(drawCompare).observe($("runs-section"));
  resize();
}

export function drawPlots() {
  const ratio = window.devicePixelRatio || 1;
  const report = state.report;
  for (const canvas of [$("progress-canvas"), $("pearson-canvas")]) {
    canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  }
  state.barLayout = null;
  if (!report) return;
  try {
    state.engine.drawProgress($("progress-canvas"), report, { scale: ratio });
    state.barLayout = state.engine.drawPearson($("pearson-canvas"), report, {
      scale: ratio,
      sortByR: $("sort-select").value === "r",
      cellTypes: state.cellTypes.length === (report.best ? report.best.r.length : -1) ? state.cellTypes : [],
    });
  } catch (error) {
    console.error(error);
  }
  describePlots(report);
}

// Text alternatives: the plots' key numbers, and the per-neuron table.
export function describePlots(report) {
  const last = report.history[report.history.length - 1];
  const best = report.best;
  $("progress-canvas").setAttribute("aria-label", last
    ? `Training progress: at step ${last.step} training loss ${last.train_loss.toFixed(4)}, ` +
      `early-stop loss ${last.early_stop_loss.toFixed(4)}, evaluation loss ${last.eval_loss.toFixed(4)}, ` +
        `mean r ${last.mean_r.toFixed(3)}; ` +
          `baseline loss ${report.baseline_loss.toFixed(4)}${best ? `; best step ${best.step}` : ""}.`
    : "Training progress: no evaluation yet.");
  if (!best) return;
  const [lowest, highest] = [Math.min(...best.r), Math.max(...best.r)];
  $("pearson-canvas").setAttribute("aria-label", `Pearson r per neuron for the best network (step ${best.step}): ` +
    `mean ${best.mean_r.toFixed(3)}, lowest ${lowest.toFixed(3)}, highest ${highest.toFixed(3)}.`);
  const types = state.cellTypes.length === best.r.length;
  // Rebuilt only when it changes: a redraw (every 300 ms while training, or on a resize) must
  // not take the keyboard focus away from a neuron's button.
  const key = `${best.mean_r}:${best.step}:${best.r.length}:${types}:${state.shownRunId}`;
  if (key === state.neuronTableKey) return;
  state.neuronTableKey = key;
  const head = ["neuron", ...(types ? ["true cell type"] : []), "Pearson r", "eval loss", "baseline loss"];
  $("neuron-table").replaceChildren(el("tr", {}, head.map((h) => el("th", { scope: "col" }, h))),
    ...best.r.map((r, i) => el("tr", {},
      el("td", {}, el("button", { type: "button", className: "link", dataset: { neuron: i },
        "aria-label": `look inside neuron ${i + 1}` }, String(i + 1))),
      types ? el("td", {}, state.cellTypes[i]) : null, el("td", {}, r.toFixed(3)),
      el("td", {}, best.eval_loss_per_neuron[i].toFixed(4)),
      el("td", {}, report.baseline_loss_per_neuron[i].toFixed(4)))));
}

// Redraws in an animation frame, at most every 300 ms and never more than a fifth of the
// time: a redraw costs ~2 ms here (BENCHMARKS.md), but a slow machine or a huge dataset must
// not let redraws crowd out the controls.
export function scheduleDraw() {
  if (state.drawPending) return;
  state.drawPending = true;
  const gap = Math.max(300, 4 * state.drawCost);
  const wait = Math.max(0, gap - (performance.now() - state.lastDraw));
  setTimeout(() => requestAnimationFrame(() => {
    state.drawPending = false;
    const started = performance.now();
    drawPlots();
    state.lastDraw = performance.now();
    state.drawCost = state.lastDraw - started;
  }), wait);
}

// A click on the Pearson plot: the neuron whose bar is under it, opened in section 5.
export function pearsonClick(event) {
  const layout = state.barLayout;
  if (!layout) return;
  const ratio = window.devicePixelRatio || 1;
  const x = event.offsetX * ratio;
  const slot = Math.floor(((x - layout.x0) / (layout.x1 - layout.x0)) * layout.order.length);
  if (slot < 0 || slot >= layout.order.length) return;
  openNeuron(layout.order[slot]);
}

export function openNeuron(neuron) {
  state.inside.focus(neuron);
  $("inside-section").scrollIntoView({ behavior: "smooth", block: "start" });
  // Keyboard users land where the neuron's views are.
  $("neuron-select").focus({ preventScroll: true });
}

export function showBest(title, best) {
  $("results").replaceChildren(`${title} (step ${best.step}): mean r = `,
    el("span", { id: "mean-r" }, best.mean_r.toFixed(3)), " · FVE = ", el("span", { id: "fve" }, best.fve.toFixed(3)));
}

export function drawCompare() {
  const runs = state.compare.map(findRun).filter(Boolean);
  const figure = $("compare-figure");
  if (runs.length !== 2) {
    figure.hidden = true;
    return;
  }
  figure.hidden = false;
  const canvas = $("compare-canvas");
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.round(canvas.clientWidth * ratio);
  canvas.height = Math.round(canvas.clientHeight * ratio);
  const [a, b] = runs;
  try {
    state.engine.drawCompare(canvas, [
      { label: `run ${a.number}`, report: a.report },
      { label: `run ${b.number}`, report: b.report },
    ], { scale: ratio });
  } catch (error) {
    console.error(error);
  }
  const [ra, rb] = [a.report.best.r, b.report.best.r];
  const same = ra.length === rb.length;
  // Differences below 1e-9 are a JSON round trip's last digit (an imported record), not a better fit.
  const better = same ? rb.filter((r, i) => r > ra[i] + 1e-9).length : 0;
  const text = `A = run ${a.number} (mean r ${a.report.best.mean_r.toFixed(3)}), ` +
    `B = run ${b.number} (mean r ${b.report.best.mean_r.toFixed(3)}). ` +
    (same ? `B predicts ${better} of ${ra.length} neurons better than A.`
      : "They predict different neurons, so only the curves compare.");
  $("compare-caption").textContent = `Left: evaluation (solid) and training (dashed) loss of both runs. ` +
    `Right: each neuron's r in A against B. ${text}`;
  canvas.setAttribute("aria-label", `Comparison of two runs. ${text}`);
}
