//! Model: one network type for every trainable family of the paper's comparisons —
//! the seed's `ConvNetDrop` (conv → max-pool, 1 to 3 times → dense + dropout → linear +
//! ReLU, all padding VALID), the LN model (one linear filter per neuron over the image, then
//! a fixed output nonlinearity), and an ensemble of either (predictions averaged).
//! The Gabor-energy ridge baseline has no trained layers: it lives in [`gabor`].

pub mod gabor;
pub(crate) mod init;
mod patch_conv;

use burn::module::Param;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, softplus};
use burn::tensor::ops::ConvOptions;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::hint::select_unpredictable;

use crate::config::ConfigError;
pub use gabor::GaborConfig;
pub use init::truncated_normal;

/// Which model: the seed's CNN, the CNN with the changes that measured best here, or one of
/// the classical baselines the paper compared it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum ModelFamily {
    /// The seed's network: two conv layers, a dense layer with dropout, a linear readout.
    Cnn,
    /// The same network with the changes measured to help (BENCHMARKS.md, "Models"):
    /// standardised pixels, a higher learning rate, weight decay, early stopping with patience.
    Cnnplus,
    /// Linear–nonlinear: one filter per neuron over the image (its receptive field), plus
    /// a bias, then softplus or exp.
    Ln,
    /// Gabor-energy model: a fixed bank of Gabor filters, ridge regression per neuron.
    Gabor,
}

impl ModelFamily {
    pub const ALL: [ModelFamily; 4] = [Self::Cnn, Self::Cnnplus, Self::Ln, Self::Gabor];

    pub fn name(self) -> &'static str {
        match self {
            Self::Cnn => "cnn",
            Self::Cnnplus => "cnnplus",
            Self::Ln => "ln",
            Self::Gabor => "gabor",
        }
    }

    /// Its name in the page's model menu.
    pub fn label(self) -> &'static str {
        match self {
            Self::Cnn => "CNN (the paper's network)",
            Self::Cnnplus => "CNN+ (the same network, better trained)",
            Self::Ln => "LN (linear–nonlinear)",
            Self::Gabor => "Gabor energy + ridge",
        }
    }

    /// One line for students, shown beside the choice.
    pub fn explanation(self) -> &'static str {
        match self {
            Self::Cnn => {
                "The paper's deep network: layers of learned filters, then a readout per neuron."
            }
            Self::Cnnplus => {
                "The same network with pixels rescaled first, a faster learning rate and a \
                 penalty on large weights: the best predictor found here."
            }
            Self::Ln => {
                "One learned filter per neuron (its receptive field), then a smooth threshold: \
                 the classic linear–nonlinear model."
            }
            Self::Gabor => {
                "A fixed bank of edge detectors at every position, orientation and size; each \
                 neuron is a weighted sum of them (ridge regression). No network is trained."
            }
        }
    }

    /// Whether the family is a network trained step by step (all but the Gabor ridge).
    pub fn is_trained(self) -> bool {
        self != Self::Gabor
    }
}

/// The output nonlinearity that turns each neuron's drive into a rate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::ValueEnum))]
pub enum OutputFn {
    /// The seed's: max(0, drive).
    Relu,
    /// log(1 + e^drive): smooth and never exactly 0 (what a Poisson loss needs).
    Softplus,
    /// e^drive: the classic LN model's.
    Exp,
}

impl OutputFn {
    /// The drive that gives `rate` (> 0): where a readout's bias starts, so that a model
    /// begins at each neuron's mean rate instead of spending its first steps getting there.
    pub fn inverse(self, rate: f64) -> f64 {
        match self {
            Self::Relu => rate,
            Self::Softplus => rate + (-(-rate).exp_m1()).ln(),
            Self::Exp => rate.ln(),
        }
    }

    pub fn apply<const D: usize>(self, drive: Tensor<D>) -> Tensor<D> {
        match self {
            Self::Relu => relu(drive),
            Self::Softplus => softplus(drive, 1.0),
            // Bounded so that one bad step cannot overflow to infinity.
            Self::Exp => drive.clamp_max(15.0).exp(),
        }
    }
}

