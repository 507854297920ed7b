//! The MLP, generic over the burn backend: its configuration (saved in the manifest) and its
//! forward pass. Training wraps the same module in an autodiff backend; inference runs it as is.

use burn_core as burn;

use burn::module::Module;
use burn::tensor::activation;
use burn::tensor::{Tensor, TensorData, backend::Backend};
use burn_nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use serde::{Deserialize, Serialize};

/// The non-linearity between hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ActivationKind {
    #[default]
    Relu,
    Gelu,
    Tanh,
    Silu,
}

impl ActivationKind {
    fn apply<B: Backend>(self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        match self {
            ActivationKind::Relu => activation::relu(x),
            ActivationKind::Gelu => activation::gelu(x),
            ActivationKind::Tanh => activation::tanh(x),
            ActivationKind::Silu => activation::silu(x),
        }
    }
}

/// The network's shape; stored in the manifest so that serving rebuilds the model from it alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlpConfig {
    pub n_features: usize,
    pub hidden_layers: Vec<usize>,
    /// 1 for regression, the number of classes for classification.
    pub n_outputs: usize,
    pub activation: ActivationKind,
    /// Probability of zeroing a hidden unit during training; inactive at inference.
    pub dropout: f64,
}

impl MlpConfig {
    /// Builds the network with freshly initialized weights on `device`.
    pub fn init<B: Backend>(&self, device: &B::Device) -> Mlp<B> {
        let mut d_input = self.n_features;
        let mut hidden = Vec::with_capacity(self.hidden_layers.len());
        for &d_output in &self.hidden_layers {
            hidden.push(LinearConfig::new(d_input, d_output).init(device));
            d_input = d_output;
        }
        Mlp {
            hidden,
            output: LinearConfig::new(d_input, self.n_outputs).init(device),
            dropout: DropoutConfig::new(self.dropout).init(),
            activation: self.activation,
        }
    }

    /// Multiply-adds per row of one forward pass (the arithmetic floor of inference).
    pub fn multiply_adds_per_row(&self) -> usize {
        let mut d_input = self.n_features;
        let mut total = 0;
        for &d in self.hidden_layers.iter().chain(std::iter::once(&self.n_outputs)) {
            total += d_input * d;
            d_input = d;
        }
        total
    }
}

/// A multi-layer perceptron: `hidden_layers` linear layers each followed by the activation and
/// dropout, then a linear output layer (logits for classification, the standardized target for
/// regression).
#[derive(Module, Debug)]
pub struct Mlp<B: Backend> {
    pub hidden: Vec<Linear<B>>,
    pub output: Linear<B>,
    pub dropout: Dropout,
    #[module(skip)]
    pub activation: ActivationKind,
}

impl<B: Backend> Mlp<B> {
    /// `features [batch_size, n_features] -> outputs [batch_size, n_outputs]`.
    pub fn forward(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut x = features;
        for layer in &self.hidden {
            x = self.dropout.forward(self.activation.apply(layer.forward(x)));
        }
        self.output.forward(x)
    }
}

/// The longest sum (inputs of a layer, its bias row included) that matrixmultiply's
/// single-precision kernel accumulates in one run: its `kc` block depth, 256 unless the build
/// sets `MATMUL_SGEMM_KC` (this workspace does not).
pub const FOLDABLE_INPUTS: usize = 256;

