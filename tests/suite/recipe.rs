//! DeiT's recipe ingredients: Mixup/CutMix with soft targets, soft-target cross-entropy and
//! repeated augmentation.

use std::collections::HashMap;
use std::sync::Arc;

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use vitrun::config::{AugmentConfig, MixMode};
use vitrun::data::{
    self, repeated_order, Batch, BatchTransform, EpochLoader, Labels, LoaderSpec, Mixer, Pipeline,
    TargetKind,
};
use vitrun::task::classification::loss::{cross_entropy, smoothed_targets, soft_cross_entropy};

const CLASSES: usize = 4;

/// A batch of `n` images of side `size`, image i filled with the value i + 1, label i % 4.
fn constant_batch(n: usize, size: usize) -> Batch<Labels> {
    let plane = 3 * size * size;
    Batch {
        images: (0..n)
            .flat_map(|i| std::iter::repeat_n((i + 1) as f32, plane))
            .collect(),
        targets: Labels {
            labels: (0..n).map(|i| (i % CLASSES) as i64).collect(),
            mixed: None,
            teacher: None,
        },
        channels: 3,
        size,
        skipped: Vec::new(),
        unmixed: None,
    }
}

fn mixing(mixup: bool, cutmix: bool, mode: MixMode) -> AugmentConfig {
    let mut a = AugmentConfig::default();
    a.mixup.enabled = mixup;
    a.cutmix.enabled = cutmix;
    a.mixup.mode = mode;
    a
}

fn image(batch: &Batch<Labels>, i: usize) -> &[f32] {
    let plane = batch.channels * batch.size * batch.size;
    &batch.images[i * plane..(i + 1) * plane]
}

#[test]
fn mixup_blends_each_image_with_its_partner_and_the_targets_by_the_same_share() {
    for mode in [MixMode::Batch, MixMode::Pair, MixMode::Elem] {
        let mixer = Mixer::new(&mixing(true, false, mode), 0.0, CLASSES, 7).unwrap();
        let n = 6;
        let mut batch = constant_batch(n, 4);
        let t = mixer.mix(&mut batch, 1, 0);
        for i in 0..n {
            let j = n - 1 - i;
            let lam = t.lam[i];
            assert!((0.0..=1.0).contains(&lam));
            let want = (lam * (i + 1) as f64 + (1.0 - lam) * (j + 1) as f64) as f32;
            assert!(image(&batch, i).iter().all(|p| (p - want).abs() < 1e-5));
            let row = &t.values[i * CLASSES..(i + 1) * CLASSES];
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            let (own, other) = (
                batch.targets.labels[i] as usize,
                batch.targets.labels[j] as usize,
            );
            let mut expected = [0.0f64; CLASSES];
            expected[own] += lam;
            expected[other] += 1.0 - lam;
            for c in 0..CLASSES {
                assert!(
                    (row[c] as f64 - expected[c]).abs() < 1e-6,
                    "{mode:?} row {i}"
                );
            }
            let dominant = if lam >= 0.5 { own } else { other };
            assert_eq!(t.dominant[i], dominant as i64);
            assert!(!t.cutmix[i]);
        }
        match mode {
            MixMode::Batch => assert!(t.lam.iter().all(|l| *l == t.lam[0])),
            MixMode::Pair => assert!((0..n).all(|i| t.lam[i] == t.lam[n - 1 - i])),
            MixMode::Elem => assert!(t.lam.windows(2).any(|w| w[0] != w[1])),
        }
    }
}

#[test]
fn cutmix_pastes_one_box_whose_area_is_the_partners_share() {
    for mode in [MixMode::Batch, MixMode::Pair, MixMode::Elem] {
        let mixer = Mixer::new(&mixing(false, true, mode), 0.0, CLASSES, 3).unwrap();
        let (n, size) = (8, 16);
        for index in 0..5 {
            let mut batch = constant_batch(n, size);
            let t = mixer.mix(&mut batch, 2, index);
            for i in 0..n {
                let j = n - 1 - i;
                let pixels = image(&batch, i);
                let from_partner = pixels.iter().filter(|p| **p == (j + 1) as f32).count();
                let own = pixels.iter().filter(|p| **p == (i + 1) as f32).count();
                assert_eq!(from_partner + own, pixels.len(), "only whole pixels move");
                let share = from_partner as f64 / pixels.len() as f64;
                assert!(
                    (t.lam[i] - (1.0 - share)).abs() < 1e-9,
                    "{mode:?}: lam {} is corrected to the pasted area {share}",
                    t.lam[i]
                );
                if mode == MixMode::Pair {
                    assert_eq!(t.lam[i], t.lam[j], "a pair swaps the same box");
                }
            }
        }
    }
}

