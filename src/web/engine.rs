//! The engine worker: one per page, for the page's lifetime. It owns the datasets, the device
//! (WebGPU started once, its kernels compiled once) and the runs, and speaks to the page only
//! through [`Request`] and [`Event`] — the protocol, typed here and nowhere else. worker.js
//! passes every message to [`Engine::handle`] and posts every event back, as it is. The
//! inside views ([`inside`]) run here too, on the same datasets and device as the runs.

mod inside;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use js_sys::{Array, Function, Uint8Array};
use serde::{Deserialize, Serialize};
use wasm_bindgen::prelude::*;

use super::halves::{HalfExchange, HalfPort};
use super::to_js;
use crate::backend::{self, BackendKind, ComputeDevice};
use crate::config::ConfigError;
use crate::data::{self, Dataset, DatasetSummary};
use crate::explain::{Inverted, Overview};
use crate::results::{self, ExportFile, NetworkInfo, SavedNetwork};
use crate::training::ridge::fit_gabor_ridge;
use crate::training::{Progress, SlicePace, TrainError, Trainer, TrainingConfig, TrainingReport};

/// What the page asks of the engine. Ids are chosen by the page.
#[derive(Deserialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase",
    deny_unknown_fields
)]
pub enum Request {
    /// Parse `.mat` files (several: the same images, neurons side by side) as dataset `dataset`.
    LoadDataset {
        dataset: u32,
        files: Vec<NamedBytes>,
    },
    /// Forget a dataset (runs keep their own copy).
    DropDataset {
        dataset: u32,
    },
    /// Train (or, for the Gabor model, fit) on a loaded dataset. `backend`: auto, wgpu or cpu.
    /// A run already going is told to stop (it ends after its current slice): one at a time.
    StartRun {
        run: u32,
        dataset: u32,
        config: TrainingConfig,
        backend: String,
        started_unix: f64,
    },
    Pause {
        run: u32,
    },
    Resume {
        run: u32,
    },
    /// Stops after the current slice; the run then finishes with its best network.
    Stop {
        run: u32,
    },
    /// Evaluate a saved network (`.bpk`) on a loaded dataset, with its own split.
    EvaluateNetwork {
        request: u32,
        dataset: u32,
        file: NamedBytes,
    },
    /// Look inside a saved network on a loaded dataset; replaces open views.
    OpenInside(inside::OpenInside),
    /// The user picked this neuron: its images next.
    FocusInside {
        token: u32,
        neuron: usize,
    },
    CloseInside,
}

#[derive(Deserialize)]
pub struct NamedBytes {
    pub name: String,
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
}

