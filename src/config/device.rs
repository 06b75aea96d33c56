//! The `train.device` string: which backend and which device index a trial runs on.

use std::str::FromStr;

/// A parsed `train.device` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// The first GPU backend compiled in when a GPU is visible, else the CPU (burn-flex).
    Auto,
    /// burn-flex, pure-Rust CPU.
    Cpu,
    /// burn-cuda on GPU N (cargo feature `cuda`).
    Cuda(usize),
    /// burn-tch (LibTorch) on the CPU (cargo feature `tch`).
    TchCpu,
    /// burn-tch (LibTorch) on GPU N (cargo feature `tch`).
    TchCuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let index = |rest: &str| {
            rest.parse::<usize>()
                .map_err(|_| format!("{s:?}: the GPU index must be a number, e.g. cuda:0"))
        };
        match s {
            "auto" => Ok(DeviceSpec::Auto),
            "cpu" => Ok(DeviceSpec::Cpu),
            "tch-cpu" => Ok(DeviceSpec::TchCpu),
            "cuda" => Ok(DeviceSpec::Cuda(0)),
            "tch-cuda" => Ok(DeviceSpec::TchCuda(0)),
            _ => {
                if let Some(rest) = s.strip_prefix("tch-cuda:") {
                    index(rest).map(DeviceSpec::TchCuda)
                } else if let Some(rest) = s.strip_prefix("cuda:") {
                    index(rest).map(DeviceSpec::Cuda)
                } else {
                    Err(format!(
                        "unknown device {s:?}; use auto, cpu, cuda:N, tch-cpu or tch-cuda:N"
                    ))
                }
            }
        }
    }
}

impl std::fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceSpec::Auto => write!(f, "auto"),
            DeviceSpec::Cpu => write!(f, "cpu"),
            DeviceSpec::Cuda(i) => write!(f, "cuda:{i}"),
            DeviceSpec::TchCpu => write!(f, "tch-cpu"),
            DeviceSpec::TchCuda(i) => write!(f, "tch-cuda:{i}"),
        }
    }
}