#[test]
fn cutmix_minmax_draws_box_sides_within_the_range() {
    let mut a = mixing(false, true, MixMode::Elem);
    a.cutmix.minmax = Some([0.25, 0.5]);
    let mixer = Mixer::new(&a, 0.0, CLASSES, 1).unwrap();
    let mut batch = constant_batch(10, 16);
    let t = mixer.mix(&mut batch, 1, 0);
    for i in 0..10 {
        let pasted = (1.0 - t.lam[i]) * 256.0;
        assert!((16.0..=64.0).contains(&pasted), "box of {pasted} pixels");
    }
}

#[test]
fn mixing_is_reproducible_by_seed_epoch_and_batch() {
    let mixer = Mixer::new(&mixing(true, true, MixMode::Elem), 0.1, CLASSES, 11).unwrap();
    let run = |epoch, index| {
        let mut batch = constant_batch(8, 8);
        let t = mixer.mix(&mut batch, epoch, index);
        (batch.images, t)
    };
    assert_eq!(run(1, 3), run(1, 3));
    assert_ne!(run(1, 3).1.lam, run(1, 4).1.lam);
    assert_ne!(run(1, 3).1.lam, run(2, 3).1.lam);
}

#[test]
fn switch_prob_chooses_between_mixup_and_cutmix() {
    let mut a = mixing(true, true, MixMode::Elem);
    let count_cutmix = |a: &AugmentConfig| {
        let mixer = Mixer::new(a, 0.0, CLASSES, 5).unwrap();
        (0..20)
            .map(|b| {
                let mut batch = constant_batch(10, 8);
                mixer
                    .mix(&mut batch, 1, b)
                    .cutmix
                    .iter()
                    .filter(|c| **c)
                    .count()
            })
            .sum::<usize>()
    };
    a.mixup.switch_prob = 0.0;
    assert_eq!(count_cutmix(&a), 0);
    a.mixup.switch_prob = 1.0;
    assert!(count_cutmix(&a) > 190, "nearly every draw pastes a box");
    a.mixup.switch_prob = 0.5;
    let half = count_cutmix(&a);
    assert!((60..140).contains(&half), "{half} of 200 draws were CutMix");
}

#[test]
fn prob_zero_leaves_the_batch_alone_and_the_targets_smoothed_one_hot() {
    let mut a = mixing(true, true, MixMode::Batch);
    a.mixup.prob = 0.0;
    let mixer = Mixer::new(&a, 0.1, CLASSES, 2).unwrap();
    let mut batch = constant_batch(6, 4);
    let before = batch.images.clone();
    let t = mixer.mix(&mut batch, 1, 0);
    assert_eq!(batch.images, before);
    let expected = smoothed_targets(&batch.targets.labels, CLASSES, 0.1);
    assert!(t
        .values
        .iter()
        .zip(&expected)
        .all(|(a, b)| (a - b).abs() < 1e-6));
    assert_eq!(t.dominant, batch.targets.labels);
}

#[test]
fn label_smoothing_folds_into_the_mixed_targets_as_timm_does() {
    let smoothing = 0.1;
    let mixer = Mixer::new(&mixing(true, false, MixMode::Batch), smoothing, CLASSES, 9).unwrap();
    let mut batch = constant_batch(4, 4);
    let t = mixer.mix(&mut batch, 1, 0);
    let lam = t.lam[0] as f32;
    let own = smoothed_targets(&batch.targets.labels, CLASSES, smoothing);
    let flipped: Vec<i64> = batch.targets.labels.iter().rev().copied().collect();
    let other = smoothed_targets(&flipped, CLASSES, smoothing);
    for k in 0..t.values.len() {
        assert!((t.values[k] - (lam * own[k] + (1.0 - lam) * other[k])).abs() < 1e-6);
    }
}

#[test]
fn neither_mixup_nor_cutmix_means_no_mixer() {
    assert!(Mixer::new(&AugmentConfig::default(), 0.1, CLASSES, 0).is_none());
}

fn logits(values: &[f32], rows: usize) -> Tensor<Flex, 2> {
    Tensor::from_data(
        TensorData::new(values.to_vec(), [rows, CLASSES]),
        &Default::default(),
    )
}

