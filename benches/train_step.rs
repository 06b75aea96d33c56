//! Training-step and forward images/s for ViT-Tiny (dim 192, depth 12, heads 3), patch 4,
//! 32×32, batch 64, on the backends this build has; plus loader images/s with the full
//! augmentation pipeline. Each backend also runs a bare-burn peer (`peers/bare_vit.rs`), steps
//! alternating with vitrun's. Then two Fashion-MNIST models on burn-flex (28×28 grey, batch
//! 128), whose peers are the same models in `pytorch_peer.py`: `conv-stem`, a pooled conv stem
//! `[32, 64]` with one conv per stage into 2 blocks of dim 96; and `bn-stem`, the committed
//! recipe's, two conv + BatchNorm + ReLU per stage into 1 block. Prints one `name: value` line
//! per figure (median of 7 runs).
//!
//! `cargo bench --bench train_step` (add `--features tch` for burn-tch). Threads: VITRUN_BENCH_THREADS
//! (default 2). `VITRUN_BENCH_PROFILE=train:N` (or `infer:N`) runs only N of vitrun's burn-flex
//! training steps (forward passes) and prints their rate, for a profiler (`perf record`) to
//! see nothing else. The PyTorch peer runs from `benches/pytorch_peer.py` (see `just bench`).

use std::sync::Arc;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::optim::GradientsParams;
use burn::tensor::{Distribution, Tensor};
use peers::bare_vit::{BareTrainer, BareVit};
use vitrun::config::{Config, OptimizerConfig};
use vitrun::data::{self, EpochLoader, LoaderSpec, Pipeline, TargetKind};
use vitrun::kernels::TrainBackend;
use vitrun::model::{Vit, VitSpec};
use vitrun::task::classification::loss::cross_entropy;
use vitrun::task::classification::{vit_classifier, Classifier};
use vitrun::train::optim::Optimizer;

mod peers {
    pub mod bare_vit;
}

const BATCH: usize = 64;
const RUNS: usize = 7;
/// Batch of the conv-stem figure: the Fashion-MNIST recipe's.
const STEM_BATCH: usize = 128;

/// `experiments/vit_fashion_mnist.toml`'s model with one conv per stem stage and 2 blocks (as
/// at 06bdf3a).
fn stem_spec() -> VitSpec {
    VitSpec {
        image_size: 28,
        in_channels: 1,
        conv_stem: vec![32, 64],
        conv_stem_pool: true,
        conv_stem_depth: 1,
        embed_dim: 96,
        depth: 2,
        mean_pool: true,
        ..spec()
    }
}

/// `experiments/vit_fashion_mnist.toml`'s model: two conv + BatchNorm + ReLU per stem stage,
/// 1 block.
fn bn_stem_spec() -> VitSpec {
    VitSpec {
        conv_stem_depth: 2,
        conv_stem_batch_norm: true,
        depth: 1,
        ..stem_spec()
    }
}

