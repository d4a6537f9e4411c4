//! Results that outlive a run: the seed's output files (training record, Pearson data, the
//! best network's weights) as JSON and numpy `.npz`, per-neuron CSV, and saved networks in
//! Burn's record format that load back for evaluation. Everything here works on host data,
//! so the page, its worker and `v1p` write the same files.

pub mod import;
mod network;
mod npz;

use serde::{Deserialize, Serialize};

pub(crate) use network::read_back;
pub use network::{LayerWeights, NetworkInfo, NetworkWeights, SavedNetwork, SeedArray};
pub use npz::NpzBuilder;

use crate::config::ConfigError;
use crate::training::{TrainError, TrainingReport};

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("{file}: {why}")]
    NotANetwork { file: String, why: String },
    #[error("{0}")]
    Mismatch(String),
    #[error("cannot write the file: {0}")]
    Write(String),
    #[error("the device failed while reading the weights back: {0}")]
    Device(String),
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("{0}")]
    Train(#[from] TrainError),
}

impl From<std::io::Error> for ResultsError {
    fn from(e: std::io::Error) -> Self {
        Self::Write(e.to_string())
    }
}

impl From<serde_json::Error> for ResultsError {
    fn from(e: serde_json::Error) -> Self {
        Self::Write(e.to_string())
    }
}

impl From<csv::Error> for ResultsError {
    fn from(e: csv::Error) -> Self {
        Self::Write(e.to_string())
    }
}

/// One file to hand to the user (a download in the page, a file in `v1p --out DIR`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExportFile {
    pub name: String,
    pub mime: &'static str,
    #[serde(skip)]
    pub bytes: Vec<u8>,
}

/// An RGB image (`width × height × 3` bytes, row-major) as a PNG file.
pub(crate) fn rgb_png(width: u32, height: u32, rgb: &[u8]) -> Result<Vec<u8>, ResultsError> {
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder
        .write_header()
        .map_err(|e| ResultsError::Write(e.to_string()))?;
    writer
        .write_image_data(rgb)
        .map_err(|e| ResultsError::Write(e.to_string()))?;
    writer
        .finish()
        .map_err(|e| ResultsError::Write(e.to_string()))?;
    Ok(bytes)
}

impl ExportFile {
    pub(crate) fn new(name: String, mime: &'static str, bytes: Vec<u8>) -> Self {
        Self { name, mime, bytes }
    }
}

/// File names, tagged with the run's start (Unix seconds) as the seed tags its files.
pub struct FileNames {
    pub tag: u64,
}

impl FileNames {
    pub fn training(&self, ext: &str) -> String {
        format!("training_manualsave_{}.{ext}", self.tag)
    }
    pub fn pearson(&self, ext: &str) -> String {
        format!("pearsondata_{}.{ext}", self.tag)
    }
    pub fn network_npz(&self) -> String {
        format!("network_manualsave_{}.npz", self.tag)
    }
    pub fn network_burn(&self) -> String {
        format!("network_{}.bpk", self.tag)
    }
    pub fn neurons_csv(&self) -> String {
        format!("neurons_{}.csv", self.tag)
    }
}

/// The seed's training record: what its progress plot shows. Read back too: a student's
/// exported run is listed in a teacher's page ([`import::report_from_exports`]).
#[derive(Serialize, Deserialize)]
pub(crate) struct TrainingRecord {
    #[serde(rename = "FLAGS")]
    pub flags: crate::training::TrainingConfig,
    pub trainlist: Vec<f64>,
    pub earlystoplist: Vec<f64>,
    pub evallist: Vec<f64>,
    pub rlist: Vec<f64>,
    pub step: Vec<usize>,
    pub lossbaseline: f64,
    pub traintrials: Vec<usize>,
    pub earlystoptrials: Vec<usize>,
    pub evaltrials: Vec<usize>,
    pub started_unix: u64,
    pub sources: Vec<String>,
    pub steps_done: usize,
}

/// The seed's Pearson data: the best network's per-neuron results.
#[derive(Serialize, Deserialize)]
pub(crate) struct PearsonData {
    pub rval: Vec<f64>,
    pub step: usize,
    pub meanr: f64,
    pub fve: f64,
    pub evalloss: f64,
    pub evalloss_per_neuron: Vec<f64>,
    pub lossbaseline_per_neuron: Vec<f64>,
    pub evalvariance: Vec<f64>,
    pub traintrials: Vec<usize>,
    pub earlystoptrials: Vec<usize>,
    pub evaltrials: Vec<usize>,
    #[serde(rename = "FLAGS")]
    pub flags: crate::training::TrainingConfig,
    pub started_unix: u64,
}

