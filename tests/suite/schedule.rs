//! The scheduler's pure parts: device discovery parsing, slot layout, exit classification,
//! and the early-stopping rules' defining properties.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

use vitrun::config::{StopCriterion, StopRule};
use vitrun::contract::{Goal, Status};
use vitrun::schedule::{
    classify, filter_visible, fit, layout, parse_devices, parse_nvidia_smi, used_by, Devices, Exit,
    ExitContext, PerGpu,
};
use vitrun::train::early_stop::{judge, Evidence, PeerAt, Verdict};

const SMI: &str =
    "0, NVIDIA H100 80GB HBM3, 81559, 80000\n1, NVIDIA H100 80GB HBM3, 81559, 20000\n";

#[test]
fn nvidia_smi_output_and_visible_devices() {
    let gpus = parse_nvidia_smi(SMI);
    assert_eq!(gpus.len(), 2);
    assert_eq!((gpus[1].index, gpus[1].memory_free_mib), (1, Some(20000)));
    assert_eq!(filter_visible(gpus.clone(), None).len(), 2);
    let only = filter_visible(gpus.clone(), Some("1"));
    assert_eq!((only.len(), only[0].memory_total_mib), (1, Some(81559)));
    assert!(
        filter_visible(gpus, Some("")).is_empty(),
        "an empty list hides every GPU"
    );
    assert_eq!(used_by("123, 4000\n456, 900\n", 456), Some(900));
    assert_eq!(used_by("123, 4000\n", 7), None);
}

#[test]
fn devices_flag_overrides_discovery_and_rejects_typos() {
    let found = Devices {
        gpus: parse_nvidia_smi(SMI),
        cpu_cores: 8,
    };
    let d = parse_devices("cuda:0,cuda:1", &found, true).unwrap();
    assert_eq!(d.gpus.iter().map(|g| g.index).collect::<Vec<_>>(), [0, 1]);
    assert_eq!(d.cpu_cores, 0, "no cpu in the list: CPU trials get no slot");
    assert_eq!(parse_devices("cpu", &found, false).unwrap().cpu_cores, 8);
    let e = parse_devices("gpu0", &found, true).unwrap_err();
    assert!(e.contains("\"gpu0\"") && e.contains("cuda:N"), "{e}");
    let e = parse_devices("cuda:3", &found, true).unwrap_err();
    assert!(
        e.contains("no such GPU") && e.contains("cuda:0, cuda:1"),
        "a GPU the machine lacks is an error, never a CPU run: {e}"
    );
    let e = parse_devices("cuda:0", &found, false).unwrap_err();
    assert!(
        e.contains("--features"),
        "a build without a GPU backend: {e}"
    );
}

#[test]
fn slots_share_gpus_and_split_cores() {
    let devices = Devices {
        gpus: parse_nvidia_smi(SMI),
        cpu_cores: 16,
    };
    let slots = layout(&devices, PerGpu::Count(3), 0);
    assert_eq!(slots.len(), 6);
    assert_eq!(slots[4].label, "cuda:1#1");
    assert_eq!(slots[4].gpu, Some(1));
    let measured = layout(&devices, PerGpu::Measured { need_mib: 9000 }, 0);
    assert_eq!(
        measured.iter().filter(|s| s.gpu == Some(0)).count(),
        fit(80000, 9000)
    );
    assert_eq!(fit(80000, 9000), 8, "90% of 80 GB in 9 GB trials");
    assert_eq!(fit(20000, 9000), 2);
    assert_eq!(fit(1000, 9000), 1, "at least one trial per GPU");
    let cpu = layout(
        &Devices {
            gpus: vec![],
            cpu_cores: 5,
        },
        PerGpu::Count(1),
        2,
    );
    assert_eq!(
        cpu.iter().map(|s| s.threads).collect::<Vec<_>>(),
        [3, 2],
        "cores split, none left over"
    );
    let capped = layout(
        &Devices {
            gpus: vec![],
            cpu_cores: 2,
        },
        PerGpu::Count(1),
        8,
    );
    assert_eq!(capped.len(), 2, "never more CPU slots than cores");
}