#[test]
fn soft_target_cross_entropy_equals_cross_entropy_for_one_hot_targets() {
    let values = [
        0.3, -1.2, 2.0, 0.1, 1.5, 0.2, -0.7, 0.9, -2.0, 0.0, 0.5, 3.0,
    ];
    let labels = [2, 0, 3];
    for smoothing in [0.0, 0.1] {
        let hard: f32 = cross_entropy(logits(&values, 3), &labels, smoothing).into_scalar();
        let targets = smoothed_targets(&labels, CLASSES, smoothing);
        let soft: f32 = soft_cross_entropy(logits(&values, 3), &targets).into_scalar();
        assert!((hard - soft).abs() < 1e-6);
    }
    let by_hand: f32 = labels
        .iter()
        .enumerate()
        .map(|(r, &l)| {
            let row = &values[r * CLASSES..(r + 1) * CLASSES];
            let lse = row.iter().map(|v| v.exp()).sum::<f32>().ln();
            lse - row[l as usize]
        })
        .sum::<f32>()
        / 3.0;
    let hard: f32 = cross_entropy(logits(&values, 3), &labels, 0.0).into_scalar();
    assert!((hard - by_hand).abs() < 1e-5);
}

#[test]
fn soft_target_cross_entropy_of_a_mixed_target_is_the_mix_of_the_two_losses() {
    let values = [0.3, -1.2, 2.0, 0.1];
    let ce = |label: i64| -> f32 { cross_entropy(logits(&values, 1), &[label], 0.0).into_scalar() };
    let mixed: f32 = soft_cross_entropy(logits(&values, 1), &[0.0, 0.3, 0.7, 0.0]).into_scalar();
    assert!((mixed - (0.3 * ce(1) + 0.7 * ce(2))).abs() < 1e-5);
}

#[test]
fn repeated_augmentation_draws_each_image_k_times_and_keeps_the_epoch_length() {
    for (len, k) in [(12, 3), (10, 3), (7, 1), (9, 4)] {
        let order = data::epoch_order(len, 4, 2, true);
        let draws = repeated_order(&order, k);
        assert_eq!(draws.len(), len);
        let mut counts: HashMap<usize, Vec<u8>> = HashMap::new();
        for d in &draws {
            counts.entry(d.index).or_default().push(d.repeat);
        }
        let full = len / k;
        let complete = counts.values().filter(|r| r.len() == k).count();
        assert_eq!(complete, full, "len {len}, k {k}");
        for repeats in counts.values() {
            let expected: Vec<u8> = (0..repeats.len() as u8).collect();
            assert_eq!(repeats, &expected, "repeats are numbered 0..k");
        }
        assert_eq!(draws[0].index, order[0]);
    }
}

/// A training loader over `images` synthetic vehicles of side `size`.
fn synthetic_loader(
    a: &AugmentConfig,
    images: usize,
    size: usize,
    batch: usize,
) -> LoaderSpec<Labels> {
    let mut config = vitrun::config::Config::default();
    config.data.train_size = Some(images);
    config.data.val_size = Some(4);
    config.data.image_size = size;
    let splits = data::open(&config, TargetKind::Class).unwrap();
    crate::common::loader_spec(splits.train, Pipeline::train(a, size, 3), batch)
}

#[test]
fn repeated_draws_are_augmented_differently_and_replay_by_seed() {
    let mut a = AugmentConfig::default();
    a.random_resized_crop.enabled = true;
    a.hflip.enabled = true;
    let spec = LoaderSpec {
        repeats: 3,
        ..synthetic_loader(&a, 12, 16, 6)
    };
    let epoch = |e| -> Vec<Batch<Labels>> {
        EpochLoader::start(spec.clone(), e)
            .map(Result::unwrap)
            .collect()
    };
    let first = epoch(1);
    assert_eq!(first.iter().map(Batch::len).sum::<usize>(), 12);
    let plane = 3 * 16 * 16;
    for batch in &first {
        for group in 0..2 {
            let labels = &batch.targets.labels[group * 3..group * 3 + 3];
            assert!(
                labels.iter().all(|l| *l == labels[0]),
                "one image, three draws"
            );
            let draws: Vec<&[f32]> = (0..3)
                .map(|r| &batch.images[(group * 3 + r) * plane..(group * 3 + r + 1) * plane])
                .collect();
            assert!(
                draws[0] != draws[1] && draws[1] != draws[2],
                "each draw differs"
            );
        }
    }
    let again = epoch(1);
    assert!(first.iter().zip(&again).all(|(a, b)| a.images == b.images));
}

