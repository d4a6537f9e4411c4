//! The CPU backend's convolution, for every layer: one matrix product over the whole batch's
//! patches, with a backward pass of its own.
//!
//! burn-flex runs a convolution as one matrix product per image (`conv3d_impl`): for the
//! seed's conv 2, 32 filters by 49 output pixels, 50 times a batch. Timed apart, its forward
//! pass took 3.8–4.7 ms and with both gradients 13.7–14.3 ms at one thread (BENCHMARKS.md).
//! Burn's autodiff has no cheap way through patches of an input that needs a gradient (a
//! strided view taken apart window by window, or a gather that took 4× the convolution), so
//! this is a backend extension with its own backward pass:
//! - forward: the patches (im2col) and one product over the batch;
//! - the filters' gradient: one product of the patches by the output gradient;
//! - the input's gradient: the patches' gradient, a product per image, added back onto the
//!   input channel-last (col2im), where burn-flex's transposed convolution added value by value;
//! - where most of the output's gradient is zero, as behind a max pool (conv 2 and on), both
//!   gradients instead go output pixel by output pixel, skipping the zeros: about a tenth of
//!   the products' work for the seed's conv 2;
//! - in the page, where the products run on 4-lane vectors, a forward pass whose input is
//!   mostly zeros (conv 2's, behind conv 1's ReLU) goes by the nonzero values alone, and so
//!   does conv 1's filter gradient, from its output gradient's nonzero values (behind its max
//!   pool), and conv 1's forward pass sums each output row straight from the input rows, with
//!   no patches; natively the products on 8 or 16 lanes stay (as fast or faster where timed).
//!
//! Conv 1 (one channel, at most 16 filters) would take burn-flex's direct "small channel"
//! kernel, slower still; it went by a product over a strided view of the patches before, whose
//! layout copy (`copy_2d_tiled`) was 7–8 % of a native step (BENCHMARKS.md).

use burn::backend::autodiff::NodeId;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::ops::FloatTensorOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor, TensorData};

// Patches held at a time: a training batch of the seed's conv 1 needs 1.8 M floats and its
// conv 2 1.9 M; larger batches (evaluations, the inside views) go in chunks of images.
use super::PATCH_BUDGET;

/// Floats of the input gradient's patch product made at a time, so that it is folded back
/// while it is still in the cache.
const PRODUCT_BUDGET: usize = 1 << 16;

/// The backward pass goes pixel by pixel where at most one output gradient in this many is
/// not zero ([`Sizes::goes_sparse`]): for the seed's conv 2 natively, pixel by pixel took
/// 1.27 ms against the products' 1.73 at 15 %, and 1.92 against 1.74 at 25 % (BENCHMARKS.md) ...
const SPARSE_MAX_SHARE: usize = 5;

/// ... and where a patch row (kw·channel values) is at least this long.
const SPARSE_MIN_RUN: usize = 16;

/// The forward pass goes by the input's nonzero values ([`Sizes::goes_sparse_forward`]) where
/// at most this share of it, in percent, is not zero: a margin chosen, not a measured
/// crossover; at conv 2's 44 % the page's step took 2–3.5 ms less in a first version
/// (BENCHMARKS.md).
const SPARSE_FORWARD_MAX_PERCENT: usize = 60;

/// A VALID, stride-1, ungrouped convolution without bias, by patches; routed by Burn's
/// dispatch to the CPU backend, with or without autodiff (never called on the GPU).
#[backend_extension(Flex, Autodiff)]
pub trait PatchConvBackend: Backend {
    fn patch_conv(x: FloatTensor<Self>, filters: FloatTensor<Self>) -> FloatTensor<Self>;
}

/// The forward and backward kernels, on a backend whose tensors the host reads directly.
pub trait PatchConvKernels: Backend {
    /// The convolution and, where `keep` and the batch's patches are made in one go (a
    /// training batch), those patches, for the filters' gradient.
    fn patch_conv_forward(
        x: FloatTensor<Self>,
        filters: FloatTensor<Self>,
        keep: bool,
    ) -> (FloatTensor<Self>, Option<FloatTensor<Self>>);

    /// The input's gradient and the filters' gradient, each only where wanted.
    fn patch_conv_backward(
        x: FloatTensor<Self>,
        filters: FloatTensor<Self>,
        grad: FloatTensor<Self>,
        wanted: [bool; 2],
        patches: Option<FloatTensor<Self>>,
    ) -> [Option<FloatTensor<Self>>; 2];
}

/// `conv2d(x, filters)` (VALID, stride 1, no bias) on the CPU backend by patches.
pub fn conv(x: Tensor<4>, filters: Tensor<4>) -> Tensor<4> {
    Tensor::from_dispatch(<Dispatch as PatchConvBackend>::patch_conv(
        x.into_dispatch(),
        filters.into_dispatch(),
    ))
}

impl PatchConvBackend for Flex {
    fn patch_conv(x: FlexTensor, filters: FlexTensor) -> FlexTensor {
        Self::patch_conv_forward(x, filters, false).0
    }
}

impl<B: Backend + PatchConvKernels, C: CheckpointStrategy> PatchConvBackend for Autodiff<B, C> {
    fn patch_conv(x: FloatTensor<Self>, filters: FloatTensor<Self>) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct PatchConvBackward;

        impl<B: Backend + PatchConvKernels> Backward<B, 2> for PatchConvBackward {
            /// The input, the filters, and the forward pass's patches where it kept them.
            type State = (NodeId, NodeId, Option<FloatTensor<B>>);

