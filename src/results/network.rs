//! A trained network outside its trainer: its weights on the host, saved in Burn's record
//! format (burnpack, with what it was trained on as metadata) to load back, and laid out as
//! the seed saved them for numpy.

use burn::module::Module;
use burn::prelude::*;
use burn::store::ModuleRecord;
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};

use super::ResultsError;
use crate::data::{Dataset, Split};
use crate::model::{InputScaling, Member, Network, init};
use crate::training::{Trainer, TrainingConfig, TrainingReport, evaluate_network};

/// The metadata key under which a burnpack file carries [`NetworkInfo`].
const METADATA_KEY: &str = "v1-predictor.network";
/// Bumped when [`NetworkInfo`] changes incompatibly.
const FORMAT_VERSION: u32 = 2;

/// What a saved network was trained on and how; enough to rebuild and re-evaluate it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    pub format_version: u32,
    pub flags: TrainingConfig,
    /// Image [height, width] and neuron count of the training data.
    pub input: [usize; 2],
    pub n_neurons: usize,
    pub n_images: usize,
    pub sources: Vec<String>,
    /// The step at which this (best) network was taken.
    pub step: usize,
    pub split: Split,
    /// Unix time (s) at which its run started: the tag of its files.
    pub started_unix: u64,
    /// What the network does to pixels first (fixed when its training started).
    pub input_scaling: InputScaling,
}

/// One layer's parameters, in Burn's layout: conv weight [out, in, kh, kw], dense weight
/// [in, out].
#[derive(Clone, Debug, PartialEq)]
pub struct LayerWeights {
    pub weight: Vec<f32>,
    pub weight_shape: Vec<usize>,
    pub bias: Vec<f32>,
}

/// One network's parameters on the host (an LN model has no conv and no hidden layer).
#[derive(Clone, Debug, PartialEq)]
pub struct MemberWeights {
    pub conv: Vec<LayerWeights>,
    pub hidden: Option<LayerWeights>,
    pub output: LayerWeights,
}

/// A network's parameters on the host: one entry per ensemble member.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkWeights {
    pub members: Vec<MemberWeights>,
}

/// One array of the seed's `network_manualsave` file: name, shape, values (row-major).
pub type SeedArray = (String, Vec<usize>, Vec<f32>);

/// A tensor's values on the host, read back asynchronously (the browser forbids blocking
/// read-backs on WebGPU).
pub(crate) async fn read_back<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>, ResultsError> {
    tensor
        .into_data_async()
        .await
        .map_err(|e| ResultsError::Device(format!("{e:?}")))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| ResultsError::Device(format!("{e:?}")))
}

/// `outputs`: the layer's output count (a missing bias reads as zeros of that size).
async fn layer<const D: usize>(
    weight: Tensor<D>,
    bias: Option<Tensor<1>>,
    outputs: usize,
) -> Result<LayerWeights, ResultsError> {
    let weight_shape = weight.dims().to_vec();
    let bias = match bias {
        Some(bias) => read_back(bias).await?,
        None => vec![0.0; outputs],
    };
    Ok(LayerWeights {
        weight: read_back(weight).await?,
        weight_shape,
        bias,
    })
}

impl NetworkWeights {
    /// Copies the parameters to the host with asynchronous read-backs (the browser forbids
    /// blocking ones on WebGPU).
    pub async fn read(model: &Network) -> Result<Self, ResultsError> {
        let mut members = Vec::new();
        for member in &model.members {
            members.push(read_member(member).await?);
        }
        Ok(Self { members })
    }

    /// The network with these weights on `device`, for the architecture `info` describes.
    pub fn to_model(&self, info: &NetworkInfo, device: &Device) -> Result<Network, ResultsError> {
        let mut model = info
            .flags
            .model
            .init(info.input, info.n_neurons, 0, device)?;
        if model.members.len() != self.members.len() {
            return Err(mismatch());
        }
        for (member, weights) in model.members.iter_mut().zip(&self.members) {
            load_member(member, weights, device)?;
        }
        model.input_scaling = info.input_scaling;
        Ok(model)
    }