#[test]
fn the_loader_mixes_training_batches_reproducibly() {
    let a = mixing(true, true, MixMode::Batch);
    let spec = LoaderSpec {
        transform: Mixer::new(&a, 0.0, 5, 1)
            .map(|m| Arc::new(m) as Arc<dyn BatchTransform<Labels>>),
        ..synthetic_loader(&a, 16, 8, 8)
    };
    let batches: Vec<Batch<Labels>> = EpochLoader::start(spec.clone(), 1)
        .map(Result::unwrap)
        .collect();
    for b in &batches {
        let t = b.targets.mixed.as_ref().expect("soft targets");
        assert_eq!(t.values.len(), b.len() * 5);
    }
    let again: Vec<Batch<Labels>> = EpochLoader::start(spec, 1).map(Result::unwrap).collect();
    assert_eq!(batches[0].images, again[0].images);
    assert_eq!(batches[0].targets, again[0].targets);
}

mod rand_augment_oracle {
    //! Each RandAugment op against timm's on fixed images (fixtures from
    //! `scripts/make_rand_augment_fixtures.py`), and timm's level-to-argument rules.

    use std::path::PathBuf;

    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use serde_json::Value;
    use vitrun::data::rand_augment::{apply, resolve, Bytes, Filter, Op, OpKind};

    fn dir() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/rand_augment")
    }

    fn load(file: &str, grey: bool) -> Bytes {
        let img = image::open(dir().join(file)).unwrap();
        let (channels, raw, w, h) = if grey {
            let g = img.to_luma8();
            (1, g.as_raw().clone(), g.width(), g.height())
        } else {
            let c = img.to_rgb8();
            (3, c.as_raw().clone(), c.width(), c.height())
        };
        let (w, h) = (w as usize, h as usize);
        let mut data = vec![0u8; raw.len()];
        for (i, v) in raw.iter().enumerate() {
            let (pixel, c) = (i / channels, i % channels);
            data[c * w * h + pixel] = *v;
        }
        Bytes {
            channels,
            height: h,
            width: w,
            data,
        }
    }

    fn cases() -> Value {
        serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap()
    }

    fn op_of(name: &str, arg: &Value, side: f64) -> Op {
        let f = arg.as_f64().unwrap_or(0.0);
        match name {
            "autocontrast" => Op::AutoContrast,
            "equalize" => Op::Equalize,
            "invert" => Op::Invert,
            "posterize" => Op::Posterize(f as u32),
            "solarize" => Op::Solarize(f as u32),
            "solarizeadd" => Op::SolarizeAdd(f as u32),
            "color" => Op::Color(f),
            "contrast" => Op::Contrast(f),
            "brightness" => Op::Brightness(f),
            "sharpness" => Op::Sharpness(f),
            "rotate" => Op::Rotate(f),
            "shearx" => Op::ShearX(f),
            "sheary" => Op::ShearY(f),
            "translatex" => Op::TranslateX(f * side),
            "translatey" => Op::TranslateY(f * side),
            other => panic!("unknown case {other}"),
        }
    }

    #[test]
    fn every_op_matches_timm_on_fixed_images() {
        let meta = cases();
        let fill: Vec<u8> = meta["fill"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as u8)
            .collect();
        let mut checked = 0;
        for case in meta["cases"].as_array().unwrap() {
            let grey = case["image"] == "grey";
            let input = load(&format!("{}.png", case["image"].as_str().unwrap()), grey);
            let expected = load(case["file"].as_str().unwrap(), grey);
            let name = case["op"].as_str().unwrap();
            let op = op_of(name, &case["arg"], input.width as f64);
            let filter = match case["filter"].as_str() {
                Some("bicubic") => Filter::Bicubic,
                _ => Filter::Bilinear,
            };
            let got = apply(&input, op, filter, &fill);
            let diffs: Vec<i32> = got
                .data
                .iter()
                .zip(&expected.data)
                .map(|(a, b)| (*a as i32 - *b as i32).abs())
                .collect();
            let worst = diffs.iter().copied().max().unwrap_or(0);
            let off = diffs.iter().filter(|d| **d > 0).count();
            let geometric = case["filter"].is_string();
            let file = case["file"].as_str().unwrap();
            if geometric {
                assert!(worst <= 1, "{file}: a pixel differs by {worst}");
                assert!(
                    off * 50 <= diffs.len(),
                    "{file}: {off} of {} pixels differ",
                    diffs.len()
                );
            } else {
                assert_eq!(
                    worst, 0,
                    "{file}: PIL's integer arithmetic is matched exactly"
                );
            }
            checked += 1;
        }
        assert!(checked >= 50, "only {checked} cases");
    }

    #[test]
    fn posterize_to_zero_bits_is_black() {
        let input = load("rgb.png", false);
        let out = apply(&input, Op::Posterize(0), Filter::Bilinear, &[0]);
        assert!(out.data.iter().all(|v| *v == 0));
        assert_eq!(
            apply(&input, Op::Posterize(8), Filter::Bilinear, &[0]),
            input
        );
    }

    #[test]
    fn level_to_argument_rules_match_timm() {
        let meta = cases();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for level in meta["levels"].as_array().unwrap() {
            let timm_name = level["op"].as_str().unwrap();
            let increasing = timm_name.ends_with("Increasing");
            let name = timm_name.trim_end_matches("Increasing");
            let magnitude = level["magnitude"].as_f64().unwrap();
            let want: Vec<f64> = level["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            let side = 24.0;
            let mut seen: Vec<f64> = (0..64)
                .map(|_| {
                    let kind = OpKind::from_name(name).expect("a timm op name");
                    let op = resolve(kind, magnitude, increasing, 0.45, (24, 24), &mut rng);
                    let v = match op {
                        Op::Rotate(v)
                        | Op::Color(v)
                        | Op::Contrast(v)
                        | Op::Brightness(v)
                        | Op::Sharpness(v)
                        | Op::ShearX(v)
                        | Op::ShearY(v) => v,
                        Op::TranslateX(px) | Op::TranslateY(px) => px / side,
                        Op::Posterize(v) | Op::Solarize(v) | Op::SolarizeAdd(v) => v as f64,
                        other => panic!("{other:?} has no argument"),
                    };
                    v.abs()
                })
                .collect();
            seen.sort_by(f64::total_cmp);
            seen.dedup_by(|a, b| (*a - *b).abs() < 1e-9);
            assert_eq!(
                seen.len(),
                want.len(),
                "{timm_name} at {magnitude}: {seen:?} vs {want:?}"
            );
            for (s, w) in seen.iter().zip(&want) {
                assert!(
                    (s - w).abs() < 1e-9,
                    "{timm_name} at {magnitude}: {seen:?} vs {want:?}"
                );
            }
        }
    }
}

