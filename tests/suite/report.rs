//! Reports: the attention maths has its defining properties, a model built to attend to one
//! patch peaks there, and a trained run's report has every file, escapes user strings and
//! loads in headless Chromium with every image and no console errors.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{browser_dom, chromium, page_data, probe_page};

use burn::backend::Flex;
use burn::tensor::{Tensor, TensorData};
use vitrun::model::{apply_state_dict, state_dict, Vit, VitSpec};
use vitrun::plot::attention::{
    discard_lowest, fuse, last_block_map, rollout, to_patches, Fusion, Reader,
};
use vitrun::task::classification::{vit_classifier, Classifier};

const EXE: &str = env!("CARGO_BIN_EXE_vitrun");

fn eye(n: usize) -> Vec<f32> {
    (0..n * n)
        .map(|i| if i % (n + 1) == 0 { 1.0 } else { 0.0 })
        .collect()
}

#[test]
fn head_fusion_is_elementwise_mean_max_min() {
    let (heads, n) = (3, 2);
    let a: Vec<f32> = vec![
        0.1, 0.9, 0.5, 0.5, // head 0
        0.7, 0.3, 0.2, 0.8, // head 1
        0.4, 0.6, 0.9, 0.1, // head 2
    ];
    let close = |x: &[f32], y: &[f32]| x.iter().zip(y).all(|(a, b)| (a - b).abs() < 1e-6);
    assert!(close(
        &fuse(&a, heads, n, Fusion::Mean),
        &[0.4, 0.6, 1.6 / 3.0, 1.4 / 3.0]
    ));
    assert!(close(
        &fuse(&a, heads, n, Fusion::Max),
        &[0.7, 0.9, 0.9, 0.8]
    ));
    assert!(close(
        &fuse(&a, heads, n, Fusion::Min),
        &[0.1, 0.3, 0.2, 0.1]
    ));
}

#[test]
fn discard_zeroes_the_lowest_fraction_keeping_shape_diagonal_and_peak() {
    let n = 5;
    let row = [0.05f32, 0.3, 0.1, 0.4, 0.15];
    let mut m: Vec<f32> = (0..n).flat_map(|_| row).collect();
    let before = m.clone();
    discard_lowest(&mut m, n, 0.0);
    assert_eq!(m, before, "ratio 0 keeps everything");
    discard_lowest(&mut m, n, 0.4);
    assert_eq!(m.len(), n * n, "the map keeps its shape");
    for (r, got) in m.chunks(n).enumerate() {
        let zeros = got.iter().filter(|v| **v == 0.0).count();
        assert_eq!(zeros, 2, "40% of 5 weights dropped in row {r}: {got:?}");
        assert_eq!(got[3], 0.4, "the largest weight stays");
        assert_eq!(got[r], row[r], "a token's attention to itself stays");
        for (i, v) in got.iter().enumerate() {
            if *v != 0.0 {
                assert_eq!(*v, row[i], "kept weights are unchanged");
            }
        }
    }
    let mut all = before.clone();
    discard_lowest(&mut all, n, 0.99);
    assert!(all
        .chunks(n)
        .all(|r| r.iter().filter(|v| **v != 0.0).count() <= 2));
}

#[test]
fn rollout_of_identity_attention_is_the_identity() {
    let (heads, n) = (2, 5);
    let block: Vec<f32> = eye(n).into_iter().cycle().take(heads * n * n).collect();
    for fusion in [Fusion::Mean, Fusion::Max, Fusion::Min] {
        let flow = rollout(
            &[block.clone(), block.clone(), block.clone()],
            heads,
            n,
            fusion,
            0.5,
        );
        assert!(
            flow.iter().zip(eye(n)).all(|(a, b)| (a - b).abs() < 1e-6),
            "{flow:?}"
        );
    }
    // Uniform attention mixes everything: rows of the rollout still sum to 1.
    let uniform = vec![1.0 / n as f32; heads * n * n];
    let flow = rollout(&[uniform.clone(), uniform], heads, n, Fusion::Mean, 0.0);
    for row in flow.chunks(n) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    }
}

fn set(sd: &mut vitrun::model::StateDict, key: &str, f: impl Fn(&[usize], usize) -> f32) {
    let t = sd.get_mut(key).unwrap_or_else(|| panic!("no {key}"));
    let shape = t.shape.clone();
    t.data = (0..t.data.len()).map(|i| f(&shape, i)).collect();
}