    /// The seed's arrays: `WC1`, `BC1`, `WC2`, `BC2` (and `WC3`, `BC3` with three conv
    /// layers), `WH3`, `BH3`, `WL4`, `BL4`; conv weights in TensorFlow's [kh, kw, in, out]
    /// (NHWC convolutions), dense weights [in, out] with the input flattened in NHWC order.
    /// Further ensemble members follow with a suffix (`WC1_2`, … for member 2); an LN model
    /// has only `WL4` [pixels, neurons] (its filters) and `BL4`.
    pub fn seed_arrays(&self) -> Vec<SeedArray> {
        let mut arrays = Vec::new();
        for (k, member) in self.members.iter().enumerate() {
            let suffix = if k == 0 {
                String::new()
            } else {
                format!("_{}", k + 1)
            };
            for (i, conv) in member.conv.iter().enumerate() {
                let [out, inp, kh, kw] = [
                    conv.weight_shape[0],
                    conv.weight_shape[1],
                    conv.weight_shape[2],
                    conv.weight_shape[3],
                ];
                let mut hwio = vec![0.0; conv.weight.len()];
                for o in 0..out {
                    for c in 0..inp {
                        for y in 0..kh {
                            for x in 0..kw {
                                hwio[((y * kw + x) * inp + c) * out + o] =
                                    conv.weight[((o * inp + c) * kh + y) * kw + x];
                            }
                        }
                    }
                }
                arrays.push((format!("WC{}{suffix}", i + 1), vec![kh, kw, inp, out], hwio));
                arrays.push((format!("BC{}{suffix}", i + 1), vec![out], conv.bias.clone()));
            }
            let dense = member
                .hidden
                .iter()
                .map(|layer| ("WH3", "BH3", layer))
                .chain([("WL4", "BL4", &member.output)]);
            for (w, b, layer) in dense {
                arrays.push((
                    format!("{w}{suffix}"),
                    layer.weight_shape.clone(),
                    layer.weight.clone(),
                ));
                arrays.push((
                    format!("{b}{suffix}"),
                    vec![layer.bias.len()],
                    layer.bias.clone(),
                ));
            }
        }
        arrays
    }
}

fn mismatch() -> ResultsError {
    ResultsError::Mismatch("the weights do not have the shapes the network's flags describe".into())
}

async fn read_member(member: &Member) -> Result<MemberWeights, ResultsError> {
    let mut conv = Vec::new();
    for block in &member.conv_blocks {
        let c = &block.conv;
        let outputs = c.weight.dims()[0]; // [out, in, kh, kw]
        conv.push(layer(c.weight.val(), c.bias.as_ref().map(|b| b.val()), outputs).await?);
    }
    let dense = |l: &burn::nn::Linear| {
        let outputs = l.weight.dims()[1]; // [in, out]
        (l.weight.val(), l.bias.as_ref().map(|b| b.val()), outputs)
    };
    let hidden = match &member.hidden {
        Some(hidden) => {
            let (w, b, n) = dense(hidden);
            Some(layer(w, b, n).await?)
        }
        None => None,
    };
    let (w, b, n) = dense(&member.output);
    let output = layer(w, b, n).await?;
    Ok(MemberWeights {
        conv,
        hidden,
        output,
    })
}

