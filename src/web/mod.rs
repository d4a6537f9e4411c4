//! The browser boundary: what JavaScript calls. The engine worker speaks the typed protocol of
//! [`engine`] (runs, saved networks, the inside views); the page's own thread uses the rest
//! (presets, settings text, plots, exports). Values cross as plain JS objects through
//! `serde-wasm-bindgen`.

mod canvas;
mod engine;
mod explain;
mod flags;
mod halves;
mod plots;

pub use engine::{Engine, Event, Request};
pub use explain::export_inside_files;
pub use halves::BatchPartner;

use js_sys::{Array, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::model::ModelFamily;
use crate::results::{self, ExportFile};
use crate::training::{TrainingConfig, TrainingReport};

/// The static constructors (cubecl's kernel registrations) are not run here but by the first
/// [`crate::backend::init`]: the page's own instance (settings, shapes, files) never computes, and
/// the worker's need them only for its first run or view. They took 0.1 s of every page
/// load's start (a CPU profile of a warm visit).
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

/// Plain JS objects (maps as objects, no BigInts); bytes as Uint8Array, so that files cross
/// whole (and can be transferred) instead of as arrays of numbers.
fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(
            &serde_wasm_bindgen::Serializer::json_compatible().serialize_bytes_as_arrays(false),
        )
        .map_err(|e| JsValue::from_str(&e.to_string()))
}

fn error(message: impl ToString) -> JsValue {
    JsValue::from_str(&message.to_string())
}

/// Files as JS objects `{ name, mime, bytes: Uint8Array }`, ready for a download.
fn files_to_js(files: Vec<ExportFile>) -> Array {
    files
        .into_iter()
        .map(|file| {
            let object = js_sys::Object::new();
            let set = |key: &str, value: JsValue| {
                // Setting a property on a fresh plain object cannot fail.
                let _ = js_sys::Reflect::set(&object, &key.into(), &value);
            };
            set("name", file.name.into());
            set("mime", file.mime.into());
            set("bytes", Uint8Array::from(file.bytes.as_slice()).into());
            JsValue::from(object)
        })
        .collect()
}

/// The run's record, Pearson data and per-neuron CSV (see `results::report_files`) from a
/// report object; `cellTypes` adds a column to the CSV when it has one entry per neuron.
#[wasm_bindgen(js_name = exportReport)]
pub fn export_report(
    report: JsValue,
    started_unix: f64,
    sources: Vec<String>,
    cell_types: Vec<String>,
) -> Result<Array, JsValue> {
    let report: TrainingReport = serde_wasm_bindgen::from_value(report).map_err(error)?;
    let files = results::report_files(&report, started_unix as u64, &sources, &cell_types)
        .map_err(error)?;
    Ok(files_to_js(files))
}

/// Default flags, or a preset's ("seed", "fast", "best", "ln", "gabor"), as a JS object.
#[wasm_bindgen(js_name = presetConfig)]
pub fn preset_config(name: &str) -> Result<JsValue, JsValue> {
    let config =
        TrainingConfig::preset(name).ok_or_else(|| error(format!("unknown preset `{name}`")))?;
    to_js(&config)
}

/// A run's settings on one line, as the plots print them.
#[wasm_bindgen(js_name = settingsText)]
pub fn settings_text(config: JsValue) -> Result<String, JsValue> {
    let config: TrainingConfig = serde_wasm_bindgen::from_value(config).map_err(error)?;
    Ok(config.summary())
}

/// The models a page offers: `[{ name, explanation, config }]`, `config` being the settings
/// the model starts from.
#[wasm_bindgen(js_name = modelFamilies)]
pub fn model_families() -> Result<JsValue, JsValue> {
    #[derive(Serialize)]
    struct Family {
        name: &'static str,
        label: &'static str,
        explanation: &'static str,
        config: TrainingConfig,
    }
    let families: Vec<Family> = ModelFamily::ALL
        .iter()
        .map(|&f| Family {
            name: f.name(),
            label: f.label(),
            explanation: f.explanation(),
            config: TrainingConfig::for_family(f),
        })
        .collect();
    to_js(&families)
}

/// A student's exported run, for the runs panel: `pearsondata_T.json`'s bytes and, when it
/// came along, `training_manualsave_T.json`'s. Returns `{ report, started_unix, sources }`;
/// throws a message in words when the files are not this program's exports.
#[wasm_bindgen(js_name = importRun)]
pub fn import_run(pearson: &[u8], training: Option<Vec<u8>>) -> Result<JsValue, JsValue> {
    let imported =
        results::import::report_from_exports(pearson, training.as_deref()).map_err(error)?;
    to_js(&imported)
}

/// Whether a stored value is a whole report of a run with a best network (stored runs come
/// from older versions of the page too): serde's own check, not a copy of it in JavaScript.
#[wasm_bindgen(js_name = isCompleteReport)]
pub fn is_complete_report(report: JsValue) -> bool {
    serde_wasm_bindgen::from_value::<TrainingReport>(report).is_ok_and(|r| r.best.is_some())
}
