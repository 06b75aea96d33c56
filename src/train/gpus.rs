//! The NVIDIA GPUs this process can use, as `nvidia-smi` reports them and
//! `CUDA_VISIBLE_DEVICES` narrows them, and the check a GPU trial passes before it is claimed.

use std::process::Command;

/// `nvidia-smi --query-gpu=` columns, in [`parse_nvidia_smi`]'s order.
pub const QUERY: &str = "index,uuid,name,driver_version,memory.total,memory.free";

/// One GPU as discovered (memory in MiB when known).
#[derive(Debug, Clone, PartialEq)]
pub struct Gpu {
    /// The physical index, as `CUDA_VISIBLE_DEVICES` takes it.
    pub index: usize,
    /// `GPU-…`, which `CUDA_VISIBLE_DEVICES` may name instead of the index.
    pub uuid: Option<String>,
    pub name: String,
    pub driver: Option<String>,
    pub memory_total_mib: Option<u64>,
    pub memory_free_mib: Option<u64>,
}

impl Gpu {
    /// A GPU known only by its index (memory unknown).
    pub fn unknown(index: usize) -> Gpu {
        Gpu {
            index,
            uuid: None,
            name: "GPU".into(),
            driver: None,
            memory_total_mib: None,
            memory_free_mib: None,
        }
    }
}

/// Parses `nvidia-smi --query-gpu=<QUERY> --format=csv,noheader,nounits` (also the older
/// four columns `index,name,memory.total,memory.free`). Lines it cannot read are skipped.
pub fn parse_nvidia_smi(text: &str) -> Vec<Gpu> {
    text.lines()
        .filter_map(|line| {
            let cols: Vec<&str> = line.split(',').map(str::trim).collect();
            let (index, uuid, name, driver, total, free) = match cols.as_slice() {
                [index, uuid, name, driver, total, free] => {
                    (index, Some(uuid), name, Some(driver), total, free)
                }
                [index, name, total, free] => (index, None, name, None, total, free),
                _ => return None,
            };
            Some(Gpu {
                index: index.parse().ok()?,
                uuid: uuid.map(|u| u.to_string()),
                name: name.to_string(),
                driver: driver.map(|d| d.to_string()),
                memory_total_mib: total.parse().ok(),
                memory_free_mib: free.parse().ok(),
            })
        })
        .collect()
}

/// Keeps the GPUs that `CUDA_VISIBLE_DEVICES` names, in its order (all when it is unset;
/// none when it is empty). It may name indices or UUIDs, as SLURM and users write it; an
/// index `nvidia-smi` did not report is added with unknown memory, and a name that matches
/// nothing ends the list, as CUDA ends it.
pub fn filter_visible(gpus: Vec<Gpu>, visible: Option<&str>) -> Vec<Gpu> {
    let Some(visible) = visible else {
        return gpus;
    };
    let mut kept = Vec::new();
    for item in visible.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let found = match item.parse::<usize>() {
            Ok(index) => Some(
                gpus.iter()
                    .find(|g| g.index == index)
                    .cloned()
                    .unwrap_or_else(|| Gpu::unknown(index)),
            ),
            Err(_) => gpus
                .iter()
                .find(|g| g.uuid.as_deref().is_some_and(|u| u.starts_with(item)))
                .cloned(),
        };
        match found {
            Some(gpu) => kept.push(gpu),
            None => break,
        }
    }
    kept
}

/// Every GPU `nvidia-smi` reports, or why it could not be asked.
pub fn query() -> Result<Vec<Gpu>, String> {
    let out = Command::new("nvidia-smi")
        .arg(format!("--query-gpu={QUERY}"))
        .arg("--format=csv,noheader,nounits")
        .output()
        .map_err(|e| format!("nvidia-smi could not be run ({e}): no NVIDIA driver here"))?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stdout).trim().to_string()
            + String::from_utf8_lossy(&out.stderr).trim();
        return Err(format!(
            "nvidia-smi failed ({}): {}",
            out.status,
            said.lines().next().unwrap_or("no output")
        ));
    }
    Ok(parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout)))
}

/// The GPUs this process may use: [`query`] narrowed by `CUDA_VISIBLE_DEVICES`; the device
/// `cuda:N` of this process is the N-th of them.
pub fn visible() -> Result<Vec<Gpu>, String> {
    let all = query()?;
    Ok(filter_visible(
        all,
        std::env::var("CUDA_VISIBLE_DEVICES").ok().as_deref(),
    ))
}

/// Why a GPU trial cannot start here.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum DeviceProblem {
    #[error("{device} needs an NVIDIA GPU, but {reason}; run it on a GPU machine, or set train.device = \"cpu\"")]
    NoDriver { device: String, reason: String },
    #[error("{device} is not a GPU of this process ({seen}); pick one of them, or check CUDA_VISIBLE_DEVICES")]
    NoSuchGpu { device: String, seen: String },
    #[error("{device} ({name}) has {total_gib:.1} GiB, and this trial needs about {need_gib:.1} GiB; lower train.batch_size, or set train.precision = \"bf16\" or train.grad_checkpointing = true")]
    TooSmall {
        device: String,
        name: String,
        total_gib: f64,
        need_gib: f64,
    },
}

