//! The folded network's forward pass as one fused kernel, for x86-64 processors with AVX2 and
//! FMA (the processors on which matrixmultiply runs its FMA kernels).
//!
//! matrixmultiply's FMA kernels compute every output of a product as one chain of fused
//! multiply-adds over the inputs in order, starting from +0 (the tile shapes only decide which
//! outputs are computed side by side), then write `1 · chain + 0`, which is the chain itself: a
//! chain that starts from +0 never ends at -0.
//! burn-ndarray then adds the bias (one rounding, the same as one more multiply-add with 1) and
//! applies ReLU (`x < 0 → 0`). This kernel performs the same operations on each output, in the
//! same order, so its results are the same bits; only the work around the arithmetic differs:
//!
//! - rows, not outputs, go across the vector lanes: 16 rows at a time, each input value of the
//!   16 rows in two 8-lane vectors, multiplied by one weight broadcast to all lanes. A layer of
//!   33 outputs costs 33 lanes' work, where the kernel's 8 × 8 tiles compute 40;
//! - the weights are laid out once, at load time, in the order the kernel reads them, so nothing
//!   is packed per call;
//! - all layers run on one block of rows before the next block starts, so activations stay in
//!   two small buffers that live in the first-level cache instead of a matrix per layer;
//! - ReLU is applied as the outputs are stored.

#![allow(unsafe_code)]

use std::arch::x86_64::{
    _CMP_LT_OQ, _mm256_andnot_ps, _mm256_broadcast_ss, _mm256_cmp_ps, _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_set1_ps,
    _mm256_setzero_ps, _mm256_storeu_ps,
};

/// Values in one vector.
const LANES: usize = 8;
/// Rows computed side by side: two vectors per input value.
const BLOCK: usize = 2 * LANES;
/// The most outputs one pass over a layer's inputs accumulates: 2 × 6 accumulators, two input
/// vectors and a broadcast weight fill 15 of the 16 vector registers, and 12 independent sums
/// keep both multiply-add units busy despite each one's latency.
const MAX_GROUP: usize = 6;

/// A network of fully connected layers, each but the last followed by ReLU, ready for
/// [`FusedMlp::forward`].
#[derive(Debug, Clone)]
pub(crate) struct FusedMlp {
    layers: Vec<FusedLayer>,
    /// The most values per row any layer reads or writes.
    widest: usize,
}

/// One layer: `weights [inputs + 1, outputs]`, row-major, the last row the bias.
#[derive(Debug, Clone)]
pub(crate) struct FusedLayer {
    pub(crate) weights: Vec<f32>,
    pub(crate) inputs: usize,
    pub(crate) outputs: usize,
}

impl FusedMlp {
    /// The network `layers` (hidden layers, then the output layer), or `None` when this
    /// processor lacks AVX2 or FMA, or the layers do not chain.
    pub(crate) fn new(layers: Vec<FusedLayer>) -> Option<Self> {
        if !(std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")) {
            return None;
        }
        let chained = layers.windows(2).all(|pair| pair[0].outputs == pair[1].inputs);
        let shaped = layers.iter().all(|l| l.outputs > 0 && l.weights.len() == (l.inputs + 1) * l.outputs);
        if layers.is_empty() || !chained || !shaped {
            return None;
        }
        let widest = layers.iter().map(|l| l.inputs.max(l.outputs)).max().unwrap_or(0);
        Some(Self { layers, widest })
    }

    /// `features [n_columns, n_rows]`, column-major (each feature's value for every row, then
    /// the next feature's), of which the first `inputs` features are the network's input ->
    /// `outputs [n_rows, outputs]`, row-major.
    ///
    /// # Panics
    /// If `features` holds fewer than `inputs` features of `n_rows` values.
    pub(crate) fn forward(&self, features: &[f32], n_rows: usize) -> Vec<f32> {
        let inputs = self.layers[0].inputs;
        let outputs = self.layers[self.layers.len() - 1].outputs;
        assert!(features.len() >= n_rows * inputs, "{inputs} features of {n_rows} rows expected");
        let mut out = vec![0.0f32; n_rows * outputs];
        let mut front = vec![0.0f32; self.widest * BLOCK];
        let mut back = vec![0.0f32; self.widest * BLOCK];
        let last = self.layers.len() - 1;
        for first in (0..n_rows).step_by(BLOCK) {
            let rows = BLOCK.min(n_rows - first);
            for (index, layer) in self.layers.iter().enumerate() {
                let relu = index < last;
                if index > 0 {
                    // SAFETY (for each call here): the processor has AVX2 and FMA (checked in
                    // `new`, the only way to make a `FusedMlp`).
                    unsafe { layer_block(layer, &front, BLOCK, &mut back, relu) };
                } else if rows == BLOCK {
                    // A whole block reads its 16 values of each feature where they are.
                    unsafe { layer_block(layer, &features[first..], n_rows, &mut back, relu) };
                } else {
                    // A last, short block is copied out with zeros for the missing rows, which
                    // are computed like any other and never copied back.
                    front.fill(0.0);
                    for (p, values) in features.chunks_exact(n_rows).take(inputs).enumerate() {
                        front[p * BLOCK..p * BLOCK + rows].copy_from_slice(&values[first..]);
                    }
                    unsafe { layer_block(layer, &front, BLOCK, &mut back, relu) };
                }
                std::mem::swap(&mut front, &mut back);
            }
            for (r, row) in out[first * outputs..].chunks_mut(outputs).take(rows).enumerate() {
                for (j, value) in row.iter_mut().enumerate() {
                    *value = front[j * BLOCK + r];
                }
            }
        }
        out
    }
}

