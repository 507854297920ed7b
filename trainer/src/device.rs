//! Choosing where to train: `cpu` (burn-ndarray), `cuda` (burn-cuda, when built with the `cuda`
//! feature and a GPU is usable) or `auto` (CUDA when the model's steps are large enough for a
//! GPU to pay for itself and one is usable, else the CPU; saying which and why).

use anyhow::bail;

/// What the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Cuda,
}

/// What training will run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Cuda,
}

impl Device {
    pub fn describe(self) -> &'static str {
        match self {
            Device::Cpu => "cpu (burn-ndarray)",
            Device::Cuda => "cuda:0 (burn-cuda)",
        }
    }
}

/// The arithmetic of one training step, which decides whether a GPU can pay for itself.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Work {
    /// Weights and biases of the network.
    pub parameters: usize,
    /// Rows per step.
    pub batch_size: usize,
    /// Steps per epoch.
    pub steps: usize,
}

/// Under `--device auto`, CUDA is chosen only when one step's forward pass is at least this
/// many multiply-adds (batch rows x weights). Below it a GPU spends its time launching and
/// waiting on small kernels: on an H100 the diamonds recipe (128 rows x 5,800 weights, 7e5 per
/// step) ran 4.4x slower on CUDA than on the CPU, and 512-512-512 at batch 1,024 (5.5e8 per
/// step) was the first shape measured faster (1.17x), BENCHMARKS.md "Training on GPU (CUDA)".
pub const CUDA_MIN_STEP_MULTIPLY_ADDS: f64 = 5e8;

impl Work {
    pub fn new(network: &shared_inference::MlpConfig, batch_size: usize, n_rows: usize) -> Self {
        let mut widths = vec![network.n_features];
        widths.extend(&network.hidden_layers);
        widths.push(network.n_outputs);
        let parameters = widths.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        let batch_size = batch_size.max(1).min(n_rows.max(1));
        Self { parameters, batch_size, steps: n_rows.div_ceil(batch_size) }
    }

    /// Multiply-adds of one step's forward pass.
    pub fn step_multiply_adds(&self) -> f64 {
        self.parameters as f64 * self.batch_size as f64
    }

    fn describe(&self) -> String {
        format!(
            "a training step is {} rows x {} weights = {:.1e} multiply-adds",
            self.batch_size,
            self.parameters,
            self.step_multiply_adds()
        )
    }
}

/// Resolves a request for the training `work` at hand. Returns the device and, under `auto`,
/// why it was chosen; under `cuda` a GPU that is not usable is an error saying why.
pub fn select(request: DeviceRequest, work: &Work) -> anyhow::Result<(Device, Option<String>)> {
    match request {
        DeviceRequest::Cpu => Ok((Device::Cpu, None)),
        DeviceRequest::Cuda => match probe_cuda() {
            Ok(()) => Ok((Device::Cuda, None)),
            Err(reason) => bail!("--device cuda: no usable CUDA device: {reason}"),
        },
        DeviceRequest::Auto => Ok(choose(work, probe_cuda)),
    }
}

/// `auto`'s rule: the CPU for small steps (without probing the GPU), CUDA for large ones when
/// a GPU is usable, each with its reason.
fn choose(work: &Work, probe: impl FnOnce() -> Result<(), String>) -> (Device, Option<String>) {
    if work.step_multiply_adds() < CUDA_MIN_STEP_MULTIPLY_ADDS {
        return (
            Device::Cpu,
            Some(format!(
                "auto: {}, below the {CUDA_MIN_STEP_MULTIPLY_ADDS:.0e} at which a GPU beats the CPU; \
                 --device cuda trains there anyway",
                work.describe()
            )),
        );
    }
    match probe() {
        Ok(()) => (
            Device::Cuda,
            Some(format!(
                "auto: {}, at least the {CUDA_MIN_STEP_MULTIPLY_ADDS:.0e} at which a GPU beats the CPU; \
                 --device cpu trains on the CPU",
                work.describe()
            )),
        ),
        Err(reason) => (Device::Cpu, Some(format!("auto: CUDA would suit this model but is not used: {reason}"))),
    }
}

