//! Datasets and the loader: synthetic determinism, ImageFolder decoding and errors, IDX files.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use vitrun::config::{AugmentConfig, Config, DatasetKind};
use vitrun::data::{
    self, load_batch, DataError, EpochLoader, Labels, LoaderSpec, Pipeline, TargetKind,
};

fn config_for(kind: DatasetKind, path: &Path) -> Config {
    let mut c = Config::default();
    c.data.dataset = kind;
    c.data.path = Some(path.display().to_string());
    c.data.image_size = 8;
    c
}

fn loader(dataset: Arc<dyn data::Dataset>, skip_bad: bool) -> LoaderSpec<Labels> {
    LoaderSpec {
        skip_bad,
        ..crate::common::loader_spec(dataset, Pipeline::val(&AugmentConfig::default(), 8, 3), 4)
    }
}

#[test]
fn synthetic_vehicles_are_deterministic_and_balanced() {
    let mut c = Config::default();
    c.data.image_size = 24;
    let a = data::open(&c, TargetKind::Class).unwrap();
    let b = data::open(&c, TargetKind::Class).unwrap();
    assert_eq!(a.classes, ["bicycle", "bus", "car", "motorcycle", "truck"]);
    assert_eq!(a.train.len(), 2000);
    let (x, y) = (a.train.get(11).unwrap(), b.train.get(11).unwrap());
    assert_eq!(x.image, y.image);
    assert_eq!(x.class(), Some(1));
    assert_ne!(a.train.get(12).unwrap().image, x.image);
    assert_ne!(a.val.get(11).unwrap().image, x.image, "val is not train");
    assert_eq!((x.image.channels, x.image.height), (3, 24));
    c.seed = 1;
    assert_ne!(
        data::open(&c, TargetKind::Class)
            .unwrap()
            .train
            .get(11)
            .unwrap()
            .image,
        x.image
    );
    c.data.classes = Some(vec!["truck".into(), "car".into()]);
    let picked = data::open(&c, TargetKind::Class).unwrap();
    assert_eq!(picked.classes, ["truck", "car"]);
    c.data.classes = Some(vec!["plane".into()]);
    let err = data::open(&c, TargetKind::Class).err().unwrap().to_string();
    assert!(
        err.contains(
            "unknown class \"plane\"; this dataset has bicycle, bus, car, motorcycle, truck"
        ),
        "{err}"
    );
}

fn save(path: &Path, img: image::DynamicImage) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    img.save(path).unwrap();
}

#[test]
fn image_folder_reads_any_mode_and_size_as_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    save(
        &root.join("cat/a.png"),
        image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(5, 7, image::Luma([200]))),
    );
    save(
        &root.join("cat/b.png"),
        image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            9,
            4,
            image::Rgba([10, 20, 30, 128]),
        )),
    );
    save(
        &root.join("dog/c.jpg"),
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            16,
            16,
            image::Rgb([250, 0, 0]),
        )),
    );
    save(
        &root.join("dog/d.JPEG"),
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(3, 3, image::Rgb([0, 0, 250]))),
    );
    std::fs::write(root.join("dog/notes.txt"), "ignored").unwrap();
    let mut c = config_for(DatasetKind::ImageFolder, root);
    c.data.val_split = 0.25;
    let splits = data::open(&c, TargetKind::Class).unwrap();
    assert_eq!(splits.classes, ["cat", "dog"]);
    assert_eq!((splits.train.len(), splits.val.len()), (3, 1));
    let all: Vec<_> = (0..3)
        .map(|i| splits.train.get(i).unwrap())
        .chain([splits.val.get(0).unwrap()])
        .collect();
    assert!(all.iter().all(|s| s.image.channels == 3));
    let grey = all
        .iter()
        .find(|s| s.image.width == 5)
        .expect("the grey PNG");
    assert_eq!(grey.class(), Some(0));
    assert!(
        (grey.image.at(0, 3, 3) - 200.0 / 255.0).abs() < 1e-6
            && grey.image.at(0, 0, 0) == grey.image.at(2, 0, 0)
    );
    let red = all.iter().find(|s| s.image.width == 16).expect("the JPEG");
    assert_eq!(red.class(), Some(1));
    assert!(red.image.at(0, 8, 8) > 0.9 && red.image.at(2, 8, 8) < 0.1);
}

#[test]
fn image_folder_uses_train_and_val_subfolders() {
    let dir = tempfile::tempdir().unwrap();
    let px = || image::DynamicImage::ImageRgb8(image::RgbImage::new(4, 4));
    for (split, n) in [("train", 3), ("val", 2)] {
        for class in ["a", "b"] {
            for i in 0..n {
                save(&dir.path().join(format!("{split}/{class}/{i}.png")), px());
            }
        }
    }
    let splits = data::open(
        &config_for(DatasetKind::ImageFolder, dir.path()),
        TargetKind::Class,
    )
    .unwrap();
    assert_eq!((splits.train.len(), splits.val.len()), (6, 4));
}

