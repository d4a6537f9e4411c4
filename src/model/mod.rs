//! Model: the seed's `ConvNetDrop` — conv → max-pool (1 to 3 times) → dense + dropout →
//! linear + ReLU, all padding VALID.

pub(crate) mod init;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{Linear, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::relu;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, check_range};
pub use init::truncated_normal;

/// The network's flags, named and defaulted as the seed's published run.
#[derive(Config, Debug, PartialEq)]
pub struct ModelConfig {
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
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Architecture {
    pub input: [usize; 2],
    pub conv: Vec<ConvLayerShape>,
    pub flat: usize,
    pub hidden: usize,
    pub n_neurons: usize,
}

impl Architecture {
    pub fn n_params(&self) -> usize {
        let mut channels = 1;
        let mut total = 0;
        for layer in &self.conv {
            total += layer.filters * channels * layer.kernel * layer.kernel + layer.filters;
            channels = layer.filters;
        }
        total
            + self.flat * self.hidden
            + self.hidden
            + self.hidden * self.n_neurons
            + self.n_neurons
    }
}

impl ModelConfig {
    /// Checks every flag and the shrinking feature map; names the flag at fault.
    pub fn architecture(
        &self,
        input: [usize; 2],
        n_neurons: usize,
    ) -> Result<Architecture, ConfigError> {
        check_range("numconvlayer", self.numconvlayer, 1..=3)?;
        check_range("conv1", self.conv1, 1..=512)?;
        check_range("conv2", self.conv2, 1..=512)?;
        check_range("hidden1", self.hidden1, 1..=20_000)?;
        for (flag, value) in [
            ("conv1size", self.conv1size),
            ("conv2size", self.conv2size),
            ("nk1", self.nk1),
            ("nstride1", self.nstride1),
            ("nk2", self.nk2),
            ("nstride2", self.nstride2),
        ] {
            check_range(flag, value, 1..=256)?;
        }
        if !(self.dropout > 0.0 && self.dropout <= 1.0) {
            return Err(ConfigError::new(
                "dropout",
                format!(
                    "is the keep rate of the hidden units and must be in (0, 1], got {}",
                    self.dropout
                ),
            ));
        }

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
        })
    }

    /// Builds the network with the seed's initialisation, drawn on the host from `seed` so
    /// that every backend starts from the same weights.
    pub fn init(
        &self,
        input: [usize; 2],
        n_neurons: usize,
        seed: u64,
        device: &Device,
    ) -> Result<ConvNetDrop, ConfigError> {
        let arch = self.architecture(input, n_neurons)?;
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut channels = 1;
        let mut conv_blocks = Vec::new();
        for layer in &arch.conv {
            let mut conv = Conv2dConfig::new([channels, layer.filters], [layer.kernel; 2])
                .with_padding(PaddingConfig2d::Valid)
                .init(device);
            let shape = [layer.filters, channels, layer.kernel, layer.kernel];
            conv.weight = init::param(
                truncated_normal(&mut rng, 0.1, shape.iter().product()),
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
        Ok(ConvNetDrop {
            conv_blocks,
            hidden: init::dense(&mut rng, arch.flat, arch.hidden, device),
            output: init::dense(&mut rng, arch.hidden, n_neurons, device),
        })
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

/// The seed's network. Input: images [batch, height, width] of raw pixel values.
/// Output: predicted rates [batch, neurons], ≥ 0.
///
/// Dropout has no module here: the trainer draws the masks on the host from its seeded RNG
/// and passes them to [`ConvNetDrop::forward_with_dropout`], so that a run repeats exactly
/// whatever else runs in the process (Burn's device RNG is global on some backends).
#[derive(Module, Debug)]
pub struct ConvNetDrop {
    pub conv_blocks: Vec<ConvBlock>,
    pub hidden: Linear,
    pub output: Linear,
}

impl ConvNetDrop {
    /// Prediction without dropout (evaluation, inference).
    pub fn forward(&self, images: Tensor<3>) -> Tensor<2> {
        relu(self.drive(images))
    }

    /// The output layer before its ReLU: each neuron's linear drive. Looking inside the
    /// network differentiates this, since a silent neuron's rate has no gradient.
    pub fn drive(&self, images: Tensor<3>) -> Tensor<2> {
        self.output.forward(self.hidden_units(images))
    }

    /// Training forward pass: the hidden units are multiplied by `mask` [batch, hidden]
    /// (0 for a dropped unit, 1/keep for a kept one).
    pub fn forward_with_dropout(&self, images: Tensor<3>, mask: Tensor<2>) -> Tensor<2> {
        relu(self.output.forward(self.hidden_units(images) * mask))
    }

    fn hidden_units(&self, images: Tensor<3>) -> Tensor<2> {
        let [batch, height, width] = images.dims();
        let mut x = images.reshape([batch, 1, height, width]);
        for block in &self.conv_blocks {
            x = block.pool.forward(relu(block.conv.forward(x)));
        }
        // Flatten in the seed's NHWC order, so exported dense weights match its layout.
        let [batch, channels, height, width] = x.dims();
        let x = x
            .permute([0, 2, 3, 1])
            .reshape([batch, height * width * channels]);
        relu(self.hidden.forward(x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