/// What the engine tells the page.
#[derive(Serialize)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum Event {
    /// The engine is up; `adapter` names the GPU, or says why there is none.
    Ready {
        webgpu: bool,
        adapter: String,
    },
    /// The images come along as one Float32Array (`images`, image after image).
    DatasetLoaded {
        dataset: u32,
        summary: DatasetSummary,
    },
    DatasetFailed {
        dataset: u32,
        error: EngineError,
    },
    /// The device is chosen and the network built; `notice` when the choice was a fallback.
    RunStarted {
        run: u32,
        backend: BackendKind,
        description: String,
        notice: Option<String>,
        report: TrainingReport,
    },
    /// After every slice of steps; `report` (history, per-neuron r) at most 4 times a second.
    Progress {
        run: u32,
        progress: Progress,
        report: Option<TrainingReport>,
        elapsed_ms: f64,
    },
    /// Said during a run: `description` replaces the one RunStarted gave (the second worker of
    /// a CPU run stopped, and the run goes on in one).
    RunNotice {
        run: u32,
        description: String,
        notice: String,
    },
    Paused {
        run: u32,
    },
    Resumed {
        run: u32,
    },
    /// The best network's files come along (empty for the Gabor model).
    RunFinished {
        run: u32,
        report: TrainingReport,
        stopped: bool,
        elapsed_ms: f64,
        network_files: Vec<FileOut>,
        export_error: Option<String>,
    },
    /// `started`: whether the run had begun (a refused setting fails before it begins).
    RunFailed {
        run: u32,
        started: bool,
        error: EngineError,
    },
    NetworkEvaluated {
        request: u32,
        report: TrainingReport,
        info: NetworkInfo,
        network_files: Vec<FileOut>,
        warning: Option<String>,
    },
    EvaluationFailed {
        request: u32,
        error: EngineError,
    },
    /// The views' network is open on `backend`; `notice` when the choice was a fallback.
    InsideOpened {
        token: u32,
        backend: BackendKind,
        description: String,
        notice: Option<String>,
    },
    /// Filters, predictions, receptive fields, STAs, top stimuli (`ms` since the open).
    InsideOverview {
        token: u32,
        overview: Overview,
        ms: f64,
    },
    /// A slice of the inversion of `neurons`; `done` of `total` neurons have their images.
    InsideProgress {
        token: u32,
        neurons: Vec<usize>,
        steps_done: usize,
        done: usize,
        total: usize,
    },
    InsideInverted {
        token: u32,
        results: Vec<Inverted>,
        ms: f64,
        done: usize,
        total: usize,
    },
    /// Every neuron has its images.
    InsideComplete {
        token: u32,
        ms: f64,
    },
    InsideFailed {
        token: u32,
        error: EngineError,
    },
    /// A message that is not a request (a bug in the page, not the user's doing).
    ProtocolError {
        error: EngineError,
    },
}

/// An error with its structure kept to the form: `flag` names the setting to point at.
#[derive(Clone, Debug, Serialize)]
pub struct EngineError {
    pub kind: ErrorKind,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    pub message: String,
}

#[derive(Clone, Copy, Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ErrorKind {
    /// A setting refused; `flag` says which.
    Flag,
    /// A file that is not usable data.
    Data,
    /// A saved network that cannot be read or does not fit the data.
    Network,
    /// The device failed (WebGPU lost, a read-back failed).
    Device,
    /// Training went wrong (diverged).
    Training,
    Protocol,
}

impl EngineError {
    fn new(kind: ErrorKind, message: impl ToString) -> Self {
        Self {
            kind,
            flag: None,
            message: message.to_string(),
        }
    }
}

impl From<ConfigError> for EngineError {
    fn from(e: ConfigError) -> Self {
        // The bare message: the page writes the flag's name before it.
        Self {
            kind: ErrorKind::Flag,
            message: e.message,
            flag: Some(e.flag),
        }
    }
}

impl From<TrainError> for EngineError {
    fn from(e: TrainError) -> Self {
        match e {
            TrainError::Config(config) => config.into(),
            TrainError::Device(_) => Self::new(ErrorKind::Device, e),
            TrainError::Diverged { .. } => Self::new(ErrorKind::Training, e),
        }
    }
}

