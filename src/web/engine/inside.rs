//! "Look inside" in the engine: a saved network opened on a loaded dataset, on the engine's
//! device, its overview sent at once, then every neuron's preferred and most suppressive image
//! a few neurons at a time — a neuron the user clicks jumps the queue. One view at a time: a
//! new one (or a close) ends the one before at its next slice.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::rc::Rc;

use serde::Deserialize;

use super::{EngineError, EngineState, ErrorKind, Event, NamedBytes, now_ms, yield_to_messages};
use crate::data::simulate::GroundTruth;
use crate::explain::{Direction, Explainer, InversionConfig, Target};
use crate::results::SavedNetwork;

/// Neurons inverted together (× 2 directions × the starts: one batch on the device).
const CHUNK: usize = 8;
/// Gradient steps between looks at the requests (a click, a close).
const SLICE: usize = 5;

/// What the page sends to open the views (`Request::OpenInside`): the views of `token`,
/// which every answer carries; `focus`, a neuron whose images come first.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenInside {
    pub token: u32,
    pub dataset: u32,
    pub network: NamedBytes,
    pub backend: String,
    /// The demo data's ground truth (JSON): the views then compare with the true filters.
    pub truth: Option<String>,
    pub focus: Option<usize>,
}

/// The open views: the page's token for them, and what requests change while they compute.
pub(super) struct InsideSession {
    token: u32,
    closed: Cell<bool>,
    focus: RefCell<VecDeque<usize>>,
    done: RefCell<BTreeSet<usize>>,
    /// The network's neurons, once its overview is made (a focus beyond them is ignored).
    total: Cell<Option<usize>>,
}

impl InsideSession {
    pub fn close(&self) {
        self.closed.set(true);
    }

    /// A clicked neuron, unless its images are already made or on their way.
    pub fn focus(&self, token: u32, neuron: usize) {
        let mut focus = self.focus.borrow_mut();
        if token == self.token && !self.done.borrow().contains(&neuron) && !focus.contains(&neuron)
        {
            focus.push_back(neuron);
        }
    }

    /// The first clicked neuron still without its images (and in the network).
    fn next_focus(&self) -> Option<usize> {
        let total = self.total.get().unwrap_or(usize::MAX);
        let mut focus = self.focus.borrow_mut();
        while let Some(next) = focus.pop_front() {
            if next < total && !self.done.borrow().contains(&next) {
                return Some(next);
            }
        }
        None
    }
}

impl EngineState {
    pub(super) fn open_inside(self: Rc<Self>, open: OpenInside) {
        let session = Rc::new(InsideSession {
            token: open.token,
            closed: Cell::new(false),
            focus: RefCell::new(open.focus.into_iter().collect()),
            done: RefCell::default(),
            total: Cell::new(None),
        });
        if let Some(old) = self.inside.replace(Some(session.clone())) {
            old.close();
        }
        wasm_bindgen_futures::spawn_local(async move {
            let token = open.token;
            if let Err(error) = self.look_inside(&session, open).await
                && !session.closed.get()
            {
                self.send(&Event::InsideFailed { token, error });
            }
        });
    }

    pub(super) fn inside_session(&self) -> Option<Rc<InsideSession>> {
        self.inside.borrow().clone()
    }

    async fn look_inside(&self, s: &InsideSession, open: OpenInside) -> Result<(), EngineError> {
        let started = now_ms();
        let network_error = |e: String| EngineError::new(ErrorKind::Network, e);
        let device_error = |e: String| EngineError::new(ErrorKind::Device, e);
        let dataset = self.dataset(open.dataset)?;
        let network = SavedNetwork::from_burnpack(&open.network.name, &open.network.bytes)
            .await
            .map_err(|e| network_error(e.to_string()))?;
        let (device, notice) = self.device(&open.backend).await?;
        if s.closed.get() {
            return Ok(());
        }
        let mut explainer = Explainer::new(&network, &dataset, &device.device)
            .map_err(|e| network_error(e.to_string()))?;
        if let Some(text) = &open.truth {
            let truth = GroundTruth::from_json(text).map_err(|e| network_error(e.to_string()))?;
            explainer = explainer
                .with_truth(&truth)
                .map_err(|e| network_error(e.to_string()))?;
        }
        self.send(&Event::InsideOpened {
            token: s.token,
            backend: device.kind,
            description: device.description.clone(),
            notice,
        });
        let overview = explainer
            .overview()
            .await
            .map_err(|e| device_error(e.to_string()))?;
        if s.closed.get() {
            return Ok(());
        }
        let total = overview.n_neurons;
        s.total.set(Some(total));
        self.send(&Event::InsideOverview {
            token: s.token,
            overview,
            ms: now_ms() - started,
        });

        let mut queue: VecDeque<usize> = (0..total).collect();
        while !s.closed.get() {
            // A clicked neuron first, alone, so that its views come within a couple of seconds.
            let neurons: Vec<usize> = match s.next_focus() {
                Some(neuron) => vec![neuron],
                None => {
                    let done = s.done.borrow();
                    let mut chunk = Vec::new();
                    while chunk.len() < CHUNK {
                        let Some(next) = queue.pop_front() else { break };
                        if !done.contains(&next) {
                            chunk.push(next);
                        }
                    }
                    chunk
                }
            };
            if neurons.is_empty() && queue.is_empty() {
                break;
            }
            if !neurons.is_empty() {
                self.invert(s, &explainer, neurons, total).await?;
            }
        }
        if !s.closed.get() {
            self.send(&Event::InsideComplete {
                token: s.token,
                ms: now_ms() - started,
            });
        }
        Ok(())
    }

    /// Inverts `neurons` (both directions) in slices; a neuron clicked meanwhile is inverted
    /// alone between two slices, and the chunk then carries on.
    async fn invert(
        &self,
        s: &InsideSession,
        explainer: &Explainer,
        neurons: Vec<usize>,
        total: usize,
    ) -> Result<(), EngineError> {
        let started = now_ms();
        let device_error = |e: String| EngineError::new(ErrorKind::Device, e);
        let targets = neurons
            .iter()
            .flat_map(|&neuron| {
                [Direction::Excite, Direction::Suppress]
                    .map(|direction| Target { neuron, direction })
            })
            .collect();
        let mut job = explainer
            .invert(targets, InversionConfig::new())
            .map_err(|e| device_error(e.to_string()))?;
        loop {
            explainer
                .advance(&mut job, SLICE)
                .await
                .map_err(|e| device_error(e.to_string()))?;
            if s.closed.get() {
                return Ok(());
            }
            self.send(&Event::InsideProgress {
                token: s.token,
                neurons: neurons.clone(),
                steps_done: job.steps_done(),
                done: s.done.borrow().len(),
                total,
            });
            if job.is_finished() {
                break;
            }
            // Lets a click or a close in.
            yield_to_messages().await;
            if neurons.len() > 1
                && let Some(focus) = s.next_focus()
                && !neurons.contains(&focus)
            {
                Box::pin(self.invert(s, explainer, vec![focus], total)).await?;
                if s.closed.get() {
                    return Ok(());
                }
            }
        }
        let results = explainer
            .finish(job)
            .await
            .map_err(|e| device_error(e.to_string()))?;
        s.done.borrow_mut().extend(&neurons);
        self.send(&Event::InsideInverted {
            token: s.token,
            results,
            ms: now_ms() - started,
            done: s.done.borrow().len(),
            total,
        });
        Ok(())
    }
}
