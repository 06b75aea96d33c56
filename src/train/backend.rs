//! Picks the burn backend at run time from `train.device`, so model and loop code stay generic.

use crate::kernels::TrainBackend;
use burn::backend::{Autodiff, Flex};

use crate::config::DeviceSpec;

/// Work that runs on whichever autodiff backend the device string picks.
pub trait BackendTask {
    type Output;
    fn run<B: TrainBackend>(self, device: B::Device, label: String) -> Self::Output;
}

/// Why a device cannot be used by this build.
#[derive(Debug, thiserror::Error)]
#[error("train.device = \"{device}\" needs vitrun built with `--features {feature}` ({hint})")]
pub struct MissingBackend {
    device: String,
    feature: &'static str,
    hint: &'static str,
}

/// The backends this binary was built with, as `vitrun --version` prints them.
#[cfg(all(feature = "cuda", feature = "tch"))]
pub const BACKENDS: &str = "cpu (burn-flex), cuda (burn-cuda), tch (LibTorch)";
#[cfg(all(feature = "cuda", not(feature = "tch")))]
pub const BACKENDS: &str = "cpu (burn-flex), cuda (burn-cuda)";
#[cfg(all(feature = "tch", not(feature = "cuda")))]
pub const BACKENDS: &str = "cpu (burn-flex), tch (LibTorch)";
#[cfg(not(any(feature = "cuda", feature = "tch")))]
pub const BACKENDS: &str = "cpu (burn-flex)";

/// Whether this binary can train on a GPU (the `cuda` or `tch` feature).
pub const HAS_GPU_BACKEND: bool = cfg!(feature = "cuda") || cfg!(feature = "tch");

/// Whether a binary whose `vitrun --version` printed `version` can train on a GPU.
pub fn version_has_gpu_backend(version: &str) -> bool {
    version
        .split_once("backends:")
        .is_some_and(|(_, list)| list.contains("cuda") || list.contains("tch"))
}

/// `e`, naming the experiment file and where its `train.device` was set.
pub fn in_experiment(loaded: &crate::config::Loaded, e: MissingBackend) -> anyhow::Error {
    let from = loaded
        .sources
        .get("train.device")
        .map_or("default".to_string(), ToString::to_string);
    anyhow::Error::new(e).context(format!(
        "{} (train.device from {from})",
        loaded.file.display()
    ))
}

/// Whether this binary has the backend `spec` runs on (`auto` falls back to the CPU); the
/// error says which feature it needs.
pub fn supports(spec: DeviceSpec) -> Result<(), MissingBackend> {
    let missing = |feature: &'static str, hint: &'static str| MissingBackend {
        device: spec.to_string(),
        feature,
        hint,
    };
    match spec {
        DeviceSpec::Cuda(_) if !cfg!(feature = "cuda") => {
            Err(missing("cuda", "burn-cuda; the CUDA toolkit at run time"))
        }
        DeviceSpec::TchCpu | DeviceSpec::TchCuda(_) if !cfg!(feature = "tch") => Err(missing(
            "tch",
            "burn-tch; LibTorch via LIBTORCH or LIBTORCH_USE_PYTORCH=1 with torch installed",
        )),
        _ => Ok(()),
    }
}

/// Resolves `auto`: a compiled-in GPU backend when a GPU is visible, else the CPU.
pub fn resolve_auto(spec: DeviceSpec) -> DeviceSpec {
    if spec != DeviceSpec::Auto {
        return spec;
    }
    let gpu = std::path::Path::new("/dev/nvidia0").exists();
    if gpu && cfg!(feature = "tch") {
        DeviceSpec::TchCuda(0)
    } else if gpu && cfg!(feature = "cuda") {
        DeviceSpec::Cuda(0)
    } else {
        DeviceSpec::Cpu
    }
}

/// Runs `task` on the backend `spec` names.
pub fn dispatch<T: BackendTask>(spec: DeviceSpec, task: T) -> Result<T::Output, MissingBackend> {
    let spec = resolve_auto(spec);
    let label = spec.to_string();
    match spec {
        DeviceSpec::Auto | DeviceSpec::Cpu => {
            Ok(task.run::<Autodiff<Flex>>(Default::default(), label))
        }
        DeviceSpec::Cuda(index) => cuda(task, index, label),
        DeviceSpec::TchCpu => tch(task, None, label),
        DeviceSpec::TchCuda(index) => tch(task, Some(index), label),
    }
}

#[cfg(feature = "cuda")]
fn cuda<T: BackendTask>(task: T, index: usize, label: String) -> Result<T::Output, MissingBackend> {
    use burn::backend::cuda::{Cuda, CudaDevice};
    Ok(task.run::<Autodiff<Cuda>>(CudaDevice::new(index), label))
}

#[cfg(not(feature = "cuda"))]
fn cuda<T: BackendTask>(
    _task: T,
    index: usize,
    _label: String,
) -> Result<T::Output, MissingBackend> {
    Err(MissingBackend {
        device: format!("cuda:{index}"),
        feature: "cuda",
        hint: "burn-cuda; the CUDA toolkit at run time",
    })
}

#[cfg(feature = "tch")]
fn tch<T: BackendTask>(
    task: T,
    gpu: Option<usize>,
    label: String,
) -> Result<T::Output, MissingBackend> {
    use burn::backend::libtorch::{LibTorch, LibTorchDevice};
    let device = match gpu {
        Some(i) => LibTorchDevice::Cuda(i),
        None => LibTorchDevice::Cpu,
    };
    Ok(task.run::<Autodiff<LibTorch>>(device, label))
}

#[cfg(not(feature = "tch"))]
fn tch<T: BackendTask>(
    _task: T,
    gpu: Option<usize>,
    _label: String,
) -> Result<T::Output, MissingBackend> {
    Err(MissingBackend {
        device: gpu
            .map(|i| format!("tch-cuda:{i}"))
            .unwrap_or("tch-cpu".into()),
        feature: "tch",
        hint: "burn-tch; LibTorch via LIBTORCH or LIBTORCH_USE_PYTORCH=1 with torch installed",
    })
}