            fn backward(
                self,
                ops: Ops<Self::State, 2>,
                grads: &mut Gradients,
                checkpointer: &mut Checkpointer,
            ) {
                let [node_x, node_filters] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_state, filters_state, patches) = ops.state;
                let x = checkpointer.retrieve_node_output::<FloatTensor<B>>(x_state);
                let filters = checkpointer.retrieve_node_output::<FloatTensor<B>>(filters_state);
                let wanted = [node_x.is_some(), node_filters.is_some()];
                let [grad_x, grad_filters] =
                    B::patch_conv_backward(x, filters, grad, wanted, patches);
                if let (Some(node), Some(grad)) = (node_x, grad_x) {
                    grads.register::<B>(node.id, grad);
                }
                if let (Some(node), Some(grad)) = (node_filters, grad_filters) {
                    grads.register::<B>(node.id, grad);
                }
            }
        }

        let forward = |x: &FloatTensor<Self>, filters: &FloatTensor<Self>, keep| {
            B::patch_conv_forward(x.primitive().clone(), filters.primitive().clone(), keep)
        };
        match PatchConvBackward
            .prepare::<C>([x.node(), filters.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(mut prep) => {
                let (x_state, filters_state) = (prep.checkpoint(&x), prep.checkpoint(&filters));
                let (output, patches) = forward(&x, &filters, true);
                prep.finish((x_state, filters_state, patches), output)
            }
            OpsKind::UnTracked(prep) => prep.finish(forward(&x, &filters, false).0),
        }
    }
}

/// A forward pass of the page's own, from the input and the filters (both [`Sizes`]' layout).
type ForwardLoop = fn(&Sizes, &[f32], &[f32]) -> Vec<f32>;

/// The sizes of one convolution.
#[derive(Clone, Copy, Debug)]
struct Sizes {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    filters: usize,
    kh: usize,
    kw: usize,
}

impl Sizes {
    fn of(x: &FlexTensor, filters: &FlexTensor) -> Self {
        let [batch, channels, height, width] = dims4(x);
        let [n_filters, filter_channels, kh, kw] = dims4(filters);
        assert_eq!(
            channels, filter_channels,
            "the filters' channels are the input's"
        );
        assert!(
            kh <= height && kw <= width,
            "a VALID convolution's filters fit"
        );
        Self {
            batch,
            channels,
            height,
            width,
            filters: n_filters,
            kh,
            kw,
        }
    }

    fn out(&self) -> [usize; 2] {
        [self.height + 1 - self.kh, self.width + 1 - self.kw]
    }

    /// Output pixels per image.
    fn pixels(&self) -> usize {
        let [oh, ow] = self.out();
        oh * ow
    }

    /// Values per patch, in the filters' own order (channel, row, column).
    fn patch_len(&self) -> usize {
        self.channels * self.kh * self.kw
    }

    /// Images per chunk, so that a chunk's patches stay within [`PATCH_BUDGET`].
    fn images_per_chunk(&self) -> usize {
        (PATCH_BUDGET / (self.pixels() * self.patch_len())).max(1)
    }

    fn chunks(&self) -> impl Iterator<Item = std::ops::Range<usize>> {
        let (batch, step) = (self.batch, self.images_per_chunk());
        (0..batch)
            .step_by(step)
            .map(move |start| start..(start + step).min(batch))
    }

    /// The patches of `images` as a [channel·ky·kx, image·out_y·out_x] matrix (its rows in
    /// the filters' own order).
    fn patches(&self, x: &[f32], images: std::ops::Range<usize>) -> Vec<f32> {
        let [oh, ow] = self.out();
        let plane_len = self.height * self.width;
        let n = images.len() * self.pixels();
        // A tap's run along an output row is a few floats (7 for the seed's conv 2), and a
        // copy of a run of unknown length is a call to memmove: 15 % of a training step. So
        // runs of up to RUN are copied RUN wide. The overhang lands where the next runs go:
        // the runs are written in order, each after the last (a slack of RUN at the end).
        const RUN: usize = 8;
        let mut patches = vec![0.0; self.patch_len() * n + RUN];
        let mut at = 0;
        for tap in 0..self.patch_len() {
            let (channel, ky, kx) = (
                tap / (self.kh * self.kw),
                tap / self.kw % self.kh,
                tap % self.kw,
            );
            for image in images.clone() {
                let plane = &x[(image * self.channels + channel) * plane_len..][..plane_len];
                for oy in 0..oh {
                    let from = (oy + ky) * self.width + kx;
                    match plane.get(from..from + RUN) {
                        Some(run) if ow <= RUN => patches[at..at + RUN].copy_from_slice(run),
                        _ => patches[at..at + ow].copy_from_slice(&plane[from..from + ow]),
                    }
                    at += ow;
                }
            }
        }
        patches.truncate(at);
        patches
    }

    /// The input's gradient [batch, channel, y, x] from the output's, `grad` [batch, filter,
    /// out_y, out_x]: each output pixel's gradient times the filters is its patch's gradient,
    /// added back where the patch came from (col2im). The patches' gradient is laid out
    /// (ky, kx, channel), and the input's gradient channel-last while it is summed, so that a
    /// patch row's kx·channel values add onto as many contiguous values (112 for the seed's
    /// conv 2): burn-flex's own transposed convolution adds them one by one with index
    /// arithmetic, 10 % of a native step and 20 % of the page's (BENCHMARKS.md).
    fn input_grad(&self, grad: &[f32], filters: FlexTensor) -> Vec<f32> {
        let [_, ow] = self.out();
        let (pixels, channels) = (self.pixels(), self.channels);
        let (plane, row_len) = (self.height * self.width, self.kw * channels);
        // [1, filter, ky·kx·channel]
        let by_tap = Flex::float_reshape(
            Flex::float_permute(filters, &[0, 2, 3, 1]),
            Shape::new([1, self.filters, self.patch_len()]),
        );
        let per_image = pixels * self.patch_len();
        let images_per_chunk = (PRODUCT_BUDGET / per_image).max(1);
        let mut channel_last = vec![0.0; self.batch * plane * channels];
        for first in (0..self.batch).step_by(images_per_chunk) {
            let images = first..(first + images_per_chunk).min(self.batch);
            let values = grad
                [images.start * self.filters * pixels..images.end * self.filters * pixels]
                .to_vec();
            let by_pixel = Flex::float_swap_dims(
                FlexTensor::from_data(TensorData::new(
                    values,
                    [images.len(), self.filters, pixels],
                )),
                1,
                2,
            );
            // [image, out pixel, ky·kx·channel]
            let patch_grads = Flex::float_matmul(by_pixel, by_tap.clone()).to_contiguous();
            let patch_grads: &[f32] = patch_grads.storage();
            for (image, rows) in images.zip(patch_grads.chunks_exact(per_image)) {
                let sums = &mut channel_last[image * plane * channels..][..plane * channels];
                for (pixel, row) in rows.chunks_exact(self.patch_len()).enumerate() {
                    let (oy, ox) = (pixel / ow, pixel % ow);
                    for (ky, taps) in row.chunks_exact(row_len).enumerate() {
                        let start = ((oy + ky) * self.width + ox) * channels;
                        let sums = &mut sums[start..start + row_len];
                        sums.iter_mut().zip(taps).for_each(|(sum, g)| *sum += g);
                    }
                }
            }
        }
        self.channel_first(&channel_last)
    }