/// A one-block ViT whose CLS token attends to patch `target`: patch projections are zero, so
/// tokens are their positions; the CLS and target positions share a direction the query and
/// key maps amplify.
fn focused_model(distilled: bool, target: usize) -> (Classifier<Flex, Vit<Flex>>, usize, usize) {
    let spec = VitSpec {
        image_size: 16,
        in_channels: 3,
        patch_size: 4,
        conv_stem: Vec::new(),
        conv_stem_pool: false,
        conv_stem_depth: 1,
        conv_stem_batch_norm: false,
        embed_dim: 8,
        depth: 1,
        num_heads: 1,
        mlp_ratio: 2.0,
        mean_pool: false,
        distilled,
        dropout: 0.0,
        attn_dropout: 0.0,
        drop_path: 0.0,
    };
    let device = Default::default();
    let model = vit_classifier::<Flex>(&spec, 2, &device);
    let mut sd = state_dict(&model);
    let prefix = 1 + usize::from(distilled);
    let d = 8;
    set(&mut sd, "patch_embed.proj.weight", |_, _| 0.0);
    set(&mut sd, "patch_embed.proj.bias", |_, _| 0.0);
    set(&mut sd, "cls_token", |_, _| 0.0);
    if distilled {
        set(&mut sd, "dist_token", |_, _| 0.0);
    }
    set(&mut sd, "pos_embed", |_, i| {
        let (token, dim) = (i / d, i % d);
        match (token, dim) {
            (0, 0) => 1.0,
            (t, 0) if t == prefix + target => 1.0,
            (1, 1) if distilled => 1.0,
            _ => 0.0,
        }
    });
    set(&mut sd, "blocks.0.norm1.weight", |_, _| 1.0);
    set(&mut sd, "blocks.0.norm1.bias", |_, _| 0.0);
    set(&mut sd, "blocks.0.attn.qkv.weight", |_, i| {
        let (row, col) = (i / d, i % d);
        if row % d == col {
            if row < 2 * d {
                3.0
            } else {
                1.0
            }
        } else {
            0.0
        }
    });
    set(&mut sd, "blocks.0.attn.qkv.bias", |_, _| 0.0);
    let model = apply_state_dict(model, &sd, "constructed", &device).unwrap();
    (model, prefix, 4)
}

#[test]
fn attention_of_a_model_built_to_focus_on_one_patch_peaks_there() {
    for distilled in [false, true] {
        let target = 9;
        let (model, prefix, grid) = focused_model(distilled, target);
        let images = Tensor::<Flex, 4>::from_data(
            TensorData::new(vec![0.5f32; 3 * 16 * 16], [1, 3, 16, 16]),
            &Default::default(),
        );
        let trace = model.trace(images);
        let [_, heads, n, _] = trace.attentions[0].dims();
        assert_eq!(n, prefix + grid * grid);
        let attn: Vec<f32> = trace.attentions[0].clone().into_data().to_vec().unwrap();
        let argmax = |m: &[f32]| (0..m.len()).fold(0, |b, i| if m[i] > m[b] { i } else { b });
        for fusion in [Fusion::Mean, Fusion::Max, Fusion::Min] {
            let map = last_block_map(&attn, (heads, n, prefix), Reader::Cls, fusion, 0.5);
            assert_eq!(map.len(), grid * grid, "a map over the patch grid only");
            assert_eq!(argmax(&map), target, "distilled {distilled}: {map:?}");
            assert_eq!(map[target], 1.0, "scaled to a maximum of 1");
        }
        let flow = rollout(std::slice::from_ref(&attn), heads, n, Fusion::Mean, 0.0);
        assert_eq!(argmax(&to_patches(&flow, n, prefix, Reader::Cls)), target);
    }
}