mod weight_average {
    //! `[train.ema]`: timm's decay rule, the update (BatchNorm running statistics included, as
    //! timm's `ModelEmaV3` averages buffers), and that it never touches the weights.

    use burn::backend::{Autodiff, Flex};
    use burn::module::AutodiffModule;
    use burn::tensor::{Distribution, Tensor};
    use vitrun::config::EmaConfig;
    use vitrun::model::{state_dict, Vit, VitSpec};
    use vitrun::task::classification::{vit_classifier, Classifier};
    use vitrun::train::ema::{decay_at, Ema};

    fn spec() -> VitSpec {
        VitSpec {
            image_size: 8,
            in_channels: 3,
            patch_size: 4,
            conv_stem: vec![4, 4],
            conv_stem_pool: false,
            conv_stem_depth: 1,
            conv_stem_batch_norm: true,
            embed_dim: 8,
            depth: 1,
            num_heads: 2,
            mlp_ratio: 2.0,
            mean_pool: false,
            distilled: false,
            dropout: 0.0,
            attn_dropout: 0.0,
            drop_path: 0.0,
        }
    }

    fn model(seed: u64) -> Classifier<Autodiff<Flex>, Vit<Autodiff<Flex>>> {
        use burn::tensor::backend::Backend;
        let device = Default::default();
        <Autodiff<Flex> as Backend>::seed(&device, seed);
        vit_classifier(&spec(), 3, &device)
    }

    #[test]
    fn the_decay_follows_timm_model_ema_v3() {
        let mut c = EmaConfig {
            enabled: true,
            decay: 0.9998,
            ..EmaConfig::default()
        };
        assert_eq!(decay_at(&c, 1), 0.0, "the first update copies the weights");
        assert_eq!(decay_at(&c, 2), 0.9998);
        assert_eq!(decay_at(&c, 50_000), 0.9998);
        c.warmup = true;
        c.warmup_power = 0.75;
        let want = |step: f64| 1.0 - (1.0 + step).powf(-0.75);
        assert!((decay_at(&c, 2) - want(1.0)).abs() < 1e-12);
        assert!((decay_at(&c, 101) - want(100.0)).abs() < 1e-12);
        assert_eq!(decay_at(&c, 10_000_000), 0.9998, "capped at decay");
    }