/// A file for download; its bytes cross as a Uint8Array (transferred, not copied).
#[derive(Serialize)]
pub struct FileOut {
    name: String,
    mime: &'static str,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

impl From<ExportFile> for FileOut {
    fn from(f: ExportFile) -> Self {
        Self {
            name: f.name,
            mime: f.mime,
            bytes: f.bytes,
        }
    }
}

/// The second worker's part of a run, ended with the run.
struct PartnerRun(Option<(Rc<HalfPort>, u32)>);

impl Drop for PartnerRun {
    fn drop(&mut self) {
        if let Some((port, run)) = self.0.take() {
            port.end(run);
        }
    }
}

/// Pause and stop, set by requests while the run's loop awaits between slices.
#[derive(Default)]
struct Control {
    paused: Cell<bool>,
    stopped: Cell<bool>,
}

struct EngineState {
    emit: Function,
    /// WebGPU's adapter as the browser names it (wgpu does not know it), or why there is none.
    adapter: Result<String, String>,
    datasets: RefCell<HashMap<u32, Dataset>>,
    runs: RefCell<HashMap<u32, Rc<Control>>>,
    /// The open inside views, if any.
    inside: RefCell<Option<Rc<inside::InsideSession>>>,
    /// The second worker that takes half of each CPU run's batch (halves.rs), where the page
    /// has one (two cores or more).
    halves: Option<Rc<HalfPort>>,
}

/// The engine as worker.js holds it.
#[wasm_bindgen]
pub struct Engine {
    state: Rc<EngineState>,
}

#[wasm_bindgen]
impl Engine {
    /// `emit(event, transfer)` posts an event to the page; `adapter` is
    /// `{ ok, name?, reason? }` from the browser's `navigator.gpu`; `halves` the port to a
    /// second worker for CPU runs (halves.js), or null.
    #[wasm_bindgen(constructor)]
    pub fn new(emit: Function, adapter: JsValue, halves: JsValue) -> Engine {
        #[derive(Deserialize)]
        struct Adapter {
            ok: bool,
            name: Option<String>,
            reason: Option<String>,
        }
        let adapter = match serde_wasm_bindgen::from_value::<Adapter>(adapter) {
            Ok(Adapter { ok: true, name, .. }) => {
                Ok(name.unwrap_or_else(|| "unnamed adapter".into()))
            }
            Ok(Adapter { reason, .. }) => Err(reason.unwrap_or_else(|| "no WebGPU".into())),
            Err(e) => Err(e.to_string()),
        };
        let state = Rc::new(EngineState {
            emit,
            adapter,
            datasets: RefCell::default(),
            runs: RefCell::default(),
            inside: RefCell::default(),
            halves: (!halves.is_null() && !halves.is_undefined())
                .then(|| Rc::new(halves.unchecked_into::<HalfPort>())),
        });
        state.send(&Event::Ready {
            webgpu: state.adapter.is_ok(),
            adapter: match &state.adapter {
                Ok(name) | Err(name) => name.clone(),
            },
        });
        Engine { state }
    }

    /// Takes one request from the page; what comes of it arrives as events.
    pub fn handle(&self, request: JsValue) {
        match serde_wasm_bindgen::from_value::<Request>(request) {
            Ok(request) => self.state.clone().handle(request),
            Err(e) => self.state.send(&Event::ProtocolError {
                error: EngineError::new(ErrorKind::Protocol, format!("not a request: {e}")),
            }),
        }
    }
}

impl EngineState {
    fn handle(self: Rc<Self>, request: Request) {
        match request {
            Request::LoadDataset { dataset, files } => self.load_dataset(dataset, files),
            Request::DropDataset { dataset } => {
                self.datasets.borrow_mut().remove(&dataset);
            }
            Request::StartRun {
                run,
                dataset,
                config,
                backend,
                started_unix,
            } => {
                // One run at a time: a new one stops the old.
                for control in self.runs.borrow().values() {
                    control.stopped.set(true);
                }
                let control = Rc::new(Control::default());
                self.runs.borrow_mut().insert(run, control.clone());
                wasm_bindgen_futures::spawn_local(async move {
                    let start = RunStart {
                        run,
                        dataset,
                        config,
                        backend,
                        started_unix,
                    };
                    if let Err((started, error)) = self.run(start, &control).await {
                        self.send(&Event::RunFailed {
                            run,
                            started,
                            error,
                        });
                    }
                    self.runs.borrow_mut().remove(&run);
                });
            }
            Request::Pause { run } => self.control(run, |c| c.paused.set(true)),
            Request::Resume { run } => self.control(run, |c| c.paused.set(false)),
            Request::Stop { run } => self.control(run, |c| c.stopped.set(true)),
            Request::EvaluateNetwork {
                request,
                dataset,
                file,
            } => wasm_bindgen_futures::spawn_local(async move {
                match self.evaluate_network(dataset, file).await {
                    Ok(event) => self.send(&event(request)),
                    Err(error) => self.send(&Event::EvaluationFailed { request, error }),
                }
            }),
            Request::OpenInside(open) => self.open_inside(open),
            Request::FocusInside { token, neuron } => {
                if let Some(session) = self.inside_session() {
                    session.focus(token, neuron);
                }
            }
            Request::CloseInside => {
                if let Some(session) = self.inside.take() {
                    session.close();
                }
            }
        }
    }