/// An [`Mlp`] with ReLU and biases, rewritten for CPU inference so that every layer is one
/// matrix product: each weight matrix gets its bias as an extra input row, and each hidden layer
/// an extra output column that carries a constant 1 to the next layer (`relu(1) = 1`). The input
/// ends with a column of ones. `relu([x, 1] · [[W, 0], [b, 1]]) = [relu(x · W + b), 1]`.
///
/// The weights are read from the module (a copy, made once at load time), and each layer runs as
/// one call of the single-precision kernel burn-ndarray itself uses for `matmul`
/// (matrixmultiply's `sgemm`, reached through ndarray's `general_mat_mul` with the same `m`, `k`,
/// `n`, `alpha = 1` and `beta = 0`), followed by ReLU applied in place exactly as burn-ndarray
/// applies it (`x < 0 → 0`, everything else kept, `-0.0` and NaN included). So the result is the
/// same bits as [`Mlp::forward`] on burn-ndarray:
///
/// - the bias is the last term of each output's sum, added to the products accumulated so far
///   exactly as a separate addition would add it. That holds while the kernel sums each output in
///   one run over the inputs, which it does up to [`FOLDABLE_INPUTS`] of them; past that it sums
///   in blocks and the bias would join the last block, so wider networks are not folded;
/// - the kernel picks its code path from the CPU alone (FMA/AVX2, AVX, ...), never from the
///   caller, so both routes run the same instructions in the same order;
/// - the features are finite: an infinite one would turn the carried 1 into NaN where the module
///   gives an infinity. The preprocessing refuses such rows ([`crate::InputError::OutOfRange`]).
///
/// What this saves, per layer, is burn-ndarray's bookkeeping around the same kernel call: a
/// separate broadcasting bias pass that allocates a new array, a zero-filled output, reshapes
/// that copy, and a second array for the activation. Profiles put those at about half of a
/// small network's forward pass; for one row they dominate it.
///
/// On x86-64 processors with AVX2 and FMA, [`FoldedMlp::forward`] goes further and runs all
/// layers in one fused kernel (`fused.rs`) that performs the same multiply-adds per output in
/// the same order, so again the same bits; elsewhere it runs the layer-by-layer calls above.
#[derive(Debug, Clone)]
pub struct FoldedMlp {
    /// Hidden layers, then the output layer.
    layers: Vec<FoldedLayer>,
    /// The same layers for the fused kernel, on processors where it gives the same bits
    /// (x86-64 with AVX2 and FMA; see `fused.rs`).
    #[cfg(target_arch = "x86_64")]
    fused: Option<crate::fused::FusedMlp>,
}

/// One folded layer: `weights [inputs, outputs]`, row-major, its last input row the bias.
#[derive(Debug, Clone)]
struct FoldedLayer {
    weights: Vec<f32>,
    inputs: usize,
    outputs: usize,
}

impl FoldedMlp {
    /// The folded form of `mlp`, or `None` when it does not apply: an activation other than
    /// ReLU (which would not keep the constant 1), a layer without bias, or a layer reading
    /// more than [`FOLDABLE_INPUTS`] - 1 inputs.
    pub fn fold<B: Backend>(mlp: &Mlp<B>) -> Option<Self> {
        let too_wide = mlp.hidden.iter().chain([&mlp.output]).any(|l| l.weight.dims()[0] + 1 > FOLDABLE_INPUTS);
        if mlp.activation != ActivationKind::Relu || too_wide {
            return None;
        }
        let mut layers = Vec::with_capacity(mlp.hidden.len() + 1);
        for layer in &mlp.hidden {
            let with_bias = Self::with_bias_row(layer)?;
            let [rows, _] = with_bias.dims();
            let mut carry = vec![0.0f32; rows];
            carry[rows - 1] = 1.0;
            let carry = Tensor::<B, 2>::from_data(TensorData::new(carry, [rows, 1]), &with_bias.device());
            layers.push(FoldedLayer::from_tensor(Tensor::cat(vec![with_bias, carry], 1))?);
        }
        layers.push(FoldedLayer::from_tensor(Self::with_bias_row(&mlp.output)?)?);
        #[cfg(target_arch = "x86_64")]
        let fused = crate::fused::FusedMlp::new(Self::fused_layers(&layers));
        Some(Self {
            layers,
            #[cfg(target_arch = "x86_64")]
            fused,
        })
    }

    /// The layers without the carried-1 columns: the fused kernel adds each bias itself, as a
    /// last multiply-add with 1, instead of reading a 1 from the previous layer.
    #[cfg(target_arch = "x86_64")]
    fn fused_layers(layers: &[FoldedLayer]) -> Vec<crate::fused::FusedLayer> {
        let last = layers.len() - 1;
        layers
            .iter()
            .enumerate()
            .map(|(index, layer)| {
                let outputs = if index < last { layer.outputs - 1 } else { layer.outputs };
                let weights = layer.weights.chunks(layer.outputs).flat_map(|row| &row[..outputs]).copied().collect();
                crate::fused::FusedLayer { weights, inputs: layer.inputs - 1, outputs }
            })
            .collect()
    }

