//! `vitrun doctor`: what this binary and this machine can run (backends, cores, memory, the
//! NVIDIA driver and each visible GPU's memory), and whether each trial of an experiment file
//! would start here — the checks `run` and `sweep` make before a trial is claimed, all at once.

use std::path::Path;

use crate::config::{self, Config, DeviceSpec, Loaded};
use crate::contract::count;
use crate::train::backend::{self, BACKENDS, HAS_GPU_BACKEND};
use crate::train::gpus::{self, Gpu};

/// What this process can use.
pub struct Machine {
    pub cores: usize,
    /// Host memory in bytes, when known.
    pub memory: Option<f64>,
    /// The GPUs this process may use, or why there are none to ask about.
    pub gpus: Result<Vec<Gpu>, String>,
}

impl Machine {
    /// This machine, as the trial processes started here would see it.
    pub fn here() -> Machine {
        Machine {
            cores: config::available_cores(),
            memory: config::machine_memory(),
            gpus: gpus::visible(),
        }
    }

    fn visible_gpus(&self) -> &[Gpu] {
        self.gpus.as_deref().unwrap_or(&[])
    }
}

/// Where one trial would run, and whether it can.
#[derive(Debug, PartialEq)]
pub struct TrialCheck {
    pub id: String,
    /// The device it would run on (`auto` resolved as a run here resolves it).
    pub device: String,
    /// What it needs there, in bytes (GPU memory on a GPU, host memory on the CPU).
    pub need: f64,
    /// The verdict: where it fits, or why it cannot start.
    pub verdict: Result<String, String>,
}

fn gib(bytes: f64) -> String {
    format!("{:.1} GiB", bytes / f64::from(1u32 << 30))
}

fn mib_gib(mib: u64) -> String {
    gib(mib as f64 * f64::from(1u32 << 20))
}

/// Whether `config`'s trial `id` can start on `machine` with this binary.
pub fn check_trial(id: &str, config: &Config, machine: &Machine) -> TrialCheck {
    let spec = backend::resolve_auto_on(config.train.device, !machine.visible_gpus().is_empty());
    let mut on = config.clone();
    on.train.device = spec;
    let device = spec.to_string();
    let index = match spec {
        DeviceSpec::Cuda(i) | DeviceSpec::TchCuda(i) => Some(i),
        _ => None,
    };
    let need = match index {
        Some(_) => config::estimate_device_memory(&on),
        None => config::estimate_memory(&on).total(),
    };
    if let Err(e) = backend::supports(&on.train) {
        return TrialCheck {
            id: id.to_string(),
            device,
            need,
            verdict: Err(e.to_string()),
        };
    }
    let Some(index) = index else {
        let verdict = Ok(match machine.memory {
            Some(total) => format!("fits the host ({} of memory)", gib(total)),
            None => "host memory unknown".to_string(),
        });
        return TrialCheck {
            id: id.to_string(),
            device,
            need,
            verdict,
        };
    };
    let verdict = match gpus::check(&device, index, machine.gpus.clone(), Some(need)) {
        Err(problem) => Err(problem.to_string()),
        Ok(()) => {
            let gpu = &machine.visible_gpus()[index];
            let free = gpu
                .memory_free_mib
                .map(|m| m as f64 * f64::from(1u32 << 20));
            Ok(match free {
                Some(free) if free < need => format!(
                    "fits {} ({}), but only {} is free now: other processes hold the rest",
                    gpu.name,
                    gpu.memory_total_mib.map_or("?".into(), mib_gib),
                    gib(free)
                ),
                Some(free) => format!("fits {} ({} free)", gpu.name, gib(free)),
                None => format!("{} (memory unknown)", gpu.name),
            })
        }
    };
    TrialCheck {
        id: id.to_string(),
        device,
        need,
        verdict,
    }
}

/// The trials `loaded` would run: its sweep's (a search's first proposal is its base config).
fn trials(loaded: &Loaded) -> anyhow::Result<Vec<(String, Config)>> {
    if loaded.sweep.method.is_adaptive() || loaded.sweep.is_empty() {
        return Ok(vec![(loaded.config.trial_id(), loaded.config.clone())]);
    }
    Ok(crate::plan::plan(loaded)?
        .trials
        .into_iter()
        .map(|t| (t.id, t.config))
        .collect())
}

