//! Transfer learning: pretrained weights through the filter with a coverage report (head
//! swapped, distillation token dropped or mapped, `module.` stripped), strict refusal, frozen
//! parameters that never move, timm's layer-wise lr decay, and the tutorial's recipe — the DeiT-
//! tiny fixture at 224 px, head swapped to five classes, eight blocks frozen — whose loss falls.

use std::path::{Path, PathBuf};

use crate::common::{config, micro, runs_set, text, vitrun};
use burn::backend::Flex;
use vitrun::contract::Event;
use vitrun::model::{
    apply_pretrained, apply_state_dict, read_state_dict, state_dict, write_safetensors, StateDict,
    Vit, VitSpec,
};
use vitrun::task::classification::{vit_classifier, Classifier};
use vitrun::track::Store;
use vitrun::train::optim::layer_scale;

type B = Flex;

fn spec(distilled: bool) -> VitSpec {
    VitSpec {
        image_size: 16,
        in_channels: 3,
        patch_size: 4,
        conv_stem: Vec::new(),
        conv_stem_pool: false,
        conv_stem_depth: 1,
        conv_stem_batch_norm: false,
        embed_dim: 24,
        depth: 2,
        num_heads: 2,
        mlp_ratio: 2.0,
        mean_pool: false,
        distilled,
        dropout: 0.0,
        attn_dropout: 0.0,
        drop_path: 0.0,
    }
}

fn model(s: &VitSpec, classes: usize, seed: u64) -> Classifier<B, Vit<B>> {
    let device = Default::default();
    <B as burn::tensor::backend::Backend>::seed(&device, seed);
    vit_classifier(s, classes, &device)
}

#[test]
fn save_then_load_is_bit_identical() {
    let s = spec(true);
    let a = model(&s, 5, 1);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("m.safetensors");
    write_safetensors(&file, &state_dict(&a)).unwrap();
    let b = apply_state_dict(
        model(&s, 5, 2),
        &read_state_dict(&file).unwrap(),
        "m",
        &Default::default(),
    )
    .unwrap();
    assert_eq!(state_dict(&a), state_dict(&b));
}

fn encoder(sd: &StateDict) -> StateDict {
    sd.iter()
        .filter(|(k, _)| !k.starts_with("head") && *k != "pos_embed" && *k != "dist_token")
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[test]
fn coverage_reports_head_swaps_and_distillation_tokens() {
    let device = Default::default();
    // A distilled 10-class checkpoint, saved through DataParallel (`module.` keys).
    let teacher = model(&spec(true), 10, 1);
    let sd: StateDict = state_dict(&teacher)
        .into_iter()
        .map(|(k, v)| (format!("module.{k}"), v))
        .collect();
    let target = spec(false);
    let (student, coverage) = apply_pretrained(model(&target, 5, 2), sd.clone(), &target, &device);
    assert!(coverage.encoder_complete(), "{}", coverage.summary());
    let mut reinit: Vec<&str> = coverage
        .reinitialised
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    reinit.sort();
    assert_eq!(
        reinit,
        ["head.bias", "head.weight"],
        "{}",
        coverage.summary()
    );
    assert!(coverage.reinitialised[0].1.contains("class count differs"));
    let ignored: Vec<&str> = coverage.ignored.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        ignored,
        ["dist_token", "head_dist.weight", "head_dist.bias"],
        "{}",
        coverage.summary()
    );
    assert!(coverage.adapted.iter().any(|a| a.contains("module.")));
    assert!(coverage.adapted.iter().any(|a| a.contains("position row")));
    let (t, s) = (state_dict(&teacher), state_dict(&student));
    assert_eq!(encoder(&t), encoder(&s), "the encoder is the teacher's");
    let (tp, sp) = (&t["pos_embed"], &s["pos_embed"]);
    let dim = 24;
    assert_eq!(sp.shape, [1, 17, dim]);
    assert_eq!(sp.data[..dim], tp.data[..dim], "class row kept");
    assert_eq!(
        sp.data[dim..],
        tp.data[2 * dim..],
        "patch rows kept, distillation row dropped"
    );

    // And the reverse: a plain checkpoint into a distilled model maps the class token.
    let plain = state_dict(&model(&spec(false), 5, 3));
    let target = spec(true);
    let (distilled, coverage) =
        apply_pretrained(model(&target, 5, 4), plain.clone(), &target, &device);
    assert!(coverage.encoder_complete(), "{}", coverage.summary());
    let d = state_dict(&distilled);
    assert_eq!(d["dist_token"].data, plain["cls_token"].data);
    assert_eq!(
        d["head.weight"].data, plain["head.weight"].data,
        "same class count: head kept"
    );
    let mut reinit: Vec<&str> = coverage
        .reinitialised
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    reinit.sort();
    assert_eq!(
        reinit,
        ["head_dist.bias", "head_dist.weight"],
        "{}",
        coverage.summary()
    );

    // A checkpoint of another width covers no encoder tensor.
    let wide = state_dict(&model(
        &VitSpec {
            embed_dim: 32,
            ..spec(false)
        },
        5,
        5,
    ));
    let target = spec(false);
    let (_, coverage) = apply_pretrained(model(&target, 5, 6), wide, &target, &device);
    assert!(!coverage.encoder_complete());
    assert!(
        coverage.summary().contains("shape differs"),
        "{}",
        coverage.summary()
    );
}

