//! Config layering, provenance, validation errors and trial-id stability.

use std::path::PathBuf;

use vitrun::config::{load_with_env, ConfigError, Place, Source};

fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exp.toml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn error(text: &str, sets: &[&str]) -> String {
    let (_dir, path) = write(text);
    let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
    match load_with_env(&path, &sets, env(&[])) {
        Ok(_) => panic!("expected an error for:\n{text}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn layers_apply_in_order_defaults_file_env_set() {
    let (_dir, path) = write(
        "name = \"layers\"\n[optimizer]\nlr = 0.01\nweight_decay = 0.1\n[train]\nepochs = 3\n",
    );
    let vars = env(&[
        ("VITRUN_OPTIMIZER__LR", "0.02"),
        ("VITRUN_TRAIN__BATCH_SIZE", "16"),
        ("VITRUN_REQUIRE_DATA", "1"),
    ]);
    let loaded = load_with_env(&path, &["optimizer.lr=3e-4".into()], vars).unwrap();
    let c = &loaded.config;
    assert_eq!(c.optimizer.lr, 3e-4, "--set beats env and file");
    assert_eq!(c.train.batch_size, 16, "env beats default");
    assert_eq!(c.optimizer.weight_decay, 0.1, "file beats default");
    assert_eq!(c.train.epochs, 3);
    assert_eq!(c.optimizer.betas, [0.9, 0.999], "default kept");
    assert_eq!(loaded.sources["optimizer.lr"], Source::Set);
    assert_eq!(
        loaded.sources["train.batch_size"],
        Source::Env("VITRUN_TRAIN__BATCH_SIZE".into())
    );
    assert_eq!(
        loaded.sources["optimizer.weight_decay"],
        Source::File(Place {
            file: path.clone(),
            line: 4
        })
    );
    assert_eq!(loaded.sources["optimizer.betas"], Source::Default);
}

#[test]
fn env_beats_file() {
    let (_dir, path) = write("[optimizer]\nlr = 0.01\n");
    let loaded = load_with_env(&path, &[], env(&[("VITRUN_OPTIMIZER__LR", "0.05")])).unwrap();
    assert_eq!(loaded.config.optimizer.lr, 0.05);
}

#[test]
fn presets_fill_dims_and_explicit_dims_win() {
    let (_dir, path) = write("[model]\npreset = \"deit-small\"\ndepth = 4\n");
    let c = load_with_env(&path, &[], env(&[])).unwrap().config;
    assert_eq!(
        (c.model.embed_dim, c.model.depth, c.model.num_heads),
        (Some(384), Some(4), Some(6))
    );
}

#[test]
fn unknown_key_names_file_line_and_nearest_key() {
    let e = error("name = \"x\"\n\n[optimizer]\nlearning_rate = 0.1\n", &[]);
    assert!(
        e.contains("exp.toml:4: unknown key `optimizer.learning_rate`"),
        "{e}"
    );
    assert!(
        e.contains("did you mean `optimizer.warmup_lr`")
            || e.contains("did you mean `optimizer.lr`"),
        "{e}"
    );
    let e = error("[augment.hflip]\nprob = 0.5\n", &[]);
    assert!(
        e.contains("exp.toml:2: unknown key `augment.hflip.prob`; did you mean `augment.hflip.p`?"),
        "{e}"
    );
}

#[test]
fn unknown_set_and_env_keys_are_named() {
    let e = error("", &["optimizer.lrr=1"]);
    assert!(
        e.contains(
            "--set optimizer.lrr=1: unknown key `optimizer.lrr`; did you mean `optimizer.lr`?"
        ),
        "{e}"
    );
    let (_dir, path) = write("");
    let e = load_with_env(&path, &[], env(&[("VITRUN_TRAIN__EPOCH", "3")]))
        .unwrap_err()
        .to_string();
    assert!(e.contains("environment variable VITRUN_TRAIN__EPOCH: unknown key `train.epoch`; did you mean `train.epochs`?"), "{e}");
}

#[test]
fn wrong_type_names_the_key_and_line() {
    let e = error("[train]\nepochs = \"ten\"\n", &[]);
    assert!(
        e.contains("exp.toml:2: `train.epochs`: found string \"ten\"; expected a whole number ≥ 0"),
        "{e}"
    );
    // Types in plain language, not Rust's names.
    for (toml, expect) in [
        (
            "[train]\nepochs = -3\n",
            "found signed int `-3`; expected a whole number ≥ 0",
        ),
        (
            "[optimizer]\nlr = \"fast\"\n",
            "found string \"fast\"; expected a number",
        ),
        (
            "[augment.hflip]\nenabled = 1\n",
            "found signed int `1`; expected true or false",
        ),
    ] {
        let e = error(toml, &[]);
        assert!(e.contains(expect), "{toml}: {e}");
    }
}

#[test]
fn each_range_rule_says_what_is_valid() {
    let cases: [(&str, &str); 20] = [
        ("[data]\nslice_axis = 3\n", "`data.slice_axis`: 3 is not an axis of a volume; use 0 (x), 1 (y) or 2 (z)"),
        ("[data]\nwindow = [240, -100]\n", "`data.window`: [240, -100] is not a range; give [low, high] with low < high"),
        ("[data]\nwindow_percentiles = [1, 120]\n", "`data.window_percentiles`: [1, 120] is not a percentile range"),
        ("[model]\nconv_stem_kind = \"pooled\"\n", "`model.conv_stem_kind`: applies to a conv stem and model.conv_stem is empty; list its channels (e.g. conv_stem = [32, 64] for patch 4) or remove conv_stem_kind"),
        ("[model]\npatch_size = 8\nconv_stem = [16, 32]\n", "`model.conv_stem`: 2 stages, each halving the image, downsample by 4, not by patch_size 8; give it 3 entries (one per halving: log2 of patch_size 8)"),
        ("[data]\nimage_size = 30\n[model]\npatch_size = 6\nconv_stem = [16, 32]\n", "downsample by 4, not by patch_size 6; use a power-of-two patch_size (2, 4, 8, 16) with it, or remove conv_stem for patch_size 6"),
        ("[model]\nconv_stem = [16, 0]\n", "`model.conv_stem`: entry 1 has 0 channels; give every stem conv at least 1 channel"),
        ("[model]\nconv_stem_depth = 2\n", "`model.conv_stem_depth`: applies to a conv stem and model.conv_stem is empty; list its channels (e.g. conv_stem = [32, 64] for patch 4) or remove conv_stem_depth"),
        ("[model]\nconv_stem = [16, 32]\nconv_stem_depth = 0\n", "`model.conv_stem_depth`: 0 convs per stem stage; give 1 to 1024 (1 is one conv per stage)"),
        ("[model]\nconv_stem_norm = \"batch\"\n", "`model.conv_stem_norm`: applies to a conv stem and model.conv_stem is empty; list its channels (e.g. conv_stem = [32, 64] for patch 4) or remove conv_stem_norm"),
        ("[model]\nconv_stem = [16, 32]\nconv_stem_norm = \"layer\"\n", "exp.toml:3: `model.conv_stem_norm`: unknown variant: found `layer`, expected one of `none`, `batch`"),
        ("[data]\nimage_size = 30\n[model]\npatch_size = 4\n", "data.image_size 30 is not divisible by patch_size 4; use a patch size that divides it (e.g. 2, 3, 5, 6, 10, 15, 30)"),
        ("[model]\npreset = \"vit-tiny\"\nembed_dim = 100\n", "embed dim 100 is not divisible by num_heads 3; use a multiple of 3"),
        ("[optimizer]\nlr = 0\n", "`optimizer.lr`: learning rate 0 must be above 0"),
        ("[optimizer]\nlr = -1e-3\n", "learning rate -0.001 must be above 0"),
        ("[data]\nclasses = []\n", "`data.classes`: the class list is empty"),
        ("[model]\npreset = \"vit-huge\"\n", "unknown preset \"vit-huge\"; use one of vit-tiny, vit-small, vit-base, deit-tiny, deit-small, deit-base"),
        ("[head]\ntask = \"detection\"\n", "`data.dataset`: \"synthetic\" has no targets for head.task = \"detection\"; use one of \"synthetic_scenes\", \"coco\""),
        ("[train]\ndevice = \"gpu\"\n", "unknown device \"gpu\"; use auto, cpu, cuda:N, tch-cpu or tch-cuda:N"),
        ("[augment.random_resized_crop]\nscale = [0.9, 0.2]\n", "`augment.random_resized_crop.scale`: [0.9, 0.2] is not a range"),
    ];
    for (text, want) in cases {
        let e = error(text, &[]);
        assert!(e.contains(want), "for {text:?}\n got: {e}\nwant: {want}");
    }
}

#[test]
fn task_options_and_datasets_belong_to_their_task() {
    let seg = "[data]\ndataset = \"synthetic_lesions\"\n[head]\ntask = \"segmentation\"\n";
    let det =
        "[data]\ndataset = \"synthetic_scenes\"\nmax_objects = 3\n[head]\ntask = \"detection\"\n";
    let cases: [(String, &str); 21] = [
        (format!("{seg}mask_norm = \"segmenter\"\n"), "`head.mask_norm`: it sets how the mask transformer scores patches; set head.decoder = \"mask\", or remove it"),
        ("[head]\nmask_norm = \"tempered\"\n".into(), "`head.mask_norm`: is a \"segmentation\" option"),
        (format!("{seg}layers = 2\n"), "`head.layers`: for segmentation it sizes the mask transformer; set head.decoder = \"mask\", or remove it"),
        (format!("{seg}decoder = \"mask\"\nlayers = 30\n"), "`head.layers`: 30 is out of range; use 1 to 24 mask transformer layers (Segmenter: 2)"),
        (format!("{seg}skip_blocks = [1]\n"), "`head.skip_blocks`: the blocks the U-Net decoder taps; set head.decoder = \"unet\", or remove it"),
        (format!("{seg}decoder = \"unet\"\nskip_blocks = [1, 2, 3, 4, 5]\n[model]\npatch_size = 4\n"), "`head.skip_blocks`: 5 blocks but patch_size 4 gives the decoder 2 upsampling stages, one skip each; list at most 2"),
        (format!("{seg}decoder = \"unet\"\nskip_blocks = [2, 2]\n"), "`head.skip_blocks`: block 2 is listed twice; list distinct blocks numbered from 1"),
        ("[head]\nskip_blocks = [1]\n".into(), "`head.skip_blocks`: is a \"segmentation\" option"),
        ("[head]\ndice_weight = 0.5\n".into(), "`head.dice_weight`: is a \"segmentation\" option and this experiment's head.task is \"classification\"; remove it, or set head.task = \"segmentation\""),
        ("[head]\ndecoder = \"linear\"\n".into(), "`head.decoder`: is a \"segmentation\" option"),
        ("[head]\ntask = \"segmentation\"\n".into(), "`data.dataset`: \"synthetic\" has no targets for head.task = \"segmentation\"; use one of \"synthetic_scenes\", \"synthetic_lesions\", \"mask_folder\""),
        ("[data]\ndataset = \"synthetic_scenes\"\n".into(), "\"synthetic_scenes\" has no targets for head.task = \"classification\"; use one of \"synthetic\", \"image_folder\", \"idx\""),
        (format!("{seg}dice_weight = -1\n"), "`head.dice_weight`: -1 is out of range"),
        (format!("{seg}class_weights = [0, 0]\n"), "`head.class_weights`: list one weight of at least 0 per class"),
        (format!("{seg}[augment.rand_augment]\nenabled = true\n"), "`augment.rand_augment.enabled`: RandAugment's rotations, shears and translations move pixels without moving the masks"),
        (format!("{seg}queries = 10\n"), "`head.queries`: is a \"detection\" option and this experiment's head.task is \"segmentation\""),
        (format!("{det}dice_weight = 1.0\n"), "`head.dice_weight`: is a \"segmentation\" option and this experiment's head.task is \"detection\""),
        (format!("{det}queries = 2\n"), "`head.queries`: 2 queries cannot each take one of up to data.max_objects = 3 vehicles; use at least 3"),
        (format!("{det}layers = 0\n"), "`head.layers`: 0 is out of range; use 1 to 24 decoder layers"),
        (format!("{det}ce_weight = 0\n"), "`head.ce_weight`: detection needs a class term and a box term"),
        (format!("{det}[augment.rand_augment]\nenabled = true\n"), "move pixels without moving the boxes; set it to false for \"detection\""),
    ];
    for (text, want) in cases {
        let e = error(&text, &[]);
        assert!(e.contains(want), "for {text:?}\n got: {e}\nwant: {want}");
    }
    let e = error(&format!("{seg}[augment.mixup]\nenabled = true\n"), &[]);
    assert!(
        e.contains("augment.mixup.enabled") && e.contains("segmentation"),
        "{e}"
    );
    let e = error(
        "[data]\ndataset = \"mask_folder\"\n[head]\ntask = \"segmentation\"\n",
        &[],
    );
    assert!(e.contains("`data.path`: this dataset reads files"), "{e}");
}

/// The U-Net decoder's blocks must exist in the backbone: checked with the architecture's
/// facts, at the key's line.
#[test]
fn skip_blocks_must_be_blocks_of_the_backbone() {
    let seg = "[data]\ndataset = \"synthetic_lesions\"\n[head]\ntask = \"segmentation\"\ndecoder = \"unet\"\n";
    let check = |text: &str| {
        let (_dir, path) = write(text);
        let loaded = load_with_env(&path, &[], env(&[])).unwrap();
        vitrun::task::check(&loaded).map_err(|e| e.to_string())
    };
    let e = check(&format!(
        "{seg}skip_blocks = [13]\n[model]\npreset = \"vit-tiny\"\n"
    ))
    .unwrap_err();
    assert!(
        e.contains("exp.toml:6: `head.skip_blocks`: block 13 is past the encoder's 12 blocks; list blocks from 1 to 12"),
        "{e}"
    );
    let e = check(&format!("{seg}[model]\narch = \"resnet18\"\n")).unwrap_err();
    assert!(
        e.contains("`head.decoder`: the U-Net decoder taps transformer blocks and model.arch = \"resnet18\" has none"),
        "{e}"
    );
    check(&format!(
        "{seg}skip_blocks = [12, 3]\n[model]\npreset = \"vit-tiny\"\n"
    ))
    .unwrap();
}

#[test]
fn a_bad_value_from_set_names_the_flag() {
    let e = error("", &["optimizer.lr=-1"]);
    assert!(e.contains("(--set)"), "{e}");
}

#[test]
fn datasets_that_read_files_need_a_path() {
    let e = error("[data]\ndataset = \"image_folder\"\n", &[]);
    assert!(e.contains("`data.path`: this dataset reads files"), "{e}");
}

#[test]
fn syntax_and_missing_file_errors_name_the_file() {
    let e = error("name = \n", &[]);
    assert!(e.contains("exp.toml is not valid TOML"), "{e}");
    let missing =
        load_with_env(std::path::Path::new("/nonexistent/x.toml"), &[], env(&[])).unwrap_err();
    assert!(matches!(missing, ConfigError::Read { .. }));
    assert!(missing
        .to_string()
        .contains("cannot read experiment file /nonexistent/x.toml"));
}

#[test]
fn sweep_table_is_parsed_and_checked() {
    let (_dir, path) = write(
        "[sweep]\n\"optimizer.lr\" = [1e-4, 1e-3]\n\"model.depth\" = { choice = [2, 4] }\nsamples = 3\n[[sweep.zip]]\n\"model.embed_dim\" = [96, 192]\n\"model.num_heads\" = [3, 6]\n",
    );
    let loaded = load_with_env(&path, &[], env(&[])).unwrap();
    assert_eq!(loaded.sweep.grid.len(), 1);
    assert_eq!(loaded.sweep.zip.len(), 1);
    assert_eq!(loaded.sweep.random.len(), 1);
    let e = error("[sweep]\n\"optimiser.lr\" = [1e-3]\n", &[]);
    assert!(e.contains("did you mean `optimizer.lr`"), "{e}");
    let e = error(
        "[[sweep.zip]]\n\"optimizer.lr\" = [1e-3, 1e-4]\n\"train.epochs\" = [1]\n",
        &[],
    );
    assert!(e.contains("zipped axes must have equal lengths"), "{e}");
    let e = error(
        "[sweep]\n\"optimizer.lr\" = { log_uniform = [1e-5, 1e-2] }\n",
        &[],
    );
    assert!(e.contains("random axes need `samples = N`"), "{e}");
}

#[test]
fn trial_id_ignores_spelling_order_defaults_and_execution_keys() {
    let id = |text: &str, sets: &[&str]| {
        let (_dir, path) = write(text);
        let sets: Vec<String> = sets.iter().map(|s| s.to_string()).collect();
        load_with_env(&path, &sets, env(&[]))
            .unwrap()
            .config
            .trial_id()
    };
    let base = id(
        "name = \"a\"\n[optimizer]\nlr = 1e-3\nweight_decay = 0.05\n",
        &[],
    );
    assert_eq!(
        base,
        id(
            "name = \"a\"\n[optimizer]\nweight_decay = 0.05\nlr = 0.001\n",
            &[]
        )
    );
    assert_eq!(base, id("name = \"a\"\n[optimizer]\nlr = 1e-3\n[model]\npreset = \"vit-tiny\"\nembed_dim = 192\nmlp_ratio = 4\n", &[]));
    assert_eq!(
        base,
        id(
            "name = \"a\"\n",
            &[
                "optimizer.lr=0.001",
                "train.device=\"cpu\"",
                "train.threads=1"
            ]
        )
    );
    assert_ne!(base, id("name = \"a\"\n", &["optimizer.lr=2e-3"]));
    assert_eq!(base.len(), 12);
}

#[test]
fn recipe_keys_say_what_is_valid() {
    let cases: [(&str, &str); 10] = [
        ("[head]\ntask = \"segmentation\"\n[augment.cutmix]\nenabled = true\n", "`augment.cutmix.enabled`: Mixup and CutMix blend class labels, and a \"segmentation\" head has boxes or masks"),
        ("[augment.mixup]\nalpha = 0\n", "`augment.mixup.alpha`: 0 is out of range; use a Beta concentration in (0, 100]"),
        ("[augment.cutmix]\nalpha = -1\n", "`augment.cutmix.alpha`: -1 is out of range"),
        ("[augment.mixup]\nswitch_prob = 1.5\n", "`augment.mixup.switch_prob`: a probability"),
        ("[augment.mixup]\nmode = \"row\"\n", "`augment.mixup.mode`: unknown variant: found `row`"),
        ("[augment.cutmix]\nminmax = [0.8, 0.2]\n", "`augment.cutmix.minmax`: [0.8, 0.2] is not a range of box sides"),
        ("[augment.rand_augment]\nmagnitude = 12\n", "`augment.rand_augment.magnitude`: 12 is out of range; use a magnitude in [0, magnitude_max = 10]"),
        ("[augment.rand_augment]\nnum_ops = 0\n", "`augment.rand_augment.num_ops`: 0 ops per image; use 1 to 10"),
        ("[data]\nrepeated_aug = 0\n", "`data.repeated_aug`: 0 draws per image; use 1 (off) to 16"),
        ("[train.ema]\ndecay = 1.0\n", "`train.ema.decay`: 1 is out of range; use a decay in [0, 1)"),
    ];
    for (text, want) in cases {
        let e = error(text, &[]);
        assert!(e.contains(want), "for {text:?}\n got: {e}\nwant: {want}");
    }
    let e = error("[augment.mixup]\nalfa = 0.2\n", &[]);
    assert!(e.contains("alpha"), "a misspelt key gets a suggestion: {e}");
}

#[test]
fn recipe_keys_at_their_defaults_leave_earlier_trial_ids_alone() {
    let load = |text: &str| {
        let (_dir, path) = write(text);
        load_with_env(&path, &[], env(&[])).unwrap().config
    };
    let before = load("name = \"a\"\n");
    let identity = before.identity_json().to_string();
    for key in [
        "mixup",
        "cutmix",
        "rand_augment",
        "repeated_aug",
        "\"ema\"",
        "decoder",
        "dice_weight",
        "class_weights",
        "annotations",
        "val_path",
        "max_objects",
        "min_box_visible",
    ] {
        assert!(
            !identity.contains(key),
            "{key} is in the id of a default config"
        );
    }
    let explicit_defaults = load(
        "name = \"a\"\n[augment.mixup]\nenabled = false\n[data]\nrepeated_aug = 1\n[train.ema]\ndecay = 0.9998\n",
    );
    assert_eq!(before.trial_id(), explicit_defaults.trial_id());
    let with_ema = load("name = \"a\"\n[train.ema]\nenabled = true\n");
    assert_ne!(before.trial_id(), with_ema.trial_id());
}

/// DeiT-tiny's ImageNet recipe as published (Touvron et al. 2021, Table 9; deit main.py).
#[test]
fn the_deit_recipe_file_is_the_papers_table() {
    use vitrun::config::{MixMode, OptimizerKind, Pooling, Resample, Schedule};
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("experiments/deit_recipe_tiny.toml");
    let c = load_with_env(&path, &[], env(&[])).unwrap().config;
    let (m, a, o, t, d) = (&c.model, &c.augment, &c.optimizer, &c.train, &c.data);
    assert_eq!(
        (m.embed_dim, m.depth, m.num_heads),
        (Some(192), Some(12), Some(3))
    );
    assert_eq!(
        (m.patch_size, d.image_size, m.pooling),
        (16, 224, Pooling::Cls)
    );
    assert_eq!(
        (m.dropout, m.drop_path),
        (0.0, 0.1),
        "drop 0, drop-path 0.1"
    );
    assert_eq!(
        (t.epochs, t.batch_size, t.grad_accumulation),
        (300, 1024, 1)
    );
    assert_eq!(o.name, OptimizerKind::Adamw);
    assert_eq!(o.lr, 5e-4 * 1024.0 / 512.0, "lr 5e-4 x batch / 512");
    assert_eq!((o.weight_decay, o.eps, o.betas), (0.05, 1e-8, [0.9, 0.999]));
    assert_eq!(
        (o.schedule, o.warmup_epochs, o.warmup_lr, o.min_lr),
        (Schedule::Cosine, 5.0, 1e-6, 1e-5)
    );
    assert_eq!((o.label_smoothing, o.grad_clip), (0.1, 0.0));
    let ra = &a.rand_augment;
    assert!(ra.enabled && ra.increasing, "rand-m9-mstd0.5-inc1");
    assert_eq!(
        (ra.num_ops, ra.magnitude, ra.magnitude_std, ra.prob),
        (2, 9.0, 0.5, 0.5)
    );
    assert_eq!(ra.resample, Resample::Bicubic);
    assert!(
        !a.color_jitter.enabled,
        "timm drops colour jitter under auto-augment"
    );
    assert!(a.mixup.enabled && a.cutmix.enabled);
    assert_eq!((a.mixup.alpha, a.cutmix.alpha), (0.8, 1.0));
    assert_eq!(
        (a.mixup.prob, a.mixup.switch_prob, a.mixup.mode),
        (1.0, 0.5, MixMode::Batch)
    );
    assert!(a.random_erasing.enabled);
    assert_eq!(a.random_erasing.p, 0.25);
    assert_eq!(d.repeated_aug, 3);
    assert!(a.random_resized_crop.enabled && a.hflip.enabled);
    assert_eq!(a.random_resized_crop.scale, [0.08, 1.0]);
    assert!(a.normalize.enabled);
    assert_eq!(a.normalize.mean, vec![0.485, 0.456, 0.406]);
    assert!(
        (a.center_crop.ratio - 1.0 / 0.875).abs() < 1e-12,
        "crop_pct 0.875"
    );
    assert!(t.ema.enabled);
    assert_eq!(t.ema.decay, 0.99996);
}

/// A ResNet's options and a ViT's do not mix: each misplaced key is named with the fix.
#[test]
fn resnet_and_vit_keys_are_refused_on_the_other_backbone() {
    let e = error("[model]\narch = \"resnet50\"\ndistilled = true\n", &[]);
    assert!(
        e.contains("model.distilled")
            && e.contains("resnet50")
            && e.contains("model.arch = \"vit\""),
        "{e}"
    );
    let e = error("[model]\narch = \"resnet18\"\nwidths = [8, 16]\n", &[]);
    assert!(
        e.contains("model.widths") && e.contains("four widths"),
        "{e}"
    );
    let e = error("[model]\nwidths = [8, 16, 32, 64]\n", &[]);
    assert!(e.contains("model.widths") && e.contains("resnet50"), "{e}");
    let e = error("[model]\narch = \"resnet101\"\n", &[]);
    assert!(e.contains("model.arch") && e.contains("resnet101"), "{e}");
}

/// `[distill]` mistakes are refused at load, each naming its key and the fix.
#[test]
fn distillation_keys_are_checked_together() {
    let student = "[model]\ndistilled = true\n[distill]\n";
    for (extra, key, fix) in [
        ("type = \"hard\"\n", "distill.type", "distill.teacher ="),
        (
            "type = \"soft\"\nteacher = \"t.pth\"\nalpha = 1.5\n",
            "distill.alpha",
            "[0, 1]",
        ),
        ("type = \"soft\"\nteacher = \"t.pth\"\ntau = 0\n", "distill.tau", "(0, 100]"),
        (
            "type = \"hard\"\nteacher = \"t.pth\"\nteacher_model = \"resnet101\"\n",
            "distill.teacher_model",
            "resnet50",
        ),
        (
            "type = \"hard\"\nteacher = \"trial:abc\"\nteacher_model = \"resnet50\"\n",
            "distill.teacher_model",
            "its own model",
        ),
        (
            "type = \"hard\"\nteacher = \"t.pth\"\nteacher_model = { arch = \"resnet18\", widths = [8] }\n",
            "distill.teacher_model.widths",
            "four widths",
        ),
    ] {
        let e = error(&format!("{student}{extra}"), &[]);
        assert!(e.contains(key) && e.contains(fix), "{extra}: {e}");
    }
    let e = error(
        "[distill]\ntype = \"hard\"\nteacher = \"t.pth\"\nteacher_model = \"resnet50\"\n",
        &[],
    );
    assert!(e.contains("model.distilled = true"), "{e}");
}