#[cfg(feature = "cuda")]
fn probe_cuda() -> Result<(), String> {
    use burn::backend::Cuda;
    use burn::backend::cuda::CudaDevice;
    use burn::tensor::Tensor;

    // Without a driver, cudarc cannot even load libcuda; check that first, quietly.
    let candidates = ["libcuda.so.1", "libcuda.so"];
    let found = candidates.iter().any(|name| {
        [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/usr/local/nvidia/lib64",
            "/usr/lib/wsl/lib",
            "/usr/local/cuda/lib64",
        ]
        .iter()
        .any(|dir| std::path::Path::new(dir).join(name).exists())
    }) || std::env::var("LD_LIBRARY_PATH")
        .unwrap_or_default()
        .split(':')
        .any(|dir| candidates.iter().any(|name| std::path::Path::new(dir).join(name).exists()));
    if !found {
        return Err("the NVIDIA driver library libcuda.so was not found".into());
    }
    // burn-cuda panics on the first operation when the device is unusable: run one tiny
    // operation with the panic message silenced and turn a panic into a reason.
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let outcome = std::panic::catch_unwind(|| {
        let device = CudaDevice::default();
        let x = Tensor::<Cuda, 1>::from_floats([1.0, 2.0], &device);
        (x * 2.0).into_data().to_vec::<f32>()
    });
    std::panic::set_hook(previous);
    match outcome {
        Ok(Ok(values)) if values == [2.0, 4.0] => Ok(()),
        Ok(Ok(values)) => Err(format!("a test operation returned {values:?} instead of [2.0, 4.0]")),
        Ok(Err(e)) => Err(format!("{e:?}")),
        Err(panic) => Err(panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "the CUDA runtime failed to start".into())),
    }
}

#[cfg(not(feature = "cuda"))]
fn probe_cuda() -> Result<(), String> {
    Err("this trainer was built without the `cuda` feature (build it with `cargo build --release -p trainer --features cuda`)".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared_inference::{ActivationKind, MlpConfig};

    fn network(n_features: usize, hidden: &[usize]) -> MlpConfig {
        MlpConfig {
            n_features,
            hidden_layers: hidden.to_vec(),
            n_outputs: 1,
            activation: ActivationKind::Relu,
            dropout: 0.0,
        }
    }

    #[test]
    fn parameters_and_steps_are_counted() {
        let work = Work::new(&network(26, &[64, 64]), 128, 1000);
        assert_eq!(work.parameters, 26 * 64 + 64 + 64 * 64 + 64 + 64 + 1);
        assert_eq!(work.steps, 8);
        // A batch larger than the data is the data.
        assert_eq!(Work::new(&network(4, &[8]), 4096, 10).batch_size, 10);
    }

    #[test]
    fn auto_keeps_small_models_on_the_cpu_without_probing() {
        let diamonds = Work::new(&network(26, &[64, 64]), 128, 38_000);
        let (device, reason) = choose(&diamonds, || panic!("a small model must not probe the GPU"));
        assert_eq!(device, Device::Cpu);
        let reason = reason.expect("auto says why");
        assert!(reason.contains(&format!("128 rows x {} weights", diamonds.parameters)), "{reason}");
        assert!(reason.contains("--device cuda"), "{reason}");
    }

    #[test]
    fn auto_takes_a_usable_gpu_for_large_steps_and_says_why_not_otherwise() {
        let large = Work::new(&network(450, &[256, 256, 256]), 4096, 1_800_000);
        assert!(large.step_multiply_adds() >= CUDA_MIN_STEP_MULTIPLY_ADDS);
        let (device, reason) = choose(&large, || Ok(()));
        assert_eq!(device, Device::Cuda);
        assert!(reason.expect("a reason").contains("--device cpu"));
        let (device, reason) = choose(&large, || Err("no driver".into()));
        assert_eq!(device, Device::Cpu);
        assert!(reason.expect("a reason").contains("no driver"));
    }

    #[test]
    fn explicit_requests_are_obeyed() {
        let small = Work::new(&network(4, &[8]), 32, 100);
        assert_eq!(select(DeviceRequest::Cpu, &small).expect("cpu").0, Device::Cpu);
        #[cfg(not(feature = "cuda"))]
        {
            let error = select(DeviceRequest::Cuda, &small).expect_err("no cuda feature");
            assert!(error.to_string().contains("--features cuda"), "{error}");
        }
    }
}