/// The network's flags, named and defaulted as the seed's published run.
#[derive(Config, Debug, PartialEq)]
pub struct ModelConfig {
    /// Which model: cnn (the seed), cnnplus, ln or gabor.
    #[config(default = "ModelFamily::Cnn")]
    pub family: ModelFamily,
    /// Number of filters in conv 1.
    #[config(default = 16)]
    pub conv1: usize,
    /// Number of filters in conv 2 (and conv 3).
    #[config(default = 32)]
    pub conv2: usize,
    /// Size (linear) of the convolution kernel of layer 1.
    #[config(default = 7)]
    pub conv1size: usize,
    /// Size (linear) of the convolution kernel of layer 2 (and 3).
    #[config(default = 7)]
    pub conv2size: usize,
    /// Size of the max-pool kernel of layer 1.
    #[config(default = 3)]
    pub nk1: usize,
    /// Stride of the max-pool of layer 1.
    #[config(default = 2)]
    pub nstride1: usize,
    /// Size of the max-pool kernel of layer 2 (and 3).
    #[config(default = 3)]
    pub nk2: usize,
    /// Stride of the max-pool of layer 2 (and 3).
    #[config(default = 2)]
    pub nstride2: usize,
    /// Number of convolutional layers (1, 2 or 3; the third reuses conv2's settings).
    #[config(default = 2)]
    pub numconvlayer: usize,
    /// Number of units in the hidden (dense) layer.
    #[config(default = 300)]
    pub hidden1: usize,
    /// Dropout keep rate on the hidden layer during training (1 = no dropout).
    #[config(default = 0.55)]
    pub dropout: f64,
    /// Output nonlinearity: relu (the seed), softplus or exp.
    #[config(default = "OutputFn::Relu")]
    pub output: OutputFn,
    /// Networks trained side by side from different initial weights; their predictions are
    /// averaged (1 = a single network, as the seed).
    #[config(default = 1)]
    pub ensemble: usize,
    /// Standardise the pixels (minus the training images' mean, divided by their sd)
    /// before the first layer; the seed feeds raw 0…255 values.
    #[config(default = false)]
    pub standardise: bool,
    /// The Gabor bank and ridge settings (used by the gabor family only).
    #[config(default = "GaborConfig::new()")]
    pub gabor: GaborConfig,
}

/// One conv layer's settings and the feature map it produces.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ConvLayerShape {
    pub filters: usize,
    pub kernel: usize,
    pub pool_kernel: usize,
    pub pool_stride: usize,
    /// Feature map after conv and pool: [filters, height, width].
    pub output: [usize; 3],
}

/// The sizes of every layer for a given image size, worked out before any tensor exists.
/// An LN model has no conv layers and no hidden layer (`hidden` = 0): its readout sees the
/// pixels.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    pub input: [usize; 2],
    pub conv: Vec<ConvLayerShape>,
    pub flat: usize,
    pub hidden: usize,
    pub n_neurons: usize,
    /// Networks in the ensemble (each with these shapes).
    pub members: usize,
}

impl Architecture {
    pub fn n_params(&self) -> usize {
        let mut channels = 1;
        let mut total = 0;
        for layer in &self.conv {
            total += layer.filters * channels * layer.kernel * layer.kernel + layer.filters;
            channels = layer.filters;
        }
        let readout_inputs = if self.hidden > 0 {
            total += self.flat * self.hidden + self.hidden;
            self.hidden
        } else {
            self.flat
        };
        self.members * (total + readout_inputs * self.n_neurons + self.n_neurons)
    }
}

impl ModelConfig {
    /// Checks every flag and the shrinking feature map; names the flag at fault.
    pub fn architecture(
        &self,
        input: [usize; 2],
        n_neurons: usize,
    ) -> Result<Architecture, ConfigError> {
        // Each flag of this model against the table's range; the feature map's shrinking
        // (which needs the image size) is checked as the layers are worked out below.
        crate::config::flags::check_part(self, &["model"], self.family)?;
        match self.family {
            ModelFamily::Cnn | ModelFamily::Cnnplus => self.cnn_architecture(input, n_neurons),
            ModelFamily::Ln => Ok(Architecture {
                input,
                conv: Vec::new(),
                flat: input[0] * input[1],
                hidden: 0,
                n_neurons,
                members: self.ensemble,
            }),
            ModelFamily::Gabor => Err(ConfigError::new(
                "model",
                "the Gabor ridge model has no network to build; fit it with model::gabor",
            )),
        }
    }

    fn cnn_architecture(
        &self,
        input: [usize; 2],
        n_neurons: usize,
    ) -> Result<Architecture, ConfigError> {
        let [mut height, mut width] = input;
        let mut conv = Vec::new();
        for layer in 0..self.numconvlayer {
            let (filters, kernel, pool_kernel, pool_stride, names) = if layer == 0 {
                (
                    self.conv1,
                    self.conv1size,
                    self.nk1,
                    self.nstride1,
                    ("conv1size", "nk1"),
                )
            } else {
                (
                    self.conv2,
                    self.conv2size,
                    self.nk2,
                    self.nstride2,
                    ("conv2size", "nk2"),
                )
            };
            if kernel > height || kernel > width {
                return Err(shrinks_to_nothing(names.0, layer, kernel, [height, width]));
            }
            (height, width) = (height - kernel + 1, width - kernel + 1);
            if pool_kernel > height || pool_kernel > width {
                return Err(shrinks_to_nothing(
                    names.1,
                    layer,
                    pool_kernel,
                    [height, width],
                ));
            }
            height = (height - pool_kernel) / pool_stride + 1;
            width = (width - pool_kernel) / pool_stride + 1;
            conv.push(ConvLayerShape {
                filters,
                kernel,
                pool_kernel,
                pool_stride,
                output: [filters, height, width],
            });
        }
        let flat = conv.last().map_or(0, |l| l.output.iter().product());
        Ok(Architecture {
            input,
            conv,
            flat,
            hidden: self.hidden1,
            n_neurons,
            members: self.ensemble,
        })
    }