#[test]
fn exits_are_classified_with_their_cause() {
    let code = |c: i32| ExitStatus::from_raw(c << 8);
    let signal = ExitStatus::from_raw;
    let plain = ExitContext::default();
    let failed = |e: Exit| match e {
        Exit::Failed { kind, cause } => (kind, cause),
        other => panic!("{other:?}"),
    };
    assert_eq!(classify(code(0), &plain), Exit::Finished);
    assert_eq!(classify(code(3), &plain), Exit::Diverged);
    assert_eq!(classify(code(4), &plain), Exit::Pruned);
    assert_eq!(classify(code(5), &plain), Exit::Busy);
    let stopping = ExitContext {
        stopping: true,
        ..ExitContext::default()
    };
    assert_eq!(classify(code(130), &stopping), Exit::Interrupted);
    let (kind, c) = failed(classify(
        code(101),
        &ExitContext {
            log_tail: "epoch 1\nthread 'main' panicked at src/x.rs:1:1:\nboom\n",
            ..ExitContext::default()
        },
    ));
    assert_eq!(kind, Status::Crashed);
    assert!(
        c.starts_with("panicked with code 101: thread 'main' panicked"),
        "{c}"
    );
    let (kind, c) = failed(classify(signal(9), &plain));
    assert_eq!((kind, c.as_str()), (Status::Crashed, "killed by signal 9"));
    let (kind, _) = failed(classify(
        signal(9),
        &ExitContext {
            oom_killed: true,
            ..ExitContext::default()
        },
    ));
    assert_eq!(
        kind,
        Status::Oom,
        "SIGKILL while the cgroup's OOM killer fired"
    );
    let (kind, c) = failed(classify(
        signal(6),
        &ExitContext {
            log_tail: "memory allocation of 8589934592 bytes failed\n",
            ..ExitContext::default()
        },
    ));
    assert_eq!(kind, Status::Oom, "{c}");
    let (kind, c) = failed(classify(
        code(1),
        &ExitContext {
            log_tail: "CUDA_ERROR_OUT_OF_MEMORY: out of memory\n",
            ..ExitContext::default()
        },
    ));
    assert_eq!(kind, Status::Oom);
    assert!(c.contains("out of memory"), "{c}");
    let (kind, c) = failed(classify(
        code(1),
        &ExitContext {
            recorded: Some("data: cannot read x.png"),
            ..ExitContext::default()
        },
    ));
    assert_eq!(kind, Status::Failed);
    assert!(c.contains("cannot read x.png"), "{c}");
    assert_eq!(
        failed(classify(code(130), &plain)).0,
        Status::Interrupted,
        "an interrupt we did not send is a failure"
    );
}

fn rule(rule: StopRule, maximize: bool) -> StopCriterion {
    StopCriterion {
        rule,
        metric: if maximize { "val/top1" } else { "val/loss" }.into(),
        goal: if maximize {
            Goal::Maximize
        } else {
            Goal::Minimize
        },
    }
}

#[test]
fn asha_keeps_the_top_fraction_at_each_rung_only() {
    let asha = rule(
        StopRule::Asha {
            rungs: vec![1, 3],
            reduction_factor: 2,
        },
        true,
    );
    let ev = |epoch, own: f64, peers: &[f64]| Evidence {
        epoch,
        own: vec![own; epoch],
        peers: peers
            .iter()
            .filter_map(|&p| PeerAt::of(&vec![p; epoch]))
            .collect(),
    };
    assert_eq!(
        judge(&asha, &ev(2, 0.1, &[0.9, 0.8])),
        Verdict::Undecided,
        "not a rung"
    );
    assert!(
        matches!(judge(&asha, &ev(1, 0.1, &[])), Verdict::Keep(_)),
        "alone at a rung: keep"
    );
    assert!(matches!(
        judge(&asha, &ev(1, 0.1, &[0.9])),
        Verdict::Prune(_)
    ));
    assert!(matches!(
        judge(&asha, &ev(1, 0.9, &[0.1])),
        Verdict::Keep(_)
    ));
    // 4 trials, top 2 continue.
    assert!(matches!(
        judge(&asha, &ev(3, 0.7, &[0.9, 0.5, 0.1])),
        Verdict::Keep(_)
    ));
    let Verdict::Prune(why) = judge(&asha, &ev(3, 0.5, &[0.9, 0.7, 0.1])) else {
        panic!()
    };
    assert!(
        why.contains("ranks 3 of 4") && why.contains("top 2"),
        "{why}"
    );
    let loss = rule(
        StopRule::Asha {
            rungs: vec![1],
            reduction_factor: 3,
        },
        false,
    );
    assert!(
        matches!(judge(&loss, &ev(1, 0.2, &[0.5, 0.9])), Verdict::Keep(_)),
        "lower loss is better"
    );
    assert!(matches!(
        judge(&loss, &ev(1, 0.5, &[0.2, 0.9])),
        Verdict::Prune(_)
    ));
}

#[test]
fn median_rule_compares_best_so_far_with_peers_running_averages() {
    let median = rule(
        StopRule::Median {
            min_epochs: 2,
            min_trials: 2,
        },
        true,
    );
    let ev = |own: Vec<f64>, peers: Vec<Vec<f64>>| Evidence {
        epoch: own.len(),
        own,
        peers: peers.iter().filter_map(|h| PeerAt::of(h)).collect(),
    };
    assert_eq!(
        judge(&median, &ev(vec![0.1], vec![vec![0.9], vec![0.9]])),
        Verdict::Undecided,
        "warm-up"
    );
    assert_eq!(
        judge(&median, &ev(vec![0.1, 0.1], vec![vec![0.9, 0.9]])),
        Verdict::Undecided,
        "too few peers"
    );
    // Peers' running averages: 0.5 and 0.7 → median 0.6.
    assert!(matches!(
        judge(
            &median,
            &ev(vec![0.2, 0.55], vec![vec![0.4, 0.6], vec![0.6, 0.8]])
        ),
        Verdict::Prune(_)
    ));
    assert!(
        matches!(
            judge(
                &median,
                &ev(vec![0.65, 0.3], vec![vec![0.4, 0.6], vec![0.6, 0.8]])
            ),
            Verdict::Keep(_)
        ),
        "best so far counts, not the last value"
    );
}