fn vitrun(args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new(EXE);
    cmd.args(args);
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("VITRUN_")) {
        cmd.env_remove(k);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Trains the tiny experiment for two epochs with an awkward string in its config (the
/// synthetic dataset ignores `data.path`); returns the runs dir.
fn trained(dir: &Path, awkward: &str) -> PathBuf {
    let path_set = format!("data.path={awkward:?}");
    trained_with(dir, &["--set", "train.epochs=2", "--set", &path_set])
}

/// Trains the tiny experiment with `extra` arguments; returns the runs dir.
fn trained_with(dir: &Path, extra: &[&str]) -> PathBuf {
    let runs = dir.join("runs");
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/configs/tiny_synthetic.toml"
    );
    let runs_set = format!("train.runs_dir={:?}", runs.display().to_string());
    let mut args = vec!["run", file, "--quiet", "--set", &runs_set];
    args.extend_from_slice(extra);
    vitrun(&args);
    runs
}

fn size_of(path: &Path) -> (u32, u32) {
    image::image_dimensions(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn report_of_a_trained_run_has_every_file_and_loads_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let runs = trained(dir.path(), "<b>&\"co\"</b>");
    let out = dir.path().join("report");
    let worst = dir.path().join("worst");
    vitrun(&[
        "report",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--out",
        worst.to_str().unwrap(),
        "--samples",
        "worst:3",
    ]);
    let page = std::fs::read_to_string(worst.join("index.html")).unwrap();
    let note = page
        .split("Validation images: the 3 with the highest loss of the first 200 (losses ")
        .nth(1)
        .unwrap_or_else(|| panic!("--samples worst says what it drew: {page}"));
    let losses: Vec<f64> = note[..note.find(')').unwrap()]
        .split(", ")
        .map(|l| l.parse().unwrap())
        .collect();
    assert!(
        losses.len() == 3 && losses.windows(2).all(|w| w[0] >= w[1]),
        "the highest losses, worst first: {losses:?}"
    );
    let bad = Command::new(EXE)
        .args([
            "report",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--samples",
            "worst:0",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&bad.stderr)
        .contains("\"worst:0\": the count is a whole number from 1 to 64"));
    let stdout = vitrun(&[
        "report",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--discard",
        "0.5",
    ])
    .stdout;
    assert!(String::from_utf8_lossy(&stdout).contains("index.html"));
    assert!(
        !out.join("curve_top5.png").exists(),
        "top-5 of 2 classes is always 100 %: not drawn"
    );
    for (file, size) in [
        ("curve_loss.png", Some((800, 480))),
        ("curve_top1.png", Some((800, 480))),
        ("curve_lr.png", Some((800, 480))),
        ("augmentations.png", None),
        ("attention.png", None),
        ("predictions.png", Some((760, 6 * 170))),
        ("confusion_counts.png", None),
        ("confusion_normalised.png", None),
        ("patch_embeddings.png", None),
    ] {
        let (w, h) = size_of(&out.join(file));
        assert!(w > 100 && h > 100, "{file}: {w}×{h}");
        if let Some(expected) = size {
            assert_eq!((w, h), expected, "{file}");
        }
    }
    assert!(out.join("curve_loss.svg").exists());
    assert!(
        !out.join("curve_step_loss.png").exists() && !out.join("curve_skipped_images.png").exists(),
        "the step loss shares the loss chart; the all-zero skipped count is not a chart"
    );
    assert!(
        !out.join("mixed.png").exists(),
        "no Mixup/CutMix, no mixed batches"
    );
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        html.contains("&lt;b&gt;&amp;&quot;co&quot;&lt;/b&gt;"),
        "config strings are escaped"
    );
    assert!(!html.contains("<b>&\"co"), "never raw");
    assert!(html.contains("experiment tiny_synthetic"));
    assert!(
        html.contains("optimizer.lr") && html.contains("val/top1"),
        "config and final metrics are shown"
    );
    let folded = html
        .split("(not charted): ")
        .nth(1)
        .map(|rest| &rest[..rest.find('<').unwrap()]);
    assert!(
        folded.is_some_and(
            |f| f.contains("train/skipped_images = 0") && f.contains("val/skipped_images = 0")
        ),
        "constant series are folded into the summary: {folded:?}"
    );
    let charts = page_data(&html);
    let titles: Vec<&str> = charts["charts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        &titles[..3],
        ["top1", "loss", "learning rate"],
        "the main metric, the loss and the learning rate come first"
    );
    let loss = &charts["charts"][1];
    let keys: Vec<&str> = loss["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["val/loss", "train/loss", "train/step_loss"]);
    assert_eq!(loss["per_step"], true);
    let top1 = &charts["charts"][0];
    assert_eq!(top1["percent"], true);
    assert!(top1["lines"][0]["y"]
        .as_array()
        .unwrap()
        .iter()
        .all(|v| (0.0..=100.0).contains(&v.as_f64().unwrap())));
    let lr = &charts["charts"][2]["lines"][0];
    assert_eq!(lr["key"], "train/step_lr", "the learning rate per step");
    let epochs: Vec<f64> = lr["epoch"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert!(
        epochs.windows(2).all(|w| w[0] < w[1]) && epochs.iter().any(|e| e.fract() != 0.0),
        "per-step points sit at fractional epochs: {epochs:?}"
    );
    assert!(html.contains("<th>fact</th>") && html.contains("command"));
    for src in html
        .split("src=\"")
        .skip(1)
        .map(|s| &s[..s.find('"').unwrap()])
    {
        assert!(
            !src.starts_with('/') && out.join(src).exists(),
            "relative, existing image {src}"
        );
    }
    browser_check(&out);
}

#[test]
fn a_mixing_trial_reports_its_mixed_batches_and_its_weight_average() {
    let dir = tempfile::tempdir().unwrap();
    let runs = trained_with(
        dir.path(),
        &[
            "--set",
            "train.epochs=1",
            "--set",
            "augment.mixup.enabled=true",
            "--set",
            "augment.cutmix.enabled=true",
            "--set",
            "augment.rand_augment.enabled=true",
            "--set",
            "train.ema.enabled=true",
        ],
    );
    let out = dir.path().join("report");
    vitrun(&[
        "report",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    let (w, h) = size_of(&out.join("mixed.png"));
    assert!(
        w > 6 * 100 && h > 3 * 100,
        "six images a row, three batches: {w}×{h}"
    );
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        html.contains("Mixup and CutMix"),
        "the panel is on the page"
    );
    assert!(
        html.contains("val_ema/top1"),
        "the average's metrics are summarised"
    );
}

/// What the probe found on the page's charts: how many uPlot charts run, how many canvases
/// have drawn pixels, and the legend's values after the pointer moves over the first chart.
const CHART_PROBE: &str = r#"const win = document.getElementById('page').contentWindow;
  const plots = doc.querySelectorAll('.uplot');
  const drawn = Array.from(doc.querySelectorAll('.uplot canvas')).filter(c => {
    const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < px.length; i += 4) { if (px[i] !== 0) { return true; } }
    return false;
  }).length;
  const over = doc.querySelector('.uplot .u-over');
  let hover = 'none';
  if (over) {
    const r = over.getBoundingClientRect();
    const at = { clientX: r.left + r.width * 0.6, clientY: r.top + r.height / 2, bubbles: true };
    over.dispatchEvent(new win.MouseEvent('mouseenter', at));
    over.dispatchEvent(new win.MouseEvent('mousemove', at));
    hover = Array.from(plots[0].querySelectorAll('.u-legend .u-value')).map(v => v.textContent.replace(/\s/g, '')).join('|');
  }"#;

/// Loads the page from `file://` in headless Chromium: every image decodes (naturalWidth > 0),
/// the charts run (uPlot drew them; hovering the first shows values), the console stays
/// silent; a screenshot is kept in `target/tmp/`.
pub fn browser_check(out: &Path) {
    let Some(browser) = chromium() else {
        assert!(
            std::env::var("VITRUN_REQUIRE_CHROMIUM").is_err(),
            "VITRUN_REQUIRE_CHROMIUM is set but no chromium is installed (apt-get install chromium)"
        );
        eprintln!(
            "skipping the browser check: chromium is not installed (apt-get install chromium)"
        );
        return;
    };
    let probe = out.join("check.html");
    probe_page(
        &probe,
        &format!(
            r#"{CHART_PROBE}
  const images = Array.from(doc.images);
  const broken = images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.getAttribute('src'));
  out('CHARTS ' + plots.length + ' DRAWN ' + drawn + ' HOVER ' + hover + ' IMAGES ' + images.length + ' BROKEN ' + JSON.stringify(broken));"#
        ),
    );
    let base = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--allow-file-access-from-files",
        "--virtual-time-budget=10000",
    ];
    let url = |p: &Path| format!("file://{}", p.display());
    let dom = Command::new(browser)
        .args(base)
        .arg("--dump-dom")
        .arg(url(&probe))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&dom.stdout);
    let images = dom
        .split("IMAGES ")
        .nth(1)
        .unwrap_or_else(|| panic!("the probe page did not run: {dom}"));
    let count: usize = images.split_whitespace().next().unwrap().parse().unwrap();
    assert!(count >= 3, "{images}");
    let found = dom.split("CHARTS ").nth(1).unwrap();
    let words: Vec<&str> = found.split_whitespace().collect();
    let charts: usize = words[0].parse().unwrap();
    let drawn: usize = words[2].parse().unwrap();
    assert!(charts >= 4, "uPlot charts on the page: {found}");
    assert!(drawn >= charts, "every chart drew pixels: {found}");
    let hover = words[4];
    let values: Vec<&str> = hover.split('|').collect();
    assert!(
        values.len() >= 2 && values.iter().all(|v| *v != "–") && values[1].ends_with('%'),
        "hovering the main metric's chart shows its epoch and percentages: {hover}"
    );
    assert!(
        images.contains("BROKEN []"),
        "images that did not load: {images}"
    );
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshot.png");
    let run = Command::new(browser)
        .args(base)
        .args([
            "--enable-logging=stderr",
            "--v=0",
            "--window-size=1280,3000",
        ])
        .arg(format!("--screenshot={}", shot.display()))
        .arg(url(&out.join("index.html")))
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&run.stderr);
    let console: Vec<&str> = log.lines().filter(|l| l.contains(":CONSOLE")).collect();
    assert!(console.is_empty(), "console messages: {console:?}");
    assert!(
        size_of(&shot).0 >= 1280,
        "screenshot kept at {}",
        shot.display()
    );
}

