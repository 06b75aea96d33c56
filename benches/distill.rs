//! The costs of DeiT's distillation on burn-flex, at the Fashion-MNIST experiments' shapes
//! (28×28 grey, batch 128, 10 classes): the ResNet-18 teacher of
//! `experiments/resnet_fashion_mnist.toml` (timm's resnet18 at half its widths) — its training
//! step and forward pass, whose peer is timm's in `benches/resnet_peer.py` — and the student of
//! `experiments/deit_distill_fashion_mnist.toml`: its training step alone against the same step
//! with the teacher's forward and DeiT's hard distillation loss, alternated so both see the
//! same machine load. Prints one `name: value` line per figure (median of 7 runs).
//!
//! `just bench-distill` (threads: VITRUN_BENCH_THREADS, default 2).

use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Tensor};
use vitrun::config::{DistillConfig, DistillType, OptimizerConfig};
use vitrun::kernels::VitKernels;
use vitrun::model::{Arch, Backbone, Model, ResNetSpec, VitSpec};
use vitrun::task::classification::distill::DistillLoss;
use vitrun::task::classification::loss::cross_entropy;
use vitrun::task::classification::ClassifierHead;
use vitrun::train::optim::Optimizer;

type T = Autodiff<Flex>;
const BATCH: usize = 128;
const RUNS: usize = 7;
const CLASSES: usize = 10;

fn teacher_spec() -> ResNetSpec {
    ResNetSpec::preset("resnet18", [32, 64, 128, 256], 1).expect("resnet18")
}

fn student_spec() -> VitSpec {
    VitSpec {
        image_size: 28,
        in_channels: 1,
        patch_size: 4,
        conv_stem: vec![32, 64],
        conv_stem_pool: true,
        conv_stem_depth: 2,
        conv_stem_batch_norm: true,
        embed_dim: 96,
        depth: 1,
        num_heads: 3,
        mlp_ratio: 4.0,
        mean_pool: false,
        distilled: true,
        dropout: 0.0,
        attn_dropout: 0.0,
        drop_path: 0.0,
    }
}

fn classifier<B: VitKernels, A: Arch>(arch: &A) -> Model<B, A::Net<B>, ClassifierHead<B>> {
    let device = Default::default();
    Model::new(
        arch.init::<B>(&device),
        ClassifierHead::new(arch.shape(), CLASSES, &device),
    )
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Images/s of each of `steps` (median of `RUNS` calls on one batch after a warm-up), called
/// in turn.
fn rates(steps: &mut [&mut dyn FnMut()]) -> Vec<f64> {
    let mut all = vec![Vec::new(); steps.len()];
    for i in 0..=RUNS {
        for (step, out) in steps.iter_mut().zip(&mut all) {
            let t = Instant::now();
            step();
            if i > 0 {
                out.push(BATCH as f64 / t.elapsed().as_secs_f64());
            }
        }
    }
    all.into_iter().map(median).collect()
}

/// One AdamW step of `model` on `loss_of(model)`.
fn step<E: Backbone<T> + AutodiffModule<T>>(
    model: &mut Option<Model<T, E, ClassifierHead<T>>>,
    optimizer: &mut Optimizer<Flex>,
    loss_of: impl Fn(&Model<T, E, ClassifierHead<T>>) -> Tensor<T, 1>,
) where
    Model<T, E, ClassifierHead<T>>: AutodiffModule<T>,
{
    let m = model.take().expect("model");
    let grads = GradientsParams::from_grads(loss_of(&m).backward(), &m);
    let (next, _) = optimizer.step::<T, _>(m, grads, 1e-3);
    *model = Some(next);
}

fn main() {
    vitrun::alloc::keep_freed_memory();
    let threads: usize = std::env::var("VITRUN_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("global pool");
    println!("threads: {threads}, batch {BATCH}, 28x28 grey, {CLASSES} classes");
    let device = Default::default();
    let images = Tensor::<T, 4>::random([BATCH, 1, 28, 28], Distribution::Default, &device);
    let inner = images.clone().inner();
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % CLASSES as i64).collect();

    let teacher_arch = teacher_spec();
    let mut resnet = Some(classifier::<T, _>(&teacher_arch));
    let mut opt = Optimizer::new(&OptimizerConfig::default());
    let teacher = resnet.as_ref().expect("model").valid();
    let r = rates(&mut [
        &mut || {
            step(&mut resnet, &mut opt, |m| {
                cross_entropy(m.forward(images.clone()), &labels, 0.1)
            })
        },
        &mut || {
            let _ = teacher.forward(inner.clone()).into_data();
        },
    ]);
    println!("resnet18-w32 burn-flex train img/s: {:.1}", r[0]);
    println!("resnet18-w32 burn-flex infer img/s: {:.1}", r[1]);

    let student_arch = student_spec();
    let mut alone = Some(classifier::<T, _>(&student_arch));
    let mut distilled = Some(classifier::<T, _>(&student_arch));
    let (mut opt_a, mut opt_b) = (
        Optimizer::new(&OptimizerConfig::default()),
        Optimizer::new(&OptimizerConfig::default()),
    );
    let loss = DistillLoss::new(&DistillConfig {
        kind: DistillType::Hard,
        ..DistillConfig::default()
    })
    .expect("hard distillation");
    let s = rates(&mut [
        &mut || {
            step(&mut alone, &mut opt_a, |m| {
                let (cls, dist) = m.forward_heads(images.clone());
                let logits = (cls + dist.expect("distilled")).div_scalar(2.0);
                cross_entropy(logits, &labels, 0.1)
            })
        },
        &mut || {
            let taught: Vec<f32> = teacher
                .forward(inner.clone())
                .into_data()
                .to_vec()
                .expect("f32 logits");
            step(&mut distilled, &mut opt_b, |m| {
                let (cls, dist) = m.forward_heads(images.clone());
                let base = cross_entropy(cls, &labels, 0.1);
                loss.combine(base, loss.distillation(dist.expect("distilled"), &taught))
            })
        },
    ]);
    println!("student alone burn-flex train img/s: {:.1}", s[0]);
    println!("student with teacher burn-flex train img/s: {:.1}", s[1]);
    println!(
        "distillation step cost (student with teacher / alone): {:.2}x",
        s[0] / s[1]
    );
}