    fn control(&self, run: u32, change: impl Fn(&Control)) {
        if let Some(control) = self.runs.borrow().get(&run) {
            change(control);
        }
    }

    fn load_dataset(&self, id: u32, files: Vec<NamedBytes>) {
        let loaded = data::load_files(files.iter().map(|f| (f.name.as_str(), f.bytes.as_slice())));
        match loaded {
            Ok(dataset) => {
                let summary = dataset.summary();
                let event = Event::DatasetLoaded {
                    dataset: id,
                    summary,
                };
                // The pixels once, for thumbnails and the inside views.
                let images = js_sys::Float32Array::from(dataset.images.as_slice());
                self.datasets.borrow_mut().insert(id, dataset);
                self.send_with(
                    &event,
                    &[("images", images.clone().into())],
                    &[images.buffer().into()],
                );
            }
            Err(e) => self.send(&Event::DatasetFailed {
                dataset: id,
                error: EngineError::new(ErrorKind::Data, e),
            }),
        }
    }

    fn dataset(&self, id: u32) -> Result<Dataset, EngineError> {
        self.datasets.borrow().get(&id).cloned().ok_or_else(|| {
            EngineError::new(ErrorKind::Protocol, format!("no dataset {id} is loaded"))
        })
    }

    /// A run from start to end; the error says whether the run had started.
    async fn run(&self, start: RunStart, control: &Control) -> Result<(), (bool, EngineError)> {
        let not_started = |e: EngineError| (false, e);
        let dataset = self.dataset(start.dataset).map_err(not_started)?;
        let config = start.config;
        config
            .validate_for(&dataset)
            .map_err(|e| not_started(e.into()))?;
        // Told to end when this run ends, however it ends.
        let mut partner = PartnerRun(None);
        // The device's own words, for a notice if the second worker stops.
        let device_words;
        let mut runner = if config.model.family.is_trained() {
            let (mut device, notice) = self.device(&start.backend).await.map_err(not_started)?;
            let for_partner = to_js(&config);
            let mut trainer =
                Trainer::new(config, dataset, &device.device).map_err(|e| not_started(e.into()))?;
            device_words = device.description.clone();
            if let (Some(port), BackendKind::Cpu, Ok(config)) =
                (&self.halves, device.kind, for_partner)
                && trainer.share_batches(0, Box::new(HalfExchange::new(port.clone(), start.run)))
            {
                port.start(start.run, start.dataset, config);
                partner = PartnerRun(Some((port.clone(), start.run)));
                device
                    .description
                    .push_str(", each batch in two halves on two workers");
            }
            self.send(&Event::RunStarted {
                run: start.run,
                backend: device.kind,
                description: device.description.clone(),
                notice,
                report: trainer.report(),
            });
            trainer
        } else {
            // The Gabor ridge model: fitted at once, on the CPU, no device needed.
            let started = now_ms();
            let report = fit_gabor_ridge(config, &dataset).map_err(|e| not_started(e.into()))?;
            self.send(&Event::RunStarted {
                run: start.run,
                backend: BackendKind::Cpu,
                description: "CPU (a closed-form ridge fit)".into(),
                notice: None,
                report: report.clone(),
            });
            self.send(&Event::RunFinished {
                run: start.run,
                report,
                stopped: false,
                elapsed_ms: now_ms() - started,
                network_files: Vec::new(),
                export_error: None,
            });
            return Ok(());
        };
        let started = now_ms();
        let elapsed_ms = self
            .train(start.run, &mut runner, control, started, &device_words)
            .await
            .map_err(|e| (true, e))?;
        drop(partner);
        // Read now: a Stop pressed while the network is read back does not make this run stopped.
        let stopped = control.stopped.get();
        // The best network's files are made here, where it lives (read back asynchronously).
        let (network_files, export_error) =
            match SavedNetwork::best_of(&runner, start.started_unix as u64).await {
                Ok(Some(network)) => match results::network_files(&network) {
                    Ok(files) => (files.into_iter().map(FileOut::from).collect(), None),
                    Err(e) => (Vec::new(), Some(e.to_string())),
                },
                Ok(None) => (Vec::new(), None),
                Err(e) => (Vec::new(), Some(e.to_string())),
            };
        let event = Event::RunFinished {
            run: start.run,
            report: runner.report(),
            stopped,
            elapsed_ms,
            network_files,
            export_error,
        };
        self.send(&event);
        Ok(())
    }