    /// `[[W], [b]]`: the weight `[d_input, d_output]` with the bias appended as a last row.
    fn with_bias_row<B: Backend>(layer: &Linear<B>) -> Option<Tensor<B, 2>> {
        let bias = layer.bias.as_ref()?.val().unsqueeze_dim::<2>(0);
        Some(Tensor::cat(vec![layer.weight.val(), bias], 0))
    }

    /// Values per row of the input: the network's features plus the trailing 1.
    pub fn input_width(&self) -> usize {
        self.layers[0].inputs
    }

    /// Values per row of the output.
    pub fn output_width(&self) -> usize {
        self.layers[self.layers.len() - 1].outputs
    }

    /// `features [n_features + 1, n_rows]`, column-major (each feature's value for every row,
    /// then the next feature's), the last feature all ones -> `outputs [n_rows, n_outputs]`,
    /// row-major: the same bits as [`Mlp::forward`] on burn-ndarray given the features, without
    /// the ones, as rows.
    ///
    /// # Panics
    /// If `features` does not hold [`Self::input_width`] features of `n_rows` values.
    pub fn forward(&self, features: &[f32], n_rows: usize) -> Vec<f32> {
        assert_eq!(
            features.len(),
            n_rows * self.input_width(),
            "{} features of {n_rows} rows expected",
            self.input_width()
        );
        #[cfg(target_arch = "x86_64")]
        if let Some(fused) = &self.fused {
            return fused.forward(features, n_rows);
        }
        self.forward_by_layer(features, n_rows)
    }

    /// [`Self::forward`] one layer at a time, through matrixmultiply.
    fn forward_by_layer(&self, features: &[f32], n_rows: usize) -> Vec<f32> {
        let (hidden, output) = self.layers.split_at(self.layers.len() - 1);
        // The first layer reads the features column-major; every later one the row-major
        // output of the layer before.
        let mut activations: Option<Vec<f32>> = None;
        for layer in hidden {
            let mut x = match &activations {
                None => layer.product(features, n_rows, Major::Column),
                Some(rows) => layer.product(rows, n_rows, Major::Row),
            };
            // burn-ndarray's ReLU: `clamp_min(0)`, which replaces exactly the values below 0. An
            // unconditional store of a select, so that it compiles to vector code, not a branch
            // per value.
            for value in &mut x {
                *value = if *value < 0.0 { 0.0 } else { *value };
            }
            activations = Some(x);
        }
        match &activations {
            None => output[0].product(features, n_rows, Major::Column),
            Some(rows) => output[0].product(rows, n_rows, Major::Row),
        }
    }
}

/// How a matrix of rows and columns is laid out in a flat slice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Major {
    /// One row after another.
    Row,
    /// One column after another.
    Column,
}

impl FoldedLayer {
    fn from_tensor<B: Backend>(weights: Tensor<B, 2>) -> Option<Self> {
        let [inputs, outputs] = weights.dims();
        let weights = weights.into_data().convert::<f32>().into_vec::<f32>().ok()?;
        Some(Self { weights, inputs, outputs })
    }

