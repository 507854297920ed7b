//! The network's forward pass: fully connected layers, each hidden one followed by the
//! activation. Every output of every layer is one chain of fused multiply-adds over the layer's
//! inputs in order, starting from +0, then plus the bias, then the activation: the portable form
//! performs exactly these operations one value at a time (`f32::mul_add` is correctly rounded on
//! every platform), the AVX2 form 16 rows at a time, so both give the same bits.
//!
//! Both forms work on blocks of 16 rows and run every layer on one block before the next, so a
//! block's activations stay in two small buffers in the first-level cache; a block of fewer than
//! 8 rows (a single-record request, the end of a batch) is computed row by row instead, with
//! outputs across the lanes. The weights are laid out once, at load time, in the order the
//! kernel reads them.

use super::Route;
use crate::model::ActivationKind;

/// Values in one AVX vector.
const LANES: usize = 8;
/// Rows computed side by side: two vectors per input value.
const BLOCK: usize = 2 * LANES;
/// A block with fewer rows than this is computed row by row, outputs across the lanes, instead
/// of as a whole block padded with zero rows (one row of a padded block costs sixteen).
const ROW_BY_ROW_BELOW: usize = 8;

/// One fully connected layer as the trainer saved it: `y = x · weights + bias`.
#[derive(Debug, Clone, PartialEq)]
pub struct KernelLayer {
    /// `[inputs, outputs]`, row-major (burn's `Linear` layout).
    pub weights: Vec<f32>,
    /// `[outputs]`.
    pub bias: Vec<f32>,
    /// Values per row the layer reads.
    pub inputs: usize,
    /// Values per row the layer writes.
    pub outputs: usize,
}

/// Why layers do not make a network.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NetworkError {
    /// The list of layers is empty.
    #[error("a network needs at least one layer")]
    NoLayers,
    /// A layer's `weights` or `bias` do not have the length its `inputs` and `outputs` imply.
    #[error(
        "layer {layer} holds {got} weights and {bias} biases, but {inputs} inputs x {outputs} outputs need {expected} and {outputs}"
    )]
    Shape {
        /// Zero-based index of the layer, hidden layers first.
        layer: usize,
        /// The layer's `inputs`.
        inputs: usize,
        /// The layer's `outputs`.
        outputs: usize,
        /// `inputs * outputs` (`usize::MAX` where that overflows).
        expected: usize,
        /// The length of the layer's `weights`.
        got: usize,
        /// The length of the layer's `bias`.
        bias: usize,
    },
    /// A layer does not read as many values as the layer before it writes.
    #[error("layer {layer} reads {inputs} inputs, but the layer before it writes {previous}")]
    Chain {
        /// Zero-based index of the layer, hidden layers first.
        layer: usize,
        /// The layer's `inputs`.
        inputs: usize,
        /// The previous layer's `outputs`.
        previous: usize,
    },
    /// A layer has `outputs` 0.
    #[error("layer {layer} has no outputs")]
    NoOutputs {
        /// Zero-based index of the layer, hidden layers first.
        layer: usize,
    },
}

/// A network ready to run: hidden layers, then the output layer (no activation after it).
#[derive(Debug, Clone)]
pub struct Network {
    layers: Vec<Packed>,
    activation: ActivationKind,
    /// The most values per row any layer reads or writes.
    widest: usize,
    route: Route,
}

/// One layer as the kernels read it: `weights [inputs + 1, outputs]`, row-major, the last row
/// the bias; and the same with each row padded with zeros to `padded_outputs` (a whole number
/// of vectors), for the row-by-row kernel.
#[derive(Debug, Clone)]
struct Packed {
    weights: Vec<f32>,
    padded: Vec<f32>,
    inputs: usize,
    outputs: usize,
    padded_outputs: usize,
}

impl Packed {
    fn bias(&self, output: usize) -> f32 {
        self.weights[self.inputs * self.outputs + output]
    }
}