/// The run's record, Pearson data (once there is a best network) and per-neuron table.
/// `cell_types` (known for simulated data) adds a column to the CSV when it fits.
pub fn report_files(
    report: &TrainingReport,
    started_unix: u64,
    sources: &[String],
    cell_types: &[String],
) -> Result<Vec<ExportFile>, ResultsError> {
    let names = FileNames { tag: started_unix };
    let split = &report.split;
    let history = &report.history;
    let list = |f: fn(&crate::training::EvalRecord) -> f64| history.iter().map(f).collect();
    let record = TrainingRecord {
        flags: report.flags.clone(),
        trainlist: list(|e| e.train_loss),
        earlystoplist: list(|e| e.early_stop_loss),
        evallist: list(|e| e.eval_loss),
        rlist: list(|e| e.mean_r),
        step: history.iter().map(|e| e.step).collect(),
        lossbaseline: report.baseline_loss,
        traintrials: split.train.clone(),
        earlystoptrials: split.early_stop.clone(),
        evaltrials: split.eval.clone(),
        started_unix,
        sources: sources.to_vec(),
        steps_done: report.steps_done,
    };
    let flags = serde_json::to_string(&report.flags)?;
    let k = history.len();
    let mut npz = NpzBuilder::new();
    npz.text("FLAGS", &flags)?
        .f64s("trainlist", &[k], &record.trainlist)?
        .f64s("earlystoplist", &[k], &record.earlystoplist)?
        .f64s("evallist", &[k], &record.evallist)?
        .f64s("rlist", &[k], &record.rlist)?
        .indices("step", &record.step)?
        .scalar_f64("lossbaseline", report.baseline_loss)?;
    add_split(&mut npz, split)?;
    let mut files = vec![
        ExportFile::new(
            names.training("json"),
            "application/json",
            serde_json::to_vec_pretty(&record)?,
        ),
        ExportFile::new(
            names.training("npz"),
            "application/octet-stream",
            npz.finish()?,
        ),
    ];

    let Some(best) = &report.best else {
        return Ok(files);
    };
    // A report can come from the page's storage: refuse one whose per-neuron lists disagree.
    check_per_neuron_lists(report)?;
    let n = best.r.len();
    let data = PearsonData {
        rval: best.r.clone(),
        step: best.step,
        meanr: best.mean_r,
        fve: best.fve,
        evalloss: best.eval_loss,
        evalloss_per_neuron: best.eval_loss_per_neuron.clone(),
        lossbaseline_per_neuron: report.baseline_loss_per_neuron.clone(),
        evalvariance: report.eval_variance.clone(),
        traintrials: split.train.clone(),
        earlystoptrials: split.early_stop.clone(),
        evaltrials: split.eval.clone(),
        flags: report.flags.clone(),
        started_unix,
    };
    let mut npz = NpzBuilder::new();
    npz.f64s("rval", &[n], &best.r)?
        .scalar_i64("step", best.step as i64)?
        .scalar_f64("meanr", best.mean_r)?
        .scalar_f64("fve", best.fve)?
        .scalar_f64("evalloss", best.eval_loss)?
        .f64s("evalloss_per_neuron", &[n], &best.eval_loss_per_neuron)?
        .f64s(
            "lossbaseline_per_neuron",
            &[n],
            &report.baseline_loss_per_neuron,
        )?
        .f64s("evalvariance", &[n], &report.eval_variance)?
        .text("FLAGS", &flags)?;
    add_split(&mut npz, split)?;
    files.push(ExportFile::new(
        names.pearson("json"),
        "application/json",
        serde_json::to_vec_pretty(&data)?,
    ));
    files.push(ExportFile::new(
        names.pearson("npz"),
        "application/octet-stream",
        npz.finish()?,
    ));
    files.push(ExportFile::new(
        names.neurons_csv(),
        "text/csv",
        neurons_csv(report, cell_types)?,
    ));
    Ok(files)
}

/// A report's per-neuron lists (r, losses, variance) have one entry per neuron each, and
/// there is at least one neuron: what every export and import relies on.
pub(crate) fn check_per_neuron_lists(report: &TrainingReport) -> Result<(), ResultsError> {
    let Some(best) = &report.best else {
        return Ok(());
    };
    let n = best.r.len();
    let lengths = [
        best.eval_loss_per_neuron.len(),
        report.baseline_loss_per_neuron.len(),
        report.eval_variance.len(),
    ];
    if n == 0 || lengths.iter().any(|&len| len != n) {
        return Err(ResultsError::Mismatch(
            "the report's per-neuron lists are empty or of different lengths".into(),
        ));
    }
    Ok(())
}

fn add_split(npz: &mut NpzBuilder, split: &crate::data::Split) -> Result<(), ResultsError> {
    npz.indices("traintrials", &split.train)?
        .indices("earlystoptrials", &split.early_stop)?
        .indices("evaltrials", &split.eval)?;
    Ok(())
}

/// One row per neuron (numbered from 1, as on the page): r, losses, variance.
fn neurons_csv(report: &TrainingReport, cell_types: &[String]) -> Result<Vec<u8>, ResultsError> {
    let Some(best) = &report.best else {
        return Ok(Vec::new());
    };
    let with_types = cell_types.len() == best.r.len();
    let mut writer = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["neuron"];
    if with_types {
        header.push("cell_type");
    }
    header.extend(["pearson_r", "eval_loss", "baseline_loss", "eval_variance"]);
    writer.write_record(&header)?;
    for (i, r) in best.r.iter().enumerate() {
        let mut row = vec![(i + 1).to_string()];
        if with_types {
            row.push(cell_types[i].clone());
        }
        row.extend([
            r.to_string(),
            best.eval_loss_per_neuron[i].to_string(),
            report.baseline_loss_per_neuron[i].to_string(),
            report.eval_variance[i].to_string(),
        ]);
        writer.write_record(&row)?;
    }
    writer
        .into_inner()
        .map_err(|e| ResultsError::Write(e.to_string()))
}

/// The best network as the seed saved it (`network_manualsave`: its arrays and `step`), and
/// as a Burn record that loads back.
pub fn network_files(network: &SavedNetwork) -> Result<Vec<ExportFile>, ResultsError> {
    let names = FileNames {
        tag: network.info.started_unix,
    };
    let mut npz = NpzBuilder::new();
    for (name, shape, values) in network.weights.seed_arrays() {
        npz.f32s(&name, &shape, &values)?;
    }
    npz.scalar_i64("step", network.info.step as i64)?
        .text("FLAGS", &serde_json::to_string(&network.info.flags)?)?;
    Ok(vec![
        ExportFile::new(
            names.network_npz(),
            "application/octet-stream",
            npz.finish()?,
        ),
        ExportFile::new(
            names.network_burn(),
            "application/octet-stream",
            network.to_burnpack()?,
        ),
    ])
}
