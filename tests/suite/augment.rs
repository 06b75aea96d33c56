//! Augmentations: determinism by seed, shapes and ranges, and each transform's defining property.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use vitrun::config::{AugmentConfig, ErasingValue};
use vitrun::data::augment::{
    center_crop, color_jitter, normalize, random_erasing, random_resized_crop, sample_rng,
    shift_hue,
};
use vitrun::data::{synthetic, Image, Pipeline};

fn scene(size: usize, seed: u64) -> Image {
    synthetic::render("car", size, &mut ChaCha8Rng::seed_from_u64(seed))
}

fn everything_on() -> AugmentConfig {
    let mut a = AugmentConfig::default();
    a.random_resized_crop.enabled = true;
    a.hflip.enabled = true;
    a.color_jitter.enabled = true;
    a.random_erasing.enabled = true;
    a.random_erasing.p = 1.0;
    a.normalize.enabled = true;
    a
}

#[test]
fn same_seed_epoch_and_index_replay_exactly() {
    let p = Pipeline::train(&everything_on(), 24, 3);
    let a = p.apply(scene(40, 1), &mut sample_rng(5, 2, 17));
    let b = p.apply(scene(40, 1), &mut sample_rng(5, 2, 17));
    assert_eq!(a.image, b.image);
    assert_eq!(a.applied, b.applied);
    let c = p.apply(scene(40, 1), &mut sample_rng(5, 3, 17));
    assert_ne!(a.image, c.image, "another epoch draws differently");
}

#[test]
fn outputs_have_the_configured_shape_and_range() {
    let mut cfg = everything_on();
    cfg.normalize.enabled = false;
    cfg.random_erasing.value = ErasingValue::Zero;
    for channels in [1, 3] {
        let train =
            Pipeline::train(&cfg, 20, channels).apply(scene(37, 2), &mut sample_rng(1, 1, 1));
        assert_eq!(
            (train.image.channels, train.image.height, train.image.width),
            (channels, 20, 20)
        );
        assert!(train.image.data.iter().all(|v| (0.0..=1.0).contains(v)));
        let val = Pipeline::val(&cfg, 20, channels).apply(scene(37, 2), &mut sample_rng(1, 1, 1));
        assert_eq!(val.image.data.len(), channels * 400);
    }
}

#[test]
fn hflip_is_its_own_inverse_and_mirrors() {
    let img = scene(16, 3);
    let flipped = img.hflip();
    assert_eq!(flipped.hflip(), img);
    assert_eq!(flipped.at(1, 5, 0), img.at(1, 5, 15));
}

#[test]
fn full_scale_fixed_ratio_crop_is_a_plain_resize() {
    let img = scene(32, 4);
    let crop = random_resized_crop(
        &img,
        [1.0, 1.0],
        [1.0, 1.0],
        16,
        &mut ChaCha8Rng::seed_from_u64(0),
    );
    assert_eq!(crop, img.resize(16, 16));
}

#[test]
fn crops_stay_inside_the_requested_area_range() {
    let mut img = Image::new(1, 100, 100);
    for (i, v) in img.data.iter_mut().enumerate() {
        *v = (i % 100) as f32 / 100.0;
    }
    let mut rng = ChaCha8Rng::seed_from_u64(9);
    for _ in 0..50 {
        let crop = random_resized_crop(&img, [0.2, 0.3], [1.0, 1.0], 10, &mut rng);
        let span = crop.at(0, 0, 9) - crop.at(0, 0, 0);
        let width = span * 100.0 * 10.0 / 9.0;
        assert!(
            (40.0..=58.0).contains(&width),
            "crop width {width} outside sqrt(0.2..0.3) of 100"
        );
    }
}

#[test]
fn center_crop_of_a_square_resizes_then_takes_the_middle() {
    let img = scene(64, 5);
    let out = center_crop(&img, 32, 1.0);
    assert_eq!(out, img.resize(32, 32));
    let out = center_crop(&img, 32, 1.14);
    assert_eq!((out.height, out.width), (32, 32));
    assert_ne!(out, img.resize(32, 32));
}

