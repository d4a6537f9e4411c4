// Which device a worker computes on: WebGPU when the browser offers it (and it starts), the
// CPU otherwise, with the reason in words. Shared by the training and the inspector workers.

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

// `preference`: "auto", "wgpu" or "cpu"; `initBackend` is the engine's export.
export async function chooseBackend(preference, initBackend) {
  if (preference === "cpu") {
    return { kind: "cpu", description: await initBackend("cpu"), notice: null };
  }
  const adapter = await webgpuAdapter();
  if (adapter.ok) {
    try {
      await initBackend("wgpu");
      return { kind: "wgpu", description: `GPU via WebGPU: ${adapter.name}`, notice: null };
    } catch (error) {
      adapter.reason = String(error);
    }
  }
  if (preference === "wgpu") throw new Error(`WebGPU was requested but is not available: ${adapter.reason}`);
  return {
    kind: "cpu",
    description: await initBackend("cpu"),
    notice: `WebGPU is not available (${adapter.reason}), so the work runs on the CPU — ` +
      "slower, but the same network.",
  };
}
