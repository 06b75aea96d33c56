//! What the sweep can run on: CUDA GPUs (from `nvidia-smi`, filtered by
//! `CUDA_VISIBLE_DEVICES`) and the CPU, or an explicit `--devices` list.

pub use crate::train::gpus::{filter_visible, parse_nvidia_smi, Gpu};

/// The machine as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Devices {
    pub gpus: Vec<Gpu>,
    /// Cores the CPU trials share.
    pub cpu_cores: usize,
}

/// The machine's GPUs and cores.
pub fn discover() -> Devices {
    Devices {
        gpus: crate::train::gpus::visible().unwrap_or_default(),
        cpu_cores: crate::config::available_cores(),
    }
}

/// Parses `--devices`: a comma list of `cpu` and `cuda:N`. Each GPU must be one that
/// discovery found (its memory comes from `nvidia-smi`), and a GPU needs a build with the
/// `cuda` or `tch` feature: a GPU that cannot be used is an error, never a quiet CPU run.
pub fn parse_devices(list: &str, discovered: &Devices, gpu_build: bool) -> Result<Devices, String> {
    let mut gpus = Vec::new();
    let mut cpu = false;
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if item == "cpu" {
            cpu = true;
        } else if let Some(index) = item
            .strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok())
        {
            if !gpu_build {
                return Err(format!(
                    "--devices {item}: this vitrun was built without the cuda or tch feature; rebuild with `--features tch` (or cuda), or use --devices cpu"
                ));
            }
            let Some(gpu) = discovered.gpus.iter().find(|g| g.index == index) else {
                let seen: Vec<String> = discovered
                    .gpus
                    .iter()
                    .map(|g| format!("cuda:{}", g.index))
                    .collect();
                return Err(format!(
                    "--devices {item}: no such GPU on this machine (found: {}); check nvidia-smi and CUDA_VISIBLE_DEVICES",
                    if seen.is_empty() { "none".to_string() } else { seen.join(", ") }
                ));
            };
            gpus.push(gpu.clone());
        } else {
            return Err(format!(
                "--devices: unknown device {item:?}; use a comma list of cpu and cuda:N, e.g. cuda:0,cuda:1"
            ));
        }
    }
    if gpus.is_empty() && !cpu {
        return Err("--devices: the list is empty; e.g. --devices cpu or --devices cuda:0".into());
    }
    Ok(Devices {
        gpus,
        cpu_cores: if cpu { discovered.cpu_cores } else { 0 },
    })
}