fn load_member(
    member: &mut Member,
    weights: &MemberWeights,
    device: &Device,
) -> Result<(), ResultsError> {
    if member.conv_blocks.len() != weights.conv.len()
        || member.hidden.is_some() != weights.hidden.is_some()
    {
        return Err(mismatch());
    }
    for (block, weights) in member.conv_blocks.iter_mut().zip(&weights.conv) {
        let shape: [usize; 4] = weights
            .weight_shape
            .clone()
            .try_into()
            .map_err(|_| mismatch())?;
        if shape != block.conv.weight.dims() || weights.bias.len() != shape[0] {
            return Err(mismatch());
        }
        block.conv.weight = init::param(weights.weight.clone(), shape, device);
        block.conv.bias = Some(init::param(weights.bias.clone(), [shape[0]], device));
    }
    let dense = member
        .hidden
        .iter_mut()
        .zip(&weights.hidden)
        .chain([(&mut member.output, &weights.output)]);
    for (linear, weights) in dense {
        let shape: [usize; 2] = weights
            .weight_shape
            .clone()
            .try_into()
            .map_err(|_| mismatch())?;
        if shape != linear.weight.dims() || weights.bias.len() != shape[1] {
            return Err(mismatch());
        }
        linear.weight = init::param(weights.weight.clone(), shape, device);
        linear.bias = Some(init::param(weights.bias.clone(), [shape[1]], device));
    }
    Ok(())
}

/// A trained network with what it was trained on.
#[derive(Clone, Debug)]
pub struct SavedNetwork {
    pub info: NetworkInfo,
    pub weights: NetworkWeights,
}

impl SavedNetwork {
    /// The trainer's best network so far (`None` before its first evaluation).
    pub async fn best_of(
        trainer: &Trainer,
        started_unix: u64,
    ) -> Result<Option<Self>, ResultsError> {
        let (Some(model), Some(best)) = (trainer.best_model(), trainer.best()) else {
            return Ok(None);
        };
        let dataset = trainer.dataset();
        let info = NetworkInfo {
            format_version: FORMAT_VERSION,
            flags: trainer.config().clone(),
            input: [dataset.height, dataset.width],
            n_neurons: dataset.n_neurons,
            n_images: dataset.n_images,
            sources: dataset.sources.clone(),
            step: best.step,
            split: trainer.split().clone(),
            started_unix,
            input_scaling: model.input_scaling,
        };
        Ok(Some(Self {
            info,
            weights: NetworkWeights::read(model).await?,
        }))
    }

    /// Burn's record of the network (a burnpack file), with [`NetworkInfo`] as metadata.
    /// The record is taken from a copy on the CPU backend, so saving never reads a GPU
    /// synchronously.
    pub fn to_burnpack(&self) -> Result<Vec<u8>, ResultsError> {
        let model = self.weights.to_model(&self.info, &Device::flex())?;
        let record = model.into_record().into_bytes().map_err(record_error)?;
        let tensors = burn_pack::Reader::from_bytes(record)
            .and_then(|reader| reader.into_tensors())
            .map_err(|e| ResultsError::Write(e.to_string()))?;
        let info = serde_json::to_string(&self.info)?;
        let bytes = burn_pack::Writer::new(tensors)
            .with_metadata(METADATA_KEY, &info)
            .into_bytes()
            .map_err(|e| ResultsError::Write(e.to_string()))?;
        Ok(bytes.to_vec())
    }

