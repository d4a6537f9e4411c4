//! Reading exported runs back: a student's `pearsondata_T.json` (and, when it comes along,
//! `training_manualsave_T.json`) becomes a report that a teacher's page lists and compares
//! beside its own runs. No weights are needed for that.

use super::{PearsonData, ResultsError, TrainingRecord};
use crate::data::Split;
use crate::training::{BestNetwork, EvalRecord, TrainingReport};

/// A run read back from its export files.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ImportedRun {
    pub report: TrainingReport,
    pub started_unix: u64,
    /// The data files it was trained on (known from the training record only).
    pub sources: Vec<String>,
}

/// The report of an exported run from its Pearson data (the per-neuron results) and,
/// optionally, its training record (the curves). Both must carry the same run's tag.
pub fn report_from_exports(
    pearson_json: &[u8],
    training_json: Option<&[u8]>,
) -> Result<ImportedRun, ResultsError> {
    let bad = |what: &str, e: serde_json::Error| {
        ResultsError::Mismatch(format!("not a {what} file of this program: {e}"))
    };
    let pearson: PearsonData =
        serde_json::from_slice(pearson_json).map_err(|e| bad("pearsondata_….json", e))?;
    let record: Option<TrainingRecord> = training_json
        .map(|bytes| {
            serde_json::from_slice(bytes).map_err(|e| bad("training_manualsave_….json", e))
        })
        .transpose()?;
    let (history, baseline_loss, sources, steps_done) = match record {
        Some(record) => {
            if record.started_unix != pearson.started_unix {
                return Err(ResultsError::Mismatch(format!(
                    "the training record is of run {} and the Pearson data of run {}",
                    record.started_unix, pearson.started_unix
                )));
            }
            let k = record.step.len();
            let lists = [
                &record.trainlist,
                &record.earlystoplist,
                &record.evallist,
                &record.rlist,
            ];
            if lists.iter().any(|list| list.len() != k) {
                return Err(ResultsError::Mismatch(
                    "the training record's lists are of different lengths".into(),
                ));
            }
            let history = (0..k)
                .map(|i| EvalRecord {
                    step: record.step[i],
                    train_loss: record.trainlist[i],
                    early_stop_loss: record.earlystoplist[i],
                    eval_loss: record.evallist[i],
                    mean_r: record.rlist[i],
                })
                .collect();
            let steps = record.steps_done;
            (history, record.lossbaseline, record.sources, steps)
        }
        // Without the record: no curves; the baseline is the mean of the per-neuron ones.
        None => {
            let n = pearson.lossbaseline_per_neuron.len().max(1);
            let baseline = pearson.lossbaseline_per_neuron.iter().sum::<f64>() / n as f64;
            (Vec::new(), baseline, Vec::new(), pearson.step)
        }
    };
    let early_stop_loss = history
        .iter()
        .find(|e: &&EvalRecord| e.step == pearson.step)
        .map_or(f64::NAN, |e| e.early_stop_loss);
    let report = TrainingReport {
        flags: pearson.flags,
        n_params: 0,
        steps_done,
        split: Split {
            train: pearson.traintrials,
            eval: pearson.evaltrials,
            early_stop: pearson.earlystoptrials,
        },
        baseline_loss,
        baseline_loss_per_neuron: pearson.lossbaseline_per_neuron,
        eval_variance: pearson.evalvariance,
        history,
        best: Some(BestNetwork {
            step: pearson.step,
            early_stop_loss,
            eval_loss: pearson.evalloss,
            fve: pearson.fve,
            mean_r: pearson.meanr,
            r: pearson.rval,
            eval_loss_per_neuron: pearson.evalloss_per_neuron,
        }),
    };
    super::check_per_neuron_lists(&report)?;
    Ok(ImportedRun {
        report,
        started_unix: pearson.started_unix,
        sources,
    })
}
