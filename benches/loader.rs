//! The 224-px input pipeline on one core: JPEG decode, RandomResizedCrop, flip, ColorJitter and
//! normalisation over a folder of 448×448 JPEGs (made once under target/bench-jpegs), against
//! torchvision (PIL decode, the same transforms, one process, one thread) on the same files.
//! Prints images/s per core for both and the ratio.
//!
//! `just bench-loader` (torchvision from the bench venv under target/, as `just bench`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use vitrun::config::{Config, DatasetKind};
use vitrun::data::{self, EpochLoader, LoaderSpec, Pipeline, TargetKind};

const PER_CLASS: usize = 150;
const SIDE: usize = 448;

/// Renders synthetic vehicles at 448 px and saves them as JPEGs (quality 90), once.
fn jpegs(root: &Path) {
    if root.join("done").exists() {
        return;
    }
    let mut config = Config::default();
    config.data.image_size = SIDE;
    config.data.train_size = Some(2 * PER_CLASS);
    config.data.classes = Some(vec!["bus".into(), "car".into()]);
    let splits = data::open(&config, TargetKind::Class).expect("synthetic data");
    for i in 0..splits.train.len() {
        let sample = splits.train.get(i).expect("a sample");
        let class = if sample.class() == Some(0) {
            "bus"
        } else {
            "car"
        };
        let dir = root.join(class);
        std::fs::create_dir_all(&dir).unwrap();
        let pixels = sample.image.to_interleaved_u8();
        let img = image::RgbImage::from_raw(SIDE as u32, SIDE as u32, pixels).unwrap();
        let file = std::fs::File::create(dir.join(format!("{i:04}.jpg"))).unwrap();
        let mut enc = image::codecs::jpeg::JpegEncoder::new_with_quality(file, 90);
        enc.encode_image(&img).unwrap();
    }
    std::fs::write(root.join("done"), "").unwrap();
}

fn vitrun_rate(root: &Path) -> f64 {
    let mut config = Config::default();
    config.data.dataset = DatasetKind::ImageFolder;
    config.data.path = Some(root.display().to_string());
    config.data.val_split = 0.01;
    config.data.image_size = 224;
    let a = &mut config.augment;
    a.random_resized_crop.enabled = true;
    a.hflip.enabled = true;
    a.color_jitter.enabled = true;
    a.normalize.enabled = true;
    let splits = data::open(&config, TargetKind::Class).expect("the JPEG folder");
    let spec: LoaderSpec<data::Labels> = LoaderSpec {
        dataset: splits.train,
        pipeline: Arc::new(Pipeline::train(&config.augment, 224, 3)),
        batch_size: 32,
        shuffle: true,
        seed: 0,
        skip_bad: false,
        prefetch: 2,
        pool: Arc::new(
            rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .build()
                .unwrap(),
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
    rates.sort_by(f64::total_cmp);
    rates[1]
}

fn main() {
    vitrun::alloc::keep_freed_memory();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-jpegs");
    jpegs(&root);
    let ours = vitrun_rate(&root);
    println!(
        "vitrun loader, 1 core, 224 px (decode + RRC + flip + jitter + normalise): {ours:.1} img/s"
    );
    let python = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-venv/bin/python");
    if !python.exists() {
        println!("torchvision: not measured (no target/bench-venv; `just bench` makes it)");
        return;
    }
    let out = Command::new(&python)
        .arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/torchvision_loader.py"))
        .arg(&root)
        .output()
        .expect("python runs");
    let text = String::from_utf8_lossy(&out.stdout);
    print!("{text}{}", String::from_utf8_lossy(&out.stderr));
    if let Some(theirs) = text
        .lines()
        .find_map(|l| l.strip_prefix("torchvision img/s: "))
        .and_then(|v| v.trim().parse::<f64>().ok())
    {
        println!("vitrun / torchvision per core: {:.2}x", ours / theirs);
    }
}
