//! Parity with timm: every fixture model in tests/fixtures/timm (made by
//! scripts/make_timm_fixtures.py), loaded by key name, reproduces timm's patch embedding,
//! last-block attention, pooled features and logits.

use std::path::{Path, PathBuf};

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use vitrun::model::{apply_state_dict, read_state_dict, StateTensor, VitSpec};
use vitrun::task::classification::vit_classifier;

type B = Flex;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/timm")
}

/// The fixture's encoder and its class count.
fn spec_of(name: &str) -> (VitSpec, usize) {
    let text = std::fs::read_to_string(fixtures().join(format!("{name}.json"))).unwrap();
    let arch: serde_json::Value = serde_json::from_str(&text).unwrap();
    let n = |k: &str| arch[k].as_u64().unwrap() as usize;
    let spec = VitSpec {
        image_size: n("img_size"),
        in_channels: 3,
        patch_size: n("patch_size"),
        conv_stem: Vec::new(),
        conv_stem_pool: false,
        conv_stem_depth: 1,
        conv_stem_batch_norm: false,
        embed_dim: n("embed_dim"),
        depth: n("depth"),
        num_heads: n("num_heads"),
        mlp_ratio: arch["mlp_ratio"].as_f64().unwrap(),
        mean_pool: arch["global_pool"] == "avg",
        distilled: n("num_prefix_tokens") == 2,
        dropout: 0.0,
        attn_dropout: 0.0,
        drop_path: 0.0,
    };
    (spec, n("num_classes"))
}

fn tensor<const D: usize>(t: &StateTensor) -> Tensor<B, D> {
    Tensor::from_data(
        TensorData::new(t.data.clone(), t.shape.clone()),
        &Default::default(),
    )
}

/// max |a - b| / max |b|: the relative error of a whole tensor.
fn rel_err<const D: usize>(ours: Tensor<B, D>, theirs: &StateTensor) -> f64 {
    assert_eq!(ours.dims().to_vec(), theirs.shape, "shape differs");
    let ours: Vec<f32> = ours.into_data().to_vec().unwrap();
    let scale = theirs.data.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let diff = ours
        .iter()
        .zip(&theirs.data)
        .fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
    diff / scale
}

fn check(name: &str, weights: &str) {
    let (spec, classes) = spec_of(name);
    let device = Default::default();
    let sd = read_state_dict(&fixtures().join(weights)).unwrap();
    let model = apply_state_dict(
        vit_classifier::<B>(&spec, classes, &device),
        &sd,
        weights,
        &device,
    )
    .unwrap();
    let io = read_state_dict(&fixtures().join(format!("{name}.io.safetensors"))).unwrap();
    let trace = model.trace(tensor::<4>(&io["input"]));
    let checks = [
        ("patch_embed", rel_err(trace.tokens, &io["patch_embed"])),
        (
            "attn_last",
            rel_err(trace.attentions.last().unwrap().clone(), &io["attn_last"]),
        ),
        ("features", rel_err(trace.features, &io["features"])),
        ("logits", rel_err(trace.logits.clone(), &io["logits"])),
    ];
    for (what, err) in checks {
        assert!(
            err <= 1e-4,
            "{name} {what}: relative error {err:.2e} > 1e-4"
        );
    }
    let fast = model.forward(tensor::<4>(&io["input"]));
    assert!(
        rel_err(fast, &io["logits"]) <= 1e-4,
        "{name}: the fused attention path differs"
    );
}

#[test]
fn small_mean_pooled_vit_matches_timm_from_safetensors() {
    check("vit_tiny_p4_32_avg", "vit_tiny_p4_32_avg.safetensors");
}

#[test]
fn small_vit_matches_timm_from_deit_style_pth() {
    check("vit_tiny_p4_32_avg", "vit_tiny_p4_32_avg.pth");
}

#[test]
fn small_distilled_deit_matches_timm() {
    check(
        "deit_tiny_distilled_p4_32",
        "deit_tiny_distilled_p4_32.safetensors",
    );
}

/// The full DeiT-tiny, read from float16 safetensors (timm computed its reference from the
/// same float16 weights).
#[test]
fn deit_tiny_224_matches_timm() {
    check("deit_tiny_patch16_224", "deit_tiny_patch16_224.safetensors");
}

#[test]
fn checkpoint_of_another_architecture_lists_every_mismatch() {
    let device = Default::default();
    let sd = read_state_dict(&fixtures().join("vit_tiny_p4_32_avg.safetensors")).unwrap();
    let (mut spec, _) = spec_of("vit_tiny_p4_32_avg");
    spec.mean_pool = false;
    let err = apply_state_dict(
        vit_classifier::<B>(&spec, 5, &device),
        &sd,
        "vit_tiny_p4_32_avg.safetensors",
        &device,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("missing (2): norm.weight [64], norm.bias [64]"),
        "{err}"
    );
    assert!(
        err.contains("unexpected (2): fc_norm.bias [64], fc_norm.weight [64]"),
        "{err}"
    );
    assert!(
        err.contains("head.bias: checkpoint [10], model [5]"),
        "{err}"
    );
    assert!(
        err.contains("head.weight: checkpoint [10, 64], model [5, 64]"),
        "{err}"
    );
}

