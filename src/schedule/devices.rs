//! What the sweep can run on: CUDA GPUs (from `nvidia-smi`, filtered by
//! `CUDA_VISIBLE_DEVICES`) and the CPU, or an explicit `--devices` list.

use std::process::Command;

/// One GPU as discovered (memory in MiB when known).
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    /// The physical index, as `CUDA_VISIBLE_DEVICES` takes it.
    pub index: usize,
    pub name: String,
    pub memory_total_mib: Option<u64>,
    pub memory_free_mib: Option<u64>,
}

impl Gpu {
    /// A GPU known only by its index (memory unknown).
    pub fn unknown(index: usize) -> Gpu {
        Gpu {
            index,
            name: "GPU".into(),
            memory_total_mib: None,
            memory_free_mib: None,
        }
    }
}

/// The machine as the scheduler sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Devices {
    pub gpus: Vec<Gpu>,
    /// Cores the CPU trials share.
    pub cpu_cores: usize,
}

/// Parses `nvidia-smi --query-gpu=index,name,memory.total,memory.free
/// --format=csv,noheader,nounits` output.
pub fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            let [index, name, total, free] = cols.as_slice() else {
                return None;
            };
            Some(Gpu {
                index: index.parse().ok()?,
                name: name.to_string(),
                memory_total_mib: total.parse().ok(),
                memory_free_mib: free.parse().ok(),
            })
        })
        .collect()
}

/// Keeps the GPUs that `CUDA_VISIBLE_DEVICES` names (all when it is unset); indices not
/// reported by `nvidia-smi` are added with unknown memory.
pub fn filter_visible(gpus: Vec<Gpu>, visible: Option<&str>) -> Vec<Gpu> {
    let Some(visible) = visible else {
        return gpus;
    };
    visible
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
        .map(|index| {
            gpus.iter()
                .find(|g| g.index == index)
                .cloned()
                .unwrap_or_else(|| Gpu::unknown(index))
        })
        .collect()
}

/// The machine's GPUs and cores.
pub fn discover() -> Devices {
    let smi = Command::new("nvidia-smi")
        .args([
            "--query-gpu=index,name,memory.total,memory.free",
            "--format=csv,noheader,nounits",
        ])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| parse_nvidia_smi(&String::from_utf8_lossy(&o.stdout)))
        .unwrap_or_default();
    let visible = std::env::var("CUDA_VISIBLE_DEVICES").ok();
    Devices {
        gpus: filter_visible(smi, visible.as_deref()),
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