/// Opens trial `id`'s view (`#trial-<id>`) of the report in `out` in headless Chromium: it
/// shows the trial's error and draws its charts.
fn trial_view_check(out: &Path, id: &str) {
    let probe = out.join("trial-view.html");
    probe_page(
        &probe,
        &format!(
            r#"const win = document.getElementById('page').contentWindow;
  win.location.hash = '#trial-{id}';
  setTimeout(() => {{
    const view = doc.getElementById('vr-trial');
    const error = view.querySelector('pre.vr-error');
    out('VIEW hidden=' + view.hidden + ' charts=' + view.querySelectorAll('.uplot').length + ' error=' + (error ? error.textContent : '') + ' END');
  }}, 500);"#
        ),
    );
    let Some(dom) = browser_dom(&probe) else {
        return;
    };
    let view = dom
        .split("VIEW ")
        .nth(1)
        .unwrap_or_else(|| panic!("the probe did not run: {dom}"));
    let view = &view[..view.find(" END").unwrap()];
    assert!(view.starts_with("hidden=false"), "{view}");
    let charts: usize = view
        .split("charts=")
        .nth(1)
        .and_then(|c| c.split_whitespace().next())
        .and_then(|c| c.parse().ok())
        .unwrap();
    assert!(charts >= 3, "the trial's charts are drawn: {view}");
    assert!(
        view.contains("error=pruned: test"),
        "its error first: {view}"
    );
}