#[test]
fn a_patchify_checkpoint_starts_a_conv_stem_model_all_but_its_embedding() {
    let device = Default::default();
    let plain = state_dict(&model(&spec(false), 5, 1));
    let target = VitSpec {
        conv_stem: vec![8, 16],
        ..spec(false)
    };
    let (stemmed, coverage) =
        apply_pretrained(model(&target, 5, 2), plain.clone(), &target, &device);
    assert!(!coverage.encoder_complete(), "{}", coverage.summary());
    let mut fresh: Vec<&str> = coverage
        .reinitialised
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    fresh.sort();
    assert_eq!(
        fresh,
        [
            "patch_embed.proj.weight",
            "patch_embed.stem.0.bias",
            "patch_embed.stem.0.weight",
            "patch_embed.stem.1.bias",
            "patch_embed.stem.1.weight"
        ],
        "{}",
        coverage.summary()
    );
    let s = state_dict(&stemmed);
    assert_eq!(s["patch_embed.proj.weight"].shape, [24, 16, 1, 1]);
    assert_eq!(s["patch_embed.proj.bias"], plain["patch_embed.proj.bias"]);
    assert_eq!(
        s["blocks.1.mlp.fc2.weight"],
        plain["blocks.1.mlp.fc2.weight"]
    );
}

#[test]
fn layer_decay_scales_each_block_as_timm_does() {
    let (depth, d) = (12, 0.75);
    assert_eq!(layer_scale("head.weight", depth, d), 1.0);
    assert_eq!(layer_scale("norm.bias", depth, d), 1.0);
    assert_eq!(layer_scale("blocks.11.mlp.fc1.weight", depth, d), 0.75);
    assert!((layer_scale("blocks.0.attn.qkv.weight", depth, d) - 0.75f64.powi(12)).abs() < 1e-15);
    assert!((layer_scale("pos_embed", depth, d) - 0.75f64.powi(13)).abs() < 1e-15);
    assert!((layer_scale("patch_embed.proj.weight", depth, d) - 0.75f64.powi(13)).abs() < 1e-15);
    assert_eq!(layer_scale("blocks.3.norm1.weight", depth, 1.0), 1.0);
}

fn trial_dir(runs: &Path, experiment: &str) -> (String, PathBuf) {
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let t = store
        .trials(Some(experiment))
        .unwrap()
        .into_iter()
        .next()
        .unwrap();
    (t.id.clone(), runs.join(experiment).join(&t.id))
}