    #[test]
    fn each_update_blends_by_the_decay_and_leaves_the_weights_alone() {
        let config = EmaConfig {
            enabled: true,
            decay: 0.75,
            ..EmaConfig::default()
        };
        let first = model(1).valid();
        let trained = model(2);
        let images = Tensor::<Autodiff<Flex>, 4>::random(
            [2, 3, 8, 8],
            Distribution::Normal(0.5, 1.0),
            &Default::default(),
        );
        trained.forward(images);
        let second = trained.valid();
        let (before_first, before_second) = (state_dict(&first), state_dict(&second));
        let running = "patch_embed.stem_norm.0.running_mean";
        assert_ne!(
            before_first[running], before_second[running],
            "a training forward pass moved the second model's running statistics"
        );
        let mut ema = Ema::new(&config);
        assert!(ema.model.is_none());
        ema.update(model(1).valid(), 1); // the seed of `first`: the same weights
        let copied = state_dict(ema.model.as_ref().unwrap());
        ema.update(second.clone(), 2);
        ema.update(second.clone(), 3);
        let averaged = state_dict(ema.model.as_ref().unwrap());
        assert_eq!(
            state_dict(&second),
            before_second,
            "the weights averaged in are untouched, running statistics included"
        );
        for (name, t) in &before_first {
            assert_eq!(copied[name], *t, "{name}: update 1 copies");
            let (a, b) = (&t.data, &before_second[name].data);
            let got = &averaged[name].data;
            for k in 0..a.len() {
                let want = 0.75 * (0.75 * a[k] + 0.25 * b[k]) + 0.25 * b[k];
                assert!((got[k] - want).abs() < 1e-5, "{name}[{k}]");
            }
        }
    }
}

/// A run resumed mid-epoch starts its loader at the next batch: what it yields from there is
/// the very tail of the full epoch (augmented draws, repeats and Mixup/CutMix alike).
#[test]
fn an_epoch_started_at_a_batch_yields_the_tail_of_the_full_epoch() {
    let mut a = mixing(true, true, MixMode::Batch);
    a.random_resized_crop.enabled = true;
    a.hflip.enabled = true;
    let mixer = Mixer::new(&a, 0.1, 5, 11).unwrap();
    let spec = LoaderSpec {
        repeats: 2,
        transform: Some(Arc::new(mixer)),
        ..synthetic_loader(&a, 20, 16, 3)
    };
    let full: Vec<Batch<Labels>> = EpochLoader::start(spec.clone(), 2)
        .map(Result::unwrap)
        .collect();
    assert_eq!(full.len(), 7);
    for first in [0, 1, 4, 6, 7] {
        let loader = EpochLoader::start_at(spec.clone(), 2, first);
        assert_eq!(loader.batches, 7, "the epoch's length is the whole epoch's");
        let tail: Vec<Batch<Labels>> = loader.map(Result::unwrap).collect();
        assert_eq!(tail.len(), 7 - first);
        for (a, b) in full[first..].iter().zip(&tail) {
            assert!(a.images == b.images, "batch pixels from {first}");
            assert_eq!(a.targets.labels, b.targets.labels);
            let soft = |t: &Labels| t.mixed.as_ref().map(|m| m.values.clone());
            assert_eq!(soft(&a.targets), soft(&b.targets));
            assert!(soft(&a.targets).is_some());
        }
    }
}

/// A mixer that keeps the images before mixing (for a distillation teacher) hands them out
/// beside the mixed ones, which it mixes exactly as before; a plain mixer keeps nothing.
#[test]
fn a_mixer_for_a_teacher_keeps_the_images_before_mixing() {
    let a = mixing(true, true, MixMode::Elem);
    let plain = Mixer::new(&a, 0.0, CLASSES, 4).unwrap();
    let keeping = plain.clone().keeping_unmixed();
    let (mut x, mut y) = (constant_batch(6, 4), constant_batch(6, 4));
    let before = x.images.clone();
    assert_eq!(plain.mix(&mut x, 2, 3), keeping.mix(&mut y, 2, 3));
    assert_eq!(x.images, y.images);
    assert_ne!(x.images, before, "the draw mixed something");
    assert_eq!(x.unmixed, None);
    assert_eq!(y.unmixed.as_deref(), Some(before.as_slice()));
    assert_eq!(y.teacher_images(), before.as_slice());
    assert_eq!(x.teacher_images(), x.images.as_slice());
}
