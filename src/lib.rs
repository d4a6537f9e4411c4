//! v1-predictor: the CNN of Kindel, Christensen & Zylberberg (2017), which predicts how
//! neurons in monkey V1 respond to images, trained and evaluated in the browser (WebGPU) or
//! natively.
//!
//! Architecture, in the order data flows:
//! - [`data`]: MAT files → [`data::Dataset`], and the train / eval / early-stop split;
//! - [`model`]: the seed's CNN, the LN and Gabor baselines, ensembles, and their flags;
//! - [`training`]: the loop, metrics (loss, Pearson r, FVE) and the best network;
//! - [`explain`]: looking inside a trained network (inversion, receptive fields, STAs);
//! - [`backend`]: the only module that knows concrete backends (WebGPU, CPU);
//! - `web` (wasm only): the browser boundary; `src/native` holds the `v1p` command.

pub mod backend;
pub mod config;
pub mod data;
pub mod explain;
pub mod model;
pub mod plots;
pub mod results;
pub mod training;

#[cfg(target_arch = "wasm32")]
pub mod web;