#[test]
fn corrupt_image_names_the_file_or_is_skipped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "train/ok/0",
        "train/ok/1",
        "train/ok/2",
        "train/ok/3",
        "train/ok/4",
        "train/ok/5",
        "val/ok/0",
    ] {
        save(
            &dir.path().join(format!("{name}.png")),
            image::DynamicImage::ImageRgb8(image::RgbImage::new(4, 4)),
        );
    }
    let bad = dir.path().join("train/ok/broken.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\nthis is not a png").unwrap();
    let c = config_for(DatasetKind::ImageFolder, dir.path());
    let splits = data::open(&c, TargetKind::Class).unwrap();
    let err = EpochLoader::start(loader(splits.train.clone(), false), 1)
        .find_map(Result::err)
        .expect("the corrupt file fails the epoch");
    assert!(matches!(err, DataError::BadFile { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("cannot read")
            && msg.contains("broken.png")
            && msg.contains("data.skip_bad = true"),
        "{msg}"
    );
    let batches: Vec<_> = EpochLoader::start(loader(splits.train.clone(), true), 1)
        .map(Result::unwrap)
        .collect();
    let images: usize = batches.iter().map(|b| b.len()).sum();
    let skipped: Vec<&String> = batches.iter().flat_map(|b| &b.skipped).collect();
    assert_eq!(images, 6);
    assert_eq!(skipped.len(), 1);
    assert!(skipped[0].ends_with("broken.png"));
}

#[test]
fn missing_dataset_path_is_an_error_that_says_how_to_fix_it() {
    for kind in [DatasetKind::ImageFolder, DatasetKind::Idx] {
        let err = data::open(
            &config_for(kind, Path::new("/no/such/dataset")),
            TargetKind::Class,
        )
        .err()
        .unwrap()
        .to_string();
        assert_eq!(err, "dataset path /no/such/dataset does not exist; fix data.path in the experiment file (or install the dataset)");
    }
}

fn idx_bytes(dims: &[u32], payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        out.extend_from_slice(&d.to_be_bytes());
    }
    out.extend_from_slice(payload);
    out
}

#[test]
fn idx_reads_raw_and_gzip_and_splits_without_t10k() {
    let dir = tempfile::tempdir().unwrap();
    let n = 10u32;
    let pixels: Vec<u8> = (0..n * 4).map(|i| (i * 6) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 3) as u8).collect();
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx_bytes(&[n, 2, 2], &pixels),
    )
    .unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&idx_bytes(&[n], &labels)).unwrap();
    std::fs::write(
        dir.path().join("train-labels-idx1-ubyte.gz"),
        gz.finish().unwrap(),
    )
    .unwrap();
    let mut c = config_for(DatasetKind::Idx, dir.path());
    c.data.val_split = 0.2;
    c.data.channels = 1;
    let splits = data::open(&c, TargetKind::Class).unwrap();
    assert_eq!(splits.classes, ["0", "1", "2"]);
    assert_eq!((splits.train.len(), splits.val.len()), (8, 2));
    let s = splits.train.get(1).unwrap();
    assert_eq!(
        (s.class(), s.image.channels, s.image.height, s.image.width),
        (Some(1), 1, 2, 2)
    );
    assert!((s.image.at(0, 0, 0) - 24.0 / 255.0).abs() < 1e-6);
    std::fs::write(
        dir.path().join("train-images-idx3-ubyte"),
        idx_bytes(&[n, 2, 2], &pixels[..7]),
    )
    .unwrap();
    let err = data::open(&c, TargetKind::Class).err().unwrap().to_string();
    assert!(
        err.contains("train-images-idx3-ubyte") && err.contains("truncated"),
        "{err}"
    );
}

#[test]
fn loader_batches_cover_the_epoch_in_a_seeded_order() {
    let mut c = Config::default();
    c.data.image_size = 8;
    c.data.train_size = Some(10);
    let splits = data::open(&c, TargetKind::Class).unwrap();
    let spec = loader(splits.train.clone(), false);
    let labels = |epoch| -> Vec<i64> {
        EpochLoader::start(spec.clone(), epoch)
            .flat_map(|b| b.unwrap().targets.labels)
            .collect()
    };
    let e1 = labels(1);
    assert_eq!(e1.len(), 10);
    assert_eq!(e1, labels(1));
    let order1 = data::epoch_order(10, 3, 1, true);
    let order2 = data::epoch_order(10, 3, 2, true);
    assert_ne!(order1, order2);
    let batch = load_batch(&spec, 1, &[0, 1, 2]).unwrap();
    assert_eq!(batch.images.len(), 3 * 3 * 8 * 8);
    assert_eq!(batch.targets.labels, [0, 1, 2]);
}

/// Panics on one index, as a transform or decoder bug would.
struct PanicsAt(usize);

impl data::Dataset for PanicsAt {
    fn len(&self) -> usize {
        12
    }

    fn get(&self, index: usize) -> Result<data::Sample, DataError> {
        assert_ne!(index, self.0, "decoder bug on sample {index}");
        Ok(data::Sample::classified(
            data::Image::new(3, 8, 8),
            index % 2,
        ))
    }
}

#[test]
fn a_panic_in_a_loader_thread_is_an_error_of_the_epoch() {
    let mut batches = 0;
    let mut failure = None;
    for batch in EpochLoader::start(loader(Arc::new(PanicsAt(9)), true), 1) {
        match batch {
            Ok(_) => batches += 1,
            Err(e) => failure = Some(e),
        }
    }
    let e = failure.expect("the epoch reports the panic instead of ending short");
    assert!(matches!(e, DataError::Worker { .. }), "{e}");
    assert!(e.to_string().contains("decoder bug on sample 9"), "{e}");
    assert!(batches < 3, "no batch after the failure");
}