#[test]
fn sweep_report_compares_trials_and_marks_pruned_ones() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("s.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"rs\"\nseed = 1\n[data]\ndataset = \"synthetic\"\nimage_size = 16\ntrain_size = 128\nval_size = 32\nclasses = [\"bus\", \"car\"]\n[model]\nembed_dim = 16\ndepth = 1\nnum_heads = 2\n[train]\nepochs = 2\nbatch_size = 32\nruns_dir = {:?}\n[sweep]\n\"optimizer.lr\" = [1e-3, 1e-4, 1e-5]\n\"model.pooling\" = [\"cls\", \"mean\"]\n",
            dir.path().join("runs").display().to_string()
        ),
    )
    .unwrap();
    vitrun(&["sweep", file.to_str().unwrap()]);
    let runs = dir.path().join("runs");
    let db = rusqlite::Connection::open(runs.join("vitrun.sqlite")).unwrap();
    let pruned: String = db
        .query_row("SELECT id FROM trials LIMIT 1", [], |r| r.get(0))
        .unwrap();
    db.execute(
        "UPDATE trials SET status = 'pruned', error = 'pruned: test' WHERE id = ?1",
        [&pruned],
    )
    .unwrap();
    vitrun(&["report", "rs", "--runs-dir", runs.to_str().unwrap()]);
    let out = runs.join("rs/report");
    for file in [
        "sweep_optimizer_lr.png",
        "sweep_model_pooling.png",
        "curve_val_top1.png",
        "curve_train_loss.png",
    ] {
        let (w, h) = size_of(&out.join(file));
        assert!(w >= 640 && h >= 420, "{file}");
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("Sweep comparison") && html.contains("6 trials sorted by best val/top1"));
    assert!(
        html.contains("<td class=\"status-pruned\">pruned</td>"),
        "pruned trials are visible as such"
    );
    assert!(
        html.contains(&format!("<a href=\"#trial-{pruned}\">{pruned}</a>")),
        "the sweep table links each trial to its view"
    );
    let data = page_data(&html);
    let main = &data["charts"][0];
    assert_eq!(
        main["title"], "val/top1",
        "the ranking metric's chart first"
    );
    let lines = main["lines"].as_array().unwrap();
    assert_eq!(lines.len(), 6, "one line per trial");
    let colours: std::collections::BTreeSet<&str> = lines
        .iter()
        .map(|l| l["colour"].as_str().unwrap())
        .collect();
    assert_eq!(colours.len(), 6, "one colour per trial");
    for l in lines {
        let label = l["label"].as_str().unwrap();
        assert!(
            label.contains("optimizer.lr=") && label.contains("model.pooling="),
            "legend entries name the swept values: {label}"
        );
    }
    assert_eq!(data["trials"].as_array().unwrap().len(), 6);
    trial_view_check(&out, &pruned);
    let ids: Vec<String> = lines
        .iter()
        .take(2)
        .map(|l| l["trial"].as_str().unwrap().to_string())
        .collect();
    vitrun(&[
        "report",
        &ids[0],
        &ids[1],
        "--runs-dir",
        runs.to_str().unwrap(),
    ]);
    let compared = out.join(format!("compare-{}-{}", ids[0], ids[1]));
    let html = std::fs::read_to_string(compared.join("index.html")).unwrap();
    assert!(html.contains(&format!("comparison {}+{}", ids[0], ids[1])));
    let compared = page_data(&html);
    let overlaid: std::collections::BTreeSet<&str> = compared["charts"][0]["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["trial"].as_str().unwrap())
        .collect();
    assert_eq!(
        overlaid,
        ids.iter().map(String::as_str).collect(),
        "`report A B` overlays just the chosen trials"
    );
    vitrun(&[
        "report",
        "rs",
        "--runs-dir",
        runs.to_str().unwrap(),
        "--metric",
        "val/loss",
    ]);
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("<th>best val/loss</th>") && html.contains("sorted by best val/loss"));
    let sweep_table = html.split("<th>best val/loss</th>").nth(1).unwrap();
    let sweep_table = &sweep_table[..sweep_table.find("</table>").unwrap()];
    let ranked: Vec<f64> = sweep_table
        .split("<tr>")
        .skip(1)
        .map(|row| {
            let cells: Vec<&str> = row
                .split("<td")
                .skip(1)
                .map(|c| &c[c.find('>').unwrap() + 1..c.find("</td>").unwrap()])
                .collect();
            cells[3].parse().unwrap()
        })
        .collect();
    assert!(
        ranked.len() == 6 && ranked.windows(2).all(|w| w[0] <= w[1]),
        "lowest loss first: {ranked:?}"
    );
    let e = Command::new(EXE)
        .args([
            "report",
            "rs",
            "--runs-dir",
            runs.to_str().unwrap(),
            "--metric",
            "val/acc",
        ])
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&e.stderr)
        .contains("--metric val/acc: no trial of sweep rs logged it; use one of"));
    let e = Command::new(EXE)
        .args(["report", "nope", "--runs-dir", runs.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(e.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&e.stderr).contains("no trial, experiment or sweep named \"nope\"")
    );
}

