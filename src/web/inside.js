// "Inside the network" (section 5): the page's side of the inside views, which the engine
// computes (engine/inside.rs). It asks the engine to open the shown run's network on the loaded
// data, then draws what comes back: the first-layer filters, and per neuron its preferred and
// most suppressive image, receptive field, spike-triggered average, predictions and top stimuli.

const DIRECTIONS = ["excite", "suppress"];

// `engine`: the wasm bindings (drawing); `send(request, transfer)`: to the engine, whose inside*
// events come back to the returned `onMessage`; `context()`: what the shown run needs (its network
// read on demand by `loadNetwork()`), or why it cannot be opened; `save(blob, name)`: a download.
export function createInside({ engine, send, $, context, save }) {
  const s = {
    token: 0,
    overview: null,
    results: new Map(), // `${neuron}:${direction}` → the inversion's result
    neuron: 0,
    opened: null, // the context the views show
    openedAt: 0,
    focusAt: null, // when the shown neuron was asked for, until its images arrive
    reading: false, // opened, its network still being read from the browser's store
    first: undefined, // the neuron whose images come first, asked for while reading
  };

  function setStatus(text) {
    $("inside-status").textContent = text;
  }

  function showError(message) {
    $("inside-error").textContent = message;
    $("inside-error").hidden = !message;
  }

  // Called by the page whenever the shown run (or the data) changes.
  function runChanged() {
    const ctx = context();
    // The same run on the same loaded data (a reload of the data gives it a new id in the engine).
    const sameRun = s.opened && ctx.ok && ctx.runId === s.opened.runId && ctx.datasetId === s.opened.datasetId;
    if (!sameRun) close();
    $("inside-button").disabled = !ctx.ok || sameRun;
    if (!sameRun) setStatus(ctx.ok ? `Ready to look inside run ${ctx.runNumber}.` : ctx.why);
  }

  function close() {
    if (s.opened) send({ type: "closeInside" });
    s.token += 1;
    s.opened = null;
    s.reading = false;
    s.overview = null;
    s.results.clear();
    $("inside-views").hidden = true;
    $("inside-progress").hidden = true;
    showError("");
  }

  // `focusNeuron`: a neuron clicked before the views were open, whose images come first.
  async function open(focusNeuron) {
    const ctx = context();
    if (!ctx.ok) return setStatus(ctx.why);
    close();
    const token = s.token;
    s.opened = ctx;
    s.openedAt = performance.now();
    s.neuron = Math.min(s.neuron, ctx.nNeurons - 1);
    s.reading = true;
    s.first = Number.isInteger(focusNeuron) ? focusNeuron : undefined;
    if (s.first !== undefined) s.focusAt = performance.now();
    $("inside-button").disabled = true;
    setStatus("Opening the network…");
    // The run's network is read from the browser's store only now (runs do not hold it).
    let network;
    try {
      network = await ctx.loadNetwork();
    } catch (error) {
      const message = `The network could not be read: ${error.message || error}`;
      onMessage({ token, type: "insideFailed", error: { message } });
      return;
    }
    if (token !== s.token) return; // closed, or another run opened, meanwhile
    s.reading = false;
    // The engine holds the data already (by id); the network's bytes are a copy, transferred.
    const bytes = new Uint8Array(network.bytes);
    send({
      type: "openInside",
      token,
      dataset: ctx.datasetId,
      network: { name: network.name, bytes },
      truth: ctx.truth ?? null,
      backend: ctx.backend,
      focus: s.first ?? null,
    }, [bytes.buffer]);
  }

  function onMessage(msg) {
    if (msg.token !== s.token) return; // an older request's answer
    switch (msg.type) {
      case "insideOpened":
        performance.mark("v1p:inside-opened", { detail: { backend: msg.backend } });
        setStatus(`Computing on ${msg.description}…`);
        if (msg.notice) showError(msg.notice);
        break;
      case "insideOverview":
        s.overview = msg.overview;
        fillPickers();
        $("inside-views").hidden = false;
        $("inside-progress").hidden = false;
        $("inside-progress").value = 0;
        drawFilters();
        showNeuron(s.neuron);
        showStimulus(Number($("stimulus-select").value));
        setStatus(`Filters, receptive fields and predictions ready (${seconds(msg.ms)}); ` +
          `searching for preferred images…`);
        break;
      case "insideProgress":
        $("inside-progress").value = msg.done / msg.total;
        break;
      case "insideInverted":
        for (const result of msg.results) s.results.set(`${result.neuron}:${result.direction}`, result);
        $("inside-progress").value = msg.done / msg.total;
        setStatus(`Preferred images: ${msg.done} of ${msg.total} neurons ready.`);
        if (msg.results.some((r) => r.neuron === s.neuron)) {
          if (s.focusAt !== null) {
            performance.mark("v1p:neuron-view", { detail: { ms: performance.now() - s.focusAt } });
            s.focusAt = null;
          }
          drawNeuronTiles();
        }
        break;
      case "insideComplete":
        performance.mark("v1p:inside-complete", { detail: { ms: msg.ms } });
        setStatus(`All ${s.overview.n_neurons} neurons' preferred images are ready (${seconds(msg.ms)} in all).`);
        $("inside-progress").value = 1;
        break;
      case "insideFailed": {
        // The views go (their data may be half there); the message stays, and the button
        // can try again.
        close();
        showError(msg.error.message);
        setStatus("");
        $("inside-button").disabled = !context().ok;
        break;
      }
    }
  }

  function seconds(ms) {
    return `${(ms / 1000).toFixed(1)} s`;
  }

  function fillPickers() {
    const o = s.overview;
    const types = o.truth ? o.truth.map((t) => t.cell_type) : [];
    const neuronSelect = $("neuron-select");
    neuronSelect.replaceChildren(...o.r.map((r, i) => {
      const label = `${i + 1}${types[i] ? ` (${types[i]})` : ""} — r = ${r.toFixed(2)}`;
      return new Option(label, String(i));
    }));
    const stimulusSelect = $("stimulus-select");
    stimulusSelect.replaceChildren(...o.eval_images.map((image) => new Option(`image ${image + 1}`, String(image))));
  }

  // ---------- drawing ----------

  function sizeCanvas(canvas, width, height) {
    canvas.width = width;
    canvas.height = height;
    return canvas.getContext("2d");
  }

  // Signed values as an image on the diverging scale, one pixel per value.
  function putSigned(canvas, values, [h, w], scale) {
    const ctx = sizeCanvas(canvas, w, h);
    const max = scale ?? values.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const pixels = engine.divergingPixels(Float32Array.from(values), max);
    ctx.putImageData(new ImageData(new Uint8ClampedArray(pixels.buffer), w, h), 0, 0);
  }

  function putGrey(canvas, pixels, [h, w]) {
    const ctx = sizeCanvas(canvas, w, h);
    const image = ctx.createImageData(w, h);
    pixels.forEach((p, i) => image.data.set([p, p, p, 255], 4 * i));
    ctx.putImageData(image, 0, 0);
  }

  function drawFilters() {
    const { count, size, weights } = s.overview.conv1;
    const columns = Math.min(count, 16);
    const rows = Math.ceil(count / columns);
    const cell = size + 1;
    const canvas = $("filters-canvas");
    const ctx = sizeCanvas(canvas, columns * cell - 1, rows * cell - 1);
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, canvas.width, canvas.height);
    // One scale for every filter, so their strengths compare.
    const max = weights.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    const rgba = engine.divergingPixels(Float32Array.from(weights), max);
    for (let f = 0; f < count; f++) {
      const tile = new Uint8ClampedArray(rgba.buffer, f * size * size * 4, size * size * 4);
      const [x, y] = [(f % columns) * cell, Math.floor(f / columns) * cell];
      ctx.putImageData(new ImageData(new Uint8ClampedArray(tile), size, size), x, y);
    }
    // About 8 screen pixels per weight: small banks stay small, big ones wrap to the width.
    canvas.style.width = `min(100%, ${canvas.width * 8}px)`;
    canvas.style.aspectRatio = `${canvas.width} / ${canvas.height}`;
    // An LN model's only layer is one filter per neuron over the whole image: its receptive field.
    const ln = s.opened && s.opened.family === "ln";
    const what = ln ? `LN model's filters (one per neuron: its receptive field)` : "first-layer filters";
    canvas.setAttribute("aria-label", `The ${count} ${what}, ${size}×${size} pixels each; ` +
      `strongest weight ${max.toFixed(3)}.`);
    $("filters-caption").firstChild.textContent = ln
      ? "The LN model's filters, one per neuron in neuron order: each is that neuron's receptive field, " +
        "the image it responds to most. "
      : "The first layer's filters: what the network looks for in every patch of the image. ";
  }

  function minus(a, b) {
    return a.map((v, i) => v - b[i]);
  }

  function column(values, neuron, images) {
    const n = s.overview.n_neurons;
    return images.map((i) => values[i * n + neuron]);
  }

  function showNeuron(neuron) {
    const o = s.overview;
    if (!o) return;
    s.neuron = neuron;
    $("neuron-select").value = String(neuron);
    drawNeuronTiles();
    const evalImages = o.eval_images;
    const scatter = $("scatter-canvas");
    const ratio = window.devicePixelRatio || 1;
    scatter.width = Math.round(scatter.clientWidth * ratio);
    scatter.height = Math.round(scatter.clientHeight * ratio);
    const measured = column(o.measured, neuron, evalImages);
    const predicted = column(o.predicted, neuron, evalImages);
    engine.drawNeuronScatter(scatter, { neuron, measured, predicted, r: o.r[neuron] }, { scale: ratio });
    const text = `Neuron ${neuron + 1} on the ${evalImages.length} evaluation images: ` +
      `Pearson r = ${o.r[neuron].toFixed(3)}.`;
    $("scatter-caption").textContent = `${text} Each dot is one image the network never trained on; ` +
      `on the grey line the prediction would be perfect.`;
    scatter.setAttribute("aria-label", text);
    drawTop("top-measured", o.top_measured[neuron], neuron);
    drawTop("top-predicted", o.top_predicted[neuron], neuron);
  }

  function drawTop(id, images, neuron) {
    const o = s.overview;
    const figures = images.map((image) => {
      const figure = document.createElement("figure");
      const canvas = document.createElement("canvas");
      putGrey(canvas, s.opened.image(image), [o.height, o.width]);
      const m = o.measured[image * o.n_neurons + neuron];
      const p = o.predicted[image * o.n_neurons + neuron];
      const label = `image ${image + 1}: measured ${m.toFixed(2)}, predicted ${p.toFixed(2)}`;
      canvas.setAttribute("role", "img");
      canvas.setAttribute("aria-label", label);
      canvas.title = label;
      const caption = document.createElement("figcaption");
      caption.textContent = `${m.toFixed(2)} / ${p.toFixed(2)}`;
      figure.append(canvas, caption);
      return figure;
    });
    $(id).replaceChildren(...figures);
  }

  function drawNeuronTiles() {
    const o = s.overview;
    const neuron = s.neuron;
    const shape = [o.height, o.width];
    const pixels = o.height * o.width;
    const slice = (values) => values.slice(neuron * pixels, (neuron + 1) * pixels);
    const predictedColumn = column(o.predicted, neuron, [...Array(o.n_images).keys()]);
    const best = Math.max(...predictedColumn);
    const worst = Math.min(...predictedColumn);
    const truth = o.truth && o.truth[neuron];
    const match = (value) => (truth && value != null ? ` · like the true filter: ${value.toFixed(2)}` : "");
    for (const direction of DIRECTIONS) {
      const result = s.results.get(`${neuron}:${direction}`);
      const canvas = $(direction === "excite" ? "tile-preferred" : "tile-suppressive");
      const text = $(direction === "excite" ? "preferred-text" : "suppressive-text");
      const label = direction === "excite" ? "Preferred" : "Most suppressive";
      if (!result) {
        putSigned(canvas, new Array(pixels).fill(0), shape, 1);
        text.textContent = "computing…";
        canvas.setAttribute("aria-label", "not computed yet");
        continue;
      }
      putSigned(canvas, minus(result.image, o.mean_image), shape);
      // Below zero the rate is 0 however strong the suppression: the drive says how strong.
      const figure = direction === "excite"
        ? `rate ${result.rate.toFixed(2)} (best data image ${best.toFixed(2)})`
        : `rate ${result.rate.toFixed(2)}, ` +
          `drive ${result.drive.toFixed(2)} (lowest data image's rate ${worst.toFixed(2)})`;
      text.textContent = `${figure} ` +
        `· agreement of starts ${result.consistency.toFixed(2)}${match(result.truth_similarity)}`;
      canvas.setAttribute("aria-label", `${label} image of neuron ${neuron + 1}: ${text.textContent}`);
    }
    putSigned($("tile-rf"), slice(o.rf), shape);
    $("rf-text").textContent = `gradient at the average image${match(truth && truth.rf_similarity)}`;
    const describe = (id, what) => $(id).setAttribute("aria-label", what);
    describe("tile-rf", `Receptive-field estimate of neuron ${neuron + 1}: ${$("rf-text").textContent}`);
    putSigned($("tile-sta"), slice(o.sta), shape);
    $("sta-text").textContent = `rate-weighted average image${match(truth && truth.sta_similarity)}`;
    describe("tile-sta", `Spike-triggered average of neuron ${neuron + 1}: ${$("sta-text").textContent}`);
    $("truth-figure").hidden = !truth;
    if (truth) {
      putSigned($("tile-truth"), truth.filter, shape);
      $("truth-text").textContent = `${truth.cell_type} cell`;
      $("tile-truth").setAttribute("aria-label", `True filter of neuron ${neuron + 1}, ` +
        `a ${truth.cell_type} cell in the simulation`);
    }
  }

  function showStimulus(image) {
    const o = s.overview;
    if (!o || !Number.isInteger(image)) return;
    putGrey($("stimulus-image"), s.opened.image(image), [o.height, o.width]);
    const row = (values) => values.slice(image * o.n_neurons, (image + 1) * o.n_neurons);
    const canvas = $("stimulus-canvas");
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(canvas.clientWidth * ratio);
    canvas.height = Math.round(canvas.clientHeight * ratio);
    const measured = row(o.measured);
    const predicted = row(o.predicted);
    engine.drawStimulusRates(canvas, { image, measured, predicted }, { scale: ratio });
    const strongest = measured.indexOf(Math.max(...measured));
    const text = `Image ${image + 1}: the neurons' measured (blue) and predicted (orange) rates. ` +
      `Strongest measured response: neuron ${strongest + 1} (${measured[strongest].toFixed(2)}; ` +
        `predicted ${predicted[strongest].toFixed(2)}).`;
    $("stimulus-caption").textContent = text;
    canvas.setAttribute("aria-label", text);
  }

  // A neuron picked in the Pearson plot or the table: its views, its inversions first.
  function focus(neuron) {
    if (!s.overview) {
      s.neuron = neuron;
      if (!s.opened) {
        open(neuron);
      } else if (s.reading) {
        // Not yet sent to the worker: it goes with the open request.
        s.first = neuron;
        s.focusAt = performance.now();
      } else {
        // Open but still computing the overview: the worker queues it first.
        s.focusAt = performance.now();
        send({ type: "focusInside", token: s.token, neuron });
      }
      return;
    }
    showNeuron(neuron);
    const missing = DIRECTIONS.some((d) => !s.results.has(`${neuron}:${d}`));
    if (missing) {
      s.focusAt = performance.now();
      send({ type: "focusInside", token: s.token, neuron });
    } else {
      performance.mark("v1p:neuron-view", { detail: { ms: 0 } });
    }
  }

  function download() {
    if (!s.overview) return;
    const results = [...s.results.values()];
    let files;
    try {
      files = Array.from(engine.exportInsideFiles(s.overview, results, s.opened.startedUnix));
    } catch (error) {
      return showError(`Could not make the files: ${error.message || error}`);
    }
    for (const file of files) save(new Blob([file.bytes], { type: file.mime }), file.name);
  }

  $("inside-button").addEventListener("click", () => open());
  $("neuron-select").addEventListener("change", (e) => focus(Number(e.target.value)));
  const step = (delta) => () => {
    if (!s.overview) return;
    const n = s.overview.n_neurons;
    focus((s.neuron + delta + n) % n);
  };
  $("neuron-prev").addEventListener("click", step(-1));
  $("neuron-next").addEventListener("click", step(1));
  $("stimulus-select").addEventListener("change", (e) => showStimulus(Number(e.target.value)));
  $("download-explain").addEventListener("click", download);

  // The engine failed under the views: they close with its message.
  const fail = (message) => s.opened && onMessage({ token: s.token, type: "insideFailed", error: { message } });
  return { runChanged, focus, open, onMessage, fail };
}
