//! Real data: a small ViT learns Fashion-MNIST (Debian's dataset-fashion-mnist) well above
//! chance in a few hundred steps. Skipped with a printed reason where the dataset is absent,
//! unless VITRUN_REQUIRE_DATA is set.

use std::path::Path;
use std::process::Command;

use vitrun::track::Store;

const DATA: &str = "/usr/share/datasets/fashion-mnist";
const EXPERIMENT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/experiments/vit_fashion_mnist.toml"
);

#[test]
fn a_small_vit_learns_fashion_mnist() {
    if !Path::new(DATA).join("train-images-idx3-ubyte.gz").is_file() {
        assert!(
            std::env::var_os("VITRUN_REQUIRE_DATA").is_none(),
            "VITRUN_REQUIRE_DATA is set but {DATA} is missing: apt-get install dataset-fashion-mnist"
        );
        println!("skipped: {DATA} is absent (apt-get install dataset-fashion-mnist)");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let runs = format!("train.runs_dir={:?}", tmp.path().display().to_string());
    let out = Command::new(env!("CARGO_BIN_EXE_vitrun"))
        .args(["run", EXPERIMENT, "--quiet", "--set", &runs])
        .args([
            "--set",
            "data.train_size=12000",
            "--set",
            "data.val_size=2000",
            "--set",
            "train.epochs=3",
        ])
        .args(["--set", "model.embed_dim=48", "--set", "model.depth=2"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let store = Store::open(&tmp.path().join("vitrun.sqlite")).unwrap();
    let trial = &store.trials(None).unwrap()[0];
    let top1 = trial.best.unwrap();
    assert_eq!(trial.best_metric, "top1");
    println!(
        "Fashion-MNIST val top-1 after 282 steps: {:.1}%",
        top1 * 100.0
    );
    assert!(top1 > 0.7, "ten classes, chance is 0.1; got {top1}");
    let classes = store
        .count("SELECT COUNT(*) FROM params WHERE trial = ?1 AND key = 'data.dataset' AND value = 'idx'", &trial.id)
        .unwrap();
    assert_eq!(classes, 1);
}