/// Whether GPU `index` of `gpus` (this process's visible GPUs, or why there are none) can
/// hold a trial needing `need_bytes` (when estimated); `device` names it in the error.
pub fn check(
    device: &str,
    index: usize,
    gpus: Result<Vec<Gpu>, String>,
    need_bytes: Option<f64>,
) -> Result<(), DeviceProblem> {
    let gpus = gpus.map_err(|reason| DeviceProblem::NoDriver {
        device: device.to_string(),
        reason,
    })?;
    if gpus.is_empty() {
        return Err(DeviceProblem::NoDriver {
            device: device.to_string(),
            reason: match std::env::var("CUDA_VISIBLE_DEVICES") {
                Ok(v) => format!("none is visible (CUDA_VISIBLE_DEVICES={v:?})"),
                Err(_) => "nvidia-smi lists none".to_string(),
            },
        });
    }
    let Some(gpu) = gpus.get(index) else {
        let seen: Vec<String> = gpus
            .iter()
            .enumerate()
            .map(|(i, g)| format!("cuda:{i} is {} #{}", g.name, g.index))
            .collect();
        return Err(DeviceProblem::NoSuchGpu {
            device: device.to_string(),
            seen: seen.join(", "),
        });
    };
    let gib = |mib: u64| mib as f64 / 1024.0;
    if let (Some(total), Some(need)) = (gpu.memory_total_mib, need_bytes) {
        let need_gib = need / f64::from(1u32 << 30);
        if need_gib > gib(total) {
            return Err(DeviceProblem::TooSmall {
                device: device.to_string(),
                name: gpu.name.clone(),
                total_gib: gib(total),
                need_gib,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMI: &str = "0, GPU-aaaa-1111, NVIDIA H100 80GB HBM3, 580.65.06, 81559, 80000\n\
                       1, GPU-bbbb-2222, NVIDIA H100 80GB HBM3, 580.65.06, 81559, 1200\n";

    #[test]
    fn nvidia_smi_rows_are_read_in_both_layouts() {
        let gpus = parse_nvidia_smi(SMI);
        assert_eq!(gpus.len(), 2);
        assert_eq!(gpus[1].uuid.as_deref(), Some("GPU-bbbb-2222"));
        assert_eq!(gpus[1].driver.as_deref(), Some("580.65.06"));
        assert_eq!(gpus[1].memory_free_mib, Some(1200));
        let old = parse_nvidia_smi("3, Tesla T4, 15360, [N/A]\ngarbage\n");
        assert_eq!(old.len(), 1);
        assert_eq!((old[0].index, old[0].memory_free_mib), (3, None));
    }

    #[test]
    fn cuda_visible_devices_takes_indices_or_uuids_in_its_order() {
        let gpus = parse_nvidia_smi(SMI);
        let by_index = filter_visible(gpus.clone(), Some("1,0"));
        assert_eq!(by_index.iter().map(|g| g.index).collect::<Vec<_>>(), [1, 0]);
        let by_uuid = filter_visible(gpus.clone(), Some("GPU-bbbb"));
        assert_eq!(by_uuid.iter().map(|g| g.index).collect::<Vec<_>>(), [1]);
        assert!(filter_visible(gpus.clone(), Some("")).is_empty());
        let stops = filter_visible(gpus.clone(), Some("0,GPU-nope,1"));
        assert_eq!(
            stops.len(),
            1,
            "CUDA stops at the first name it cannot find"
        );
        assert_eq!(filter_visible(gpus, None).len(), 2);
    }

    #[test]
    fn a_gpu_trial_is_refused_without_a_driver_a_device_or_the_memory() {
        let none = check("cuda:0", 0, Err("nvidia-smi could not be run".into()), None);
        assert!(matches!(none, Err(DeviceProblem::NoDriver { .. })));
        let gpus = parse_nvidia_smi(SMI);
        let missing = check("cuda:2", 2, Ok(gpus.clone()), None).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "cuda:2 is not a GPU of this process (cuda:0 is NVIDIA H100 80GB HBM3 #0, cuda:1 is NVIDIA H100 80GB HBM3 #1); pick one of them, or check CUDA_VISIBLE_DEVICES"
        );
        let big = 100.0 * f64::from(1u32 << 30);
        let small = check("cuda:1", 1, Ok(gpus.clone()), Some(big)).unwrap_err();
        assert!(
            small
                .to_string()
                .contains("has 79.6 GiB, and this trial needs about 100.0 GiB"),
            "{small}"
        );
        assert_eq!(check("cuda:1", 1, Ok(gpus), Some(big / 10.0)), Ok(()));
    }
}