    /// Steps in slices of about 150 ms — responsive controls, few round trips — with pause
    /// and stop looked at between slices. Returns the time spent training (pauses excluded).
    ///
    /// On WebGPU a slice only queues its work. So after queueing a slice, the engine waits
    /// until the device has done the slice before it: while the device is the slower, it
    /// always has the next slice queued, and the page is never more than a slice ahead of it.
    /// Without that wait the page queued steps ten times faster than SwiftShader did them: it
    /// showed step 298 of 300 ten seconds into a 28-second run, and a Stop waited 27 s for the
    /// steps queued (BENCHMARKS.md). [`SlicePace`] sizes the slices.
    async fn train(
        &self,
        run: u32,
        trainer: &mut Trainer,
        control: &Control,
        started: f64,
        device_words: &str,
    ) -> Result<f64, EngineError> {
        let mut pace = SlicePace::new(150.0, now_ms());
        let mut paused_ms = 0.0;
        let mut first_slice = true;
        // The last slice queued, until the device has done it.
        let mut in_flight: Option<QueuedSlice> = None;
        let mut last_report_at = f64::NEG_INFINITY;
        loop {
            if control.paused.get() && !control.stopped.get() {
                // Paused means the device has stopped too.
                if let Some(queued) = in_flight.take() {
                    queued.marker.answered().await?;
                }
                let paused_at = now_ms();
                self.send(&Event::Paused { run });
                while control.paused.get() && !control.stopped.get() {
                    sleep_ms(30).await;
                }
                paused_ms += now_ms() - paused_at;
                if !control.stopped.get() {
                    self.send(&Event::Resumed { run });
                }
                pace.restart(now_ms());
            }
            if control.stopped.get() {
                break;
            }
            let t0 = now_ms();
            let before = trainer.steps_done();
            let progress = trainer.advance(pace.slice()).await?;
            if let Some(reason) = trainer.partner_lost() {
                // The same numbers either way (halves.rs): only the pace changes.
                self.send(&Event::RunNotice {
                    run,
                    description: format!("{device_words}, each batch in two halves on one worker"),
                    notice: format!(
                        "The second worker stopped ({reason}), so this run goes on in one \
                         worker: slower, with the same numbers."
                    ),
                });
            }
            let queued = QueuedSlice {
                marker: DeviceMarker::start(trainer.device_done()),
                steps: progress.steps_done - before,
                evaluated: progress.evaluation.is_some(),
            };
            let host_ms_per_step = (now_ms() - t0) / queued.steps.max(1) as f64;
            let queued_evaluated = queued.evaluated;
            // The slice this turn waits for: the run's first (its first step is shown once the
            // device has really done it), this one on a device that computes as it is asked
            // (the CPU), otherwise the one before (none right after the first or a pause).
            let waited_for = if first_slice || queued.marker.is_answered() {
                first_slice = false;
                Some(queued)
            } else {
                in_flight.replace(queued)
            };
            if let Some(done) = waited_for {
                let waiting_from = now_ms();
                done.marker.answered().await?;
                let answered = now_ms();
                pace.answered(
                    answered,
                    done.steps,
                    answered - waiting_from,
                    host_ms_per_step,
                    done.evaluated || queued_evaluated,
                );
            }
            // Small networks on a fast device evaluate far more often than a page redraws.
            let now = now_ms();
            let with_report = progress.evaluation.is_some() && now - last_report_at > 250.0;
            if with_report {
                last_report_at = now;
            }
            let finished = progress.finished;
            self.send(&Event::Progress {
                run,
                progress,
                report: with_report.then(|| trainer.report()),
                elapsed_ms: now - started - paused_ms,
            });
            if finished {
                break;
            }
            // Lets pause and stop requests in.
            yield_to_messages().await;
        }
        // A stopped run's network is read back after the device has done its steps.
        if let Some(queued) = in_flight.take() {
            queued.marker.answered().await?;
        }
        Ok(now_ms() - started - paused_ms)
    }