#[test]
fn unreadable_checkpoint_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.safetensors");
    std::fs::write(&path, b"not a checkpoint").unwrap();
    let err = read_state_dict(&path).unwrap_err().to_string();
    assert!(err.contains("broken.safetensors"), "{err}");
}

/// timm's ResNet at its full depths and narrow widths (tests/fixtures/resnet, made by
/// scripts/make_resnet_fixtures.py): loaded by timm's names from `file`, its pooled features
/// and logits in eval mode (BatchNorm on running statistics) and its logits in train mode
/// (BatchNorm on the batch's statistics) match timm's.
fn check_resnet(name: &str, file: &str) {
    use burn::backend::Autodiff;
    use vitrun::model::resnet::{adapt, ResNetSpec};
    use vitrun::model::{Coverage, Model};
    use vitrun::task::classification::ClassifierHead;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/resnet");
    let arch: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap())
            .unwrap();
    let preset = if arch["block"] == "basic" {
        "resnet18"
    } else {
        "resnet50"
    };
    let widths: Vec<usize> = arch["widths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_u64().unwrap() as usize)
        .collect();
    let spec = ResNetSpec::preset(preset, widths.try_into().unwrap(), 3).unwrap();
    let classes = arch["num_classes"].as_u64().unwrap() as usize;
    let mut coverage = Coverage::default();
    let sd = adapt(read_state_dict(&dir.join(file)).unwrap(), &mut coverage);
    assert!(
        coverage
            .ignored
            .iter()
            .all(|(k, _)| k.ends_with("num_batches_tracked")),
        "{coverage:?}"
    );
    let io = read_state_dict(&dir.join(format!("{name}.io.safetensors"))).unwrap();
    let device = Default::default();
    let model = apply_state_dict(
        Model::new(
            spec.init::<B>(&device),
            ClassifierHead::new(vitrun::model::Arch::shape(&spec), classes, &device),
        ),
        &sd,
        file,
        &device,
    )
    .unwrap();
    let trace = model.trace(tensor::<4>(&io["input"]));
    assert!(trace.attentions.is_empty(), "a convnet has no attention");
    for (what, err) in [
        ("features", rel_err(trace.features, &io["features"])),
        ("logits", rel_err(trace.logits, &io["logits"])),
    ] {
        assert!(
            err <= 1e-4,
            "{name} {what}: relative error {err:.2e} > 1e-4"
        );
    }
    type T = Autodiff<B>;
    let training = apply_state_dict(
        Model::new(
            spec.init::<T>(&device),
            ClassifierHead::new(vitrun::model::Arch::shape(&spec), classes, &device),
        ),
        &sd,
        file,
        &device,
    )
    .unwrap();
    let input = Tensor::<T, 4>::from_data(
        TensorData::new(io["input"].data.clone(), io["input"].shape.clone()),
        &device,
    );
    let logits = training.forward(input).inner();
    let err = rel_err(logits, &io["logits_train"]);
    assert!(
        err <= 1e-4,
        "{name} train-mode logits: relative error {err:.2e} > 1e-4"
    );
}

#[test]
fn resnet18_shaped_basic_blocks_match_timm_in_eval_and_train_mode() {
    check_resnet("resnet18_w8", "resnet18_w8.safetensors");
}

#[test]
fn resnet50_shaped_bottlenecks_match_timm_from_a_pth() {
    check_resnet("resnet50_w8", "resnet50_w8.pth");
    check_resnet("resnet50_w8", "resnet50_w8.safetensors");
}