    /// [image, y, x, channel] values as [image, channel, y, x].
    fn channel_first(&self, channel_last: &[f32]) -> Vec<f32> {
        transposed(channel_last, self.height * self.width, self.channels)
    }

    /// [image, channel, y, x] values as [image, y, x, channel].
    fn channel_last(&self, x: &[f32]) -> Vec<f32> {
        transposed(x, self.channels, self.height * self.width)
    }

    /// Whether the backward pass goes output pixel by output pixel ([`Self::sparse_backward`])
    /// rather than by matrix products: where a max pool follows the convolution, only its
    /// windows' maxima get a gradient (at most 9 of conv 2's 49 pixels in the seed's network;
    /// 7.5–9.3 % of them after the ReLU, measured in training), and the products multiply
    /// the rest by zero. A pixel's work is a few runs of kw·channel contiguous values, so
    /// short runs (conv 1's 7) stay with the products.
    fn goes_sparse(&self, grad: &[f32]) -> bool {
        // The row length first: conv 1's gradient (583 K floats a batch) is then never counted.
        self.kw * self.channels >= SPARSE_MIN_RUN && mostly_zero(grad)
    }

    /// Both gradients from the output pixels whose gradient is not zero, each at once: its
    /// gradient times the filter, added onto its patch of the input's gradient, and times
    /// its patch, added onto the filter's gradient. Both are summed channel-last, so that a
    /// patch row's kx·channel values (112 for the seed's conv 2) are contiguous on every side.
    fn sparse_backward(
        &self,
        x: &[f32],
        grad: &[f32],
        filters: FlexTensor,
        [want_x, want_filters]: [bool; 2],
    ) -> [Option<Vec<f32>>; 2] {
        let [_, ow] = self.out();
        let (pixels, patch_len) = (self.pixels(), self.patch_len());
        let (image_len, row_len) = (
            self.height * self.width * self.channels,
            self.kw * self.channels,
        );
        // [filter, ky·kx·channel]
        let by_tap = Flex::float_permute(filters, &[0, 2, 3, 1]).to_contiguous();
        let by_tap: &[f32] = by_tap.storage();
        let x = if want_filters {
            self.channel_last(x)
        } else {
            Vec::new()
        };
        let mut input_grad = vec![0.0; if want_x { self.batch * image_len } else { 0 }];
        let mut filter_grad = vec![
            0.0;
            if want_filters {
                self.filters * patch_len
            } else {
                0
            }
        ];
        // Plane by plane (an image's filter), row by row: no divisions per pixel.
        for (plane_at, plane) in grad.chunks_exact(pixels).enumerate() {
            let (image, filter) = (plane_at / self.filters, plane_at % self.filters);
            for (oy, row) in plane.chunks_exact(ow).enumerate() {
                for (ox, g) in row.iter().enumerate().filter(|(_, g)| **g != 0.0) {
                    let corner = image * image_len + (oy * self.width + ox) * self.channels;
                    for ky in 0..self.kh {
                        let input_row = corner + ky * self.width * self.channels;
                        let filter_row = filter * patch_len + ky * row_len;
                        if want_x {
                            let taps = &by_tap[filter_row..][..row_len];
                            add_scaled(&mut input_grad[input_row..][..row_len], *g, taps);
                        }
                        if want_filters {
                            let values = &x[input_row..][..row_len];
                            add_scaled(&mut filter_grad[filter_row..][..row_len], *g, values);
                        }
                    }
                }
            }
        }
        let input_grad = want_x.then(|| self.channel_first(&input_grad));
        // [filter, ky, kx, channel] → [filter, channel, ky, kx]
        let filter_grad =
            want_filters.then(|| transposed(&filter_grad, self.kh * self.kw, self.channels));
        [input_grad, filter_grad]
    }

    /// Whether the filters' gradient alone goes by the output pixels whose gradient is not
    /// zero ([`Self::sparse_filter_grad`]) where the rows are too short for
    /// [`Self::goes_sparse`]: in the page only (natively the product on 8 or 16 lanes is
    /// faster: steps took 0.6–1.5 ms more with this; BENCHMARKS.md), and where
    /// [`Self::sparse_enough_for_filter_grad`] says so.
    fn goes_sparse_filter_grad(&self, grad: &[f32]) -> bool {
        cfg!(target_arch = "wasm32") && self.sparse_enough_for_filter_grad(grad)
    }

    /// Whether at most one output gradient in SPARSE_MAX_SHARE is not zero (conv 1's, behind
    /// its max pool: 6.5–8.0 % in training, measured) and the filters are at most 16 wide.
    fn sparse_enough_for_filter_grad(&self, grad: &[f32]) -> bool {
        self.kw <= 16 && mostly_zero(grad)
    }

