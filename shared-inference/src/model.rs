//! The MLP, generic over the burn backend: its configuration (saved in the manifest) and its
//! forward pass. Training wraps the same module in an autodiff backend; inference runs it as is.

use burn_core as burn;

use burn::module::Module;
use burn::tensor::activation;
use burn::tensor::{Tensor, backend::Backend};
use burn_nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use serde::{Deserialize, Serialize};

use crate::error::ArtifactError;
use crate::kernel::{KernelLayer, Network};

/// The non-linearity between hidden layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ActivationKind {
    /// `max(x, 0)`.
    #[default]
    Relu,
    /// The Gaussian error linear unit, `x · Φ(x)` (exact, with `erf`).
    Gelu,
    /// The hyperbolic tangent.
    Tanh,
    /// `x · sigmoid(x)`.
    Silu,
}

impl ActivationKind {
    /// The activation on every element: `x [batch_size, width] -> [batch_size, width]`.
    pub fn apply<B: Backend>(self, x: Tensor<B, 2>) -> Tensor<B, 2> {
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
    /// Values per row of the input: the preprocessing's
    /// [`n_features`](crate::Preprocessor::n_features).
    pub n_features: usize,
    /// Each hidden layer's width, from the input side; empty for a linear model.
    pub hidden_layers: Vec<usize>,
    /// 1 for regression, the number of classes for classification.
    pub n_outputs: usize,
    /// The non-linearity after each hidden layer.
    pub activation: ActivationKind,
    /// Probability of zeroing a hidden unit during training; inactive at inference.
    pub dropout: f64,
}

impl MlpConfig {
    /// Builds the network with freshly initialized weights on `device`.
    ///
    /// # Panics
    /// If `dropout` is outside `[0, 1]` (burn's `DropoutConfig::init`); a manifest that reads
    /// holds one in `[0, 1)`.
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
    /// The hidden layers, from the input side; weights `[inputs, outputs]`.
    pub hidden: Vec<Linear<B>>,
    /// The output layer, `[last hidden width (or n_features), n_outputs]`.
    pub output: Linear<B>,
    /// Applied after each hidden layer's activation; only active on an autodiff backend.
    pub dropout: Dropout,
    /// The non-linearity after each hidden layer.
    #[module(skip)]
    pub activation: ActivationKind,
}

impl<B: Backend> Mlp<B> {
    /// `features [batch_size, n_features] -> outputs [batch_size, n_outputs]`.
    ///
    /// # Panics
    /// If the features' width is not `n_features` (burn's shape check).
    pub fn forward(&self, features: Tensor<B, 2>) -> Tensor<B, 2> {
        let mut x = features;
        for layer in &self.hidden {
            x = self.dropout.forward(self.activation.apply(layer.forward(x)));
        }
        self.output.forward(x)
    }
}

impl<B: Backend> Mlp<B> {
    /// The same network for the inference kernel ([`Network`]): the weights copied out once,
    /// at load time.
    ///
    /// # Errors
    /// [`ArtifactError::Weights`] if a layer's values cannot be read as f32 or the layers do
    /// not chain (a [`NetworkError`](crate::kernel::NetworkError), in words).
    pub fn to_network(&self) -> Result<Network, ArtifactError> {
        Network::new(self.kernel_layers()?, self.activation).map_err(|e| ArtifactError::Weights(e.to_string()))
    }

