//! The browser boundary: what JavaScript (the page's worker, and the browser tests) calls.
//! Values cross as plain JS objects through `serde-wasm-bindgen`; errors as strings.

mod canvas;
mod explain;
mod flags;
mod plots;

pub use explain::{WebExplainer, WebInversion};

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Uint8Array};
use serde::Serialize;
use wasm_bindgen::prelude::*;

use crate::backend::{self, BackendKind, ComputeDevice};
use crate::data::{self, Dataset};
use crate::model::ModelFamily;
use crate::results::{self, ExportFile, SavedNetwork};
use crate::training::ridge::fit_gabor_ridge;
use crate::training::{Progress, Trainer, TrainingConfig, TrainingReport};

#[wasm_bindgen(start)]
pub fn start() {
    backend::run_static_constructors();
    console_error_panic_hook::set_once();
}

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsValue> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsValue::from_str(&e.to_string()))
}

fn error(message: impl ToString) -> JsValue {
    JsValue::from_str(&message.to_string())
}

/// A parsed dataset held on the wasm side, so its pixels cross the boundary once.
#[wasm_bindgen]
pub struct WebDataset {
    inner: Dataset,
}

#[wasm_bindgen]
impl WebDataset {
    /// Parses `.mat` files given as `[name, Uint8Array]` pairs; several files must hold the
    /// same images. Throws the loader's message (file name first) on bad input.
    #[wasm_bindgen(constructor)]
    pub fn new(files: Array) -> Result<WebDataset, JsValue> {
        let mut contents = Vec::new();
        for entry in files.iter() {
            let pair = Array::from(&entry);
            let name = pair
                .get(0)
                .as_string()
                .ok_or_else(|| error("file name missing"))?;
            let bytes = Uint8Array::new(&pair.get(1)).to_vec();
            contents.push((name, bytes));
        }
        let inner = data::load_files(contents.iter().map(|(n, b)| (n.as_str(), b.as_slice())))
            .map_err(error)?;
        Ok(WebDataset { inner })
    }

    /// Images, neurons, mean rate, pixel statistics.
    pub fn summary(&self) -> Result<JsValue, JsValue> {
        to_js(&self.inner.summary())
    }

    /// Checks a `TrainingConfig` against this dataset (set sizes, batch size, the feature
    /// map); throws `--flag: message`.
    pub fn validate(&self, config: JsValue) -> Result<(), JsValue> {
        let config: TrainingConfig = serde_wasm_bindgen::from_value(config).map_err(error)?;
        config.validate_for(&self.inner).map_err(error)
    }

    /// Loads a saved network (`.bpk`, Burn's record format, written by this page or `v1p`)
    /// and evaluates it on this dataset with its own split, on the CPU. Returns
    /// `{ report, info, networkFiles, warning? }`; throws a plain message when the file is not a saved network or
    /// the network does not fit this dataset.
    #[wasm_bindgen(js_name = evaluateNetwork)]
    pub async fn evaluate_network(
        &self,
        name: String,
        bytes: Uint8Array,
    ) -> Result<JsValue, JsValue> {
        let network = SavedNetwork::from_burnpack(&name, &bytes.to_vec())
            .await
            .map_err(error)?;
        let device = device_for("cpu").await?;
        let report = network
            .evaluate(&self.inner, &device.device)
            .await
            .map_err(|e| error(format!("{name}: {e}")))?;
        #[derive(Serialize)]
        struct Evaluated<'a> {
            report: TrainingReport,
            info: &'a results::NetworkInfo,
        }
        let result = to_js(&Evaluated {
            report,
            info: &network.info,
        })?;
        // Its files again (the seed's weights too), so a loaded run downloads like a trained one.
        let files = files_to_js(results::network_files(&network).map_err(error)?);
        js_sys::Reflect::set(&result, &"networkFiles".into(), &files)?;
        if let Some(warning) = network.source_warning(&self.inner) {
            js_sys::Reflect::set(&result, &"warning".into(), &warning.into())?;
        }
        Ok(result)
    }

    /// One image's pixels, row-major, for thumbnails.
    pub fn image(&self, index: usize) -> Result<Vec<f32>, JsValue> {
        if index >= self.inner.n_images {
            return Err(error(format!("no image {index}")));
        }
        Ok(self.inner.image(index).to_vec())
    }
}