impl Network {
    /// The network of `layers` (hidden layers first), checked to chain, on this processor's
    /// fastest [`Route`]. The activation follows every layer but the last.
    ///
    /// # Errors
    /// [`NetworkError::NoLayers`] for no layers, [`NetworkError::Shape`] for a layer whose
    /// weights or bias have the wrong length, [`NetworkError::NoOutputs`] for a layer of no
    /// outputs, and [`NetworkError::Chain`] for a layer that does not read what the one before
    /// it writes; the first bad layer's error.
    pub fn new(layers: Vec<KernelLayer>, activation: ActivationKind) -> Result<Self, NetworkError> {
        if layers.is_empty() {
            return Err(NetworkError::NoLayers);
        }
        let mut packed = Vec::with_capacity(layers.len());
        for (index, layer) in layers.into_iter().enumerate() {
            let KernelLayer { mut weights, bias, inputs, outputs } = layer;
            let expected = inputs.checked_mul(outputs);
            if expected != Some(weights.len()) || bias.len() != outputs {
                return Err(NetworkError::Shape {
                    layer: index,
                    inputs,
                    outputs,
                    expected: expected.unwrap_or(usize::MAX),
                    got: weights.len(),
                    bias: bias.len(),
                });
            }
            if outputs == 0 {
                return Err(NetworkError::NoOutputs { layer: index });
            }
            if let Some(previous) = packed.last().map(|p: &Packed| p.outputs)
                && previous != inputs
            {
                return Err(NetworkError::Chain { layer: index, inputs, previous });
            }
            weights.extend_from_slice(&bias);
            let padded_outputs = outputs.div_ceil(LANES) * LANES;
            let mut padded = vec![0.0f32; (inputs + 1) * padded_outputs];
            for (to, from) in padded.chunks_exact_mut(padded_outputs).zip(weights.chunks_exact(outputs)) {
                to[..outputs].copy_from_slice(from);
            }
            packed.push(Packed { weights, padded, inputs, outputs, padded_outputs });
        }
        let widest = packed.iter().map(|l| l.inputs.max(l.padded_outputs)).max().unwrap_or(0);
        Ok(Self { layers: packed, activation, widest, route: Route::detect() })
    }

    /// Values per row of the input.
    pub fn n_inputs(&self) -> usize {
        self.layers[0].inputs
    }

    /// Values per row of the output.
    pub fn n_outputs(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs
    }

    /// The route [`Self::forward`] takes on this processor.
    pub fn route(&self) -> Route {
        self.route
    }

    /// Multiply-adds per row of one forward pass (the arithmetic floor of inference).
    pub fn multiply_adds_per_row(&self) -> usize {
        self.layers.iter().map(|l| l.inputs * l.outputs).sum()
    }

    /// `features [n_inputs, n_rows]`, column-major (each feature's value for every row, then the
    /// next feature's) -> `outputs [n_rows, n_outputs]`, row-major.
    ///
    /// # Panics
    /// If `features` does not hold [`Self::n_inputs`] features of `n_rows` values.
    pub fn forward(&self, features: &[f32], n_rows: usize) -> Vec<f32> {
        self.forward_on(self.route, features, n_rows)
    }