    /// Builds the network with the seed's initialisation, drawn on the host from `seed` so
    /// that every backend starts from the same weights. Ensemble member k > 0 draws from
    /// its own stream; member 0 is the network a single run would build.
    pub fn init(
        &self,
        input: [usize; 2],
        n_neurons: usize,
        seed: u64,
        device: &Device,
    ) -> Result<Network, ConfigError> {
        let arch = self.architecture(input, n_neurons)?;
        let members = (0..arch.members)
            .map(|k| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(k as u64);
                init_member(&arch, &mut rng, device)
            })
            .collect();
        Ok(Network {
            members,
            output: self.output,
            input_scaling: InputScaling::RAW,
        })
    }
}

fn init_member(arch: &Architecture, rng: &mut ChaCha8Rng, device: &Device) -> Member {
    let mut channels = 1;
    let mut conv_blocks = Vec::new();
    for layer in &arch.conv {
        let mut conv = Conv2dConfig::new([channels, layer.filters], [layer.kernel; 2])
            .with_padding(PaddingConfig2d::Valid)
            .init(device);
        let shape = [layer.filters, channels, layer.kernel, layer.kernel];
        conv.weight = filters_param(
            truncated_normal(rng, 0.1, shape.iter().product()),
            shape,
            device,
        );
        conv.bias = Some(init::param(
            vec![0.0; layer.filters],
            [layer.filters],
            device,
        ));
        conv_blocks.push(ConvBlock {
            conv,
            pool: MaxPool2dConfig::new([layer.pool_kernel; 2])
                .with_strides([layer.pool_stride; 2])
                .init(),
        });
        channels = layer.filters;
    }
    let (hidden, readout_inputs) = if arch.hidden > 0 {
        (
            Some(init::dense(rng, arch.flat, arch.hidden, device)),
            arch.hidden,
        )
    } else {
        (None, arch.flat)
    };
    Member {
        conv_blocks,
        hidden,
        output: init::dense(rng, readout_inputs, arch.n_neurons, device),
    }
}

fn shrinks_to_nothing(flag: &str, layer: usize, size: usize, map: [usize; 2]) -> ConfigError {
    ConfigError::new(
        flag,
        format!(
            "{size} is larger than the {}×{} feature map entering conv layer {}: \
             the image shrinks to nothing; use a smaller kernel or fewer layers",
            map[0],
            map[1],
            layer + 1
        ),
    )
}

#[derive(Module, Debug)]
pub struct ConvBlock {
    pub conv: Conv2d,
    pub pool: MaxPool2d,
}

/// One network of an ensemble: the seed's `ConvNetDrop` (conv blocks, hidden layer, linear
/// readout), or an LN model's filters (no conv blocks, no hidden layer).
#[derive(Module, Debug)]
pub struct Member {
    pub conv_blocks: Vec<ConvBlock>,
    pub hidden: Option<Linear>,
    pub output: Linear,
}

impl Member {
    /// Each neuron's drive (before the output nonlinearity). `mask` [batch, hidden]
    /// multiplies the hidden units (0 for a dropped unit, 1/keep for a kept one).
    fn drive(&self, images: Tensor<4>, mask: Option<Tensor<2>>) -> Tensor<2> {
        let mut x = images;
        for (layer, block) in self.conv_blocks.iter().enumerate() {
            let filtered = filter(&block.conv, x);
            // The seed's conv + bias → ReLU → pool, as conv → pool → bias → ReLU. Max pooling
            // commutes with adding a constant per channel and with the ReLU (both monotone),
            // so the values are the same up to the rounding of where the bias is added, and
            // the bias and ReLU run on the pooled map, a quarter of the size; on the GPU the
            // bias gradient then needs no layout copy.
            x = max_pool(&block.pool, filtered);
            // The last block's bias and ReLU come with the flatten below, where the GPU fuses
            // them into one kernel.
            if layer + 1 < self.conv_blocks.len() {
                x = relu_keeping_its_mask(x + channel_bias(&block.conv));
            }
        }
        // Flatten in the seed's NHWC order, so exported dense weights match its layout.
        let [batch, channels, height, width] = x.dims();
        let mut x = x.permute([0, 2, 3, 1]);
        if let Some(last) = self.conv_blocks.last() {
            x = relu(x + channel_bias(&last.conv).permute([0, 2, 3, 1]));
        }
        let mut x = x.reshape([batch, height * width * channels]);
        if let Some(hidden) = &self.hidden {
            x = hidden.forward(x);
            // Dropout before the ReLU: the same values and gradients (the mask is ≥ 0), but
            // on the GPU the two backward steps come one after the other and fuse.
            if let Some(mask) = mask {
                x = x * mask;
            }
            x = relu(x);
        }
        self.output.forward(x)
    }
}