    /// The filters' gradient [filter, channel, ky, kx], filter by filter: the input rows under
    /// each nonzero output gradient, times it, summed in a local array (a filter row's kw
    /// values, read W wide). The product it replaces multiplies a
    /// batch's every patch (57 MFLOP for the seed's conv 1), most of them by zero.
    fn sparse_filter_grad(&self, x: &[f32], grad: &[f32]) -> Vec<f32> {
        match self.kw.next_multiple_of(4) {
            4 => self.sparse_filter_grad_by::<4>(x, grad),
            8 => self.sparse_filter_grad_by::<8>(x, grad),
            12 => self.sparse_filter_grad_by::<12>(x, grad),
            _ => self.sparse_filter_grad_by::<16>(x, grad),
        }
    }

    fn sparse_filter_grad_by<const W: usize>(&self, x: &[f32], grad: &[f32]) -> Vec<f32> {
        let [_, ow] = self.out();
        let (pixels, plane) = (self.pixels(), self.height * self.width);
        // W-wide reads of the last row's kw values run past the input: a slack of W zeros.
        let padded = with_slack(x, W);
        let mut filter_grad = vec![0.0; self.filters * self.patch_len()];
        // Where each nonzero output gradient's window starts in the input, with the gradient.
        let mut corners = vec![(0usize, 0.0f32); self.batch * pixels];
        for (filter, filter_grad) in filter_grad.chunks_exact_mut(self.patch_len()).enumerate() {
            let mut count = 0;
            for image in 0..self.batch {
                let planes = &grad[(image * self.filters + filter) * pixels..][..pixels];
                for (oy, row) in planes.chunks_exact(ow).enumerate() {
                    let corner = image * self.channels * plane + oy * self.width;
                    for (ox, g) in row.iter().enumerate() {
                        corners[count] = (corner + ox, *g);
                        count += usize::from(*g != 0.0);
                    }
                }
            }
            let corners = &corners[..count];
            // [channel, ky] rows of kw taps
            for (row_at, taps) in filter_grad.chunks_exact_mut(self.kw).enumerate() {
                let (channel, ky) = (row_at / self.kh, row_at % self.kh);
                let row = channel * plane + ky * self.width;
                let mut sums = [0.0f32; W];
                for (corner, g) in corners {
                    let values: &[f32; W] = padded[corner + row..][..W].try_into().expect("a row");
                    for (sum, value) in sums.iter_mut().zip(values) {
                        *sum += g * value;
                    }
                }
                taps.copy_from_slice(&sums[..self.kw]);
            }
        }
        filter_grad
    }

    /// Whether the forward pass goes by the input's nonzero values ([`Self::sparse_forward`])
    /// rather than by patches and a product: in the page only, where the product runs on
    /// 4-lane vectors (natively, on 8 or 16, steps took as long with this forced on;
    /// BENCHMARKS.md), and where [`Self::sparse_enough`] says so.
    fn goes_sparse_forward(&self, x: &[f32]) -> bool {
        cfg!(target_arch = "wasm32") && self.sparse_enough(x)
    }

    /// Whether at most SPARSE_FORWARD_MAX_PERCENT of the input is not zero and a patch row
    /// is at least SPARSE_MIN_RUN values long (conv 1's single channel of dense pixels is not).
    fn sparse_enough(&self, x: &[f32]) -> bool {
        self.kw * self.channels >= SPARSE_MIN_RUN
            && x.iter().filter(|v| **v != 0.0).count() * 100 <= x.len() * SPARSE_FORWARD_MAX_PERCENT
    }

    /// The convolution from the input's nonzero values only: conv 2's input comes through
    /// conv 1's ReLU, and 40–49 % of it is not zero in training (measured), so a product
    /// over the patches spends half its work on zeros. Each output pixel sums, for every
    /// nonzero input value in its window, that value times the filters' tap, in blocks of
    /// filters (32 for the seed's conv 2: eight of the page's vectors).
    fn sparse_forward(&self, x: &[f32], filters: &[f32]) -> Vec<f32> {
        if self.filters <= 16 {
            self.sparse_forward_by::<16>(x, filters)
        } else {
            self.sparse_forward_by::<32>(x, filters)
        }
    }