#[test]
fn fine_tuning_from_a_trial_freezes_what_it_is_told_and_reports_coverage() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let out = micro(&runs, &["--set", "model.depth=2"]);
    assert!(out.status.success(), "{}", text(&out));
    let (base_id, base_dir) = trial_dir(&runs, "micro");
    let pretrained = format!("model.pretrained=\"trial:{}\"", &base_id[..6]);
    let out = micro(
        &runs,
        &[
            "--set",
            "name=\"tuned\"",
            "--set",
            "model.depth=2",
            "--set",
            &pretrained,
            "--set",
            "finetune.freeze_patch_embed=true",
            "--set",
            "finetune.freeze_blocks=1",
            "--set",
            "finetune.freeze=[\"cls_token\", \"pos_embed\"]",
            "--set",
            "data.classes=[\"bus\", \"car\", \"truck\"]",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (tuned_id, tuned_dir) = trial_dir(&runs, "tuned");
    let before = read_state_dict(&base_dir.join("best/model.safetensors")).unwrap();
    let after = read_state_dict(&tuned_dir.join("last/model.safetensors")).unwrap();
    for (name, t) in &after {
        let frozen = name.starts_with("patch_embed.")
            || name.starts_with("blocks.0.")
            || name == "cls_token"
            || name == "pos_embed";
        if frozen {
            assert_eq!(t, &before[name], "{name} is frozen");
        } else if !name.starts_with("head.") {
            assert_ne!(t, &before[name], "{name} trains");
        }
    }
    let opt = read_state_dict(&tuned_dir.join("last/optimizer.safetensors")).unwrap();
    assert!(
        opt.keys()
            .all(|k| !k.starts_with("blocks.0.") && !k.starts_with("patch_embed")),
        "no optimizer state for frozen parameters"
    );
    assert!(opt.keys().any(|k| k.starts_with("blocks.1.")));
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let events = store
        .events(&tuned_id, Event::Pretrained)
        .unwrap()
        .join(" ");
    assert!(
        events.contains("re-initialised 2: head.weight (class count differs")
            && events.contains("loaded 30 tensors"),
        "{events}"
    );

    let out = micro(
        &runs,
        &[
            "--set",
            "name=\"wider\"",
            "--set",
            "model.embed_dim=32",
            "--set",
            &pretrained,
        ],
    );
    let msg = text(&out);
    assert_eq!(out.status.code(), Some(1), "{msg}");
    assert!(
        msg.contains("does not cover the encoder") && msg.contains("pretrained_strict = false"),
        "{msg}"
    );
    for (set, expect) in [
        (
            "finetune.freeze=[\"blocks.7\"]",
            "`blocks.7` names no parameter",
        ),
        ("model.pretrained=\"/no/such.safetensors\"", "no such file"),
        (
            "model.pretrained=\"trial:ffffffff\"",
            "no trial id starts with",
        ),
    ] {
        let out = micro(&runs, &["--set", "name=\"bad\"", "--set", set]);
        assert_eq!(out.status.code(), Some(1), "{set}: {}", text(&out));
        assert!(text(&out).contains(expect), "{set}: {}", text(&out));
    }
}

/// A classification trial's encoder starts a detection and a segmentation model: every encoder
/// tensor loads, the heads and decoders start afresh, and the coverage says so.
#[test]
fn a_classification_encoder_starts_detection_and_segmentation_models() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let out = micro(&runs, &["--set", "train.epochs=1"]);
    assert!(out.status.success(), "{}", text(&out));
    let (base_id, _) = trial_dir(&runs, "micro");
    let pretrained = format!("model.pretrained=\"trial:{}\"", &base_id[..6]);
    for (name, task, fresh) in [
        ("detector", "detection", "detr.* ("),
        ("segmenter", "segmentation", "head.weight"),
    ] {
        let out = micro(
            &runs,
            &[
                "--set",
                &format!("name=\"{name}\""),
                "--set",
                &format!("head.task=\"{task}\""),
                "--set",
                "data.dataset=\"synthetic_scenes\"",
                "--set",
                "data.max_objects=2",
                "--set",
                "train.epochs=1",
                "--set",
                &pretrained,
            ],
        );
        assert!(out.status.success(), "{task}: {}", text(&out));
        let (id, _) = trial_dir(&runs, name);
        let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
        let events = store.events(&id, Event::Pretrained).unwrap().join(" ");
        assert!(
            events.contains("loaded 18 tensors") && events.contains(fresh),
            "{task}: {events}"
        );
        assert!(
            !events.contains("blocks.0") && !events.contains("pos_embed ("),
            "{task}: the whole encoder loads: {events}"
        );
    }
}

