//! The inside views' downloads, on the page's thread (the views themselves are computed in
//! the engine: `engine::inside`).

use js_sys::Array;
use wasm_bindgen::prelude::*;

use super::{error, files_to_js};
use crate::explain;

/// The views as files (`explain_T.npz`, two PNG montages) from an overview and the
/// inversions' results, as `v1p explain` writes them.
#[wasm_bindgen(js_name = exportInsideFiles)]
pub fn export_inside_files(
    overview: JsValue,
    inverted: JsValue,
    started_unix: f64,
) -> Result<Array, JsValue> {
    let overview: explain::Overview = serde_wasm_bindgen::from_value(overview).map_err(error)?;
    let inverted: Vec<explain::Inverted> =
        serde_wasm_bindgen::from_value(inverted).map_err(error)?;
    let files = explain::explain_files(&overview, &inverted, started_unix as u64).map_err(error)?;
    Ok(files_to_js(files))
}
