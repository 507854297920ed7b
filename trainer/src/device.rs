//! Choosing where to train: `cpu` (burn-ndarray), `cuda` (burn-cuda, when built with the `cuda`
//! feature and a GPU is usable) or `auto` (CUDA when usable, else CPU, saying which and why).

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

/// Resolves a request, probing the GPU when CUDA is wanted. The reason a GPU is unusable is
/// returned with the CPU choice under `auto`, and is the error under `cuda`.
pub fn select(request: DeviceRequest) -> anyhow::Result<(Device, Option<String>)> {
    match request {
        DeviceRequest::Cpu => Ok((Device::Cpu, None)),
        DeviceRequest::Cuda => match probe_cuda() {
            Ok(()) => Ok((Device::Cuda, None)),
            Err(reason) => bail!("--device cuda: no usable CUDA device: {reason}"),
        },
        DeviceRequest::Auto => match probe_cuda() {
            Ok(()) => Ok((Device::Cuda, None)),
            Err(reason) => Ok((Device::Cpu, Some(reason))),
        },
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
