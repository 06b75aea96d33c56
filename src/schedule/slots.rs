//! Slots: places a trial process can run. Each GPU gets `trials_per_gpu` of them; CPU trials
//! split the cores between them rather than oversubscribing.

use super::devices::Devices;

/// Where one trial process runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Slot {
    /// `cuda:2#1` (GPU 2, its second slot) or `cpu#0`.
    pub label: String,
    /// The physical GPU index (`CUDA_VISIBLE_DEVICES`), or `None` for a CPU slot.
    pub gpu: Option<usize>,
    /// Threads the trial may use.
    pub threads: usize,
}

/// How many trials share one GPU.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum PerGpu {
    Count(usize),
    /// Measured: the memory one trial needs (MiB), from a probe run.
    Measured {
        need_mib: u64,
    },
}

/// Trials that fit in `free_mib` of GPU memory when each needs `need_mib`, keeping 10 % headroom
/// (at least 1, at most 16).
pub fn fit(free_mib: u64, need_mib: u64) -> usize {
    ((free_mib as f64 * 0.9 / need_mib.max(1) as f64).floor() as usize).clamp(1, 16)
}

/// Lays out the slots: GPUs first, then `cpu_slots` CPU slots sharing the cores.
pub fn layout(devices: &Devices, per_gpu: PerGpu, cpu_slots: usize) -> Vec<Slot> {
    let mut slots = Vec::new();
    let host_threads = (devices.cpu_cores / devices.gpus.len().max(1)).max(1);
    for gpu in &devices.gpus {
        let n = match per_gpu {
            PerGpu::Count(n) => n.max(1),
            PerGpu::Measured { need_mib } => gpu.memory_free_mib.map_or(1, |f| fit(f, need_mib)),
        };
        for k in 0..n {
            slots.push(Slot {
                label: format!("cuda:{}#{k}", gpu.index),
                gpu: Some(gpu.index),
                threads: (host_threads / n).max(1),
            });
        }
    }
    if devices.cpu_cores > 0 && cpu_slots > 0 {
        let n = cpu_slots.min(devices.cpu_cores);
        for k in 0..n {
            let threads = devices.cpu_cores / n + usize::from(k < devices.cpu_cores % n);
            slots.push(Slot {
                label: format!("cpu#{k}"),
                gpu: None,
                threads,
            });
        }
    }
    slots
}