    /// [`Self::forward`] on a chosen route, with the same shapes; [`Route::Avx2Fma`] on a
    /// processor without those instructions runs the portable route.
    ///
    /// # Panics
    /// If `features` does not hold [`Self::n_inputs`] features of `n_rows` values.
    pub fn forward_on(&self, route: Route, features: &[f32], n_rows: usize) -> Vec<f32> {
        let route = if route == Route::Avx2Fma && Route::detect() != Route::Avx2Fma { Route::Portable } else { route };
        let (inputs, outputs) = (self.n_inputs(), self.n_outputs());
        assert_eq!(features.len(), n_rows * inputs, "{inputs} features of {n_rows} rows expected");
        let mut out = vec![0.0f32; n_rows * outputs];
        // Fewer rows than a block's worth are all computed row by row, in one row's space.
        let scratch = if n_rows < ROW_BY_ROW_BELOW { self.widest } else { self.widest * BLOCK };
        let mut front = vec![0.0f32; scratch];
        let mut back = vec![0.0f32; scratch];
        let last = self.layers.len() - 1;
        for first in (0..n_rows).step_by(BLOCK) {
            let rows = BLOCK.min(n_rows - first);
            if rows < ROW_BY_ROW_BELOW {
                for row in first..first + rows {
                    for (p, values) in features.chunks_exact(n_rows).take(inputs).enumerate() {
                        front[p] = values[row];
                    }
                    for (index, layer) in self.layers.iter().enumerate() {
                        let activation = (index < last).then_some(self.activation);
                        layer_row(route, layer, &front, &mut back, activation);
                        std::mem::swap(&mut front, &mut back);
                    }
                    out[row * outputs..(row + 1) * outputs].copy_from_slice(&front[..outputs]);
                }
                continue;
            }
            for (index, layer) in self.layers.iter().enumerate() {
                let activation = (index < last).then_some(self.activation);
                if index > 0 {
                    layer_block(route, layer, &front, BLOCK, &mut back, activation);
                } else if rows == BLOCK {
                    // A whole block reads its 16 values of each feature where they are.
                    layer_block(route, layer, &features[first..], n_rows, &mut back, activation);
                } else {
                    // A last, short block is copied out with zeros for the missing rows, which
                    // are computed like any other and never copied back.
                    front.fill(0.0);
                    for (p, values) in features.chunks_exact(n_rows).take(inputs).enumerate() {
                        front[p * BLOCK..p * BLOCK + rows].copy_from_slice(&values[first..]);
                    }
                    layer_block(route, layer, &front, BLOCK, &mut back, activation);
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

/// One layer over one block of rows: `x [inputs, BLOCK]`, input p's values at
/// `x[p * x_stride..]` -> `y [outputs, BLOCK]`, then the activation when there is one.
fn layer_block(
    route: Route,
    layer: &Packed,
    x: &[f32],
    x_stride: usize,
    y: &mut [f32],
    activation: Option<ActivationKind>,
) {
    assert!(x_stride >= BLOCK && x.len() >= reach(layer.inputs, x_stride) && y.len() >= layer.outputs * BLOCK);
    let relu = activation == Some(ActivationKind::Relu);
    match route {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `forward_on` takes this route only where the processor has AVX2 and FMA; the
        // bounds the kernel relies on are asserted above.
        Route::Avx2Fma => unsafe { avx2::layer_block(layer, x, x_stride, y, relu) },
        _ => portable_layer_block(layer, x, x_stride, y, relu),
    }
    if let Some(activation) = activation.filter(|&a| a != ActivationKind::Relu) {
        for value in &mut y[..layer.outputs * BLOCK] {
            *value = activate(activation, *value);
        }
    }
}

/// One layer for one row: `x [inputs]` -> `y [padded_outputs]` (the first `outputs` meaningful),
/// then the activation when there is one. Each output is the same chain as in [`layer_block`].
fn layer_row(route: Route, layer: &Packed, x: &[f32], y: &mut [f32], activation: Option<ActivationKind>) {
    assert!(x.len() >= layer.inputs && y.len() >= layer.padded_outputs);
    let relu = activation == Some(ActivationKind::Relu);
    match route {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as in `layer_block`; the bounds are asserted above.
        Route::Avx2Fma => unsafe { avx2::layer_row(layer, x, y, relu) },
        _ => portable_layer_row(layer, x, y, relu),
    }
    if let Some(activation) = activation.filter(|&a| a != ActivationKind::Relu) {
        for value in &mut y[..layer.outputs] {
            *value = activate(activation, *value);
        }
    }
}

/// [`layer_row`] one value at a time.
fn portable_layer_row(layer: &Packed, x: &[f32], y: &mut [f32], relu_after: bool) {
    let n = layer.outputs;
    for (output, slot) in y[..n].iter_mut().enumerate() {
        let mut sum = 0.0f32;
        for (p, &value) in x[..layer.inputs].iter().enumerate() {
            sum = value.mul_add(layer.weights[p * n + output], sum);
        }
        let value = sum + layer.bias(output);
        *slot = if relu_after { relu(value) } else { value };
    }
}

/// The activations other than ReLU, computed in f64 with `libm` (plain Rust, the same bits on
/// every machine) and rounded once to f32.
fn activate(activation: ActivationKind, value: f32) -> f32 {
    let x = f64::from(value);
    let y = match activation {
        ActivationKind::Relu => return relu(value),
        ActivationKind::Gelu => 0.5 * x * (1.0 + libm::erf(x * std::f64::consts::FRAC_1_SQRT_2)),
        ActivationKind::Tanh => libm::tanh(x),
        ActivationKind::Silu => x / (1.0 + libm::exp(-x)),
    };
    y as f32
}

/// Exactly the values below 0 become 0; -0 and NaN stay as they are (burn's `clamp_min(0)`).
#[inline(always)]
fn relu(value: f32) -> f32 {
    if value < 0.0 { 0.0 } else { value }
}

/// [`layer_block`] one value at a time.
fn portable_layer_block(layer: &Packed, x: &[f32], x_stride: usize, y: &mut [f32], relu_after: bool) {
    let n = layer.outputs;
    for output in 0..n {
        let bias = layer.bias(output);
        for (r, slot) in y[output * BLOCK..(output + 1) * BLOCK].iter_mut().enumerate() {
            let mut sum = 0.0f32;
            for p in 0..layer.inputs {
                sum = x[p * x_stride + r].mul_add(layer.weights[p * n + output], sum);
            }
            let value = sum + bias;
            *slot = if relu_after { relu(value) } else { value };
        }
    }
}

/// How many values of `x` a block reads: `inputs` runs of [`BLOCK`] values, `x_stride` apart.
fn reach(inputs: usize, x_stride: usize) -> usize {
    inputs.checked_sub(1).map_or(0, |last| last * x_stride + BLOCK)
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    //! [`super::layer_block`] for x86-64 with AVX2 and FMA: rows across the vector lanes, each
    //! input value of 16 rows in two 8-lane vectors multiplied by one weight broadcast to all
    //! lanes. A layer of 33 outputs costs 33 lanes' work, where a matrix kernel's 8 × 8 tiles
    //! compute 40.

    use std::arch::x86_64::{
        _CMP_LT_OQ, _mm256_add_ps, _mm256_andnot_ps, _mm256_broadcast_ss, _mm256_cmp_ps, _mm256_fmadd_ps,
        _mm256_loadu_ps, _mm256_set1_ps, _mm256_setzero_ps, _mm256_storeu_ps,
    };

    use super::{BLOCK, LANES, Packed, reach};

    /// The most vectors of outputs one pass over a row's inputs accumulates: 8 independent sums
    /// cover the multiply-add latency on both units.
    const ROW_GROUP: usize = 8;

    /// One row: outputs across the lanes, each vector of 8 outputs accumulating
    /// `fma(x_p, w_p, sum)` over the inputs in order from +0, then `+ bias`, then ReLU if asked.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn layer_row(layer: &Packed, x: &[f32], y: &mut [f32], relu: bool) {
        let vectors = layer.padded_outputs / LANES;
        let mut first = 0;
        while first < vectors {
            let len = (vectors - first).min(ROW_GROUP);
            match len {
                1 => row_group::<1>(layer, first, x, y, relu),
                2 => row_group::<2>(layer, first, x, y, relu),
                3 => row_group::<3>(layer, first, x, y, relu),
                4 => row_group::<4>(layer, first, x, y, relu),
                5 => row_group::<5>(layer, first, x, y, relu),
                6 => row_group::<6>(layer, first, x, y, relu),
                7 => row_group::<7>(layer, first, x, y, relu),
                _ => row_group::<ROW_GROUP>(layer, first, x, y, relu),
            }
            first += len;
        }
    }

    /// Output vectors `first..first + G` of one layer for one row.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn row_group<const G: usize>(layer: &Packed, first: usize, x: &[f32], y: &mut [f32], relu: bool) {
        let n = layer.padded_outputs;
        // Every access below is inside these bounds: x[p] for p < inputs, padded weight rows
        // p <= inputs at columns (first + G) * 8 <= n, and y[..n].
        assert!((first + G) * LANES <= n && layer.padded.len() == (layer.inputs + 1) * n);
        assert!(x.len() >= layer.inputs && y.len() >= n);
        let w = layer.padded.as_ptr();
        let mut sums = [_mm256_setzero_ps(); G];
        for (p, value) in x[..layer.inputs].iter().enumerate() {
            let value = _mm256_set1_ps(*value);
            for (g, sum) in sums.iter_mut().enumerate() {
                // SAFETY: p < inputs and (first + g + 1) * 8 <= n (asserted above).
                let weights = unsafe { _mm256_loadu_ps(w.add(p * n + (first + g) * LANES)) };
                *sum = _mm256_fmadd_ps(value, weights, *sum);
            }
        }
        let zero = _mm256_setzero_ps();
        for (g, &sum) in sums.iter().enumerate() {
            let at = (first + g) * LANES;
            // SAFETY: the bias row is row `inputs` of the padded weights, in bounds (asserted
            // above), and at + 8 <= n <= y.len().
            unsafe {
                let mut value = _mm256_add_ps(sum, _mm256_loadu_ps(w.add(layer.inputs * n + at)));
                if relu {
                    value = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(value, zero), value);
                }
                _mm256_storeu_ps(y.as_mut_ptr().add(at), value);
            }
        }
    }

    /// The most outputs one pass over a layer's inputs accumulates: 2 × 6 accumulators, two input
    /// vectors and a broadcast weight fill 15 of the 16 vector registers, and 12 independent sums
    /// keep both multiply-add units busy despite each one's latency.
    const MAX_GROUP: usize = 6;

    /// The outputs are taken in groups of at most [`MAX_GROUP`], as even as possible.
    #[target_feature(enable = "avx2,fma")]
    pub(super) fn layer_block(layer: &Packed, x: &[f32], x_stride: usize, y: &mut [f32], relu: bool) {
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
    /// `sum + bias`, then ReLU if asked.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn output_group<const G: usize>(
        layer: &Packed,
        first: usize,
        x: &[f32],
        x_stride: usize,
        y: &mut [f32],
        relu: bool,
    ) {
        let n = layer.outputs;
        // Every access below is inside these bounds: inputs p < layer.inputs of x, weight rows
        // p <= layer.inputs at columns first..first + G of a row of n, outputs first..first + G
        // of y.
        assert!(first + G <= n && layer.weights.len() == (layer.inputs + 1) * n);
        assert!(x_stride >= BLOCK && x.len() >= reach(layer.inputs, x_stride) && y.len() >= n * BLOCK);
        let (xp, w) = (x.as_ptr(), layer.weights.as_ptr());
        let mut sums = [[_mm256_setzero_ps(); 2]; G];
        for p in 0..layer.inputs {
            // SAFETY: p < inputs, so x[p * x_stride .. p * x_stride + 16] and
            // w[p * n + first + g] for g < G are in bounds (asserted above).
            let (low, high, row) = unsafe {
                let at = xp.add(p * x_stride);
                (_mm256_loadu_ps(at), _mm256_loadu_ps(at.add(LANES)), w.add(p * n + first))
            };
            for (g, sum) in sums.iter_mut().enumerate() {
                // SAFETY: see above.
                let weight = unsafe { _mm256_broadcast_ss(&*row.add(g)) };
                sum[0] = _mm256_fmadd_ps(low, weight, sum[0]);
                sum[1] = _mm256_fmadd_ps(high, weight, sum[1]);
            }
        }
        let zero = _mm256_setzero_ps();
        for (g, sum) in sums.iter().enumerate() {
            // SAFETY: the bias row is row `inputs` of the weights, in bounds (asserted above).
            let bias = unsafe { _mm256_broadcast_ss(&*w.add(layer.inputs * n + first + g)) };
            for (half, &partial) in sum.iter().enumerate() {
                let mut value = _mm256_add_ps(partial, bias);
                if relu {
                    // Exactly the values below 0 become 0; -0 and NaN stay.
                    value = _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(value, zero), value);
                }
                let at = (first + g) * BLOCK + half * LANES;
                // SAFETY: at + 8 <= (first + G) * BLOCK <= n * BLOCK <= y.len().
                unsafe { _mm256_storeu_ps(y.as_mut_ptr().add(at), value) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A generator with a fixed seed (xorshift), for reproducible random cases.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
        /// About [-2, 2), with exact zeros now and then (ReLU's corner).
        fn value(&mut self) -> f32 {
            if self.below(13) == 0 { 0.0 } else { ((self.next() >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0 }
        }
        fn values(&mut self, n: usize) -> Vec<f32> {
            (0..n).map(|_| self.value()).collect()
        }
    }

    fn random_layers(rng: &mut Rng, n_inputs: usize, hidden: &[usize], n_outputs: usize) -> Vec<KernelLayer> {
        let mut inputs = n_inputs;
        let mut layers = Vec::new();
        for &outputs in hidden.iter().chain([&n_outputs]) {
            layers.push(KernelLayer {
                weights: rng.values(inputs * outputs),
                bias: rng.values(outputs),
                inputs,
                outputs,
            });
            inputs = outputs;
        }
        layers
    }

    /// The plain reference: row-major rows, one output at a time, the same chain of operations
    /// written as directly as possible.
    fn reference(layers: &[KernelLayer], activation: ActivationKind, rows: &[f32], n_rows: usize) -> Vec<f32> {
        let mut x = rows.to_vec();
        for (index, layer) in layers.iter().enumerate() {
            let mut y = vec![0.0f32; n_rows * layer.outputs];
            for r in 0..n_rows {
                for o in 0..layer.outputs {
                    let mut sum = 0.0f32;
                    for p in 0..layer.inputs {
                        sum = x[r * layer.inputs + p].mul_add(layer.weights[p * layer.outputs + o], sum);
                    }
                    let value = sum + layer.bias[o];
                    y[r * layer.outputs + o] =
                        if index + 1 < layers.len() { activate(activation, value) } else { value };
                }
            }
            x = y;
        }
        x
    }

    /// Same bits, or both NaN (a NaN's payload may differ between instructions).
    fn assert_same(context: &str, expected: &[f32], got: &[f32]) {
        assert_eq!(expected.len(), got.len(), "{context}");
        for (i, (a, b)) in expected.iter().zip(got).enumerate() {
            assert!(a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()), "{context}: output {i}: {a} vs {b}");
        }
    }

    #[test]
    fn both_routes_give_the_reference_bits_for_random_networks() {
        let mut rng = Rng(0x5DEE_CE66_D1CE_4E5B);
        let activations = [ActivationKind::Relu, ActivationKind::Gelu, ActivationKind::Tanh, ActivationKind::Silu];
        // Row by row below 8, whole blocks of 16, and blocks of every length in between.
        let row_counts = [0, 1, 2, 7, 8, 15, 16, 17, 23, 24, 31, 33, 64, 4097];
        for case in 0..48 {
            let n_inputs = 1 + rng.below(40);
            let hidden: Vec<usize> = (0..rng.below(4)).map(|_| 1 + rng.below(70)).collect();
            let n_outputs = 1 + rng.below(5);
            let activation = activations[case % activations.len()];
            let layers = random_layers(&mut rng, n_inputs, &hidden, n_outputs);
            let network = Network::new(layers.clone(), activation).expect("chained layers");
            let n_rows = row_counts[case % row_counts.len()];
            let mut rows = rng.values(n_rows * n_inputs);
            // Missing and infinite features must travel through every route alike.
            for special in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, -0.0] {
                if !rows.is_empty() && rng.below(3) == 0 {
                    let at = rng.below(rows.len());
                    rows[at] = special;
                }
            }
            // Column-major, and one value past the start of its allocation: an unaligned slice.
            let mut storage = vec![0.0f32; 1 + rows.len()];
            for r in 0..n_rows {
                for p in 0..n_inputs {
                    storage[1 + p * n_rows + r] = rows[r * n_inputs + p];
                }
            }
            let columns = &storage[1..];
            let context =
                format!("case {case}: {n_inputs} -> {hidden:?} -> {n_outputs}, {activation:?}, {n_rows} rows");
            let expected = reference(&layers, activation, &rows, n_rows);
            assert_same(
                &format!("{context}, portable"),
                &expected,
                &network.forward_on(Route::Portable, columns, n_rows),
            );
            assert_same(&format!("{context}, fastest"), &expected, &network.forward(columns, n_rows));
        }
    }

    #[test]
    fn this_x86_processor_takes_the_vector_route_when_it_can() {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            assert_eq!(Route::detect(), Route::Avx2Fma);
            return;
        }
        assert_eq!(Route::detect(), Route::Portable);
    }

    #[test]
    fn relu_keeps_negative_zero_and_nan_and_clears_the_rest_below_zero() {
        // Layers of weight 1 and bias -0 copy their input (x + -0 = x), except that a chain of
        // multiply-adds from +0 never ends at -0: -0 comes out as +0.
        let copy = |n| KernelLayer { weights: vec![1.0], bias: vec![n], inputs: 1, outputs: 1 };
        let network = Network::new(vec![copy(-0.0), copy(-0.0)], ActivationKind::Relu).expect("one by one");
        let inputs = [-0.0, f32::NAN, -1.5, 2.5, f32::NEG_INFINITY, f32::INFINITY, -1e-30, 0.0];
        let expected = [0.0, f32::NAN, 0.0, 2.5, 0.0, f32::INFINITY, 0.0, 0.0];
        for route in [Route::Portable, Route::Avx2Fma] {
            assert_same(&format!("{route:?}"), &expected, &network.forward_on(route, &inputs, inputs.len()));
        }
    }

    #[test]
    fn layers_that_do_not_chain_are_refused() {
        let layer = |inputs, outputs| KernelLayer {
            weights: vec![0.5; inputs * outputs],
            bias: vec![0.0; outputs],
            inputs,
            outputs,
        };
        assert_eq!(Network::new(vec![], ActivationKind::Relu).err(), Some(NetworkError::NoLayers));
        assert_eq!(
            Network::new(vec![layer(3, 4), layer(5, 1)], ActivationKind::Relu).err(),
            Some(NetworkError::Chain { layer: 1, inputs: 5, previous: 4 })
        );
        let mut short = layer(3, 2);
        short.weights.pop();
        assert!(matches!(Network::new(vec![short], ActivationKind::Relu), Err(NetworkError::Shape { layer: 0, .. })));
        assert_eq!(
            Network::new(vec![layer(3, 0)], ActivationKind::Relu).err(),
            Some(NetworkError::NoOutputs { layer: 0 })
        );
    }
}