#[test]
fn the_tutorial_recipe_fine_tunes_deit_tiny_at_224_with_eight_blocks_frozen() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/timm/deit_tiny_patch16_224.safetensors");
    assert!(fixture.is_file(), "{} is missing", fixture.display());
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    let file = crate::common::experiment(
        tmp.path(),
        "recipe",
        &format!(
            "name = \"recipe\"\nseed = 5\n[data]\ndataset = \"synthetic\"\nimage_size = 224\ntrain_size = 16\nval_size = 8\n[model]\npreset = \"deit-tiny\"\npatch_size = 16\npretrained = {:?}\n[finetune]\nfreeze_blocks = 8\n[optimizer]\nlr = 1e-3\nweight_decay = 0.0\nschedule = \"constant\"\n[train]\nepochs = 4\nbatch_size = 8\n",
            fixture.display().to_string()
        ),
    );
    let set = runs_set(&runs);
    let out = vitrun(&["run", file.to_str().unwrap(), "--quiet", "--set", &set])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let (id, _) = trial_dir(&runs, "recipe");
    let events = store.events(&id, Event::Pretrained).unwrap().join(" ");
    assert!(
        events.contains("loaded 150 tensors; re-initialised 2: head.weight (class count differs"),
        "{events}"
    );
    let losses: Vec<f64> = store
        .metrics(&id)
        .unwrap()
        .into_iter()
        .filter(|m| m.split == "train" && m.name == "loss")
        .map(|m| m.value)
        .collect();
    assert_eq!(losses.len(), 4);
    assert!(losses[3] < losses[0] * 0.8, "the loss falls: {losses:?}");
}

/// `root/{train,val}/{red,blue}/*.png`: reddish and bluish noise, told apart by colour.
fn colour_folder(root: &Path, per_class: usize) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for split in ["train", "val"] {
        for (class, tint) in [("red", [1.0, 0.3, 0.3]), ("blue", [0.3, 0.3, 1.0])] {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            for i in 0..per_class {
                let img = image::RgbImage::from_fn(16, 16, |_, _| {
                    let base: f64 = rng.gen_range(0.2..0.9);
                    image::Rgb(tint.map(|t: f64| ((base * t).min(1.0) * 255.0) as u8))
                });
                img.save(dir.join(format!("{i:02}.png"))).unwrap();
            }
        }
    }
}

