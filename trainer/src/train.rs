//! The training loop: burn autodiff and Adam over preprocessed features, mini-batches shuffled
//! by a seeded generator, validation after every epoch, early stopping on validation loss, and
//! the best epoch's weights kept. Generic over the autodiff backend (CPU or CUDA).
//!
//! An ensemble of `k` members is trained as one network `k` times as wide whose layers after
//! the first are block-diagonal: each member sees only its own hidden units, so the members are
//! independent networks from independent initial weights, trained on the mean of their own
//! losses, in one pass per batch. At the end the output layer is folded into the average of the
//! members' outputs, and the artifact holds an ordinary (wide) MLP: serving, the ONNX export and
//! parity need nothing new.

use burn::module::{AutodiffModule, Param};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData, activation};
use indicatif::ProgressBar;
use shared_inference::artifact::record_weights;
use shared_inference::kernel::KernelLayer;
use shared_inference::{Mlp, MlpConfig, TargetTransform};

use crate::config::TrainConfig;
use crate::split::Rng;

/// What the network learns to predict, already on the training scale.
#[derive(Debug, Clone)]
pub enum Targets {
    /// Class indices.
    Classes(Vec<i64>),
    /// The transformed regression target.
    Values(Vec<f32>),
}

/// Preprocessed rows: `features [n_rows, n_features]` and their targets.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub features: Vec<f32>,
    pub n_rows: usize,
    pub targets: Targets,
}

/// One epoch's record.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    pub epoch: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    /// Accuracy for classification, RMSE in original units for regression.
    pub validation_metric: f64,
    pub seconds: f64,
}

impl EpochStats {
    /// The epoch as the artifact's provenance records it.
    pub fn record(&self) -> shared_inference::artifact::EpochRecord {
        shared_inference::artifact::EpochRecord {
            epoch: self.epoch,
            train_loss: self.train_loss,
            validation_loss: self.validation_loss,
            validation_metric: self.validation_metric,
            seconds: self.seconds,
        }
    }
}

/// The outcome: the best epoch's weights, serialized for the artifact.
#[derive(Debug, Clone)]
pub struct Trained {
    pub weights: Vec<u8>,
    pub best_epoch: usize,
    pub history: Vec<EpochStats>,
}

struct DeviceData<B: Backend> {
    features: Tensor<B, 2>,
    classes: Option<Tensor<B, 1, Int>>,
    values: Option<Tensor<B, 2>>,
}

impl<B: Backend> DeviceData<B> {
    /// Moves the rows onto the device once: every batch is then drawn there.
    fn upload(data: Prepared, n_features: usize, device: &B::Device) -> Self {
        let n_rows = data.n_rows;
        let features = Tensor::from_data(TensorData::new(data.features, [n_rows, n_features]), device);
        let (classes, values) = match data.targets {
            Targets::Classes(c) => (Some(Tensor::from_data(TensorData::new(c, [n_rows]), device)), None),
            Targets::Values(v) => (None, Some(Tensor::from_data(TensorData::new(v, [n_rows, 1]), device))),
        };
        Self { features, classes, values }
    }
}

/// Mean loss of `outputs [n, members * n_outputs]` against the rows' targets, over rows and
/// members: cross-entropy (with `smoothing` of each target spread evenly over the classes) for
/// classes, squared error for values.
fn loss<B: Backend>(
    outputs: Tensor<B, 2>,
    classes: Option<Tensor<B, 1, Int>>,
    values: Option<Tensor<B, 2>>,
    members: usize,
    smoothing: f64,
) -> Tensor<B, 1> {
    match (classes, values) {
        (Some(classes), _) => {
            let [n, width] = outputs.dims();
            let n_classes = width / members;
            // Row r's member m is row r * members + m.
            let log_probabilities = activation::log_softmax(outputs.reshape([n * members, n_classes]), 1);
            let targets = classes.reshape([n, 1]).repeat_dim(1, members).reshape([n * members, 1]);
            let picked = log_probabilities.clone().gather(1, targets).mean().neg();
            if smoothing > 0.0 {
                let spread = log_probabilities.mean().neg();
                picked.mul_scalar(1.0 - smoothing) + spread.mul_scalar(smoothing)
            } else {
                picked
            }
        }
        // `values [n, 1]` broadcasts over the members.
        (None, Some(values)) => (outputs - values).powi_scalar(2).mean(),
        (None, None) => unreachable!("prepared data always has targets"),
    }
}