    /// Reads a file written by [`SavedNetwork::to_burnpack`]; says plainly what else it is.
    pub async fn from_burnpack(file_name: &str, bytes: &[u8]) -> Result<Self, ResultsError> {
        let not_ours = |why: String| ResultsError::NotANetwork {
            file: file_name.to_string(),
            why,
        };
        let reader = burn_pack::Reader::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| not_ours(format!("not a Burn record (burnpack) file: {e}")))?;
        let info = reader.metadata().get(METADATA_KEY).ok_or_else(|| {
            not_ours(
                "a Burn record, but not a network saved by this page (no v1-predictor metadata)"
                    .into(),
            )
        })?;
        // The version first: an older format's flags may not parse as today's.
        let version = serde_json::from_str::<serde_json::Value>(info)
            .ok()
            .and_then(|v| v.get("format_version")?.as_u64());
        if version != Some(u64::from(FORMAT_VERSION)) {
            return Err(not_ours(format!(
                "saved in format {} of v1-predictor; this version reads format {FORMAT_VERSION} \
                 (train it again, or evaluate it with the version that saved it)",
                version.map_or("(unknown)".into(), |v| v.to_string())
            )));
        }
        let info: NetworkInfo = serde_json::from_str(info)
            .map_err(|e| not_ours(format!("its v1-predictor metadata is unreadable: {e}")))?;
        if !is_partition(&info.split, info.n_images) {
            return Err(not_ours(
                "its split does not divide its images into train, evaluation and early stop".into(),
            ));
        }
        let device = Device::flex();
        let model = info
            .flags
            .model
            .init(info.input, info.n_neurons, 0, &device)
            .map_err(|e| not_ours(format!("its flags describe no valid network ({e})")))?;
        let record = ModuleRecord::from_bytes(Bytes::from_bytes_vec(bytes.to_vec()))
            .map_err(|e| not_ours(e.to_string()))?;
        let model = model
            .try_load_record(record)
            .map_err(|e| not_ours(format!("its weights do not fit its own flags: {e}")))?;
        let weights = NetworkWeights::read(&model).await?;
        Ok(Self { info, weights })
    }

    /// Refuses a dataset this network cannot predict: other image size, neuron count or
    /// image count (its split would not apply).
    pub fn check_fits(&self, dataset: &Dataset) -> Result<(), ResultsError> {
        let info = &self.info;
        let trained = format!(
            "this network was trained on {} images of {}×{} pixels and {} neurons",
            info.n_images, info.input[0], info.input[1], info.n_neurons
        );
        let have = format!(
            "the dataset has {} images of {}×{} pixels and {} neurons",
            dataset.n_images, dataset.height, dataset.width, dataset.n_neurons
        );
        if info.input != [dataset.height, dataset.width]
            || info.n_neurons != dataset.n_neurons
            || info.n_images != dataset.n_images
        {
            return Err(ResultsError::Mismatch(format!(
                "{trained} ({}), but {have}: load the data it was trained on",
                info.sources.join(", ")
            )));
        }
        Ok(())
    }

    /// A caution when the dataset's files are not the ones the network was trained on (in
    /// that order): the shapes fit, but its r means something only on the same recordings.
    pub fn source_warning(&self, dataset: &Dataset) -> Option<String> {
        (self.info.sources != dataset.sources).then(|| {
            format!(
                "Note: this network was trained on {}, and is evaluated on {}: its r is \
                 meaningful only on the same recordings, in the same order.",
                self.info.sources.join(" + "),
                dataset.sources.join(" + ")
            )
        })
    }

    /// Evaluates the network on the dataset's images with its own split, as the seed
    /// evaluates its best network. Gives the r it had when it was saved, on the same data.
    pub async fn evaluate(
        &self,
        dataset: &Dataset,
        device: &Device,
    ) -> Result<TrainingReport, ResultsError> {
        self.check_fits(dataset)?;
        let model = self.weights.to_model(&self.info, device)?;
        Ok(evaluate_network(
            &model,
            self.info.flags.clone(),
            dataset,
            self.info.split.clone(),
            self.info.step,
            device,
        )
        .await?)
    }
}

fn record_error(e: burn::store::RecordError) -> ResultsError {
    ResultsError::Write(e.to_string())
}

/// Whether `split` uses every image below `n_images` exactly once, with evaluation images.
fn is_partition(split: &Split, n_images: usize) -> bool {
    let mut seen = vec![false; n_images];
    let all: Vec<usize> = [&split.train, &split.eval, &split.early_stop]
        .into_iter()
        .flatten()
        .copied()
        .collect();
    !split.eval.is_empty()
        && all.len() == n_images
        && all
            .iter()
            .all(|&i| i < n_images && !std::mem::replace(&mut seen[i], true))
}