    /// Filter row by filter row (ky), so that the taps it reads stay in the cache (14 KB a row
    /// for the seed's conv 2, against 100 KB for all seven), with each pixel's sums copied
    /// into a local array and back. The same sums with all seven rows inside ran as fast as
    /// the compiler happened to build them: 8 ms a call for a half-batch in a page built with
    /// the `release` profile; in a stand-alone copy (50 images), 13.8–16.5 ms with 16 codegen
    /// units against 3.5–4.7 with LTO, where this took 2.1–2.4 (BENCHMARKS.md).
    fn sparse_forward_by<const BLOCK: usize>(&self, x: &[f32], filters: &[f32]) -> Vec<f32> {
        let [oh, ow] = self.out();
        let (channels, plane, pixels) = (self.channels, self.height * self.width, oh * ow);
        let taps = self.kh * self.kw;
        let blocks = self.filters.div_ceil(BLOCK);
        // [block, ky, kx, channel, filter in the block], padded with zeros to whole blocks.
        let row_taps = self.kw * channels * BLOCK;
        let mut by_tap = vec![0.0; blocks * self.kh * row_taps];
        for (at, weight) in filters.iter().enumerate() {
            let (filter, channel, tap) = (at / (channels * taps), at / taps % channels, at % taps);
            let block_tap = (filter / BLOCK * taps + tap) * channels + channel;
            by_tap[block_tap * BLOCK + filter % BLOCK] = *weight;
        }
        let mut out = vec![0.0; self.batch * self.filters * pixels];
        let mut sums = vec![[0.0f32; BLOCK]; pixels];
        // An image's nonzero values in pixel order, each with where its taps start in a
        // filter row of `by_tap` ((x·channels + channel)·BLOCK), and where each pixel's values
        // start: a window row's values are then one run, shifted by the window's x. Written
        // without a branch (a slot is taken only by a nonzero value), as the zeros fall at
        // random.
        let mut nonzero = vec![(0usize, 0.0f32); channels * plane];
        let mut starts = vec![0; plane + 1];
        for (input, out) in x
            .chunks_exact(channels * plane)
            .zip(out.chunks_exact_mut(self.filters * pixels))
        {
            let mut count = 0;
            for (pixel, start) in starts[..plane].iter_mut().enumerate() {
                *start = count;
                let x = pixel % self.width;
                for channel in 0..channels {
                    let value = input[channel * plane + pixel];
                    nonzero[count] = ((x * channels + channel) * BLOCK, value);
                    count += usize::from(value != 0.0);
                }
            }
            starts[plane] = count;
            for (block, out) in out.chunks_mut(BLOCK * pixels).enumerate() {
                sums.fill([0.0; BLOCK]);
                for ky in 0..self.kh {
                    let taps = &by_tap[(block * self.kh + ky) * row_taps..][..row_taps];
                    for (out_pixel, sum) in sums.iter_mut().enumerate() {
                        let (oy, ox) = (out_pixel / ow, out_pixel % ow);
                        let pixel = (oy + ky) * self.width + ox;
                        let shift = ox * channels * BLOCK;
                        let mut local = *sum;
                        for (at, value) in &nonzero[starts[pixel]..starts[pixel + self.kw]] {
                            let tap: &[f32; BLOCK] =
                                taps[at - shift..][..BLOCK].try_into().expect("a block");
                            for (sum, weight) in local.iter_mut().zip(tap) {
                                *sum += value * weight;
                            }
                        }
                        *sum = local;
                    }
                }
                // [pixel, filter] → [filter, pixel], the block's padding left out.
                for (filter, out) in out.chunks_exact_mut(pixels).enumerate() {
                    for (value, sum) in out.iter_mut().zip(&sums) {
                        *value = sum[filter];
                    }
                }
            }
        }
        out
    }

    /// Whether the forward pass sums each output row directly from the input rather than by
    /// patches and a product: in the page only, for a single input channel (conv 1). There,
    /// for 25 of the seed's images, the patches (3.6 MB) and the product on 4-lane vectors
    /// took 2.05–2.39 ms a call, and this 1.54–1.67 (timed in one page, calls alternating;
    /// BENCHMARKS.md). Natively the product, on 8 or 16 lanes, stays: this was not timed there.
    fn goes_direct_forward(&self) -> bool {
        cfg!(target_arch = "wasm32") && self.channels == 1
    }

    /// The convolution summed output row by output row: W sums (the row, rounded up to whole
    /// vectors of 4) are kept in a local array while every tap adds its weight times the input
    /// row that tap sees, read W wide. Taps go in the filters' own order (channel, row, column).
    fn direct_forward(&self, x: &[f32], filters: &[f32]) -> Vec<f32> {
        let [_, ow] = self.out();
        match ow.next_multiple_of(4) {
            4 => self.direct_forward_by::<4>(x, filters),
            8 => self.direct_forward_by::<8>(x, filters),
            12 => self.direct_forward_by::<12>(x, filters),
            16 => self.direct_forward_by::<16>(x, filters),
            20 => self.direct_forward_by::<20>(x, filters),
            24 => self.direct_forward_by::<24>(x, filters),
            28 => self.direct_forward_by::<28>(x, filters),
            // Wider rows go in parts of 32.
            _ => self.direct_forward_by::<32>(x, filters),
        }
    }

    fn direct_forward_by<const W: usize>(&self, x: &[f32], filters: &[f32]) -> Vec<f32> {
        let [oh, ow] = self.out();
        let (channels, plane, pixels) = (self.channels, self.height * self.width, oh * ow);
        let filter_len = self.patch_len();
        // A window row read W wide runs past the end of its image row by up to W - 1 values:
        // into the next row (sums that are dropped), or past the input, into this slack.
        let input = with_slack(x, W);
        let mut out = vec![0.0; self.batch * self.filters * pixels];
        for (image, out) in out.chunks_exact_mut(self.filters * pixels).enumerate() {
            let image_input = &input[image * channels * plane..];
            for (weights, out) in filters
                .chunks_exact(filter_len)
                .zip(out.chunks_exact_mut(pixels))
            {
                for (oy, out_row) in out.chunks_exact_mut(ow).enumerate() {
                    for (part, out_part) in out_row.chunks_mut(W).enumerate() {
                        let mut sums = [0.0f32; W];
                        for (channel, weights) in
                            weights.chunks_exact(self.kh * self.kw).enumerate()
                        {
                            for (ky, weights) in weights.chunks_exact(self.kw).enumerate() {
                                let from = channel * plane + (oy + ky) * self.width + part * W;
                                let row = &image_input[from..][..self.kw - 1 + W];
                                for (kx, weight) in weights.iter().enumerate() {
                                    let seen: &[f32; W] =
                                        row[kx..][..W].try_into().expect("W values");
                                    for (sum, value) in sums.iter_mut().zip(seen) {
                                        *sum += weight * value;
                                    }
                                }
                            }
                        }
                        out_part.copy_from_slice(&sums[..out_part.len()]);
                    }
                }
            }
        }
        out
    }

    /// `grad` [batch, filters, out_y, out_x] for `images` as [filters, image·out_y·out_x].
    fn grad_by_filter(&self, grad: &[f32], images: std::ops::Range<usize>) -> Vec<f32> {
        let pixels = self.pixels();
        let n = images.len() * pixels;
        let mut by_filter = vec![0.0; self.filters * n];
        for (i, image) in images.enumerate() {
            for filter in 0..self.filters {
                let from = &grad[(image * self.filters + filter) * pixels..][..pixels];
                by_filter[filter * n + i * pixels..][..pixels].copy_from_slice(from);
            }
        }
        by_filter
    }
}