/// The machine's part of the report.
pub fn describe(machine: &Machine) -> String {
    let mut out = format!(
        "vitrun {} — backends: {BACKENDS}\n",
        env!("CARGO_PKG_VERSION")
    );
    out.push_str(&format!(
        "cpu: {}, {} of memory\n",
        count(machine.cores, "core"),
        machine.memory.map_or("unknown".into(), gib)
    ));
    let visible = std::env::var("CUDA_VISIBLE_DEVICES")
        .map(|v| format!("CUDA_VISIBLE_DEVICES={v:?}"))
        .unwrap_or_else(|_| "CUDA_VISIBLE_DEVICES unset".into());
    match &machine.gpus {
        Err(reason) => out.push_str(&format!("gpu: none ({reason})\n")),
        Ok(gpus) if gpus.is_empty() => out.push_str(&format!("gpu: none visible ({visible})\n")),
        Ok(gpus) => {
            let driver = gpus.iter().find_map(|g| g.driver.clone());
            out.push_str(&format!(
                "gpu: {} ({visible}){}\n",
                count(gpus.len(), "device"),
                driver
                    .map(|d| format!(", NVIDIA driver {d}"))
                    .unwrap_or_default()
            ));
            for (i, g) in gpus.iter().enumerate() {
                out.push_str(&format!(
                    "  cuda:{i}  {} (#{}): {} free of {}\n",
                    g.name,
                    g.index,
                    g.memory_free_mib.map_or("?".into(), mib_gib),
                    g.memory_total_mib.map_or("?".into(), mib_gib)
                ));
            }
        }
    }
    if !machine.visible_gpus().is_empty() && !HAS_GPU_BACKEND {
        out.push_str("note: this vitrun has no GPU backend; build one with `just build-gpu`\n");
    }
    out
}

/// `vitrun doctor [FILE]`: the machine, then each trial's verdict; an error when a trial
/// cannot start here.
pub fn doctor(loaded: Option<&Loaded>, machine: &Machine) -> anyhow::Result<String> {
    let mut out = describe(machine);
    let Some(loaded) = loaded else {
        return Ok(out);
    };
    let checks: Vec<TrialCheck> = trials(loaded)?
        .iter()
        .map(|(id, config)| check_trial(id, config, machine))
        .collect();
    out.push_str(&format!(
        "{}: {}\n",
        loaded.file.display(),
        count(checks.len(), "trial")
    ));
    for c in &checks {
        let (mark, text) = match &c.verdict {
            Ok(text) => ("ok", text.as_str()),
            Err(text) => ("NO", text.as_str()),
        };
        out.push_str(&format!(
            "  {mark:<2} {:<12} {:<11} needs ~{:<9} {text}\n",
            c.id,
            c.device,
            gib(c.need)
        ));
    }
    let failing = checks.iter().filter(|c| c.verdict.is_err()).count();
    if failing > 0 {
        print!("{out}");
        anyhow::bail!(
            "{}: {} of {} cannot start on this machine (see above)",
            loaded.file.display(),
            count(failing, "trial"),
            checks.len()
        );
    }
    Ok(out)
}

