//! The MLP, generic over the burn backend: its configuration (saved in the manifest) and its
//! forward pass. Training wraps the same module in an autodiff backend; inference runs it as is.

use burn_core as burn;

use burn::module::Module;
use burn::tensor::activation;
use burn::tensor::{Tensor, backend::Backend};
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