#[test]
fn a_running_trial_reports_what_the_store_has_so_far() {
    let dir = tempfile::tempdir().unwrap();
    let runs = trained(dir.path(), "unused");
    let db = rusqlite::Connection::open(runs.join("vitrun.sqlite")).unwrap();
    let id: String = db
        .query_row("SELECT id FROM trials", [], |r| r.get(0))
        .unwrap();
    db.execute("UPDATE trials SET status = 'running', ended_at = NULL", [])
        .unwrap();
    db.execute("DELETE FROM metrics WHERE epoch = 2", [])
        .unwrap();
    for kind in ["best", "last"] {
        std::fs::remove_dir_all(runs.join(format!("tiny_synthetic/{id}/{kind}"))).unwrap();
    }
    let stdout = vitrun(&["report", &id[..6], "--runs-dir", runs.to_str().unwrap()]).stdout;
    assert!(String::from_utf8_lossy(&stdout).contains("has no checkpoint yet"));
    let out = runs.join(format!("tiny_synthetic/{id}/report"));
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(
        html.contains("(stale)") && html.contains("has no checkpoint yet"),
        "a running row without a live process reads stale: {html}"
    );
    assert!(size_of(&out.join("curve_top1.png")).0 == 800);
    assert!(
        out.join("augmentations.png").exists(),
        "data views need no weights"
    );
    assert!(!out.join("attention.png").exists());
}