/// Reads a float32 `.npy` file's values.
fn npy(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + header..]
        .chunks(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// `vitrun explain` writes each method's map of every readable image (values in [0, 1],
/// reaching 1), names the class Grad-CAM explains, skips the unreadable image with exit code
/// 1, and refuses an unknown class or a class for attention.
fn explain_writes_maps(runs: &Path, val: &Path) {
    let out_dir = runs.join("explained");
    for method in ["attention", "rollout", "gradcam"] {
        let out = vitrun(&[
            "explain",
            "micro",
            val.join("blue").to_str().unwrap(),
            "--method",
            method,
            "--out",
            out_dir.to_str().unwrap(),
            "--json",
            "--runs-dir",
            runs.to_str().unwrap(),
        ])
        .output()
        .unwrap();
        assert_eq!(out.status.code(), Some(0), "{method}: {}", text(&out));
        let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 12, "{method}");
        for line in &lines {
            assert_eq!(line["class"].is_string(), method == "gradcam", "{line}");
            let values = npy(Path::new(line["values"].as_str().unwrap()));
            assert_eq!(values.len(), 16 * 16);
            assert!(
                values.iter().all(|v| (0.0..=1.0 + 1e-6).contains(v)),
                "{method}"
            );
            let max = values.iter().copied().fold(0.0f32, f32::max);
            assert!(
                max > 0.99 || (method == "gradcam" && max == 0.0),
                "{method}: max {max}"
            );
            let png = image::open(line["map"].as_str().unwrap()).unwrap();
            assert_eq!((png.width(), png.height()), (224, 224));
        }
    }
    let explain = |extra: &[&str]| {
        let mut args = vec![
            "explain",
            "micro",
            val.to_str().unwrap(),
            "--out",
            out_dir.to_str().unwrap(),
            "--runs-dir",
            runs.to_str().unwrap(),
        ];
        args.extend(extra);
        vitrun(&args).output().unwrap()
    };
    let out = explain(&["--method", "gradcam", "--class", "red"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "the broken image: {}",
        text(&out)
    );
    assert!(text(&out).contains("zz_broken.png"));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .matches(": gradcam of red →")
            .count(),
        24
    );
    let out = explain(&["--method", "gradcam", "--class", "green"]);
    assert!(
        text(&out).contains("--class \"green\" is not one of the model's classes (red, blue)"),
        "{}",
        text(&out)
    );
    let out = explain(&["--method", "attention", "--class", "red"]);
    assert!(
        text(&out).contains("--class picks the class Grad-CAM explains"),
        "{}",
        text(&out)
    );
}

