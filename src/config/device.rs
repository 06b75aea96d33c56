//! The `train.device` string: which backend and which device index a trial runs on.

use std::str::FromStr;

/// A parsed `train.device` value (written and read as its string form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
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

impl TryFrom<String> for DeviceSpec {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceSpec> for String {
    fn from(d: DeviceSpec) -> String {
        d.to_string()
    }
}

impl DeviceSpec {
    /// Whether the device is a GPU (`None` for `auto`, which decides at run time).
    pub fn is_gpu(self) -> Option<bool> {
        match self {
            DeviceSpec::Auto => None,
            DeviceSpec::Cpu | DeviceSpec::TchCpu => Some(false),
            DeviceSpec::Cuda(_) | DeviceSpec::TchCuda(_) => Some(true),
        }
    }

    /// Whether the device runs on LibTorch (burn-tch).
    pub fn is_tch(self) -> bool {
        matches!(self, DeviceSpec::TchCpu | DeviceSpec::TchCuda(_))
    }
}

/// Logical cores available to this process.
pub fn available_cores() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}
