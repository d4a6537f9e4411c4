//! The one place that knows about concrete backends: WebGPU / wgpu and the `flex` CPU backend.
//! Everything else takes a Burn `Device`.

use std::cell::RefCell;

use burn::prelude::Device;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum BackendKind {
    /// Burn's pure-Rust `flex` backend on the CPU (works everywhere).
    Cpu,
    /// wgpu: WebGPU in the browser, Vulkan / Metal / DX12 natively.
    Wgpu,
}

/// An initialised device and what to tell the user about it.
#[derive(Clone, Debug)]
pub struct ComputeDevice {
    pub kind: BackendKind,
    pub device: Device,
    /// e.g. "WebGPU: SwiftShader Device (Subzero) (fallback adapter)" or "CPU (flex)".
    pub description: String,
}

thread_local! {
    // wgpu can be initialised once per process (or page); later requests reuse it.
    static WGPU: RefCell<Option<ComputeDevice>> = const { RefCell::new(None) };
    static WGPU_STARTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(target_arch = "wasm32")]
unsafe extern "C" {
    /// wasm-ld's function that runs the static constructors (cubecl registers its kernels
    /// with the `inventory` crate in them). While no code calls it, wasm-ld wraps *every*
    /// export in a call to it, so every call from JavaScript re-ran them all: that was
    /// nearly all of a plot redraw's 0.4 s (BENCHMARKS.md).
    fn __wasm_call_ctors();
}

/// Runs the static constructors once (wasm only; natively the loader does). [`init`] calls
/// it, so an instance that never computes never runs them (src/web/mod.rs, `start`).
fn run_static_constructors() {
    #[cfg(target_arch = "wasm32")]
    {
        static DONE: std::sync::Once = std::sync::Once::new();
        // SAFETY: `Once` runs them exactly once per instance; they only register statics.
        DONE.call_once(|| unsafe { __wasm_call_ctors() });
    }
}

/// Initialises the requested backend. WebGPU must be initialised asynchronously in the
/// browser before the first tensor is made on it.
pub async fn init(kind: BackendKind) -> Result<ComputeDevice, String> {
    run_static_constructors();
    match kind {
        BackendKind::Cpu => Ok(ComputeDevice {
            kind,
            device: Device::flex(),
            description: "CPU (Burn flex backend)".to_string(),
        }),
        BackendKind::Wgpu => {
            // A run and the inside views share one engine: a second caller while WebGPU is
            // starting waits for that start instead of starting it again.
            while WGPU_STARTING.with(|s| s.get()) {
                pause().await;
            }
            if let Some(ready) = WGPU.with(|w| w.borrow().clone()) {
                return Ok(ready);
            }
            WGPU_STARTING.with(|s| s.set(true));
            let started = init_wgpu().await;
            WGPU_STARTING.with(|s| s.set(false));
            let ready = started?;
            WGPU.with(|w| *w.borrow_mut() = Some(ready.clone()));
            Ok(ready)
        }
    }
}

/// A short wait on the event loop (wasm); natively a start completes before anyone else asks.
async fn pause() {
    #[cfg(target_arch = "wasm32")]
    {
        let promise = js_sys::Promise::new(&mut |resolve, _| {
            let global = js_sys::global();
            if let Ok(set_timeout) = js_sys::Reflect::get(&global, &"setTimeout".into()) {
                let set_timeout = js_sys::Function::from(set_timeout);
                let _ = set_timeout.call2(&global, &resolve, &20.into());
            }
        });
        let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    }
}

#[cfg(any(target_arch = "wasm32", feature = "wgpu"))]
async fn init_wgpu() -> Result<ComputeDevice, String> {
    let (device, setup) = Device::wgpu_options()
        .init_with_setup_async()
        .await
        .map_err(|e| format!("WebGPU could not be started: {e}"))?;
    let info = setup.adapter.get_info();
    // In the browser wgpu reports no adapter name; the page reads it from `navigator.gpu`.
    let api = match setup.backend {
        burn::tensor::wgpu::wgpu::Backend::BrowserWebGpu => "WebGPU".to_string(),
        other => format!("wgpu/{other:?}"),
    };
    let mut description = [api, info.name.clone(), info.driver.clone()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(" · ");
    if info.device_type == burn::tensor::wgpu::wgpu::DeviceType::Cpu {
        description.push_str(" (a software adapter on the CPU: slow)");
    }
    Ok(ComputeDevice {
        kind: BackendKind::Wgpu,
        device,
        description,
    })
}

#[cfg(not(any(target_arch = "wasm32", feature = "wgpu")))]
async fn init_wgpu() -> Result<ComputeDevice, String> {
    Err("this build of v1p has no wgpu backend; rebuild with `--features wgpu`".to_string())
}