#[test]
fn zero_jitter_is_identity_and_brightness_scales() {
    let img = scene(16, 6);
    let mut same = img.clone();
    color_jitter(&mut same, [0.0; 4], &mut ChaCha8Rng::seed_from_u64(1));
    assert_eq!(same, img);
    let mut darker = img.clone();
    color_jitter(
        &mut darker,
        [0.5, 0.0, 0.0, 0.0],
        &mut ChaCha8Rng::seed_from_u64(2),
    );
    let ratios: Vec<f32> = img
        .data
        .iter()
        .zip(&darker.data)
        .filter(|(a, b)| **a > 0.05 && **b < 0.99)
        .map(|(a, b)| b / a)
        .collect();
    let first = ratios[0];
    assert!(
        ratios.iter().all(|r| (r - first).abs() < 1e-3),
        "brightness is one factor"
    );
    assert!((0.5..=1.5).contains(&first));
}

#[test]
fn a_full_turn_of_hue_is_identity_and_a_third_rotates_channels() {
    let img = scene(12, 7);
    let mut turned = img.clone();
    shift_hue(&mut turned, 1.0);
    let err = img
        .data
        .iter()
        .zip(&turned.data)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err < 1e-5, "{err}");
    let mut red = Image::new(3, 1, 1);
    red.data = vec![1.0, 0.0, 0.0];
    shift_hue(&mut red, 1.0 / 3.0);
    assert!(
        (red.data[1] - 1.0).abs() < 1e-5 && red.data[0].abs() < 1e-5,
        "{:?}",
        red.data
    );
}

#[test]
fn normalize_gives_zero_mean_unit_std_for_matching_stats() {
    let mut img = Image::new(3, 2, 2);
    img.data = vec![0.2, 0.4, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5, 0.0, 1.0, 0.0, 1.0];
    normalize(&mut img, &[0.3, 0.5, 0.5], &[0.1, 1.0, 0.5]);
    let want = [
        -1.0, 1.0, -1.0, 1.0, 0.0, 0.0, 0.0, 0.0, -1.0, 1.0, -1.0, 1.0,
    ];
    for (got, want) in img.data.iter().zip(want) {
        assert!((got - want).abs() < 1e-5, "{:?}", img.data);
    }
}

#[test]
fn erasing_changes_exactly_one_rectangle() {
    let img = Image {
        channels: 1,
        height: 20,
        width: 20,
        data: vec![0.5; 400],
    };
    let mut erased = img.clone();
    assert!(random_erasing(
        &mut erased,
        [0.1, 0.1],
        [1.0, 1.0],
        ErasingValue::Zero,
        &mut ChaCha8Rng::seed_from_u64(3)
    ));
    let zeros: Vec<(usize, usize)> = (0..20)
        .flat_map(|y| (0..20).map(move |x| (y, x)))
        .filter(|&(y, x)| erased.at(0, y, x) == 0.0)
        .collect();
    assert_eq!(zeros.len(), 36, "10% of 400 pixels, as a 6×6 square");
    let (ys, xs): (Vec<usize>, Vec<usize>) = zeros.iter().copied().unzip();
    let h = ys.iter().max().unwrap() - ys.iter().min().unwrap() + 1;
    let w = xs.iter().max().unwrap() - xs.iter().min().unwrap() + 1;
    assert_eq!((h, w), (6, 6));
}

#[test]
fn validation_ignores_random_transforms() {
    let cfg = everything_on();
    let val = Pipeline::val(&cfg, 16, 3);
    let a = val.apply(scene(20, 8), &mut sample_rng(1, 1, 1));
    let b = val.apply(scene(20, 8), &mut sample_rng(2, 9, 4));
    assert_eq!(a.image, b.image);
    assert!(a.applied.is_empty());
}

