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

/// An [`Mlp`] with ReLU and biases, rewritten for inference so that every layer is one matrix
/// product: each weight matrix gets its bias as an extra input row, and each hidden layer an
/// extra output column that carries a constant 1 to the next layer (`relu(1) = 1`). The input
/// ends with a column of ones. `relu([x, 1] · [[W, 0], [b, 1]]) = [relu(x · W + b), 1]`.
///
/// The result is the same bits: the bias is the last term of each output's sum, added to the
/// products accumulated so far exactly as a separate addition would add it. That holds while
/// the matrix-multiply kernel (matrixmultiply's sgemm) sums each output in one run over the
/// inputs, which it does up to [`FOLDABLE_INPUTS`] of them; past that it sums in blocks and the
/// bias would join the last block, so wider layers run unfolded. What folding saves is
/// burn-ndarray's broadcasting bias addition, a separate pass that allocates a new array and
/// walks it element by element (a fifth of a diamonds forward pass, two fifths of a penguins
/// one, in profiles).
#[derive(Debug)]
pub struct FoldedMlp<B: Backend> {
    /// `[d_input + 1, d_output + 1]` per hidden layer, then `[d_input + 1, n_outputs]`.
    layers: Vec<Tensor<B, 2>>,
}

impl<B: Backend> FoldedMlp<B> {
    /// The folded form of `mlp`, or `None` when it does not apply: an activation other than
    /// ReLU (which would not keep the constant 1), a layer without bias, or a layer reading
    /// more than [`FOLDABLE_INPUTS`] - 1 inputs.
    pub fn fold(mlp: &Mlp<B>) -> Option<Self> {
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
            layers.push(Tensor::cat(vec![with_bias, carry], 1));
        }
        layers.push(Self::with_bias_row(&mlp.output)?);
        Some(Self { layers })
    }

    /// `[[W], [b]]`: the weight `[d_input, d_output]` with the bias appended as a last row.
    fn with_bias_row(layer: &Linear<B>) -> Option<Tensor<B, 2>> {
        let bias = layer.bias.as_ref()?.val().unsqueeze_dim::<2>(0);
        Some(Tensor::cat(vec![layer.weight.val(), bias], 0))
    }

    /// `features [batch_size, n_features + 1]` (the last column all ones) -> `outputs
    /// [batch_size, n_outputs]`, equal to [`Mlp::forward`] on the features without the ones.
    pub fn forward(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        let last = self.layers.len() - 1;
        let mut x = features;
        for layer in &self.layers[..last] {
            x = activation::relu(x.matmul(layer.clone()));
        }
        x.matmul(self.layers[last].clone())
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
            for n_rows in [1, 3, 64, 517] {
                let x = values(n_rows * n_features, (n_rows * 31 + n_features) as u64);
                let mut with_ones = Vec::with_capacity(n_rows * (n_features + 1));
                for row in x.chunks(n_features) {
                    with_ones.extend_from_slice(row);
                    with_ones.push(1.0);
                }
                let plain = mlp.forward(Tensor::from_data(TensorData::new(x, [n_rows, n_features]), &device));
                let fast =
                    folded.forward(Tensor::from_data(TensorData::new(with_ones, [n_rows, n_features + 1]), &device));
                let (plain, fast) = (
                    plain.into_data().to_vec::<f32>().expect("f32 outputs"),
                    fast.into_data().to_vec::<f32>().expect("f32 outputs"),
                );
                assert_eq!(plain.len(), n_rows * n_outputs);
                let differing = plain.iter().zip(&fast).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
                assert_eq!(
                    differing, 0,
                    "{n_features} -> {hidden:?} -> {n_outputs}, {n_rows} rows: {differing} outputs differ"
                );
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