#[test]
fn predict_agrees_with_the_stored_validation_accuracy() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    colour_folder(&data, 12);
    let runs = tmp.path().join("runs");
    let path = format!("data.path={:?}", data.display().to_string());
    let out = micro(
        &runs,
        &[
            "--set",
            "data.dataset=\"image_folder\"",
            "--set",
            &path,
            "--set",
            "data.classes=[\"red\", \"blue\"]",
            "--set",
            "train.epochs=3",
            "--set",
            "optimizer.lr=3e-3",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let (id, _) = trial_dir(&runs, "micro");
    let store = Store::open(&runs.join("vitrun.sqlite")).unwrap();
    let best = store
        .metrics(&id)
        .unwrap()
        .into_iter()
        .filter(|m| m.split == "val" && m.name == "top1")
        .map(|m| m.value)
        .fold(f64::NEG_INFINITY, f64::max);
    let val = data.join("val");
    let out = vitrun(&[
        "predict",
        &id[..6],
        val.to_str().unwrap(),
        "--top-k",
        "1",
        "--runs-dir",
        runs.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 24, "{stdout}");
    let right = lines
        .iter()
        .filter(|l| {
            let (file, top) = l.split_once(": ").unwrap();
            let truth = Path::new(file)
                .parent()
                .unwrap()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap();
            top.split(' ').next() == Some(truth)
        })
        .count();
    assert_eq!(
        right as f64 / 24.0,
        best,
        "predict reproduces the stored val top-1\n{stdout}"
    );
    assert!(best > 0.5, "the colours are learnable: {best}");

    std::fs::write(val.join("red/zz_broken.png"), b"not a png").unwrap();
    let out = vitrun(&[
        "predict",
        "micro",
        val.to_str().unwrap(),
        "--json",
        "--runs-dir",
        runs.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an unreadable image makes the exit code 1"
    );
    assert!(text(&out).contains("zz_broken.png"), "{}", text(&out));
    let objects: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(objects.len(), 24, "the readable images are still predicted");
    let top = objects[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 2, "top-k stops at the class count");
    let total: f64 = top.iter().map(|t| t["probability"].as_f64().unwrap()).sum();
    assert!((total - 1.0).abs() < 1e-4);
    explain_writes_maps(&runs, &val);

    let weights = runs.join("micro").join(&id).join("best/model.safetensors");
    let out = vitrun(&[
        "predict",
        weights.to_str().unwrap(),
        val.join("blue/00.png").to_str().unwrap(),
        "--config",
        config("micro.toml").to_str().unwrap(),
        "--set",
        "data.dataset=\"image_folder\"",
        "--set",
        &path,
        "--set",
        "data.classes=[\"red\", \"blue\"]",
    ])
    .output()
    .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let with_config = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(with_config.contains("00.png: "), "{}", text(&out));
    // Inside a trial folder the checkpoint needs no --config: the folder's config.toml says
    // what it is, so the answer is the same.
    for target in [weights.clone(), runs.join("micro").join(&id)] {
        let out = vitrun(&[
            "predict",
            target.to_str().unwrap(),
            val.join("blue/00.png").to_str().unwrap(),
        ])
        .output()
        .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout), with_config);
    }
    let stray = tmp.path().join("stray.safetensors");
    std::fs::copy(&weights, &stray).unwrap();
    let out = vitrun(&["predict", stray.to_str().unwrap(), val.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("no config.toml beside it"),
        "{}",
        text(&out)
    );
}

#[test]
fn an_export_of_timms_own_state_dict_reproduces_it_tensor_for_tensor() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/timm/deit_tiny_patch16_224.safetensors");
    let timm = read_state_dict(&fixture).unwrap();
    let s = VitSpec {
        image_size: 224,
        patch_size: 16,
        conv_stem: Vec::new(),
        conv_stem_pool: false,
        conv_stem_depth: 1,
        conv_stem_batch_norm: false,
        embed_dim: 192,
        depth: 12,
        num_heads: 3,
        mlp_ratio: 4.0,
        ..spec(false)
    };
    let loaded =
        apply_state_dict(model(&s, 1000, 1), &timm, "fixture", &Default::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export.safetensors");
    write_safetensors(&out, &state_dict(&loaded)).unwrap();
    assert_eq!(
        read_state_dict(&out).unwrap(),
        timm,
        "timm's names, layouts and values"
    );
}

#[test]
fn export_writes_the_trials_weights_and_timm_arguments() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = tmp.path().join("runs");
    assert!(micro(&runs, &["--set", "train.epochs=1"]).status.success());
    let (id, dir) = trial_dir(&runs, "micro");
    let out = tmp.path().join("out/model.safetensors");
    let run = vitrun(&[
        "export",
        &id[..6],
        "--out",
        out.to_str().unwrap(),
        "--runs-dir",
        runs.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(run.status.success(), "{}", text(&run));
    assert_eq!(
        read_state_dict(&out).unwrap(),
        read_state_dict(&dir.join("best/model.safetensors")).unwrap()
    );
    let args: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.with_extension("json")).unwrap())
            .unwrap();
    assert_eq!(args["architecture"], "VisionTransformer");
    assert_eq!(args["model_args"]["num_classes"], 2);
    assert_eq!(args["model_args"]["embed_dim"], 24);
    assert_eq!(args["model_args"]["global_pool"], "token");
    assert_eq!(args["label_names"], serde_json::json!(["bus", "car"]));
    // What timm.create_model needs to load it whole (scripts/timm_create_model.py runs the
    // README's snippet): a registered name, and a pretrained_cfg whose class count is the
    // export's, so the classifier is kept, with the preprocessing vitrun validates with.
    assert_eq!(args["timm_name"], "vit_tiny_patch16_224");
    let cfg = &args["pretrained_cfg"];
    assert_eq!(cfg["num_classes"], 2);
    assert_eq!(cfg["classifier"], serde_json::json!(["head"]));
    assert_eq!(cfg["first_conv"], "patch_embed.proj");
    let c = &args["model_args"];
    assert_eq!(
        cfg["input_size"],
        serde_json::json!([c["in_chans"], c["img_size"], c["img_size"]])
    );
    assert_eq!(cfg["interpolation"], "bilinear");
    assert_eq!(cfg["label_names"], args["label_names"]);
}

#[test]
fn two_accumulated_half_batches_train_like_one_full_batch() {
    let tmp = tempfile::tempdir().unwrap();
    let common = [
        "--set",
        "optimizer.name=\"sgd\"",
        "--set",
        "optimizer.momentum=0.0",
        "--set",
        "optimizer.weight_decay=0.0",
        "--set",
        "optimizer.lr=0.05",
        "--set",
        "train.epochs=2",
    ];
    let full = tmp.path().join("full");
    let out = micro(
        &full,
        &[&common[..], &["--set", "train.batch_size=32"]].concat(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let halves = tmp.path().join("halves");
    let out = micro(
        &halves,
        &[
            &common[..],
            &[
                "--set",
                "train.batch_size=16",
                "--set",
                "train.grad_accumulation=2",
            ],
        ]
        .concat(),
    );
    assert!(out.status.success(), "{}", text(&out));
    let weights = |runs: &Path| {
        let (_, dir) = trial_dir(runs, "micro");
        read_state_dict(&dir.join("last/model.safetensors")).unwrap()
    };
    let relative = |a: &StateDict, b: &StateDict| {
        a.iter()
            .map(|(name, t)| {
                let scale = t.data.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-6);
                let diff = t
                    .data
                    .iter()
                    .zip(&b[name].data)
                    .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
                diff / scale
            })
            .fold(0f32, f32::max)
    };
    let (a, b) = (weights(&full), weights(&halves));
    assert!(relative(&a, &b) < 1e-4, "{}", relative(&a, &b));
    let unaccumulated = tmp.path().join("small");
    let out = micro(
        &unaccumulated,
        &[&common[..], &["--set", "train.batch_size=16"]].concat(),
    );
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        relative(&a, &weights(&unaccumulated)) > 1e-3,
        "without accumulation, half batches train differently"
    );
    let store = |runs: &Path| {
        let s = Store::open(&runs.join("vitrun.sqlite")).unwrap();
        let (id, _) = trial_dir(runs, "micro");
        s.metrics(&id)
            .unwrap()
            .into_iter()
            .filter(|m| m.name == "lr")
            .map(|m| m.step)
            .collect::<Vec<_>>()
    };
    assert_eq!(
        store(&full),
        store(&halves),
        "the same optimizer steps per epoch"
    );
}

#[test]
fn a_distilled_models_features_are_the_mean_of_its_two_tokens() {
    let s = spec(true);
    let m = model(&s, 3, 8);
    let mut sd = state_dict(&m);
    for part in ["weight", "bias"] {
        let head = sd[&format!("head.{part}")].clone();
        sd.insert(format!("head_dist.{part}"), head);
    }
    let device = Default::default();
    let m = apply_state_dict(m, &sd, "same heads", &device).unwrap();
    let x = burn::tensor::Tensor::<B, 4>::random(
        [2, 3, 16, 16],
        burn::tensor::Distribution::Default,
        &device,
    );
    let trace = m.trace(x);
    // With equal heads, mean(head(cls), head(dist)) = head(mean(cls, dist)) = head(features).
    let expect = m.head.head.forward(trace.features.clone());
    let (got, expect): (Vec<f32>, Vec<f32>) = (
        trace.logits.into_data().to_vec().unwrap(),
        expect.into_data().to_vec().unwrap(),
    );
    for (a, b) in got.iter().zip(&expect) {
        assert!((a - b).abs() < 1e-5, "{got:?} vs {expect:?}");
    }
}

#[test]
fn a_pth_whose_pickle_would_run_a_command_is_refused_and_nothing_runs() {
    let marker = Path::new("/tmp/vitrun-pickle-ran");
    let _ = std::fs::remove_file(marker);
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/reduce_system.pth");
    let err = read_state_dict(&fixture).unwrap_err().to_string();
    assert!(
        err.contains("posix.system") && err.contains("reduce_system.pth"),
        "{err}"
    );
    let tmp = tempfile::tempdir().unwrap();
    let set = format!("model.pretrained={:?}", fixture.display().to_string());
    let out = micro(tmp.path(), &["--set", &set]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("posix.system") && text(&out).contains("model.pretrained"),
        "{}",
        text(&out)
    );
    assert!(!marker.exists(), "the pickle's command must never run");
}

#[test]
fn position_embeddings_resample_as_timm_does() {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pos_embed_resample.safetensors");
    let sd = read_state_dict(&fixture).unwrap();
    for prefix in [1usize, 2] {
        let src = &sd[&format!("src_p{prefix}")];
        for size in [4usize, 10, 7] {
            let want = &sd[&format!("to{size}_p{prefix}")];
            let got = vitrun::model::resample_pos_embed(&src.data, prefix, 7, size, 6);
            assert_eq!(got.len(), want.data.len());
            let worst = got
                .iter()
                .zip(&want.data)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                worst < 1e-5,
                "prefix {prefix}, 7×7 → {size}×{size}: max error {worst}"
            );
        }
    }
}