fn spec() -> VitSpec {
    VitSpec {
        image_size: 32,
        in_channels: 3,
        patch_size: 4,
        conv_stem: Vec::new(),
        conv_stem_pool: false,
        conv_stem_depth: 1,
        conv_stem_batch_norm: false,
        embed_dim: 192,
        depth: 12,
        num_heads: 3,
        mlp_ratio: 4.0,
        mean_pool: false,
        distilled: false,
        dropout: 0.0,
        attn_dropout: 0.0,
        drop_path: 0.0,
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// Images/s of `ours` and `peer` (median of `RUNS` calls each on one batch, after one warm-up
/// call each), the two called in turn so that both see the same machine load.
fn rates(mut ours: impl FnMut(), mut peer: impl FnMut()) -> (f64, f64) {
    let timed = |step: &mut dyn FnMut()| {
        let t = Instant::now();
        step();
        BATCH as f64 / t.elapsed().as_secs_f64()
    };
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for i in 0..=RUNS {
        let (ra, rb) = (timed(&mut ours), timed(&mut peer));
        if i > 0 {
            a.push(ra);
            b.push(rb);
        }
    }
    (median(a), median(b))
}

/// vitrun's training step (forward, loss, backward, AdamW) on one fixed batch.
struct Step<B: TrainBackend> {
    model: Option<Classifier<B, Vit<B>>>,
    optimizer: Optimizer<B::InnerBackend>,
    images: Tensor<B, 4>,
    labels: Vec<i64>,
}

impl<B: TrainBackend> Step<B> {
    fn new(device: &B::Device) -> Self {
        Self::of(spec(), BATCH, device)
    }

    /// A step of the model `spec` on a random batch of `batch` images.
    fn of(spec: VitSpec, batch: usize, device: &B::Device) -> Self {
        let shape = [batch, spec.in_channels, spec.image_size, spec.image_size];
        Self {
            model: Some(vit_classifier::<B>(&spec, 10, device)),
            optimizer: Optimizer::new(&OptimizerConfig::default()),
            images: Tensor::random(shape, Distribution::Default, device),
            labels: (0..batch as i64).map(|i| i % 10).collect(),
        }
    }

    fn run(&mut self) {
        let m = self.model.take().expect("model");
        let loss = cross_entropy(m.forward(self.images.clone()), &self.labels, 0.1);
        let grads = GradientsParams::from_grads(loss.backward(), &m);
        let (next, _) = self.optimizer.step::<B, _>(m, grads, 1e-3);
        let _ = next.encoder.cls_token.val().into_data();
        self.model = Some(next);
    }
}

/// vitrun's model, loss and optimizer against the bare-burn peer on the same backend.
fn bench_backend<B: TrainBackend>(label: &str, device: B::Device) {
    let mut step = Step::<B>::new(&device);
    let x = step.images.clone();
    let xi = x.clone().inner();
    let mut bare = BareTrainer::new(
        BareVit::new(32, 4, 192, 12, 3, 10, &device),
        &step.labels,
        &device,
    );
    let (train, bare_train) = rates(|| step.run(), || bare.step(x.clone()));
    let inner = burn::module::AutodiffModule::valid(step.model.as_ref().expect("model"));
    let bare_inner = bare.inference_model();
    let (infer, bare_infer) = rates(
        || {
            let _ = inner.forward(xi.clone()).into_data();
        },
        || {
            let _ = bare_inner.forward(xi.clone()).into_data();
        },
    );
    println!("{label} train img/s: {train:.1}");
    println!("{label} infer img/s: {infer:.1}");
    println!("{label}/bare-burn train img/s: {bare_train:.1}");
    println!("{label}/bare-burn infer img/s: {bare_infer:.1}");
    println!(
        "{label} vitrun / bare burn: train {:.2}x, infer {:.2}x",
        train / bare_train,
        infer / bare_infer
    );
}

/// A Fashion-MNIST model on burn-flex: training steps and forward passes.
fn bench_stem(label: &str, spec: VitSpec) {
    let mut step = Step::<Autodiff<Flex>>::of(spec, STEM_BATCH, &Default::default());
    let inner = burn::module::AutodiffModule::valid(step.model.as_ref().expect("model"));
    let images = step.images.clone().inner();
    let rate = |run: &mut dyn FnMut()| {
        run();
        median(
            (0..RUNS)
                .map(|_| {
                    let t = Instant::now();
                    run();
                    STEM_BATCH as f64 / t.elapsed().as_secs_f64()
                })
                .collect(),
        )
    };
    let infer = rate(&mut || {
        let _ = inner.forward(images.clone()).into_data();
    });
    let train = rate(&mut || step.run());
    println!("{label} burn-flex train img/s: {train:.1}");
    println!("{label} burn-flex infer img/s: {infer:.1}");
}

fn bench_loader(threads: usize) {
    let mut config = Config::default();
    config.data.image_size = 32;
    config.data.train_size = Some(BATCH * 20);
    let a = &mut config.augment;
    a.random_resized_crop.enabled = true;
    a.hflip.enabled = true;
    a.color_jitter.enabled = true;
    a.random_erasing.enabled = true;
    a.normalize.enabled = true;
    let splits = data::open(&config, TargetKind::Class).expect("synthetic data");
    let spec: LoaderSpec<data::Labels> = LoaderSpec {
        dataset: splits.train,
        pipeline: Arc::new(Pipeline::train(&config.augment, 32, 3)),
        batch_size: BATCH,
        shuffle: true,
        seed: 0,
        skip_bad: false,
        prefetch: 4,
        pool: Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .expect("pool"),
        ),
        repeats: 1,
        transform: None,
    };
    let mut rates = Vec::new();
    for epoch in 0..3 {
        let t = Instant::now();
        let n: usize = EpochLoader::start(spec.clone(), epoch)
            .map(|b| b.expect("batch").len())
            .sum();
        rates.push(n as f64 / t.elapsed().as_secs_f64());
    }
    println!(
        "loader (synthetic render + full augmentation) img/s: {:.1}",
        median(rates)
    );
}

/// Runs `mode:N` (`train` or `infer`) N times on burn-flex and prints the rate.
fn profile_flex(profile: &str) {
    let (mode, n) = profile.split_once(':').unwrap_or((profile, "20"));
    let n: usize = n.parse().expect("VITRUN_BENCH_PROFILE=train:N or infer:N");
    let mut step = Step::<Autodiff<Flex>>::new(&Default::default());
    let inner = burn::module::AutodiffModule::valid(step.model.as_ref().expect("model"));
    let images = step.images.clone().inner();
    let mut run = || match mode {
        "train" => step.run(),
        "infer" => {
            let _ = inner.forward(images.clone()).into_data();
        }
        other => panic!("VITRUN_BENCH_PROFILE mode {other:?}: use train or infer"),
    };
    run();
    let t = Instant::now();
    (0..n).for_each(|_| run());
    let rate = (n * BATCH) as f64 / t.elapsed().as_secs_f64();
    println!("burn-flex {mode} img/s over {n} profiled runs: {rate:.1}");
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
    println!("threads: {threads}, batch {BATCH}, ViT-Tiny 192/12/3, patch 4, 32x32");
    if let Ok(profile) = std::env::var("VITRUN_BENCH_PROFILE") {
        return profile_flex(&profile);
    }
    bench_backend::<Autodiff<Flex>>("burn-flex", Default::default());
    #[cfg(feature = "tch")]
    bench_backend::<Autodiff<burn::backend::LibTorch>>(
        "burn-tch-cpu",
        burn::backend::libtorch::LibTorchDevice::Cpu,
    );
    bench_loader(threads);
    bench_stem("conv-stem", stem_spec());
    bench_stem("bn-stem", bn_stem_spec());
}