/// Whether at most one value in SPARSE_MAX_SHARE is not zero: an output gradient behind a
/// max pool, which the sparse backward passes take.
fn mostly_zero(grad: &[f32]) -> bool {
    grad.iter().filter(|g| **g != 0.0).count() * SPARSE_MAX_SHARE <= grad.len()
}

/// `values` followed by `slack` zeros, for reads a fixed number of values wide that run past
/// the end.
fn with_slack(values: &[f32], slack: usize) -> Vec<f32> {
    let mut padded = Vec::with_capacity(values.len() + slack);
    padded.extend_from_slice(values);
    padded.resize(values.len() + slack, 0.0);
    padded
}

/// `sums += scale · values`, value by value.
fn add_scaled(sums: &mut [f32], scale: f32, values: &[f32]) {
    sums.iter_mut()
        .zip(values)
        .for_each(|(sum, value)| *sum += scale * value);
}

/// Each [rows, cols] block of `values` (one per image, or a single one) as [cols, rows].
fn transposed(values: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for (block, out) in values
        .chunks_exact(rows * cols)
        .zip(out.chunks_exact_mut(rows * cols))
    {
        for (row, values) in block.chunks_exact(cols).enumerate() {
            for (col, value) in values.iter().enumerate() {
                out[col * rows + row] = *value;
            }
        }
    }
    out
}

fn dims4(tensor: &FlexTensor) -> [usize; 4] {
    tensor.shape().dims::<4>()
}

fn flex_matrix(values: Vec<f32>, rows: usize, cols: usize) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, [rows, cols]))
}

impl PatchConvKernels for Flex {
    fn patch_conv_forward(
        x: FlexTensor,
        filters: FlexTensor,
        keep: bool,
    ) -> (FlexTensor, Option<FlexTensor>) {
        let sizes = Sizes::of(&x, &filters);
        let x = x.to_contiguous();
        let xs: &[f32] = x.storage();
        let [oh, ow] = sizes.out();
        // The page's own loops, where they apply; they keep no patches.
        let own_loop: Option<ForwardLoop> = if sizes.goes_sparse_forward(xs) {
            Some(Sizes::sparse_forward)
        } else if sizes.goes_direct_forward() {
            Some(Sizes::direct_forward)
        } else {
            None
        };
        if let Some(own_loop) = own_loop {
            let filters = filters.to_contiguous();
            let out = own_loop(&sizes, xs, filters.storage());
            let shape = [sizes.batch, sizes.filters, oh, ow];
            return (FlexTensor::from_data(TensorData::new(out, shape)), None);
        }
        let pixels = sizes.pixels();
        let filters_matrix = Flex::float_reshape(
            filters.to_contiguous(),
            Shape::new([sizes.filters, sizes.patch_len()]),
        );
        let mut out = vec![0.0; sizes.batch * sizes.filters * pixels];
        let mut kept = None;
        let keep = keep && sizes.chunks().count() == 1;
        for images in sizes.chunks() {
            let n = images.len() * pixels;
            let patches = flex_matrix(sizes.patches(xs, images.clone()), sizes.patch_len(), n);
            if keep {
                kept = Some(patches.clone());
            }
            // [filter, image·pixel], then each image's planes in turn.
            let product = Flex::float_matmul(filters_matrix.clone(), patches).to_contiguous();
            let product: &[f32] = product.storage();
            for (filter, row) in product.chunks_exact(n).enumerate() {
                for (image, plane) in images.clone().zip(row.chunks_exact(pixels)) {
                    out[(image * sizes.filters + filter) * pixels..][..pixels]
                        .copy_from_slice(plane);
                }
            }
        }
        let out = FlexTensor::from_data(TensorData::new(out, [sizes.batch, sizes.filters, oh, ow]));
        (out, kept)
    }

