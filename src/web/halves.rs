//! A CPU run's batch in two workers. The page's wasm has no threads, so the engine worker
//! ([`super::engine`]) computes the first half of each batch and a second worker (partner.js,
//! holding a [`BatchPartner`]) the second, on another core. The partner builds the same
//! trainer (same flags, data and seed, so the same draws), and each step the two swap their
//! halves' gradients and apply the same sum ([`Trainer::share_batches`]): the numbers are those
//! of one worker doing both halves, to the bit. The messages pass through a port object that
//! the worker's JavaScript gives (halves.js).

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use js_sys::{Float32Array, Promise};
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;

use super::engine::NamedBytes;
use crate::backend::{self, BackendKind};
use crate::data::{self, Dataset};
use crate::training::{
    GradientExchange, LocalFuture, TrainError, Trainer, TrainingConfig, piece_ranges,
};

#[wasm_bindgen]
extern "C" {
    /// The JavaScript side of the halves' messages (halves.js): `send` posts this worker's
    /// half of a step to the other, `receive` gives the other's next one (`null` once the
    /// other has ended the run). The engine's port also starts and ends the partner's runs;
    /// the partner's says when one failed or is over. None of them throws.
    pub type HalfPort;

    #[wasm_bindgen(method)]
    fn send(this: &HalfPort, run: u32, step: usize, values: Float32Array);

    #[wasm_bindgen(method)]
    fn receive(this: &HalfPort, run: u32) -> Promise;

    #[wasm_bindgen(method)]
    pub fn start(this: &HalfPort, run: u32, dataset: u32, config: JsValue);

    #[wasm_bindgen(method)]
    pub fn end(this: &HalfPort, run: u32);

    #[wasm_bindgen(method)]
    fn failed(this: &HalfPort, run: u32, message: String);

    #[wasm_bindgen(method)]
    fn finished(this: &HalfPort, run: u32);
}

/// One side of a run's halves, as the trainer sees it.
pub struct HalfExchange {
    port: Rc<HalfPort>,
    run: u32,
    /// The other side's last array, which carries this side's next half back: a swap in a
    /// new 500 KB array took about 0.4 ms, one in the array received about 0.1 ms, and a
    /// two-worker step 0.47 ms less (BENCHMARKS.md).
    spare: RefCell<Option<Float32Array>>,
}

impl HalfExchange {
    pub fn new(port: Rc<HalfPort>, run: u32) -> Self {
        Self {
            port,
            run,
            spare: RefCell::default(),
        }
    }
}

impl GradientExchange for HalfExchange {
    fn swap(
        &self,
        step: usize,
        mine: &[&[f32]],
    ) -> LocalFuture<'_, Result<Option<Vec<Vec<f32>>>, TrainError>> {
        let lengths: Vec<usize> = mine.iter().map(|piece| piece.len()).collect();
        let total: usize = lengths.iter().sum();
        // One array for all the pieces, whose buffer the port transfers (no second copy on
        // the way).
        let outgoing = match self.spare.borrow_mut().take() {
            Some(spare) if spare.length() as usize == total => spare,
            _ => Float32Array::new_with_length(total as u32),
        };
        let ranges = piece_ranges(&lengths, total).expect("the pieces' own total");
        for (piece, range) in mine.iter().zip(&ranges) {
            subarray(&outgoing, range).copy_from(piece);
        }
        self.port.send(self.run, step, outgoing);
        let theirs = JsFuture::from(self.port.receive(self.run));
        Box::pin(async move {
            let theirs = theirs.await.map_err(|e| {
                TrainError::Device(
                    e.as_string()
                        .unwrap_or_else(|| "the second worker failed".into()),
                )
            })?;
            if theirs.is_null() || theirs.is_undefined() {
                return Ok(None);
            }
            let theirs = Float32Array::from(theirs);
            // Each piece straight into the vector its tensor will own.
            let pieces = piece_ranges(&lengths, theirs.length() as usize)?
                .iter()
                .map(|range| subarray(&theirs, range).to_vec())
                .collect();
            *self.spare.borrow_mut() = Some(theirs);
            Ok(Some(pieces))
        })
    }
}

/// A view of `array`'s values `range`.
fn subarray(array: &Float32Array, range: &std::ops::Range<usize>) -> Float32Array {
    array.subarray(range.start as u32, range.end as u32)
}

/// What the engine worker asks of the partner.
#[derive(Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
enum PartnerRequest {
    /// The page's own request to the engine, passed on: the partner parses the same files.
    LoadDataset {
        dataset: u32,
        files: Vec<NamedBytes>,
    },
    DropDataset {
        dataset: u32,
    },
    /// Train the second half of each batch of the engine's run `run`.
    TrainHalf {
        run: u32,
        dataset: u32,
        config: TrainingConfig,
    },
}

/// The second worker's engine: datasets and the second halves of CPU runs, nothing else.
#[wasm_bindgen]
pub struct BatchPartner {
    port: Rc<HalfPort>,
    datasets: Rc<RefCell<HashMap<u32, Dataset>>>,
}

#[wasm_bindgen]
impl BatchPartner {
    #[wasm_bindgen(constructor)]
    pub fn new(port: HalfPort) -> BatchPartner {
        BatchPartner {
            port: Rc::new(port),
            datasets: Rc::default(),
        }
    }

    pub fn handle(&self, request: JsValue) -> Result<(), JsValue> {
        let request = serde_wasm_bindgen::from_value::<PartnerRequest>(request)
            .map_err(|e| JsValue::from_str(&format!("not a partner's request: {e}")))?;
        match request {
            // A file the engine refuses is said on the page by the engine; here it is not kept.
            PartnerRequest::LoadDataset { dataset, files } => {
                let files = files.iter().map(|f| (f.name.as_str(), f.bytes.as_slice()));
                match data::load_files(files) {
                    Ok(loaded) => self.datasets.borrow_mut().insert(dataset, loaded),
                    Err(_) => self.datasets.borrow_mut().remove(&dataset),
                };
            }
            PartnerRequest::DropDataset { dataset } => {
                self.datasets.borrow_mut().remove(&dataset);
            }
            PartnerRequest::TrainHalf {
                run,
                dataset,
                config,
            } => {
                let (port, datasets) = (self.port.clone(), self.datasets.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    let dataset = datasets.borrow().get(&dataset).cloned();
                    if let Err(message) = train_half(port.clone(), run, dataset, config).await {
                        port.failed(run, format!("the second worker failed: {message}"));
                    }
                    // Letters still coming for the run (the engine's end) are not kept.
                    port.finished(run);
                });
            }
        }
        Ok(())
    }
}

async fn train_half(
    port: Rc<HalfPort>,
    run: u32,
    dataset: Option<Dataset>,
    config: TrainingConfig,
) -> Result<(), String> {
    let dataset = dataset.ok_or("it has no copy of the run's data")?;
    let device = backend::init(BackendKind::Cpu).await?;
    let mut trainer = Trainer::new(config, dataset, &device.device).map_err(|e| e.to_string())?;
    if !trainer.share_batches(1, Box::new(HalfExchange::new(port.clone(), run))) {
        return Err("this run's batches are not taken in halves".into());
    }
    trainer.follow().await.map_err(|e| e.to_string())
}