/// A convolution's filters [filters, channels, kh, kw] from values in that order. On the GPU
/// they are stored channels-last ([filters, kh, kw, channels] in memory, as a permuted view),
/// the layout in which the GPU's convolution and its input gradient read them: from the
/// seed's layout each made a copy, three kernel launches per training step. The trainer's
/// update writes them in place, so they keep it (BENCHMARKS.md).
fn filters_param(values: Vec<f32>, shape: [usize; 4], device: &Device) -> Param<Tensor<4>> {
    if device.clone().without_autodiff() == Device::flex() {
        return init::param(values, shape, device);
    }
    let [filters, channels, kh, kw] = shape;
    let mut channels_last = vec![0.0; values.len()];
    for (i, value) in values.into_iter().enumerate() {
        let (f, c, y, x) = (
            i / (channels * kh * kw),
            i / (kh * kw) % channels,
            i / kw % kh,
            i % kw,
        );
        channels_last[((f * kh + y) * kw + x) * channels + c] = value;
    }
    let data = TensorData::new(channels_last, [filters, kh, kw, channels]);
    device.memory_persistent_allocations(data, |data| {
        Param::from_tensor(Tensor::<4>::from_data(data, device).permute([0, 3, 1, 2]))
    })
}

/// A convolution's bias as [1, filters, 1, 1] (zeros for a layer without one).
fn channel_bias(conv: &Conv2d) -> Tensor<4> {
    match &conv.bias {
        Some(bias) => bias.val().reshape([1, -1, 1, 1]),
        None => Tensor::zeros([1, conv.weight.dims()[0], 1, 1], &conv.weight.device()),
    }
}

/// The convolution without its bias (VALID padding, as every layer here has); on the CPU
/// backend by patches, with a backward pass of its own ([`patch_conv`]).
fn filter(conv: &Conv2d, x: Tensor<4>) -> Tensor<4> {
    assert_eq!(
        conv.padding,
        PaddingConfig2d::Valid,
        "every layer here is VALID"
    );
    let plain = conv.stride == [1, 1] && conv.dilation == [1, 1] && conv.groups == 1;
    if plain && x.device().without_autodiff() == Device::flex() {
        return patch_conv::conv(x, conv.weight.val());
    }
    let options = ConvOptions::new(conv.stride, [0, 0], conv.dilation, conv.groups);
    burn::tensor::module::conv2d(x, conv.weight.val(), None, options)
}

/// ReLU as a masked fill that keeps its mask, so that its backward pass is one masked fill.
/// Burn's ReLU compares again in its backward pass; after a convolution's input gradient
/// (where the GPU cannot fuse) that is two kernel launches instead of one. Same values and
/// gradients (0 at x ≤ 0).
fn relu_keeping_its_mask<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let off = x.clone().lower_equal_elem(0.0);
    x.mask_fill(off, 0.0)
}

/// Patches held at a time by [`patch_conv`], in floats (16 MB): a training batch of the
/// seed's network needs 1.8 M (conv 1) and 1.9 M (conv 2); an evaluation of hundreds of
/// images goes in chunks.
const PATCH_BUDGET: usize = 1 << 22;

/// Max pooling; on the CPU backend as a gather of each window's maximum, found on the host.
/// burn-flex's max pool is a scalar loop that recomputes each window's bounds (divisions) per
/// output: with its backward pass, most of the 18 % of a CPU training step that a profile
/// could not name (BENCHMARKS.md); the gather made the step about a tenth shorter. The
/// gather picks the element burn-flex picks (the window's first maximum in row-major order),
/// so values and gradients are the same; its backward pass is a scatter-add.
fn max_pool(pool: &MaxPool2d, x: Tensor<4>) -> Tensor<4> {
    match max_pool_by_gather(pool, x.clone()) {
        Some(pooled) => pooled,
        None => pool.forward(x),
    }
}

/// [`max_pool`]'s gather, or `None` where Burn's pooling is used: not the CPU backend, a
/// padded, dilated or ceil-mode pool, a window larger than the map, or a NaN in the input
/// (burn-flex lets a NaN win its window; a run that shows one is diverging).
fn max_pool_by_gather(pool: &MaxPool2d, x: Tensor<4>) -> Option<Tensor<4>> {
    let plain =
        pool.padding == PaddingConfig2d::Valid && pool.dilation == [1, 1] && !pool.ceil_mode;
    if !plain || x.device().without_autodiff() != Device::flex() {
        return None;
    }
    let [batch, channels, height, width] = x.dims();
    let windows = PoolWindows {
        size: pool.kernel_size,
        stride: pool.stride,
        input: [height, width],
    };
    let [out_h, out_w] = windows.output()?;
    let values = x.clone().into_data();
    let values: &[f32] = values.as_slice().expect("f32 activations");
    if values.iter().fold(false, |nan, v| nan | v.is_nan()) {
        return None;
    }
    let mut picks = vec![0i32; batch * channels * out_h * out_w];
    // Natively the planes are shared out over the thread pool burn-flex uses; the page's
    // wasm has no threads.
    #[cfg(not(target_arch = "wasm32"))]
    {
        use rayon::prelude::*;
        picks
            .par_chunks_mut(out_h * out_w)
            .zip(values.par_chunks_exact(height * width))
            .for_each_init(
                || vec![0; height * width],
                |keys, (picks, plane)| windows.pick_maxima(plane, picks, keys),
            );
    }
    #[cfg(target_arch = "wasm32")]
    {
        let mut keys = vec![0; height * width];
        for (picks, plane) in picks
            .chunks_exact_mut(out_h * out_w)
            .zip(values.chunks_exact(height * width))
        {
            windows.pick_maxima(plane, picks, &mut keys);
        }
    }
    let picks = TensorData::new(picks, [batch * channels, out_h * out_w]);
    let picks = Tensor::<2, Int>::from_data(picks, &x.device());
    let pooled = x
        .reshape([batch * channels, height * width])
        .gather(1, picks)
        .reshape([batch, channels, out_h, out_w]);
    Some(pooled)
}