/// The members' block structure: one 0/1 mask per layer after the first, `[inputs, outputs]`,
/// that keeps each member's weights and zeroes the rest. Empty for a single network.
#[derive(Debug, Clone)]
struct Blocks {
    members: usize,
    masks: Vec<Vec<f32>>,
    shapes: Vec<[usize; 2]>,
}

impl Blocks {
    /// For members of hidden widths `member.hidden_layers` and `member.n_outputs` outputs.
    fn new(member: &MlpConfig, members: usize) -> Self {
        let mut widths: Vec<usize> = member.hidden_layers.clone();
        widths.push(member.n_outputs);
        let mut masks = Vec::new();
        let mut shapes = Vec::new();
        if members > 1 {
            for pair in widths.windows(2) {
                let (inputs, outputs) = (pair[0], pair[1]);
                let (rows, columns) = (inputs * members, outputs * members);
                let mut mask = vec![0.0f32; rows * columns];
                for m in 0..members {
                    for i in 0..inputs {
                        let row = (m * inputs + i) * columns + m * outputs;
                        mask[row..row + outputs].fill(1.0);
                    }
                }
                masks.push(mask);
                shapes.push([rows, columns]);
            }
        }
        Self { members, masks, shapes }
    }

    fn tensors<B: Backend>(&self, device: &B::Device) -> Vec<Tensor<B, 2>> {
        self.masks
            .iter()
            .zip(&self.shapes)
            .map(|(mask, shape)| Tensor::from_data(TensorData::new(mask.clone(), *shape), device))
            .collect()
    }
}

/// The network of `members` independent members side by side: each member initialized as a
/// network of its own would be (the fan-in of its own layers), placed on the block diagonal.
fn init_members<B: Backend>(member: &MlpConfig, members: usize, device: &B::Device) -> anyhow::Result<Mlp<B>> {
    if members == 1 {
        return Ok(member.init(device));
    }
    let parts: Vec<Vec<KernelLayer>> = (0..members)
        .map(|_| member.init::<B>(device).kernel_layers().map_err(|e| anyhow::anyhow!("{e}")))
        .collect::<anyhow::Result<_>>()?;
    let n_layers = parts[0].len();
    let layers: Vec<KernelLayer> = (0..n_layers)
        .map(|l| {
            let first = &parts[0][l];
            // The first layer reads the shared features; later ones read only their member's units.
            let inputs = if l == 0 { first.inputs } else { first.inputs * members };
            let outputs = first.outputs * members;
            let mut weights = vec![0.0f32; inputs * outputs];
            let mut bias = Vec::with_capacity(outputs);
            for (m, part) in parts.iter().enumerate() {
                let layer = &part[l];
                let row_offset = if l == 0 { 0 } else { m * layer.inputs };
                for i in 0..layer.inputs {
                    let from = &layer.weights[i * layer.outputs..(i + 1) * layer.outputs];
                    let at = (row_offset + i) * outputs + m * layer.outputs;
                    weights[at..at + layer.outputs].copy_from_slice(from);
                }
                bias.extend_from_slice(&layer.bias);
            }
            KernelLayer { weights, bias, inputs, outputs }
        })
        .collect();
    let wide = MlpConfig {
        hidden_layers: member.hidden_layers.iter().map(|w| w * members).collect(),
        n_outputs: member.n_outputs * members,
        ..member.clone()
    };
    Ok(with_layers(wide.init(device), &layers, device))
}

/// `model` with every layer's weights and bias replaced by `layers` (same shapes).
fn with_layers<B: Backend>(mut model: Mlp<B>, layers: &[KernelLayer], device: &B::Device) -> Mlp<B> {
    let linear = |layer: &KernelLayer| burn::nn::Linear {
        weight: Param::from_tensor(Tensor::from_data(
            TensorData::new(layer.weights.clone(), [layer.inputs, layer.outputs]),
            device,
        )),
        bias: Some(Param::from_tensor(Tensor::from_data(TensorData::new(layer.bias.clone(), [layer.outputs]), device))),
    };
    let (output, hidden) = layers.split_last().expect("a network has an output layer");
    model.hidden = hidden.iter().map(linear).collect();
    model.output = linear(output);
    model
}