    /// `x [n_rows, inputs] · weights -> [n_rows, outputs]`, `x` laid out as `major` says, the
    /// weights and the result row-major. matrixmultiply sums each output in the same order
    /// whatever the strides of `x`.
    #[allow(unsafe_code)]
    fn product(&self, x: &[f32], n_rows: usize, major: Major) -> Vec<f32> {
        let len = n_rows * self.outputs;
        assert!(x.len() == n_rows * self.inputs && self.weights.len() == self.inputs * self.outputs);
        let mut out = Vec::<f32>::with_capacity(len);
        let (k, n) = (self.inputs as isize, self.outputs as isize);
        let (row_stride, column_stride) = match major {
            Major::Row => (k, 1),
            Major::Column => (1, n_rows as isize),
        };
        // SAFETY: `x` holds `n_rows × inputs` values with the strides of its layout (one row
        // after another: `inputs` and 1; one column after another: 1 and `n_rows`), `weights`
        // holds `inputs × outputs` with row stride `outputs` (both checked above), and `out`
        // has room for `n_rows × outputs` with row stride `outputs`. With beta = 0 sgemm
        // writes every element of C without reading it (its documented contract: "if β is
        // zero, then C does not need to be initialized"), so all `len` values are initialized
        // when it returns; it also does so when `n_rows` is 0 (nothing to write).
        unsafe {
            matrixmultiply::sgemm(
                n_rows,
                self.inputs,
                self.outputs,
                1.0,
                x.as_ptr(),
                row_stride,
                column_stride,
                self.weights.as_ptr(),
                n,
                1,
                0.0,
                out.as_mut_ptr(),
                n,
                1,
            );
            out.set_len(len);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn_ndarray::{NdArray, NdArrayDevice};

    type B = NdArray<f32>;

    /// Deterministic values in about [-2, 2), some exactly zero (ReLU's corner).
    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                if i % 11 == 0 { 0.0 } else { ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0 }
            })
            .collect()
    }

    fn config(n_features: usize, hidden_layers: Vec<usize>, n_outputs: usize, activation: ActivationKind) -> MlpConfig {
        MlpConfig { n_features, hidden_layers, n_outputs, activation, dropout: 0.0 }
    }

    #[test]
    fn the_folded_network_gives_the_same_bits_as_the_module() {
        let device = NdArrayDevice::Cpu;
        B::seed(&device, 11);
        // 1 to 4 outputs, odd sizes, and the widest layer that folds.
        for (n_features, hidden, n_outputs) in
            [(26, vec![64, 64], 1), (9, vec![32, 32], 3), (5, vec![], 2), (40, vec![255, 7], 1), (255, vec![17], 4)]
        {
            let mlp = config(n_features, hidden.clone(), n_outputs, ActivationKind::Relu).init::<B>(&device);
            let folded = FoldedMlp::fold(&mlp).expect("ReLU with biases folds");
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                assert!(folded.fused.is_some(), "this processor runs the fused kernel");
            }
            // Whole blocks of 16 rows, short ones, and both.
            for n_rows in [1, 3, 16, 17, 64, 517] {
                let mut x = values(n_rows * n_features, (n_rows * 31 + n_features) as u64);
                // ReLU's edge cases: a negative zero and a NaN must pass through both alike.
                if n_rows > 1 {
                    x[1] = -0.0;
                    x[n_features] = f32::NAN;
                }
                // The folded network reads features column-major, with a last feature of ones.
                let mut with_ones = Vec::with_capacity(n_rows * (n_features + 1));
                for feature in 0..n_features {
                    with_ones.extend(x.chunks(n_features).map(|row| row[feature]));
                }
                with_ones.extend(std::iter::repeat_n(1.0, n_rows));
                let plain = mlp.forward(Tensor::from_data(TensorData::new(x, [n_rows, n_features]), &device));
                let plain = plain.into_data().to_vec::<f32>().expect("f32 outputs");
                assert_eq!(plain.len(), n_rows * n_outputs);
                for (route, fast) in [
                    ("forward", folded.forward(&with_ones, n_rows)),
                    ("by layer", folded.forward_by_layer(&with_ones, n_rows)),
                ] {
                    assert_eq!(fast.len(), plain.len(), "{route}");
                    let differing = plain.iter().zip(&fast).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
                    assert_eq!(
                        differing, 0,
                        "{route}: {n_features} -> {hidden:?} -> {n_outputs}, {n_rows} rows: {differing} outputs differ"
                    );
                }
            }
        }
    }

    #[test]
    fn only_relu_networks_with_biases_fold() {
        let device = NdArrayDevice::Cpu;
        for activation in [ActivationKind::Gelu, ActivationKind::Tanh, ActivationKind::Silu] {
            assert!(FoldedMlp::fold(&config(4, vec![8], 1, activation).init::<B>(&device)).is_none(), "{activation:?}");
        }
        let mut mlp = config(4, vec![8], 1, ActivationKind::Relu).init::<B>(&device);
        assert!(FoldedMlp::fold(&mlp).is_some());
        mlp.output.bias = None;
        assert!(FoldedMlp::fold(&mlp).is_none());
        // A layer reading 256 inputs is summed in two blocks, where folding would change bits.
        for (n_features, hidden) in [(256, vec![8]), (4, vec![256])] {
            let mlp = config(n_features, hidden.clone(), 1, ActivationKind::Relu).init::<B>(&device);
            assert!(FoldedMlp::fold(&mlp).is_none(), "{n_features} -> {hidden:?}");
        }
    }
}
