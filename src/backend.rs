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
}

/// Initialises the requested backend. WebGPU must be initialised asynchronously in the
/// browser before the first tensor is made on it.
pub async fn init(kind: BackendKind) -> Result<ComputeDevice, String> {
    match kind {
        BackendKind::Cpu => Ok(ComputeDevice {
            kind,
            device: Device::flex(),
            description: "CPU (Burn flex backend)".to_string(),
        }),
        BackendKind::Wgpu => {
            if let Some(ready) = WGPU.with(|w| w.borrow().clone()) {
                return Ok(ready);
            }
            let ready = init_wgpu().await?;
            WGPU.with(|w| *w.borrow_mut() = Some(ready.clone()));
            Ok(ready)
        }
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