/// The members' forward pass: as `Mlp::forward`, each layer after the first masked to the
/// block diagonal. `[n, n_features] -> [n, members * n_outputs]`.
fn forward_members<B: Backend>(model: &Mlp<B>, masks: &[Tensor<B, 2>], features: Tensor<B, 2>) -> Tensor<B, 2> {
    if masks.is_empty() {
        return model.forward(features);
    }
    let layer = |x: Tensor<B, 2>, linear: &burn::nn::Linear<B>, mask: Option<&Tensor<B, 2>>| {
        let weight = match mask {
            Some(mask) => linear.weight.val() * mask.clone(),
            None => linear.weight.val(),
        };
        let y = x.matmul(weight);
        match &linear.bias {
            Some(bias) => y + bias.val().unsqueeze_dim(0),
            None => y,
        }
    };
    let mut x = features;
    for (i, linear) in model.hidden.iter().enumerate() {
        let mask = i.checked_sub(1).map(|i| &masks[i]);
        x = model.dropout.forward(model.activation.apply(layer(x, linear, mask)));
    }
    layer(x, &model.output, masks.last())
}

/// The members' outputs averaged: `[n, members * n_outputs] -> [n, n_outputs]`.
fn average_members<B: Backend>(outputs: Tensor<B, 2>, members: usize) -> Tensor<B, 2> {
    if members == 1 {
        return outputs;
    }
    let [n, width] = outputs.dims();
    outputs.reshape([n, members, width / members]).mean_dim(1).reshape([n, width / members])
}

/// The trained members as one ordinary MLP: the hidden layers with the off-block weights
/// zeroed, and the output layer folded into the members' average.
fn fold_members<B: Backend>(model: Mlp<B>, blocks: &Blocks, device: &B::Device) -> anyhow::Result<Mlp<B>> {
    let members = blocks.members;
    if members == 1 {
        return Ok(model);
    }
    let mut layers = model.kernel_layers().map_err(|e| anyhow::anyhow!("{e}"))?;
    for (layer, mask) in layers.iter_mut().skip(1).zip(&blocks.masks) {
        for (w, m) in layer.weights.iter_mut().zip(mask) {
            *w *= m;
        }
    }
    let output = layers.last_mut().expect("an output layer");
    let n_outputs = output.outputs / members;
    let scale = 1.0 / members as f32;
    let mut weights = vec![0.0f32; output.inputs * n_outputs];
    for row in 0..output.inputs {
        // Row `row` belongs to member `row / hidden`, whose outputs start at `member * n_outputs`.
        let member = row / (output.inputs / members);
        for o in 0..n_outputs {
            weights[row * n_outputs + o] = output.weights[row * output.outputs + member * n_outputs + o] * scale;
        }
    }
    let bias: Vec<f32> =
        (0..n_outputs).map(|o| (0..members).map(|m| output.bias[m * n_outputs + o]).sum::<f32>() * scale).collect();
    *output = KernelLayer { weights, bias, inputs: output.inputs, outputs: n_outputs };
    let folded = MlpConfig {
        n_features: layers[0].inputs,
        hidden_layers: layers[..layers.len() - 1].iter().map(|l| l.outputs).collect(),
        n_outputs,
        activation: model.activation,
        dropout: 0.0,
    };
    Ok(with_layers(folded.init(device), &layers, device))
}

