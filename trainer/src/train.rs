//! The training loop: burn autodiff and Adam over preprocessed features, mini-batches shuffled
//! by a seeded generator, validation after every epoch, early stopping on validation loss, and
//! the best epoch's weights kept. Generic over the autodiff backend (CPU or CUDA).

use burn::module::AutodiffModule;
use burn::optim::decay::WeightDecayConfig;
use burn::optim::{AdamConfig, GradientsParams, Optimizer};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Int, Tensor, TensorData, activation};
use indicatif::ProgressBar;
use shared_inference::artifact::record_weights;
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
    fn upload(data: &Prepared, n_features: usize, device: &B::Device) -> Self {
        let features = Tensor::from_data(TensorData::new(data.features.clone(), [data.n_rows, n_features]), device);
        let (classes, values) = match &data.targets {
            Targets::Classes(c) => (Some(Tensor::from_data(TensorData::new(c.clone(), [data.n_rows]), device)), None),
            Targets::Values(v) => (None, Some(Tensor::from_data(TensorData::new(v.clone(), [data.n_rows, 1]), device))),
        };
        Self { features, classes, values }
    }
}

/// Mean loss of `outputs` against the rows' targets: cross-entropy for classes, squared
/// error for values.
fn loss<B: Backend>(
    outputs: Tensor<B, 2>,
    classes: Option<Tensor<B, 1, Int>>,
    values: Option<Tensor<B, 2>>,
) -> Tensor<B, 1> {
    match (classes, values) {
        (Some(classes), _) => {
            let n = classes.dims()[0];
            let log_probabilities = activation::log_softmax(outputs, 1);
            log_probabilities.gather(1, classes.reshape([n, 1])).mean().neg()
        }
        (None, Some(values)) => (outputs - values).powi_scalar(2).mean(),
        (None, None) => unreachable!("prepared data always has targets"),
    }
}

/// Trains `network` on `train`, validating on `validation` after every epoch.
pub fn fit<B: AutodiffBackend>(
    device: &B::Device,
    config: &TrainConfig,
    network: &MlpConfig,
    target_transform: &TargetTransform,
    train: &Prepared,
    validation: &Prepared,
    progress: &ProgressBar,
) -> anyhow::Result<Trained> {
    B::seed(device, config.seed);
    let mut model: Mlp<B> = network.init(device);
    let weight_decay = (config.weight_decay > 0.0).then(|| WeightDecayConfig::new(config.weight_decay as f32));
    let mut optimizer = AdamConfig::new().with_weight_decay(weight_decay).init();

    let train_data = DeviceData::<B>::upload(train, network.n_features, device);
    let valid_data = DeviceData::<B::InnerBackend>::upload(validation, network.n_features, device);
    let mut rng = Rng::new(config.seed ^ 0x5EED);
    let mut order: Vec<i64> = (0..train.n_rows as i64).collect();

    let mut best: Option<(f64, Mlp<B::InnerBackend>, usize)> = None;
    let mut history = Vec::new();
    let mut since_best = 0;
    progress.set_length(config.epochs as u64);
    for epoch in 0..config.epochs {
        let started = std::time::Instant::now();
        let learning_rate = config.learning_rate_at(epoch);
        rng.shuffle(&mut order);
        // Summed on the device and read once per epoch: reading every batch's loss would make
        // each step wait for the GPU.
        let mut loss_sum = Tensor::<B::InnerBackend, 1>::zeros([1], device);
        for batch in order.chunks(config.batch_size) {
            let indices = Tensor::<B, 1, Int>::from_data(TensorData::new(batch.to_vec(), [batch.len()]), device);
            let outputs = model.forward(train_data.features.clone().select(0, indices.clone()));
            let classes = train_data.classes.clone().map(|c| c.select(0, indices.clone()));
            let values = train_data.values.clone().map(|v| v.select(0, indices.clone()));
            let batch_loss = loss(outputs, classes, values);
            loss_sum = loss_sum + batch_loss.clone().inner().mul_scalar(batch.len() as f32);
            let gradients = GradientsParams::from_grads(batch_loss.backward(), &model);
            model = optimizer.step(learning_rate, model, gradients);
        }
        let train_loss = f64::from(loss_sum.into_scalar().elem::<f32>()) / train.n_rows.max(1) as f64;

        let inference = model.valid();
        let outputs = inference.forward(valid_data.features.clone());
        let validation_loss = f64::from(
            loss(outputs.clone(), valid_data.classes.clone(), valid_data.values.clone()).into_scalar().elem::<f32>(),
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
    let weights = record_weights(best_model)?;
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