    /// The device for a run: WebGPU when asked for or when "auto" finds it (initialised once
    /// for the engine's lifetime), the CPU otherwise — with a notice saying why.
    async fn device(
        &self,
        preference: &str,
    ) -> Result<(ComputeDevice, Option<String>), EngineError> {
        let device_error = |e: String| EngineError::new(ErrorKind::Device, e);
        let cpu = || async { backend::init(BackendKind::Cpu).await.map_err(device_error) };
        match preference {
            "cpu" => Ok((cpu().await?, None)),
            "wgpu" | "auto" => {
                let attempt = match &self.adapter {
                    Ok(name) => backend::init(BackendKind::Wgpu).await.map(|mut device| {
                        device.description = format!("GPU via WebGPU: {name}");
                        device
                    }),
                    Err(reason) => Err(reason.clone()),
                };
                match attempt {
                    Ok(device) => Ok((device, None)),
                    Err(reason) if preference == "auto" => Ok((
                        cpu().await?,
                        Some(format!(
                            "WebGPU is not available ({reason}), so the work runs on the CPU — \
                             slower, but the same network."
                        )),
                    )),
                    Err(reason) => Err(device_error(format!(
                        "WebGPU was requested but is not available: {reason}"
                    ))),
                }
            }
            other => Err(EngineError::new(
                ErrorKind::Protocol,
                format!("unknown backend `{other}` (use auto, wgpu or cpu)"),
            )),
        }
    }

    /// Saved networks are evaluated on the CPU: one pass, no kernels to compile.
    async fn evaluate_network(
        &self,
        dataset: u32,
        file: NamedBytes,
    ) -> Result<impl FnOnce(u32) -> Event, EngineError> {
        let dataset = self.dataset(dataset)?;
        let network_error = |e: String| EngineError::new(ErrorKind::Network, e);
        let network = SavedNetwork::from_burnpack(&file.name, &file.bytes)
            .await
            .map_err(|e| network_error(e.to_string()))?;
        let device = backend::init(BackendKind::Cpu)
            .await
            .map_err(|e| EngineError::new(ErrorKind::Device, e))?;
        let report = network
            .evaluate(&dataset, &device.device)
            .await
            .map_err(|e| network_error(format!("{}: {e}", file.name)))?;
        // Its files again (the seed's weights too), so a loaded run downloads like a trained one.
        let files = results::network_files(&network).map_err(|e| network_error(e.to_string()))?;
        let warning = network.source_warning(&dataset);
        Ok(move |request| Event::NetworkEvaluated {
            request,
            report,
            info: network.info,
            network_files: files.into_iter().map(FileOut::from).collect(),
            warning,
        })
    }

    fn send(&self, event: &Event) {
        self.send_with(event, &[], &[]);
    }