/// Initialises a backend ("wgpu" or "cpu") and returns its description. WebGPU must be
/// started this way before anything is trained on it.
#[wasm_bindgen(js_name = initBackend)]
pub async fn init_backend(kind: String) -> Result<String, JsValue> {
    Ok(device_for(&kind).await?.description)
}

async fn device_for(kind: &str) -> Result<ComputeDevice, JsValue> {
    let kind = match kind {
        "wgpu" | "webgpu" => BackendKind::Wgpu,
        "cpu" => BackendKind::Cpu,
        other => {
            return Err(error(format!(
                "unknown backend `{other}` (use wgpu or cpu)"
            )));
        }
    };
    backend::init(kind).await.map_err(error)
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

/// A run in the page: a network trained step by step, or the Gabor ridge model, fitted at
/// once when it is created.
enum Run {
    Training(Box<Trainer>),
    Fitted(Box<TrainingReport>),
}

/// One training run on one backend, driven in slices by the caller (which can pause or stop
/// between slices).
#[wasm_bindgen]
pub struct WebTrainer {
    // Taken out while a call awaits the device, so no borrow spans an await; a second call
    // meanwhile is refused instead of panicking.
    run: Rc<RefCell<Option<Run>>>,
}

impl WebTrainer {
    fn take(&self) -> Result<Run, JsValue> {
        self.run
            .borrow_mut()
            .take()
            .ok_or_else(|| error("the trainer is busy: wait for the previous call"))
    }

    fn put_back(&self, run: Run) {
        *self.run.borrow_mut() = Some(run);
    }
}

#[wasm_bindgen]
impl WebTrainer {
    /// Validates `config` (a `TrainingConfig` object) against the dataset and builds the
    /// network on `backend` ("wgpu" or "cpu") — or fits the Gabor ridge model, which needs
    /// no device. Throws `--flag: message` on a bad flag.
    pub async fn create(
        dataset: &WebDataset,
        config: JsValue,
        backend: String,
    ) -> Result<WebTrainer, JsValue> {
        let config: TrainingConfig = serde_wasm_bindgen::from_value(config).map_err(error)?;
        let run = if config.model.family.is_trained() {
            let device = device_for(&backend).await?;
            let trainer =
                Trainer::new(config, dataset.inner.clone(), &device.device).map_err(error)?;
            Run::Training(Box::new(trainer))
        } else {
            let report = fit_gabor_ridge(config, &dataset.inner).map_err(error)?;
            Run::Fitted(Box::new(report))
        };
        Ok(WebTrainer {
            run: Rc::new(RefCell::new(Some(run))),
        })
    }

    /// Runs up to `max_updates` steps (ending early after an evaluation); returns progress.
    pub async fn advance(&self, max_updates: usize) -> Result<JsValue, JsValue> {
        match self.take()? {
            Run::Training(mut trainer) => {
                let progress = trainer.advance(max_updates).await;
                self.put_back(Run::Training(trainer));
                to_js(&progress.map_err(error)?)
            }
            Run::Fitted(report) => {
                let progress = Progress {
                    steps_done: report.steps_done,
                    max_steps: report.flags.max_steps,
                    evaluation: report.history.last().cloned(),
                    best: report.best.clone(),
                    finished: true,
                };
                self.put_back(Run::Fitted(report));
                to_js(&progress)
            }
        }
    }

    /// The best network so far as the seed's weights (`.npz`) and Burn's record (`.bpk`);
    /// empty before the first evaluation, and for the Gabor ridge model (no network).
    /// Reads the weights back asynchronously.
    #[wasm_bindgen(js_name = exportNetwork)]
    pub async fn export_network(&self, started_unix: f64) -> Result<Array, JsValue> {
        let run = self.take()?;
        let network = match &run {
            Run::Training(trainer) => SavedNetwork::best_of(trainer, started_unix as u64).await,
            Run::Fitted(_) => Ok(None),
        };
        self.put_back(run);
        match network.map_err(error)? {
            Some(network) => Ok(files_to_js(
                results::network_files(&network).map_err(error)?,
            )),
            None => Ok(Array::new()),
        }
    }

    /// Everything the seed saved about the run so far.
    pub fn report(&self) -> Result<JsValue, JsValue> {
        let run = self.run.borrow();
        match run.as_ref().ok_or_else(|| error("the trainer is busy"))? {
            Run::Training(trainer) => to_js(&trainer.report()),
            Run::Fitted(report) => to_js(report),
        }
    }
}