/// The windows of a VALID max pool over one [height, width] plane.
struct PoolWindows {
    size: [usize; 2],
    stride: [usize; 2],
    input: [usize; 2],
}

impl PoolWindows {
    /// [out_h, out_w], or `None` where a window does not fit (or a stride is 0).
    fn output(&self) -> Option<[usize; 2]> {
        let along = |axis: usize| {
            let room = self.input[axis].checked_sub(self.size[axis])?;
            Some(room.checked_div(self.stride[axis])? + 1)
        };
        Some([along(0)?, along(1)?])
    }

    /// Each window's first maximum (row-major order) as an index into the plane, for a plane
    /// without NaNs; `keys` is room for the plane's [`order_key`]s. On integer keys every
    /// comparison and pick is a conditional move. On floats the page's wasm had branches
    /// there, which mispredict (the outcomes are unpredictable): 13 % of its step, now 6 %.
    fn pick_maxima(&self, plane: &[f32], picks: &mut [i32], keys: &mut [i32]) {
        // The seed's window, as constants: its loops unroll.
        match self.size {
            [3, 3] => self.pick_maxima_in(3, 3, plane, picks, keys),
            [kh, kw] => self.pick_maxima_in(kh, kw, plane, picks, keys),
        }
    }

    #[inline(always)]
    fn pick_maxima_in(
        &self,
        kh: usize,
        kw: usize,
        plane: &[f32],
        picks: &mut [i32],
        keys: &mut [i32],
    ) {
        let ([sh, sw], [_, width]) = (self.stride, self.input);
        debug_assert_eq!(keys.len(), plane.len(), "a key for every element");
        for (key, &value) in keys.iter_mut().zip(plane) {
            *key = order_key(value);
        }
        let [out_h, out_w] = self
            .output()
            .expect("max_pool_by_gather checked that windows fit");
        debug_assert_eq!(picks.len(), out_h * out_w, "a pick for every window");
        for (i, picks) in picks.chunks_exact_mut(out_w).enumerate() {
            for (j, pick) in picks.iter_mut().enumerate() {
                let corner = i * sh * width + j * sw;
                let (mut best, mut best_key) = (corner, keys[corner]);
                for di in 0..kh {
                    let start = corner + di * width;
                    for (at, &key) in (start..).zip(&keys[start..start + kw]) {
                        let greater = key > best_key;
                        best = select_unpredictable(greater, at, best);
                        best_key = select_unpredictable(greater, key, best_key);
                    }
                }
                *pick = best as i32;
            }
        }
    }
}

/// An integer that orders as the float does, for floats without NaNs: a negative float's
/// magnitude bits are flipped, and −0 counts as +0 (adding +0 turns −0 into +0), so that a
/// tie stays a tie.
fn order_key(value: f32) -> i32 {
    let bits = (value + 0.0).to_bits() as i32;
    bits ^ (((bits >> 31) as u32) >> 1) as i32
}

/// The trainable model. Input: images [batch, height, width] of raw pixel values.
/// Output: predicted rates [batch, neurons], ≥ 0, averaged over the ensemble's members.
///
/// Dropout has no module here: the trainer draws the masks on the host from its seeded RNG
/// and passes them to [`Network::member_rates`], so that a run repeats exactly whatever
/// else runs in the process (Burn's device RNG is global on some backends).
#[derive(Module, Debug)]
pub struct Network {
    pub members: Vec<Member>,
    #[module(skip)]
    pub output: OutputFn,
    #[module(skip)]
    pub input_scaling: InputScaling,
}

/// What the network does to pixels before its first layer: `(pixel − shift) · scale`.
/// Fixed when training starts (from the training images, with `--standardise`) and saved
/// with the network, so that a reloaded network sees its inputs as it was trained.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct InputScaling {
    pub shift: f32,
    pub scale: f32,
}

impl InputScaling {
    /// Raw pixels, as the seed.
    pub const RAW: Self = Self {
        shift: 0.0,
        scale: 1.0,
    };