/// Trains `network` (the served shape: `config.ensemble` members side by side) on `train`,
/// validating on `validation` after every epoch.
pub fn fit<B: AutodiffBackend>(
    device: &B::Device,
    config: &TrainConfig,
    network: &MlpConfig,
    target_transform: &TargetTransform,
    train: Prepared,
    validation: &Prepared,
    progress: &ProgressBar,
) -> anyhow::Result<Trained> {
    B::seed(device, config.seed);
    let members = config.ensemble;
    let member =
        MlpConfig { hidden_layers: network.hidden_layers.iter().map(|w| w / members).collect(), ..network.clone() };
    let blocks = Blocks::new(&member, members);
    let masks = blocks.tensors::<B>(device);
    let inner_masks = blocks.tensors::<B::InnerBackend>(device);
    let mut model: Mlp<B> = init_members(&member, members, device)?;
    let weight_decay = (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    let mut optimizer = AdamConfig::new().with_weight_decay(weight_decay).init();

    let n_rows = train.n_rows;
    let train_data = DeviceData::<B>::upload(train, network.n_features, device);
    let valid_data = DeviceData::<B::InnerBackend>::upload(validation.clone(), network.n_features, device);
    let mut rng = Rng::new(config.seed ^ 0x5EED);
    let mut order: Vec<i64> = (0..n_rows as i64).collect();

    let mut best: Option<(f64, Mlp<B::InnerBackend>, usize)> = None;
    let mut history = Vec::new();
    let mut since_best = 0;
    progress.set_length(config.epochs as u64);
    for epoch in 0..config.epochs {
        let started = std::time::Instant::now();
        let learning_rate = config.learning_rate_at(epoch);
        rng.shuffle(&mut order);
        // The epoch's order goes to the device once and each batch is a slice of it: no copy
        // from the host per step. The loss is summed on the device and read once per epoch:
        // reading every batch's loss would make each step wait for the GPU.
        let epoch_order = Tensor::<B, 1, Int>::from_data(TensorData::new(order.clone(), [n_rows]), device);
        let mut loss_sum = Tensor::<B::InnerBackend, 1>::zeros([1], device);
        for start in (0..n_rows).step_by(config.batch_size.max(1)) {
            let end = (start + config.batch_size).min(n_rows);
            let batch_rows = end - start;
            let indices = epoch_order.clone().narrow(0, start, batch_rows);
            let outputs = forward_members(&model, &masks, train_data.features.clone().select(0, indices.clone()));
            let classes = train_data.classes.clone().map(|c| c.select(0, indices.clone()));
            let values = train_data.values.clone().map(|v| v.select(0, indices.clone()));
            let batch_loss = loss(outputs, classes, values, members, config.label_smoothing);
            loss_sum = loss_sum + batch_loss.clone().inner().mul_scalar(batch_rows as f32);
            let gradients = GradientsParams::from_grads(batch_loss.backward(), &model);
            model = optimizer.step(learning_rate, model, gradients);
        }
        let train_loss = f64::from(loss_sum.into_scalar().elem::<f32>()) / n_rows.max(1) as f64;

        // Validation scores what will be served: the members' average, without smoothing.
        let inference = model.valid();
        let outputs = average_members(forward_members(&inference, &inner_masks, valid_data.features.clone()), members);
        let validation_loss = f64::from(
            loss(outputs.clone(), valid_data.classes.clone(), valid_data.values.clone(), 1, 0.0)
                .into_scalar()
                .elem::<f32>(),
        );
        let outputs: Vec<f32> = outputs
            .into_data()
            .convert::<f32>()
            .into_vec()
            .map_err(|e| anyhow::anyhow!("reading the validation outputs as f32: {e:?}"))?;
        let validation_metric = validation_metric(&outputs, validation, network.n_outputs, target_transform);
        anyhow::ensure!(
            train_loss.is_finite() && validation_loss.is_finite(),
            "training diverged at epoch {} (loss {train_loss}); lower training.learning_rate",
            epoch + 1
        );
        let stats = EpochStats {
            epoch: epoch + 1,
            train_loss,
            validation_loss,
            validation_metric,
            seconds: started.elapsed().as_secs_f64(),
        };
        let metric_name = if network.n_outputs > 1 { "val_acc" } else { "val_rmse" };
        progress.set_message(format!(
            "loss {train_loss:.4}  val_loss {validation_loss:.4}  {metric_name} {validation_metric:.4}"
        ));
        progress.inc(1);
        history.push(stats);

        if best.as_ref().is_none_or(|(loss, _, _)| validation_loss < *loss) {
            best = Some((validation_loss, inference, epoch + 1));
            since_best = 0;
        } else {
            since_best += 1;
            if config.early_stopping_patience > 0 && since_best >= config.early_stopping_patience {
                break;
            }
        }
    }
    let (_, best_model, best_epoch) = best.ok_or_else(|| anyhow::anyhow!("no epoch was run"))?;
    let weights = record_weights(fold_members(best_model, &blocks, device)?)?;
    Ok(Trained { weights, best_epoch, history })
}

fn validation_metric(outputs: &[f32], data: &Prepared, n_outputs: usize, transform: &TargetTransform) -> f64 {
    match &data.targets {
        Targets::Classes(classes) => {
            let correct = outputs
                .chunks_exact(n_outputs)
                .zip(classes)
                .filter(|(row, class)| {
                    let argmax = row.iter().enumerate().fold(0, |b, (i, &v)| if v > row[b] { i } else { b });
                    argmax as i64 == **class
                })
                .count();
            correct as f64 / data.n_rows.max(1) as f64
        }
        Targets::Values(values) => {
            let squared: f64 =
                outputs.iter().zip(values).map(|(&o, &v)| (transform.inverse(o) - transform.inverse(v)).powi(2)).sum();
            (squared / data.n_rows.max(1) as f64).sqrt()
        }
    }
}