    /// Posts an event with extra properties (typed arrays serde would copy into plain arrays)
    /// and the buffers to transfer: every file's bytes, and `transfer`.
    fn send_with(&self, event: &Event, extra: &[(&str, JsValue)], transfer: &[JsValue]) {
        let value = match to_js(event) {
            Ok(value) => value,
            // Said to the page (which then gives up on what it waits for), not only logged.
            Err(e) => {
                web_sys::console::error_2(&"the engine could not send an event:".into(), &e);
                let message = format!("the engine could not send its answer: {e:?}");
                let error = EngineError::new(ErrorKind::Protocol, message);
                match to_js(&Event::ProtocolError { error }) {
                    Ok(value) => value,
                    Err(_) => return,
                }
            }
        };
        let buffers = Array::new();
        for (key, item) in extra {
            let _ = js_sys::Reflect::set(&value, &(*key).into(), item);
        }
        for buffer in transfer {
            buffers.push(buffer);
        }
        for key in ["networkFiles"] {
            if let Ok(files) = js_sys::Reflect::get(&value, &key.into()) {
                let files = if Array::is_array(&files) {
                    Array::from(&files)
                } else {
                    Array::new()
                };
                for file in files.iter() {
                    if let Ok(bytes) = js_sys::Reflect::get(&file, &"bytes".into()) {
                        buffers.push(&Uint8Array::from(bytes).buffer());
                    }
                }
            }
        }
        if let Err(e) = self.emit.call2(&JsValue::NULL, &value, &buffers) {
            web_sys::console::error_2(&"the engine could not post an event:".into(), &e);
        }
    }
}

/// A slice of steps queued on the device, with the read-back that says when it is done.
struct QueuedSlice {
    marker: DeviceMarker,
    steps: usize,
    /// Whether it ended with an evaluation (whose read-back waited for the device).
    evaluated: bool,
}

/// A device read-back, started at once (its copy queued behind the work before it) and
/// awaited later.
enum DeviceMarker {
    Answered(Result<(), TrainError>),
    Waiting(Pin<Box<dyn Future<Output = Result<(), TrainError>>>>),
}

impl DeviceMarker {
    fn start(read_back: impl Future<Output = Result<(), TrainError>> + 'static) -> Self {
        let mut read_back = Box::pin(read_back);
        // The first poll queues the copy; the read-back's channel keeps the answer until the
        // next poll, which brings the real waker.
        match read_back
            .as_mut()
            .poll(&mut Context::from_waker(Waker::noop()))
        {
            Poll::Ready(answer) => Self::Answered(answer),
            Poll::Pending => Self::Waiting(read_back),
        }
    }

    fn is_answered(&self) -> bool {
        matches!(self, Self::Answered(_))
    }

    async fn answered(self) -> Result<(), EngineError> {
        match self {
            Self::Answered(answer) => answer,
            Self::Waiting(read_back) => read_back.await,
        }
        .map_err(EngineError::from)
    }
}

struct RunStart {
    run: u32,
    dataset: u32,
    config: TrainingConfig,
    backend: String,
    started_unix: f64,
}

/// Milliseconds on the page's monotonic clock (`performance.now()`, in a window or a worker).
fn now_ms() -> f64 {
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &"performance".into())
        .ok()
        .and_then(|p| {
            let now = js_sys::Reflect::get(&p, &"now".into()).ok()?;
            Function::from(now).call0(&p).ok()?.as_f64()
        })
        .unwrap_or_else(js_sys::Date::now)
}

/// Yields to the event loop for a task of its own, so that the messages already queued (the
/// page's pause, stop or click) get in first. Not `setTimeout(0)`: timeouts set from a timeout's
/// task wait 4 ms or more once five are nested (the HTML standard's clamp): a CPU run on one
/// worker, which chains them slice after slice, sat idle 3.7 ms a slice, against 0.26 ms by
/// message (BENCHMARKS.md).
async fn yield_to_messages() {
    let Ok(channel) = web_sys::MessageChannel::new() else {
        return sleep_ms(0).await;
    };
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        channel.port1().set_onmessage(Some(&resolve));
    });
    if channel.port2().post_message(&JsValue::NULL).is_err() {
        return sleep_ms(0).await;
    }
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
    // The channel is held until its message came: a port dropped before may never deliver.
    channel.port1().close();
}

/// Waits `ms` on a timer (a task of its own, so that messages get in).
async fn sleep_ms(ms: i32) {
    let promise = js_sys::Promise::new(&mut |resolve, _| {
        let global = js_sys::global();
        if let Ok(set_timeout) = js_sys::Reflect::get(&global, &"setTimeout".into()) {
            let _ = Function::from(set_timeout).call2(&global, &resolve, &ms.into());
        }
    });
    let _ = wasm_bindgen_futures::JsFuture::from(promise).await;
}