#[test]
fn a_checkpoint_of_another_patch_grid_loads_with_resampled_positions() {
    let device = Default::default();
    let small = model(
        &VitSpec {
            image_size: 12,
            ..spec(false)
        },
        5,
        1,
    );
    let target = spec(false);
    let (_, coverage) =
        apply_pretrained(model(&target, 5, 2), state_dict(&small), &target, &device);
    assert!(coverage.encoder_complete(), "{}", coverage.summary());
    assert!(
        coverage.adapted.iter().any(|a| a.contains("3×3 to a 4×4")),
        "{}",
        coverage.summary()
    );
}

#[test]
fn exports_round_trip_through_timm_to_the_same_logits() {
    use burn::tensor::{Tensor, TensorData};
    for pooling in ["cls", "mean"] {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!(
            "tests/fixtures/export_roundtrip_{pooling}.safetensors"
        ));
        let bytes = std::fs::read(&file).unwrap();
        let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
        let spec_json: serde_json::Value =
            serde_json::from_str(&meta.metadata().as_ref().unwrap()["args"]).unwrap();
        let a = &spec_json["model_args"];
        let n = |k: &str| a[k].as_u64().unwrap() as usize;
        let s = VitSpec {
            image_size: n("img_size"),
            in_channels: n("in_chans"),
            patch_size: n("patch_size"),
            conv_stem: Vec::new(),
            conv_stem_pool: false,
            conv_stem_depth: 1,
            conv_stem_batch_norm: false,
            embed_dim: n("embed_dim"),
            depth: n("depth"),
            num_heads: n("num_heads"),
            mlp_ratio: a["mlp_ratio"].as_f64().unwrap(),
            mean_pool: a["global_pool"] == "avg",
            ..spec(false)
        };
        let all = read_state_dict(&file).unwrap();
        let weights: StateDict = all
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("weights.")
                    .map(|k| (k.to_string(), v.clone()))
            })
            .collect();
        let device = Default::default();
        let m =
            apply_state_dict(model(&s, n("num_classes"), 0), &weights, "export", &device).unwrap();
        let input = &all["input"];
        let shape: [usize; 4] = input.shape.clone().try_into().unwrap();
        let logits: Vec<f32> = m
            .forward(Tensor::<B, 4>::from_data(
                TensorData::new(input.data.clone(), shape),
                &device,
            ))
            .into_data()
            .to_vec()
            .unwrap();
        let timm = &all["timm_logits"].data;
        let worst = logits
            .iter()
            .zip(timm)
            .fold(0f32, |w, (x, y)| w.max((x - y).abs()));
        let scale = timm.iter().fold(0f32, |w, v| w.max(v.abs()));
        assert!(
            worst <= 1e-4 * scale.max(1.0),
            "{pooling}: vitrun {logits:?} vs timm {timm:?}"
        );
    }
}

#[test]
fn an_old_linear_patch_embedding_is_converted_to_the_convolution_layout() {
    let s = spec(false);
    let source = model(&s, 5, 3);
    let mut sd = state_dict(&source);
    let w = sd.get_mut("patch_embed.proj.weight").unwrap();
    w.shape = vec![24, 3 * 4 * 4];
    let device = Default::default();
    let (loaded, coverage) = apply_pretrained(model(&s, 5, 4), sd, &s, &device);
    assert!(coverage.encoder_complete(), "{}", coverage.summary());
    assert!(coverage
        .adapted
        .iter()
        .any(|a| a.contains("linear to a convolution")));
    assert_eq!(state_dict(&loaded), state_dict(&source));
}