    /// Mean 0, sd 1 over the given pixels (raw when they are constant).
    pub fn standardising(pixels: impl Iterator<Item = f32> + Clone) -> Self {
        let n = pixels.clone().count().max(1) as f64;
        let mean = pixels.clone().map(f64::from).sum::<f64>() / n;
        let var = pixels.map(|p| (f64::from(p) - mean).powi(2)).sum::<f64>() / n;
        if var > 1e-12 {
            Self {
                shift: mean as f32,
                scale: (1.0 / var.sqrt()) as f32,
            }
        } else {
            Self::RAW
        }
    }
}

impl Network {
    /// Prediction without dropout (evaluation, inference): the members' mean rate.
    pub fn forward(&self, images: Tensor<3>) -> Tensor<2> {
        let x = self.input(images);
        mean_of(
            self.members
                .iter()
                .map(|m| self.output.apply(m.drive(x.clone(), None))),
        )
    }

    /// The members' mean drive (before the output nonlinearity). Looking inside the network
    /// differentiates this, since a silent neuron's ReLU rate has no gradient.
    pub fn drive(&self, images: Tensor<3>) -> Tensor<2> {
        let x = self.input(images);
        mean_of(self.members.iter().map(|m| m.drive(x.clone(), None)))
    }

    /// Training forward pass: every member's own rates, with its own dropout mask (one per
    /// member, `None` where the member has no hidden layer or dropout is off). Each member
    /// is trained on its own loss, as independent networks would be.
    /// `planes`: the images as [batch, 1, height, width], in any memory layout (the trainer
    /// lays them out for its backend's convolution).
    pub fn member_rates(&self, planes: Tensor<4>, masks: Vec<Option<Tensor<2>>>) -> Vec<Tensor<2>> {
        let x = self.scaled(planes);
        self.members
            .iter()
            .zip(masks)
            .map(|(m, mask)| self.output.apply(m.drive(x.clone(), mask)))
            .collect()
    }

    /// A network without members (and so without parameters): what a [`Network`] field holds
    /// while its network is moved out, e.g. into an optimizer's update.
    pub fn emptied(&self) -> Network {
        Network {
            members: Vec::new(),
            output: self.output,
            input_scaling: self.input_scaling,
        }
    }

    /// This network with its conv filters copied into buffers of their own.
    pub fn with_own_filters(mut self) -> Network {
        for block in self
            .members
            .iter_mut()
            .flat_map(|member| &mut member.conv_blocks)
        {
            let weight = block.conv.weight.clone();
            block.conv.weight = weight.map(|filters| filters * 1.0);
        }
        self
    }

    pub fn n_members(&self) -> usize {
        self.members.len()
    }

    fn input(&self, images: Tensor<3>) -> Tensor<4> {
        self.scaled(planes(images))
    }

    fn scaled(&self, x: Tensor<4>) -> Tensor<4> {
        let InputScaling { shift, scale } = self.input_scaling;
        if self.input_scaling == InputScaling::RAW {
            x
        } else {
            (x - f64::from(shift)) * f64::from(scale)
        }
    }
}

/// Images [batch, height, width] as [batch, 1, height, width]: a view of [batch, height,
/// width, 1], the same memory, but with strides that the GPU's convolution (which works
/// channels-last) takes as they are; from a plain reshape it made a layout copy, one kernel
/// launch per step.
pub fn planes(images: Tensor<3>) -> Tensor<4> {
    let [batch, height, width] = images.dims();
    images
        .reshape([batch, height, width, 1])
        .permute([0, 3, 1, 2])
}