/// Whether a sweep's trials can start on its slots: a trial that asks for a GPU (by
/// `train.device` or a 16-bit `train.precision`) when the sweep has no GPU slot, or that
/// needs more memory than its GPUs have, stops the sweep before any trial is claimed.
pub fn sweep_problems(
    file: &Path,
    trials: &[(String, &Config)],
    gpus: &[Gpu],
    devices_given: bool,
) -> Result<(), String> {
    for (id, config) in trials {
        let t = &config.train;
        let asks_gpu = t.device.is_gpu() == Some(true);
        let mixed_on_cpu = t.precision.is_mixed() && t.device != DeviceSpec::TchCpu;
        if gpus.is_empty() && ((asks_gpu && !devices_given) || mixed_on_cpu) {
            let (key, value) = if asks_gpu {
                ("train.device", t.device.to_string())
            } else {
                ("train.precision", t.precision.name().to_string())
            };
            return Err(format!(
                "{}: trial {id} asks for a GPU ({key} = \"{value}\"), and this sweep has none (`vitrun doctor {}` shows what this machine has); run it on a GPU machine{}",
                file.display(),
                file.display(),
                if key == "train.device" { ", or pass --devices cpu to run it on the CPU" } else { ", or set train.precision = \"f32\"" }
            ));
        }
        if !gpus.is_empty() && t.device.is_gpu() != Some(false) {
            let need = config::estimate_device_memory(config);
            for (slot, gpu) in gpus.iter().enumerate() {
                let label = format!("cuda:{slot}");
                gpus::check(&label, slot, Ok(gpus.to_vec()), Some(need)).map_err(|problem| {
                    format!(
                        "{}: trial {id}: {problem} (GPU #{})",
                        file.display(),
                        gpu.index
                    )
                })?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Precision;

    fn h100s(n: usize) -> Vec<Gpu> {
        let rows: String = (0..n)
            .map(|i| format!("{i}, GPU-{i}, NVIDIA H100 80GB HBM3, 580.65.06, 81559, 80000\n"))
            .collect();
        gpus::parse_nvidia_smi(&rows)
    }

    fn trial(device: DeviceSpec, precision: Precision, batch: usize) -> Config {
        let mut c = Config::default();
        c.train.device = device;
        c.train.precision = precision;
        c.train.batch_size = batch;
        c
    }

    #[test]
    fn a_sweep_stops_before_its_first_trial_when_one_cannot_start_on_its_gpus() {
        let file = Path::new("exp.toml");
        let bf16 = trial(DeviceSpec::Auto, Precision::Bf16, 64);
        let e = sweep_problems(file, &[("abc".into(), &bf16)], &[], false).unwrap_err();
        assert!(
            e.starts_with("exp.toml: trial abc asks for a GPU (train.precision = \"bf16\")"),
            "{e}"
        );
        let on_gpu = trial(DeviceSpec::Cuda(0), Precision::F32, 64);
        let e = sweep_problems(file, &[("def".into(), &on_gpu)], &[], false).unwrap_err();
        assert!(e.contains("pass --devices cpu to run it on the CPU"), "{e}");
        assert_eq!(
            sweep_problems(file, &[("def".into(), &on_gpu)], &[], true),
            Ok(()),
            "--devices cpu was the user's choice"
        );
        assert_eq!(
            sweep_problems(file, &[("abc".into(), &bf16)], &h100s(2), false),
            Ok(())
        );
        let mut huge = trial(DeviceSpec::Auto, Precision::F32, 65536);
        huge.data.image_size = 512;
        let e = sweep_problems(file, &[("big".into(), &huge)], &h100s(2), false).unwrap_err();
        assert!(
            e.starts_with("exp.toml: trial big: cuda:0 (NVIDIA H100 80GB HBM3) has 79.6 GiB, and this trial needs about"),
            "{e}"
        );
    }

    #[test]
    fn the_estimate_knows_mixed_precision_and_checkpointing() {
        let f32 = trial(DeviceSpec::Cuda(0), Precision::F32, 256);
        let mut bf16 = f32.clone();
        bf16.train.precision = Precision::Bf16;
        let mut both = bf16.clone();
        both.train.grad_checkpointing = true;
        let [a, b, c] = [&f32, &bf16, &both].map(config::estimate_device_memory);
        assert!(a > b, "mixed precision needs less: f32 {a}, bf16 {b}");
        assert!(
            c > b,
            "checkpointing's bookkeeping, as measured: bf16 {b}, with it {c}"
        );
    }

    #[test]
    fn auto_runs_where_this_binary_and_machine_allow() {
        let machine = Machine {
            cores: 2,
            memory: Some(8.0 * f64::from(1u32 << 30)),
            gpus: Ok(h100s(1)),
        };
        let check = check_trial("abc", &trial(DeviceSpec::Auto, Precision::F32, 8), &machine);
        let expected = if HAS_GPU_BACKEND { "cuda:0" } else { "cpu" };
        assert!(check.device.ends_with(expected), "{check:?}");
        assert!(check.verdict.is_ok(), "{check:?}");
    }
}