    /// Every layer's weights `[inputs, outputs]` and bias as f32 values, hidden layers first: what
    /// the kernel and the ONNX export read. A layer saved without a bias gets zeros.
    ///
    /// # Errors
    /// [`ArtifactError::Weights`] if a layer's weights or bias cannot be read as f32.
    pub fn kernel_layers(&self) -> Result<Vec<KernelLayer>, ArtifactError> {
        let mut layers = Vec::with_capacity(self.hidden.len() + 1);
        for (index, layer) in self.hidden.iter().chain([&self.output]).enumerate() {
            let [inputs, outputs] = layer.weight.dims();
            let values = |tensor: Tensor<B, 1>, what: &str| {
                tensor.into_data().convert::<f32>().into_vec::<f32>().map_err(|e| {
                    ArtifactError::Weights(format!("layer {index}: the {what} cannot be read as f32: {e:?}"))
                })
            };
            let weights = values(layer.weight.val().reshape([inputs * outputs]), "weights")?;
            let bias = match &layer.bias {
                Some(bias) => values(bias.val(), "bias")?,
                None => vec![0.0; outputs],
            };
            layers.push(KernelLayer { weights, bias, inputs, outputs });
        }
        Ok(layers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use burn_ndarray::{NdArray, NdArrayDevice};

    type B = NdArray<f32>;

    /// How far the inference kernel may be from burn's own forward pass, relative to the larger
    /// of 1 and the output's size. burn sums each product with its matrix kernel's order and
    /// instructions and adds the bias separately, and has its own `erf`, `tanh` and sigmoid: the
    /// two agree to float32 rounding, not bit for bit.
    const BURN_AGREEMENT: f32 = 1e-5;

    /// Deterministic values in about [-2, 2), some exactly zero.
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

    #[test]
    fn the_kernel_agrees_with_burns_forward_pass_within_the_tolerance() {
        let device = NdArrayDevice::Cpu;
        B::seed(&device, 11);
        for activation in [ActivationKind::Relu, ActivationKind::Gelu, ActivationKind::Tanh, ActivationKind::Silu] {
            // Odd sizes, wide layers (past any matrix kernel's block depth), 1 to 4 outputs.
            for (n_features, hidden_layers, n_outputs) in [
                (26, vec![64, 64], 1),
                (9, vec![32, 32], 3),
                (5, vec![], 2),
                (300, vec![257, 7], 1),
                (255, vec![17], 4),
            ] {
                let config =
                    MlpConfig { n_features, hidden_layers: hidden_layers.clone(), n_outputs, activation, dropout: 0.0 };
                let mlp = config.init::<B>(&device);
                let network = mlp.to_network().expect("a network of its own layers");
                assert_eq!(network.multiply_adds_per_row(), config.multiply_adds_per_row());
                for n_rows in [1, 17, 517] {
                    let rows = values(n_rows * n_features, (n_rows * 31 + n_features) as u64);
                    let mut columns = vec![0.0f32; rows.len()];
                    for (i, &value) in rows.iter().enumerate() {
                        columns[(i % n_features) * n_rows + i / n_features] = value;
                    }
                    let burn = mlp.forward(Tensor::from_data(TensorData::new(rows, [n_rows, n_features]), &device));
                    let burn = burn.into_data().to_vec::<f32>().expect("f32 outputs");
                    let ours = network.forward(&columns, n_rows);
                    assert_eq!(ours.len(), burn.len());
                    for (a, b) in ours.iter().zip(&burn) {
                        let scale = b.abs().max(1.0);
                        assert!(
                            (a - b).abs() <= BURN_AGREEMENT * scale,
                            "{activation:?} {n_features} -> {hidden_layers:?} -> {n_outputs}, {n_rows} rows: {a} vs {b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_layer_without_bias_runs_with_zeros() {
        let device = NdArrayDevice::Cpu;
        let mut mlp = MlpConfig {
            n_features: 3,
            hidden_layers: vec![4],
            n_outputs: 1,
            activation: ActivationKind::Relu,
            dropout: 0.0,
        }
        .init::<B>(&device);
        mlp.output.bias = None;
        let rows = vec![0.5, -1.0, 2.0];
        let burn = mlp.forward(Tensor::from_data(TensorData::new(rows.clone(), [1, 3]), &device));
        let burn = burn.into_data().to_vec::<f32>().expect("f32 outputs");
        let ours = mlp.to_network().expect("a network").forward(&rows, 1);
        assert!((ours[0] - burn[0]).abs() <= BURN_AGREEMENT * burn[0].abs().max(1.0), "{ours:?} vs {burn:?}");
    }
}
