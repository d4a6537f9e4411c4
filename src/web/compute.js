// What the engine worker needs to know before it starts: whether the browser offers WebGPU
// (the engine, engine.rs, then chooses the device for each run and the inside views).

// Which GPU the browser gives us, in words, or why there is none.
export async function webgpuAdapter() {
  if (!("gpu" in navigator)) {
    // Browsers offer WebGPU only to https pages and localhost: a LAN address over plain http has none.
    const reason = isSecureContext ? "this browser has no WebGPU"
      : "WebGPU needs a secure page (https, or localhost), and this one is served over plain http";
    return { ok: false, reason };
  }
  try {
    const adapter = await navigator.gpu.requestAdapter();
    if (!adapter) return { ok: false, reason: "the browser offers no WebGPU adapter (GPU blocked or absent)" };
    const info = adapter.info || {};
    const parts = [info.vendor, info.architecture, info.description].filter((p) => p);
    const fallback = info.isFallbackAdapter || adapter.isFallbackAdapter;
    return { ok: true, name: (parts.join(" ") || "unnamed adapter") + (fallback ? " (software fallback, slow)" : "") };
  } catch (error) {
    return { ok: false, reason: `WebGPU failed: ${error.message || error}` };
  }
}