    fn patch_conv_backward(
        x: FlexTensor,
        filters: FlexTensor,
        grad: FlexTensor,
        [want_x, want_filters]: [bool; 2],
        kept: Option<FlexTensor>,
    ) -> [Option<FlexTensor>; 2] {
        let sizes = Sizes::of(&x, &filters);
        let filters_shape = filters.shape();
        let grad = grad.to_contiguous();
        if sizes.goes_sparse(grad.storage()) {
            let x_shape = x.shape();
            let x = x.to_contiguous();
            let [grad_x, grad_filters] =
                sizes.sparse_backward(x.storage(), grad.storage(), filters, [want_x, want_filters]);
            return [
                grad_x.map(|values| FlexTensor::from_data(TensorData::new(values, x_shape))),
                grad_filters
                    .map(|values| FlexTensor::from_data(TensorData::new(values, filters_shape))),
            ];
        }
        let grad_x = want_x.then(|| {
            let values = sizes.input_grad(grad.storage(), filters);
            FlexTensor::from_data(TensorData::new(values, x.shape()))
        });
        let grad_filters = want_filters.then(|| {
            let x = x.to_contiguous();
            let (xs, gs): (&[f32], &[f32]) = (x.storage(), grad.storage());
            if sizes.goes_sparse_filter_grad(gs) {
                let values = sizes.sparse_filter_grad(xs, gs);
                return FlexTensor::from_data(TensorData::new(values, filters_shape));
            }
            // [channel·ky·kx, filter], summed over the chunks.
            let mut by_tap = vec![0.0; sizes.patch_len() * sizes.filters];
            for images in sizes.chunks() {
                let n = images.len() * sizes.pixels();
                // The forward pass's, where it kept them (one chunk).
                let patches = match &kept {
                    Some(patches) => patches.clone(),
                    None => flex_matrix(sizes.patches(xs, images.clone()), sizes.patch_len(), n),
                };
                // [image·pixel, filter]
                let by_pixel = Flex::float_swap_dims(
                    flex_matrix(sizes.grad_by_filter(gs, images), sizes.filters, n),
                    0,
                    1,
                );
                let part = Flex::float_matmul(patches, by_pixel).to_contiguous();
                let part: &[f32] = part.storage();
                by_tap.iter_mut().zip(part).for_each(|(sum, p)| *sum += p);
            }
            let by_filter = transposed(&by_tap, sizes.patch_len(), sizes.filters);
            FlexTensor::from_data(TensorData::new(by_filter, filters_shape))
        });
        [grad_x, grad_filters]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::tests::relative_difference;
    use crate::model::truncated_normal;
    use burn::tensor::Device;
    use burn::tensor::ops::ConvOptions;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn random<const D: usize>(
        rng: &mut ChaCha8Rng,
        dims: [usize; D],
        device: &Device,
    ) -> Tensor<D> {
        let values = truncated_normal(rng, 1.0, dims.iter().product());
        Tensor::<1>::from_floats(values.as_slice(), device).reshape(dims)
    }

    /// Burn's own convolution (VALID, stride 1, no bias), the reference.
    fn burn_conv(x: Tensor<4>, w: Tensor<4>) -> Tensor<4> {
        let options = ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        burn::tensor::module::conv2d(x, w, None, options)
    }

    fn floats<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    fn sizes([batch, channels, height, width, filters, kh, kw]: [usize; 7]) -> Sizes {
        Sizes {
            batch,
            channels,
            height,
            width,
            filters,
            kh,
            kw,
        }
    }

    /// Values, the input's gradient and the filters' gradient as Burn's own convolution gives
    /// them: non-square images and filters (a mix-up of height and width shows), several
    /// channels or one (conv 1), batches in one chunk and in several (PATCH_BUDGET), and an
    /// output gradient dense (the products) or mostly zeros, as after a max pool (pixel by
    /// pixel where a patch row is long enough: the last two cases, the second the seed's conv 2).
    #[test]
    fn patches_give_burns_convolution_and_both_its_gradients() {
        let device = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        for [batch, channels, height, width, filters, kh, kw] in [
            [5usize, 3, 13, 11, 4, 7, 5],
            [700, 2, 17, 19, 3, 5, 6],
            [4, 1, 33, 33, 16, 7, 7],
            [6, 4, 13, 12, 5, 6, 5],
            [50, 16, 13, 13, 32, 7, 7],
        ] {
            let sizes_per_image = (height + 1 - kh) * (width + 1 - kw) * channels * kh * kw;
            let chunks = batch.div_ceil((PATCH_BUDGET / sizes_per_image).max(1));
            assert_eq!(chunks > 1, batch == 700, "the second case runs in chunks");
            let x = random(&mut rng, [batch, channels, height, width], &device).require_grad();
            let w = random(&mut rng, [filters, channels, kh, kw], &device).require_grad();
            let by_patches = conv(x.clone(), w.clone());
            let by_burn = burn_conv(x.clone(), w.clone());
            assert_eq!(by_patches.dims(), by_burn.dims());
            let dims = by_burn.dims();
            assert!(relative_difference(by_patches, by_burn) <= 1e-5);

            // The same loss through both: the same gradients. One output gradient in 8 not
            // zero stands for a max pool's.
            for one_in in [1, 8] {
                let weights = random(&mut rng, dims, &device);
                let kept = Tensor::<1>::from_floats(
                    (0..weights.shape().num_elements())
                        .map(|at| if at % one_in == 0 { 1.0 } else { 0.0 })
                        .collect::<Vec<f32>>()
                        .as_slice(),
                    &device,
                )
                .reshape(dims);
                let weights = weights * kept;
                let sizes = sizes([batch, channels, height, width, filters, kh, kw]);
                let values = floats(weights.clone());
                assert_eq!(
                    sizes.goes_sparse(&values),
                    one_in == 8 && channels * kw >= SPARSE_MIN_RUN,
                    "the case takes the path it is meant to test"
                );
                // Each backward pass consumes its graph: the forward passes again.
                let by_patches = conv(x.clone(), w.clone());
                let by_burn = burn_conv(x.clone(), w.clone());
                let patches_grads = (by_patches * weights.clone()).sum().backward();
                let burn_grads = (by_burn * weights).sum().backward();
                let x_grad = |grads| x.grad(grads).expect("an input gradient");
                let x_diff = relative_difference(x_grad(&patches_grads), x_grad(&burn_grads));
                assert!(x_diff <= 1e-5, "{x_diff}");
                let w_grad = |grads| w.grad(grads).expect("a filter gradient");
                let w_diff = relative_difference(w_grad(&patches_grads), w_grad(&burn_grads));
                assert!(w_diff <= 1e-5, "{w_diff}");
            }
        }
    }

    /// The forward pass from the input's nonzero values ([`Sizes::sparse_forward`], the
    /// page's path for conv 2) gives Burn's convolution: about half the input zero, as behind
    /// a ReLU; 6 filters (one block of 16), 40 (a block of 32 and a part), and the seed's
    /// conv 2 (32). And the page's rule for taking it ([`Sizes::sparse_enough`]).
    #[test]
    fn nonzero_inputs_give_burns_convolution() {
        let device = Device::flex();
        let mut rng = ChaCha8Rng::seed_from_u64(13);
        for [batch, channels, height, width, filters, kh, kw] in [
            [3, 4, 9, 10, 6, 3, 4],
            [2, 5, 11, 8, 40, 4, 4],
            [50, 16, 13, 13, 32, 7, 7],
        ] {
            let x = burn::tensor::activation::relu(random(
                &mut rng,
                [batch, channels, height, width],
                &device,
            ));
            let w = random(&mut rng, [filters, channels, kh, kw], &device);
            let values = floats(x.clone());
            let zeros = values.iter().filter(|v| **v == 0.0).count();
            assert!(
                zeros * 3 > values.len(),
                "a third of the input or more is zero"
            );
            let sizes = sizes([batch, channels, height, width, filters, kh, kw]);
            // The page's rule: this input qualifies, the same with none of it zero does not.
            assert!(sizes.sparse_enough(&values));
            let dense: Vec<f32> = values.iter().map(|v| v + 1.0).collect();
            assert!(!sizes.sparse_enough(&dense));
            let weights = floats(w.clone());
            let [oh, ow] = sizes.out();
            let by_nonzero = Tensor::<1>::from_floats(
                sizes.sparse_forward(&values, &weights).as_slice(),
                &device,
            )
            .reshape([batch, filters, oh, ow]);
            let by_burn = burn_conv(x, w);
            let difference = relative_difference(by_nonzero, by_burn);
            assert!(difference <= 1e-5, "{difference}");
        }
        // Conv 1 (one channel, rows of 7) stays with the product, however many zeros.
        let conv1 = sizes([2, 1, 33, 33, 16, 7, 7]);
        assert!(!conv1.sparse_enough(&vec![0.0; 2 * 33 * 33]));
    }

    /// The filters' gradient from the nonzero output gradients alone
    /// ([`Sizes::sparse_filter_grad`], the page's path for conv 1) gives Burn's: one output
    /// gradient in 8 not zero, as behind a max pool; filter rows of 7 (the seed's conv 1), 3,
    /// 5, 11 and 14 values, read 8, 4, 8, 12 and 16 wide; one channel or several. And the
    /// rule for taking it ([`Sizes::sparse_enough_for_filter_grad`]).
    #[test]
    fn nonzero_output_gradients_give_burns_filter_gradient() {
        let device = Device::flex().autodiff();
        let mut rng = ChaCha8Rng::seed_from_u64(14);
        for [batch, channels, height, width, filters, kh, kw] in [
            [4, 1, 33, 33, 16, 7, 7],
            [4, 2, 9, 10, 3, 3, 3],
            [5, 3, 13, 11, 4, 7, 5],
            [3, 1, 14, 20, 5, 4, 11],
            [2, 2, 9, 18, 3, 2, 14],
        ] {
            let x = random(&mut rng, [batch, channels, height, width], &device);
            let w = random(&mut rng, [filters, channels, kh, kw], &device).require_grad();
            let by_burn = burn_conv(x.clone(), w.clone());
            let dims = by_burn.dims();
            let grad: Vec<f32> = random(&mut rng, dims, &device)
                .into_data()
                .iter::<f32>()
                .enumerate()
                .map(|(at, g)| if at % 8 == 3 { g } else { 0.0 })
                .collect();
            let sizes = sizes([batch, channels, height, width, filters, kh, kw]);
            assert!(sizes.sparse_enough_for_filter_grad(&grad));
            let dense: Vec<f32> = grad.iter().map(|g| g + 1.0).collect();
            assert!(!sizes.sparse_enough_for_filter_grad(&dense));
            let grad_tensor = Tensor::<1>::from_floats(grad.as_slice(), &device).reshape(dims);
            let burn_grad = w
                .grad(&(by_burn * grad_tensor).sum().backward())
                .expect("a filter gradient");
            let xs = floats(x);
            let by_nonzero = Tensor::<1>::from_floats(
                sizes.sparse_filter_grad(&xs, &grad).as_slice(),
                &burn_grad.device(),
            )
            .reshape([filters, channels, kh, kw]);
            let difference = relative_difference(by_nonzero, burn_grad);
            assert!(difference <= 1e-5, "{difference}");
        }
        // Filters wider than 16 stay with the product.
        let wide = sizes([1, 1, 20, 20, 2, 3, 17]);
        assert!(!wide.sparse_enough_for_filter_grad(&[0.0; 2 * 18 * 4]));
    }

    /// The forward pass summed row by row ([`Sizes::direct_forward`], the page's path for
    /// conv 1) gives Burn's convolution: output rows of every width it reads whole (4 to 28
    /// values: the seed's conv 1 is 27), one wider than 32 (in two parts), and several
    /// channels. And the rule: one channel, in the page only.
    #[test]
    fn rows_summed_directly_give_burns_convolution() {
        let device = Device::flex();
        let mut rng = ChaCha8Rng::seed_from_u64(15);
        for [batch, channels, height, width, filters, kh, kw] in [
            [4, 1, 33, 33, 16, 7, 7],
            [2, 1, 6, 5, 3, 3, 2],
            [3, 1, 9, 10, 5, 3, 4],
            [1, 1, 8, 14, 2, 2, 3],
            [2, 1, 15, 15, 2, 3, 3],
            [1, 1, 8, 22, 2, 2, 3],
            [2, 3, 11, 24, 4, 3, 3],
            [2, 1, 12, 45, 3, 5, 6],
        ] {
            let x = random(&mut rng, [batch, channels, height, width], &device);
            let w = random(&mut rng, [filters, channels, kh, kw], &device);
            let sizes = sizes([batch, channels, height, width, filters, kh, kw]);
            assert_eq!(
                sizes.goes_direct_forward(),
                cfg!(target_arch = "wasm32") && channels == 1
            );
            let [oh, ow] = sizes.out();
            let values = floats(x.clone());
            let weights = floats(w.clone());
            let by_rows = Tensor::<1>::from_floats(
                sizes.direct_forward(&values, &weights).as_slice(),
                &device,
            )
            .reshape([batch, filters, oh, ow]);
            let by_burn = burn_conv(x, w);
            let difference = relative_difference(by_rows, by_burn);
            assert!(difference <= 1e-5, "{ow} wide: {difference}");
        }
    }

    /// Without autodiff the dispatch takes the CPU backend's own kernel.
    #[test]
    fn patches_without_autodiff_give_burns_convolution() {
        let device = Device::flex();
        let mut rng = ChaCha8Rng::seed_from_u64(12);
        let x = random(&mut rng, [3, 4, 9, 10], &device);
        let w = random(&mut rng, [6, 4, 3, 4], &device);
        let by_burn = burn_conv(x.clone(), w.clone());
        assert!(relative_difference(conv(x, w), by_burn) <= 1e-5);
    }
}
