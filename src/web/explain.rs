//! The inside views at the browser boundary: a saved network opened on a dataset in the
//! inspector worker, inverted in slices so the worker can take a clicked neuron first.

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Array, Uint8Array};
use wasm_bindgen::prelude::*;

use super::{WebDataset, device_for, error, files_to_js, to_js};
use crate::data::simulate::GroundTruth;
use crate::explain::{self, Explainer, Inversion, InversionConfig, Target};
use crate::results::SavedNetwork;

#[wasm_bindgen]
pub struct WebExplainer {
    // Shared with the inversions it starts; taken out while a call awaits the device, so a
    // second call meanwhile is refused instead of panicking on a borrow.
    explainer: Rc<RefCell<Option<Explainer>>>,
    backend: String,
}

/// An inversion under way (see `explain::Inversion`).
#[wasm_bindgen]
pub struct WebInversion {
    job: RefCell<Option<Inversion>>,
}

impl WebExplainer {
    fn take(&self) -> Result<Explainer, JsValue> {
        self.explainer
            .borrow_mut()
            .take()
            .ok_or_else(|| error("the inspector is busy: wait for the previous call"))
    }

    fn put_back(&self, explainer: Explainer) {
        *self.explainer.borrow_mut() = Some(explainer);
    }
}

#[wasm_bindgen]
impl WebExplainer {
    /// Opens a saved network (`.bpk` bytes) on `dataset` on `backend` ("wgpu" or "cpu");
    /// `truth_json`, the demo data's ground truth, adds the comparison with the true filters.
    pub async fn create(
        dataset: &WebDataset,
        name: String,
        bytes: Uint8Array,
        backend: String,
        truth_json: Option<String>,
    ) -> Result<WebExplainer, JsValue> {
        let network = SavedNetwork::from_burnpack(&name, &bytes.to_vec())
            .await
            .map_err(error)?;
        let device = device_for(&backend).await?;
        let mut explainer =
            Explainer::new(&network, &dataset.inner, &device.device).map_err(error)?;
        if let Some(text) = truth_json {
            let truth = GroundTruth::from_json(&text).map_err(error)?;
            explainer = explainer.with_truth(&truth).map_err(error)?;
        }
        Ok(WebExplainer {
            explainer: Rc::new(RefCell::new(Some(explainer))),
            backend: device.description,
        })
    }

    /// Which device the views are computed on, in words.
    #[wasm_bindgen(getter)]
    pub fn backend(&self) -> String {
        self.backend.clone()
    }

    /// Filters, predictions, RF estimates, STAs, top stimuli (see `explain::Overview`).
    pub async fn overview(&self) -> Result<JsValue, JsValue> {
        let explainer = self.take()?;
        let overview = explainer.overview().await;
        self.put_back(explainer);
        to_js(&overview.map_err(error)?)
    }

    /// Starts inverting `targets` (`[{neuron, direction: "excite"|"suppress"}]`) with
    /// `config` (an `InversionConfig` object; `undefined` for the defaults).
    pub fn invert(&self, targets: JsValue, config: JsValue) -> Result<WebInversion, JsValue> {
        let targets: Vec<Target> = serde_wasm_bindgen::from_value(targets).map_err(error)?;
        let config: InversionConfig = if config.is_undefined() || config.is_null() {
            InversionConfig::new()
        } else {
            serde_wasm_bindgen::from_value(config).map_err(error)?
        };
        let explainer = self.explainer.borrow();
        let explainer = explainer
            .as_ref()
            .ok_or_else(|| error("the inspector is busy"))?;
        Ok(WebInversion {
            job: RefCell::new(Some(explainer.invert(targets, config).map_err(error)?)),
        })
    }

    /// Runs up to `steps` more steps of `job`; returns `{ stepsDone, finished, objective }`.
    pub async fn advance(&self, job: &WebInversion, steps: usize) -> Result<JsValue, JsValue> {
        let explainer = self.take()?;
        let Some(mut inversion) = job.job.borrow_mut().take() else {
            self.put_back(explainer);
            return Err(error("this inversion is finished or busy"));
        };
        let objective = explainer.advance(&mut inversion, steps).await;
        self.put_back(explainer);
        let progress = serde_json::json!({
            "stepsDone": inversion.steps_done(),
            "finished": inversion.is_finished(),
        });
        // The job stays usable whatever happened on the device.
        *job.job.borrow_mut() = Some(inversion);
        let mut progress = progress;
        progress["objective"] = objective.map_err(error)?.into();
        to_js(&progress)
    }

    /// Reads the images back: one result per target (see `explain::Inverted`).
    pub async fn finish(&self, job: &WebInversion) -> Result<JsValue, JsValue> {
        let explainer = self.take()?;
        let Some(inversion) = job.job.borrow_mut().take() else {
            self.put_back(explainer);
            return Err(error("this inversion is finished or busy"));
        };
        let results = explainer.finish(inversion).await;
        self.put_back(explainer);
        to_js(&results.map_err(error)?)
    }

    /// The views as files (`explain_T.npz`, two PNG montages) from an overview and the
    /// inversions' results, as `v1p explain` writes them.
    #[wasm_bindgen(js_name = exportFiles)]
    pub fn export_files(
        overview: JsValue,
        inverted: JsValue,
        started_unix: f64,
    ) -> Result<Array, JsValue> {
        let overview: explain::Overview =
            serde_wasm_bindgen::from_value(overview).map_err(error)?;
        let inverted: Vec<explain::Inverted> =
            serde_wasm_bindgen::from_value(inverted).map_err(error)?;
        let files =
            explain::explain_files(&overview, &inverted, started_unix as u64).map_err(error)?;
        Ok(files_to_js(files))
    }
}