/// vitrun's Grad-CAM of a classifier equals pytorch-grad-cam's `GradCAM` on the last block's
/// `norm1` (tests/fixtures/gradcam, scripts/make_gradcam_fixtures.py), for the predicted class
/// and for a chosen one, on a mean-pooled ViT and a distilled DeiT (two prefix tokens).
#[test]
fn gradcam_matches_pytorch_grad_cam() {
    use vitrun::task::classification::Classification;
    use vitrun::task::explain::Grad;
    use vitrun::task::Task;
    for name in ["vit_tiny_p4_32_avg", "deit_tiny_distilled_p4_32"] {
        let (spec, classes) = spec_of(name);
        let device = Default::default();
        let weights = format!("{name}.safetensors");
        let sd = read_state_dict(&fixtures().join(&weights)).unwrap();
        let model = apply_state_dict(
            vit_classifier::<Grad>(&spec, classes, &device),
            &sd,
            &weights,
            &device,
        )
        .unwrap();
        let io = read_state_dict(&fixtures().join(format!("{name}.io.safetensors"))).unwrap();
        let reference = read_state_dict(
            &Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("tests/fixtures/gradcam/{name}.safetensors")),
        )
        .unwrap();
        let names: Vec<String> = (0..classes).map(|k| format!("c{k}")).collect();
        let task = Classification::new(&vitrun::config::Config::default(), &names).unwrap();
        let input = &io["input"];
        let images = || {
            Tensor::<Grad, 4>::from_data(
                TensorData::new(input.data.clone(), input.shape.clone()),
                &device,
            )
        };
        for (key, class) in [("predicted", None), ("class3", Some(3))] {
            let maps = task.gradcam(&model, images(), class).unwrap();
            let expected = &reference[key];
            assert_eq!(maps.len(), expected.shape[0]);
            let plane = expected.shape[1] * expected.shape[2];
            for (j, map) in maps.iter().enumerate() {
                if class.is_none() {
                    assert_eq!(map.class, Some(reference["top"].data[j] as usize), "{name}");
                }
                let theirs = &expected.data[j * plane..(j + 1) * plane];
                let worst = map
                    .values
                    .iter()
                    .zip(theirs)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                eprintln!("{name} {key} image {j}: Grad-CAM largest difference {worst:.2e}");
                assert!(
                    worst < 1e-4,
                    "{name} {key} image {j}: largest difference {worst}"
                );
            }
        }
    }
}

/// A detector's export rebuilt in PyTorch (timm's encoder and DETR's decoder of
/// `nn.MultiheadAttention`, `scripts/check_detection_export.py`) gave the boxes in
/// tests/fixtures/detr_export/pytorch.json: the committed checkpoint still predicts them, and its
/// export is still the one PyTorch read, tensor for tensor.
#[test]
fn a_detector_export_rebuilt_in_pytorch_gives_vitruns_boxes() {
    use sha2::{Digest, Sha256};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/detr_export");
    let fixture: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("pytorch.json")).unwrap()).unwrap();
    let classes: Vec<String> =
        serde_json::from_str(&std::fs::read_to_string(dir.join("classes.json")).unwrap()).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let (model, predicted, export) = (
        dir.join("model.safetensors"),
        tmp.path().join("predicted"),
        tmp.path().join("export.safetensors"),
    );
    let images: Vec<PathBuf> = ["scene.png", "noise.png"].map(|f| dir.join(f)).into();
    let mut args = vec!["predict", model.to_str().unwrap(), "--threshold", "0"];
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    args.extend(["--out", predicted.to_str().unwrap()]);
    let run = crate::common::vitrun(&args).output().unwrap();
    assert!(run.status.success(), "{}", crate::common::text(&run));
    let lines = std::fs::read_to_string(predicted.join("predictions.jsonl")).unwrap();
    let mut compared = 0;
    for line in lines.lines() {
        let line: serde_json::Value = serde_json::from_str(line).unwrap();
        let name = Path::new(line["image"].as_str().unwrap())
            .file_name()
            .unwrap();
        let theirs = fixture["boxes"][name.to_str().unwrap()].as_array().unwrap();
        let ours = line["boxes"].as_array().unwrap();
        assert_eq!(ours.len(), theirs.len(), "{name:?}");
        // Matched box for box, not by rank: near-equal scores may swap places on another CPU.
        let mut unmatched: Vec<&serde_json::Value> = theirs.iter().collect();
        for a in ours {
            let close = |x: &serde_json::Value, y: &serde_json::Value, within: f64| {
                (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < within
            };
            let same = |b: &&serde_json::Value| {
                let (p, q) = (a["bbox"].as_array().unwrap(), b["bbox"].as_array().unwrap());
                a["class"] == classes[b["class_index"].as_u64().unwrap() as usize]
                    && close(&a["score"], &b["score"], 1e-4)
                    && p.iter().zip(q).all(|(x, y)| close(x, y, 0.032))
            };
            let Some(at) = unmatched.iter().position(same) else {
                panic!("{name:?}: vitrun's {a} is none of PyTorch's boxes {unmatched:?}")
            };
            unmatched.remove(at);
            compared += 1;
        }
    }
    assert_eq!(compared, 2 * 6, "two images, six queries each");
    let run = crate::common::vitrun(&[
        "export",
        model.to_str().unwrap(),
        "--out",
        export.to_str().unwrap(),
    ])
    .output()
    .unwrap();
    assert!(run.status.success(), "{}", crate::common::text(&run));
    let tensors = read_state_dict(&export).unwrap();
    let expected = fixture["export"].as_object().unwrap();
    let names = |keys: Vec<&String>| keys.into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(
        names(tensors.keys().collect()),
        names(expected.keys().collect())
    );
    for (name, tensor) in &tensors {
        let bytes: Vec<u8> = tensor.data.iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(
            (
                serde_json::json!(tensor.shape),
                hex::encode(Sha256::digest(&bytes))
            ),
            (
                expected[name]["shape"].clone(),
                expected[name]["sha256"].as_str().unwrap().to_string()
            ),
            "{name}"
        );
    }
}