/// The mean of the members' outputs; a single network's output untouched (no extra
/// kernel on the GPU).
fn mean_of(outputs: impl Iterator<Item = Tensor<2>>) -> Tensor<2> {
    let mut count = 0;
    let sum = outputs
        .inspect(|_| count += 1)
        .reduce(|a, b| a + b)
        .expect("a network has at least one member");
    if count == 1 { sum } else { sum / count as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::RngExt;

    /// Largest |a − b| relative to the largest |b|.
    pub(super) fn relative_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        let largest: f32 = (a - b.clone()).abs().max().into_scalar();
        let scale: f32 = b.abs().max().into_scalar();
        largest / scale
    }

    /// The network's order (conv → pool → bias → ReLU, convolutions by patches, pooling by
    /// gather) against the seed's (conv + bias → ReLU → pool) written with Burn's own layers:
    /// the same rates and the same gradient for every parameter, for 1 to 3 conv layers with
    /// biases that are not zero, and with images that are differentiated too (looking inside
    /// the network wants conv 1's input gradient).
    #[test]
    fn the_network_computes_what_the_seeds_order_of_layers_does() {
        let device = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        for layers in 1..=3 {
            let config = ModelConfig::new()
                .with_numconvlayer(layers)
                .with_conv1size(5)
                .with_conv2size(3);
            let mut network = config.init([33, 33], 7, 4, &device).unwrap();
            let member = &mut network.members[0];
            for block in &mut member.conv_blocks {
                let filters = block.conv.weight.dims()[0];
                let bias = truncated_normal(&mut rng, 0.5, filters);
                block.conv.bias = Some(init::param(bias, [filters], &device));
            }
            let member = &network.members[0];
            let pixels = truncated_normal(&mut rng, 40.0, 20 * 33 * 33);
            let pixels = Tensor::<1>::from_floats(pixels.as_slice(), &device);
            for images_fixed in [true, false] {
                let images = pixels.clone().reshape([20, 1, 33, 33]) + 60.0;
                let images = if images_fixed {
                    images
                } else {
                    images.require_grad()
                };
                let case = format!("{layers} conv layers, images fixed: {images_fixed}");
                check_against_the_seeds_order(member, images, images_fixed, &mut rng, &case);
            }
        }
    }

    fn check_against_the_seeds_order(
        member: &Member,
        images: Tensor<4>,
        images_fixed: bool,
        rng: &mut ChaCha8Rng,
        case: &str,
    ) {
        // A dropout mask as the trainer draws it (keep ½: 0 or 2), which the seed applies
        // after the hidden layer's ReLU.
        let hidden = member.hidden.as_ref().unwrap();
        let units = hidden.weight.dims()[1];
        let mask: Vec<f32> = (0..images.dims()[0] * units)
            .map(|_| if rng.random::<f64>() < 0.5 { 2.0 } else { 0.0 })
            .collect();
        let mask = Tensor::<1>::from_floats(mask.as_slice(), &images.device())
            .reshape([images.dims()[0], units]);
        let ours = member.drive(images.clone(), Some(mask.clone()));
        let mut x = images.clone();
        for block in &member.conv_blocks {
            x = block.pool.forward(relu(block.conv.forward(x)));
        }
        let [batch, channels, height, width] = x.dims();
        let x = x
            .permute([0, 2, 3, 1])
            .reshape([batch, height * width * channels]);
        let seeds = member.output.forward(relu(hidden.forward(x)) * mask);
        let difference = relative_difference(ours.clone(), seeds.clone());
        assert!(difference <= 1e-5, "{case}: rates differ by {difference}");

        let weights = truncated_normal(rng, 1.0, seeds.shape().num_elements());
        let weights = Tensor::<1>::from_floats(weights.as_slice(), &ours.device());
        let weights = weights.reshape(seeds.dims());
        let our_grads = (ours * weights.clone()).sum().backward();
        let seed_grads = (seeds * weights).sum().backward();
        let differ = |name: String, ours: Option<Tensor<1>>, seeds: Option<Tensor<1>>| {
            let difference = relative_difference(ours.unwrap(), seeds.unwrap());
            assert!(
                difference <= 1e-4,
                "{case}: {name}'s gradient differs by {difference}"
            );
        };
        let flat = |param: &burn::module::Param<Tensor<4>>, grads| {
            param.grad(grads).map(|g| g.flatten(0, 3))
        };
        for (layer, block) in member.conv_blocks.iter().enumerate() {
            let weight = &block.conv.weight;
            let bias = block.conv.bias.as_ref().unwrap();
            differ(
                format!("conv {layer}"),
                flat(weight, &our_grads),
                flat(weight, &seed_grads),
            );
            differ(
                format!("conv {layer} bias"),
                bias.grad(&our_grads),
                bias.grad(&seed_grads),
            );
        }
        for (name, layer) in [("hidden", hidden), ("output", &member.output)] {
            let weight = |grads| layer.weight.grad(grads).map(|g: Tensor<2>| g.flatten(0, 1));
            differ(name.to_string(), weight(&our_grads), weight(&seed_grads));
            let bias = layer.bias.as_ref().unwrap();
            differ(
                format!("{name} bias"),
                bias.grad(&our_grads),
                bias.grad(&seed_grads),
            );
        }
        if !images_fixed {
            let grad = |grads| images.grad(grads).map(|g: Tensor<4>| g.flatten(0, 3));
            differ("the images".into(), grad(&our_grads), grad(&seed_grads));
        }
    }

    /// Max pooling on the CPU (a gather) against Burn's own, values and input gradients,
    /// for overlapping and tiling windows on non-square maps, with ties: inputs rectified
    /// (half are zero, as after a ReLU) and signed in steps of ½ (ties below zero, −0 beside
    /// +0); the gradient must reach the same (first) maximum.
    #[test]
    fn max_pool_by_gather_equals_burns_max_pool_with_its_gradients() {
        let device = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let [batch, channels, height, width] = [3, 5, 27, 20];
        for (size, stride) in [([3, 3], [2, 2]), ([2, 3], [2, 1]), ([2, 2], [2, 2])] {
            let pool = MaxPool2dConfig::new(size).with_strides(stride).init();
            let normal = truncated_normal(&mut rng, 1.0, batch * channels * height * width);
            // Rectified (ties at 0), and signed in steps of ½ (ties below 0, and −0 beside +0).
            let rectified = normal.iter().map(|v| v.max(0.0)).collect::<Vec<_>>();
            let stepped = normal
                .iter()
                .map(|v| (v * 2.0).round() / 2.0)
                .collect::<Vec<_>>();
            assert!(stepped.iter().any(|v| *v == 0.0 && v.is_sign_negative()));
            for pixels in [rectified, stepped] {
                let input = || {
                    Tensor::<1>::from_floats(pixels.as_slice(), &device)
                        .reshape([batch, channels, height, width])
                        .require_grad()
                };
                let (ours_in, burns_in) = (input(), input());
                let ours =
                    max_pool_by_gather(&pool, ours_in.clone()).expect("the gather on the CPU");
                let burns = pool.forward(burns_in.clone());
                assert_eq!(ours.dims(), burns.dims());
                assert_eq!(ours.clone().into_data(), burns.clone().into_data());
                let weights = truncated_normal(&mut rng, 1.0, burns.shape().num_elements());
                let weights =
                    Tensor::<1>::from_floats(weights.as_slice(), &device).reshape(burns.dims());
                let ours_grads = (ours * weights.clone()).sum().backward();
                let burns_grads = (burns * weights).sum().backward();
                assert_eq!(
                    ours_in.grad(&ours_grads).unwrap().into_data(),
                    burns_in.grad(&burns_grads).unwrap().into_data(),
                    "input gradients, window {size:?} stride {stride:?}"
                );
            }
        }
    }

    /// A NaN wins its window in Burn's pooling (a diverging run must show NaN), so an input
    /// with one is left to it.
    #[test]
    fn max_pool_by_gather_lets_a_nan_through() {
        let device = Device::flex();
        let pool = MaxPool2dConfig::new([3, 3]).with_strides([2, 2]).init();
        let mut pixels = vec![1.0f32; 2 * 9 * 9];
        pixels[10] = f32::NAN;
        let input = Tensor::<1>::from_floats(pixels.as_slice(), &device).reshape([1, 2, 9, 9]);
        assert!(max_pool_by_gather(&pool, input.clone()).is_none());
        let pooled: Vec<f32> = max_pool(&pool, input).into_data().try_to_vec().unwrap();
        assert!(pooled[0].is_nan());
        assert_eq!(pooled.iter().filter(|v| v.is_nan()).count(), 1);
        // A window larger than the map is Burn's to judge, too.
        let small = Tensor::<4>::ones([1, 1, 2, 9], &device);
        assert!(max_pool_by_gather(&pool, small).is_none());
        assert!(max_pool_by_gather(&pool, Tensor::ones([1, 1, 3, 9], &device)).is_some());
    }

    #[test]
    fn seed_architecture_on_33_pixel_images() {
        let arch = ModelConfig::new().architecture([33, 33], 36).unwrap();
        // 33 -7+1 = 27 → pool 3/2 → 13 → -7+1 = 7 → pool 3/2 → 3: 32·3·3 = 288, as the replica.
        assert_eq!(arch.conv[0].output, [16, 13, 13]);
        assert_eq!(arch.conv[1].output, [32, 3, 3]);
        assert_eq!(arch.flat, 288);
        assert_eq!(
            arch.n_params(),
            16 * 49 + 16 + 32 * 16 * 49 + 32 + 288 * 300 + 300 + 300 * 36 + 36
        );
    }

    #[test]
    fn shrinking_feature_maps_and_absurd_values_name_their_flag() {
        let three = ModelConfig::new().with_numconvlayer(3);
        assert_eq!(
            three.architecture([33, 33], 5).unwrap_err().flag,
            "conv2size"
        );
        let cases = [
            (ModelConfig::new().with_numconvlayer(0), "numconvlayer"),
            (ModelConfig::new().with_numconvlayer(4), "numconvlayer"),
            (ModelConfig::new().with_conv1(0), "conv1"),
            (ModelConfig::new().with_conv1size(40), "conv1size"),
            (ModelConfig::new().with_nk1(30), "nk1"),
            (ModelConfig::new().with_nstride2(0), "nstride2"),
            (ModelConfig::new().with_hidden1(0), "hidden1"),
            (ModelConfig::new().with_dropout(0.0), "dropout"),
            (ModelConfig::new().with_dropout(1.5), "dropout"),
            (ModelConfig::new().with_dropout(f64::NAN), "dropout"),
        ];
        for (config, flag) in cases {
            assert_eq!(
                config.architecture([33, 33], 5).unwrap_err().flag,
                flag,
                "{config:?}"
            );
        }
    }

    #[test]
    fn three_small_layers_fit() {
        let config = ModelConfig::new()
            .with_numconvlayer(3)
            .with_conv1size(3)
            .with_conv2size(3);
        let arch = config.architecture([33, 33], 5).unwrap();
        // 33→31→15, 15→13→6, 6→4→1
        assert_eq!(arch.conv[2].output, [32, 1, 1]);
        assert_eq!(arch.flat, 32);
    }
}