/// One layer over one block: `x [inputs, BLOCK]`, input p's values at `x[p * x_stride..]`
/// -> `y [outputs, BLOCK]`, ReLU applied when `relu`. The outputs are taken in groups of at
/// most [`MAX_GROUP`], as even as possible.
#[target_feature(enable = "avx2,fma")]
fn layer_block(layer: &FusedLayer, x: &[f32], x_stride: usize, y: &mut [f32], relu: bool) {
    assert!(x_stride >= BLOCK && x.len() >= reach(layer.inputs, x_stride) && y.len() >= layer.outputs * BLOCK);
    let n_groups = layer.outputs.div_ceil(MAX_GROUP);
    let (size, longer) = (layer.outputs / n_groups, layer.outputs % n_groups);
    let mut first = 0;
    for group in 0..n_groups {
        let len = size + usize::from(group < longer);
        match len {
            1 => output_group::<1>(layer, first, x, x_stride, y, relu),
            2 => output_group::<2>(layer, first, x, x_stride, y, relu),
            3 => output_group::<3>(layer, first, x, x_stride, y, relu),
            4 => output_group::<4>(layer, first, x, x_stride, y, relu),
            5 => output_group::<5>(layer, first, x, x_stride, y, relu),
            _ => output_group::<MAX_GROUP>(layer, first, x, x_stride, y, relu),
        }
        first += len;
    }
}

/// Outputs `first..first + G` of one layer for one block of rows. Each output of each row is
/// `fma(x_0, w_0, +0)`, then `fma(x_p, w_p, sum)` for p = 1, 2, ... in order, then
/// `fma(1, bias, sum)`, then ReLU if asked.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn output_group<const G: usize>(
    layer: &FusedLayer,
    first: usize,
    x: &[f32],
    x_stride: usize,
    y: &mut [f32],
    relu: bool,
) {
    let n = layer.outputs;
    // Every access below is inside these bounds: inputs p < layer.inputs of x, weight rows
    // p <= layer.inputs at columns first..first + G of a row of n, outputs first..first + G of y.
    assert!(first + G <= n && layer.weights.len() == (layer.inputs + 1) * n);
    assert!(x.len() >= reach(layer.inputs, x_stride) && y.len() >= n * BLOCK);
    let (x, w) = (x.as_ptr(), layer.weights.as_ptr());
    let mut sums = [[_mm256_setzero_ps(); 2]; G];
    for p in 0..layer.inputs {
        // SAFETY: p < inputs, so x[p * x_stride .. p * x_stride + 16] and w[p * n + first + g]
        // for g < G are in bounds (asserted above).
        let (low, high, row) = unsafe {
            let at = x.add(p * x_stride);
            (_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(LANES)), w.add(p * n + first))
        };
        for (g, sum) in sums.iter_mut().enumerate() {
            // SAFETY: see above.
            let weight = unsafe { _mm256_broadcast_ss(&*row.add(g)) };
            sum[0] = _mm256_fmadd_ps(low, weight, sum[0]);
            sum[1] = _mm256_fmadd_ps(high, weight, sum[1]);
        }
    }
    let (one, zero) = (_mm256_set1_ps(1.0), _mm256_setzero_ps());
    for (g, sum) in sums.iter().enumerate() {
        // SAFETY: the bias row is row `inputs` of the weights, in bounds (asserted above), and
        // output first + g < n has its BLOCK values inside y.
        let bias = unsafe { _mm256_broadcast_ss(&*w.add(layer.inputs * n + first + g)) };
        for (half, &partial) in sum.iter().enumerate() {
            let mut value = _mm256_fmadd_ps(one, bias, partial);
            if relu {
                // burn-ndarray's ReLU: exactly the values below 0 become 0; -0 and NaN stay.
                value = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(value, zero), value);
            }
            let at = (first + g) * BLOCK + half * LANES;
            // SAFETY: at + 8 <= (first + G) * BLOCK <= n * BLOCK <= y.len().
            unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(at), value) };
        }
    }
}

/// How many values of `x` a block reads: `inputs` runs of [`BLOCK`] values, `x_stride` apart.
fn reach(inputs: usize, x_stride: usize) -> usize {
    inputs.checked_sub(1).map_or(0, |last| last * x_stride + BLOCK)
}