/// The straightforward form of `crop_resize`: every output pixel averages `⌊scale⌋²` bilinear
/// samples of the source (the implementation runs it as two separable passes).
fn crop_resize_reference(
    img: &Image,
    top: f32,
    left: f32,
    h: f32,
    w: f32,
    out_h: usize,
    out_w: usize,
) -> Image {
    let bilinear = |c: usize, y: f32, x: f32| {
        let y = y.clamp(0.0, (img.height - 1) as f32);
        let x = x.clamp(0.0, (img.width - 1) as f32);
        let (y0, x0) = (y.floor() as usize, x.floor() as usize);
        let (y1, x1) = ((y0 + 1).min(img.height - 1), (x0 + 1).min(img.width - 1));
        let (fy, fx) = (y - y0 as f32, x - x0 as f32);
        let top = img.at(c, y0, x0) * (1.0 - fx) + img.at(c, y0, x1) * fx;
        let bottom = img.at(c, y1, x0) * (1.0 - fx) + img.at(c, y1, x1) * fx;
        top * (1.0 - fy) + bottom * fy
    };
    let mut out = Image::new(img.channels, out_h, out_w);
    let (sy, sx) = (h / out_h as f32, w / out_w as f32);
    let (ty, tx) = (sy.floor().max(1.0) as usize, sx.floor().max(1.0) as usize);
    for c in 0..img.channels {
        for oy in 0..out_h {
            for ox in 0..out_w {
                let mut acc = 0.0;
                for ky in 0..ty {
                    for kx in 0..tx {
                        let y = top + (oy as f32 + (ky as f32 + 0.5) / ty as f32) * sy - 0.5;
                        let x = left + (ox as f32 + (kx as f32 + 0.5) / tx as f32) * sx - 0.5;
                        acc += bilinear(c, y, x);
                    }
                }
                out.data[(c * out_h + oy) * out_w + ox] = acc / (ty * tx) as f32;
            }
        }
    }
    out
}

#[test]
fn separable_crop_resize_equals_the_per_pixel_definition() {
    use rand::Rng;
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    for _ in 0..40 {
        let (ih, iw) = (rng.gen_range(1..60), rng.gen_range(1..60));
        let img = Image {
            channels: 3,
            height: ih,
            width: iw,
            data: (0..3 * ih * iw).map(|_| rng.gen::<f32>()).collect(),
        };
        let h = rng.gen_range(0.5..ih as f32);
        let w = rng.gen_range(0.5..iw as f32);
        let top = rng.gen_range(0.0..=(ih as f32 - h));
        let left = rng.gen_range(0.0..=(iw as f32 - w));
        let (oh, ow) = (rng.gen_range(1..40), rng.gen_range(1..40));
        let fast = img.crop_resize(top, left, h, w, oh, ow);
        let slow = crop_resize_reference(&img, top, left, h, w, oh, ow);
        let worst = fast
            .data
            .iter()
            .zip(&slow.data)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst < 1e-5,
            "{ih}x{iw} crop {h}x{w} at ({top}, {left}) to {oh}x{ow}: {worst}"
        );
    }
}

/// `data.interpolation = "bicubic" | "area"` validates as timm's eval transform does
/// (torchvision's Resize and CenterCrop on a PIL image): the same bytes, on committed outputs
/// of timm's `create_transform` (scripts/make_resize_fixtures.py).
#[test]
fn pil_filters_give_timms_eval_transform_byte_for_byte() {
    use vitrun::config::Interpolation;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resize");
    let source = vitrun::data::folder::decode(&dir.join("source.png"), u64::MAX).unwrap();
    let expected = vitrun::model::read_state_dict(&dir.join("expected.safetensors")).unwrap();
    assert_eq!(expected.len(), 4);
    for (name, want) in &expected {
        let parts: Vec<&str> = name.split('_').collect();
        let (filter, size, crop_pct) = (
            parts[0],
            parts[1].parse().unwrap(),
            parts[2].parse::<f64>().unwrap(),
        );
        let mut config = AugmentConfig::default();
        config.normalize.enabled = false;
        config.center_crop.enabled = true;
        config.center_crop.ratio = 1.0 / crop_pct;
        let interpolation = match filter {
            "bicubic" => Interpolation::Bicubic,
            _ => Interpolation::Area,
        };
        let out = Pipeline::val(&config, size, 3)
            .with_interpolation(interpolation)
            .apply(source.clone(), &mut ChaCha8Rng::seed_from_u64(0))
            .image;
        let want = &want.data;
        assert_eq!(out.data.len(), want.len(), "{name}");
        let off: Vec<usize> = out
            .data
            .iter()
            .zip(want)
            .enumerate()
            .filter(|(_, (a, b))| ((*a - *b) * 255.0).abs() > 0.01)
            .map(|(i, _)| i)
            .collect();
        assert!(
            off.is_empty(),
            "{name}: {} of {} values differ, first at {:?}",
            off.len(),
            want.len(),
            off.first()
        );
    }
}
