//! Picks the burn backend at run time from `train.device`, so model and loop code stay generic.

use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use burn::backend::{Autodiff, Flex};
use burn::tensor::FloatDType;

use super::gpus::{self, DeviceProblem};
use crate::config::{Config, DeviceSpec, Precision, TrainConfig};
use crate::kernels::{autocast, TrainBackend};

/// Work that runs on whichever autodiff backend the device string picks.
pub trait BackendTask {
    type Output;
    fn run<B: TrainBackend>(self, device: B::Device, label: String) -> Self::Output;
}

/// Why this binary, or this machine, cannot run a trial's `[train]` settings.
#[derive(Debug, thiserror::Error)]
pub enum Unsupported {
    #[error("train.device = \"{device}\" needs vitrun built with `--features {feature}` ({hint})")]
    Backend {
        device: String,
        feature: &'static str,
        hint: &'static str,
    },
    #[error("train.precision = \"{precision}\" needs a backend that computes in 16 bits (cuda:N, tch-cuda:N or tch-cpu), but this trial runs on {device} (burn-flex computes in f32 only); set train.precision = \"f32\", or train.device = \"cuda:0\" with a GPU build (`just build-gpu`)")]
    Precision {
        precision: &'static str,
        device: String,
    },
    #[error("train.device = {0}")]
    Device(#[from] DeviceProblem),
}

impl Unsupported {
    /// The experiment key the problem is about.
    pub fn key(&self) -> &'static str {
        match self {
            Unsupported::Precision { .. } => "train.precision",
            Unsupported::Backend { .. } | Unsupported::Device(_) => "train.device",
        }
    }
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

/// `e`, naming the experiment file and where the key it is about was set.
pub fn in_experiment(loaded: &crate::config::Loaded, e: Unsupported) -> anyhow::Error {
    let key = e.key();
    let from = loaded
        .sources
        .get(key)
        .map_or("default".to_string(), ToString::to_string);
    anyhow::Error::new(e).context(format!("{} ({key} from {from})", loaded.file.display()))
}

/// Whether this binary can run `train` (`auto` counts as the CPU in a binary without a GPU
/// backend; in one with, the machine decides at run time): the backend `train.device` needs,
/// and a 16-bit `train.precision` on a backend that computes in it.
pub fn supports(train: &TrainConfig) -> Result<(), Unsupported> {
    let spec = if HAS_GPU_BACKEND {
        train.device
    } else {
        resolve_auto(train.device)
    };
    supports_on(spec, train.precision)
}

fn supports_on(spec: DeviceSpec, precision: Precision) -> Result<(), Unsupported> {
    let missing = |feature: &'static str, hint: &'static str| Unsupported::Backend {
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
        DeviceSpec::Cpu if precision.is_mixed() => Err(Unsupported::Precision {
            precision: precision.name(),
            device: spec.to_string(),
        }),
        _ => Ok(()),
    }
}

/// The 16-bit format mixed precision computes in.
pub fn compute_dtype(precision: Precision) -> Option<FloatDType> {
    match precision {
        Precision::F32 => None,
        Precision::Bf16 => Some(FloatDType::BF16),
        Precision::F16 => Some(FloatDType::F16),
    }
}

/// Resolves `auto`: a compiled-in GPU backend when a GPU is visible (a driver, and
/// `CUDA_VISIBLE_DEVICES` not empty), else the CPU.
pub fn resolve_auto(spec: DeviceSpec) -> DeviceSpec {
    let hidden = std::env::var("CUDA_VISIBLE_DEVICES").is_ok_and(|v| v.trim().is_empty());
    let gpu = std::path::Path::new("/dev/nvidia0").exists() && !hidden;
    resolve_auto_on(spec, gpu)
}

/// [`resolve_auto`] where whether a GPU is visible is known (`vitrun doctor` asks
/// `nvidia-smi`): LibTorch's CUDA first, then burn-cuda, else the CPU.
pub fn resolve_auto_on(spec: DeviceSpec, gpu_visible: bool) -> DeviceSpec {
    if spec != DeviceSpec::Auto {
        return spec;
    }
    if gpu_visible && cfg!(feature = "tch") {
        DeviceSpec::TchCuda(0)
    } else if gpu_visible && cfg!(feature = "cuda") {
        DeviceSpec::Cuda(0)
    } else {
        DeviceSpec::Cpu
    }
}

/// Runs `task` for the trial `config` on the backend its `train.device` names, after checking
/// that this binary and this machine can (the GPU is there and large enough): a trial that
/// cannot run fails here, before it is claimed. Mixed precision is on for the task's thread,
/// and `train.grad_checkpointing` picks burn's balanced checkpointing strategy.
pub fn dispatch<T: BackendTask>(config: &Config, task: T) -> Result<T::Output, Unsupported> {
    let train = &config.train;
    let spec = resolve_auto(train.device);
    supports_on(spec, train.precision)?;
    if let DeviceSpec::Cuda(index) | DeviceSpec::TchCuda(index) = spec {
        let need = crate::config::estimate_device_memory(config);
        gpus::check(&spec.to_string(), index, gpus::visible(), Some(need))?;
    }
    let _mixed = autocast::enable(compute_dtype(train.precision));
    if train.grad_checkpointing {
        run_on::<T, BalancedCheckpointing>(spec, task)
    } else {
        run_on::<T, NoCheckpointing>(spec, task)
    }
}

fn run_on<T: BackendTask, C: CheckpointStrategy>(
    spec: DeviceSpec,
    task: T,
) -> Result<T::Output, Unsupported> {
    let label = spec.to_string();
    match spec {
        DeviceSpec::Auto | DeviceSpec::Cpu => {
            Ok(task.run::<Autodiff<Flex, C>>(Default::default(), label))
        }
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(index) => cuda::<T, C>(task, index, label),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(index) => cuda(task, index, label),
        #[cfg(feature = "tch")]
        DeviceSpec::TchCpu => tch::<T, C>(task, None, label),
        #[cfg(feature = "tch")]
        DeviceSpec::TchCuda(index) => tch::<T, C>(task, Some(index), label),
        #[cfg(not(feature = "tch"))]
        DeviceSpec::TchCpu => tch(task, None, label),
        #[cfg(not(feature = "tch"))]
        DeviceSpec::TchCuda(index) => tch(task, Some(index), label),
    }
}

#[cfg(feature = "cuda")]
fn cuda<T: BackendTask, C: CheckpointStrategy>(
    task: T,
    index: usize,
    label: String,
) -> Result<T::Output, Unsupported> {
    use burn::backend::cuda::{Cuda, CudaDevice};
    Ok(task.run::<Autodiff<Cuda, C>>(CudaDevice::new(index), label))
}

#[cfg(not(feature = "cuda"))]
fn cuda<T: BackendTask>(_task: T, index: usize, _label: String) -> Result<T::Output, Unsupported> {
    Err(Unsupported::Backend {
        device: format!("cuda:{index}"),
        feature: "cuda",
        hint: "burn-cuda; the CUDA toolkit at run time",
    })
}

#[cfg(feature = "tch")]
fn tch<T: BackendTask, C: CheckpointStrategy>(
    task: T,
    gpu: Option<usize>,
    label: String,
) -> Result<T::Output, Unsupported> {
    use burn::backend::libtorch::{LibTorch, LibTorchDevice};
    let device = match gpu {
        Some(i) => LibTorchDevice::Cuda(i),
        None => LibTorchDevice::Cpu,
    };
    Ok(task.run::<Autodiff<LibTorch, C>>(device, label))
}

#[cfg(not(feature = "tch"))]
fn tch<T: BackendTask>(
    _task: T,
    gpu: Option<usize>,
    _label: String,
) -> Result<T::Output, Unsupported> {
    Err(Unsupported::Backend {
        device: gpu
            .map(|i| format!("tch-cuda:{i}"))
            .unwrap_or("tch-cpu".into()),
        feature: "tch",
        hint: "burn-tch; LibTorch via LIBTORCH or LIBTORCH_USE_PYTORCH=1 with torch installed",
    })
}
