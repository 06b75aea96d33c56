//! Training-step and forward images/s for ViT-Tiny (dim 192, depth 12, heads 3), patch 4,
//! 32×32, batch 64, on the backends this build has; plus loader images/s with the full
//! augmentation pipeline. Prints one `name: value` line per figure (median of 5 runs).
//!
//! `cargo bench --bench train_step` (add `--features tch` for burn-tch). Threads: VITRUN_BENCH_THREADS
//! (default 2). The PyTorch peer runs from `benches/pytorch_peer.py` (see `just bench`).

use std::sync::Arc;
use std::time::Instant;

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::{Distribution, Tensor};
use vitrun::config::{Config, OptimizerConfig};
use vitrun::data::{self, EpochLoader, LoaderSpec, Pipeline};
use vitrun::model::{Vit, VitSpec};
use vitrun::train::loss::cross_entropy;
use vitrun::train::optim::Optimizer;

const BATCH: usize = 64;
const RUNS: usize = 5;

fn spec() -> VitSpec {
    VitSpec {
        image_size: 32,
        in_channels: 3,
        patch_size: 4,
        embed_dim: 192,
        depth: 12,
        num_heads: 3,
        mlp_ratio: 4.0,
        num_classes: 10,
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

fn bench_backend<B: AutodiffBackend>(label: &str, device: B::Device) {
    let mut model: Vit<B> = spec().init(&device);
    let mut opt = Optimizer::<B::InnerBackend>::new(&OptimizerConfig::default());
    let x = Tensor::<B, 4>::random([BATCH, 3, 32, 32], Distribution::Default, &device);
    let labels: Vec<i64> = (0..BATCH as i64).map(|i| i % 10).collect();
    let mut train = Vec::new();
    let mut backward_share = Vec::new();
    for i in 0..=RUNS {
        let t = Instant::now();
        let loss = cross_entropy(model.forward(x.clone()), &labels, 0.1);
        let grads = loss.backward();
        let fb = t.elapsed().as_secs_f64();
        let (next, _) = opt.step::<B, Vit<B>>(model, &grads, 1e-3);
        model = next;
        let _ = model.cls_token.val().into_data();
        let total = t.elapsed().as_secs_f64();
        if i > 0 {
            train.push(BATCH as f64 / total);
            backward_share.push(fb / total);
        }
    }
    let inner = burn::module::AutodiffModule::valid(&model);
    let xi = x.inner();
    let mut infer = Vec::new();
    for i in 0..=RUNS {
        let t = Instant::now();
        let _ = inner.forward(xi.clone()).into_data();
        if i > 0 {
            infer.push(BATCH as f64 / t.elapsed().as_secs_f64());
        }
    }
    println!("{label} train img/s: {:.1}", median(train));
    println!(
        "{label} train share in forward+backward: {:.2}",
        median(backward_share)
    );
    println!("{label} infer img/s: {:.1}", median(infer));
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
    let splits = data::open(&config).expect("synthetic data");
    let spec = LoaderSpec {
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

fn main() {
    let threads: usize = std::env::var("VITRUN_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global()
        .expect("global pool");
    println!("threads: {threads}, batch {BATCH}, ViT-Tiny 192/12/3, patch 4, 32x32");
    bench_backend::<Autodiff<Flex>>("burn-flex", Default::default());
    #[cfg(feature = "tch")]
    bench_backend::<Autodiff<burn::backend::LibTorch>>(
        "burn-tch-cpu",
        burn::backend::libtorch::LibTorchDevice::Cpu,
    );
    bench_loader(threads);
}
