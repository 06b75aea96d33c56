//! COCO-style detection data: an image folder and a JSON of `images`, `annotations` (`bbox` as
//! `[x, y, width, height]` in pixels, `category_id`) and `categories`. Category ids need not be
//! contiguous nor start at 1; classes are the categories in id order (or `data.classes`).
//! Crowd regions (`iscrowd = 1`) are left out of the targets, as DETR does.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;

use super::boxes::Corners;
use super::dataset::{hold_out, select_classes, DataError, Dataset, Sample, Splits, Target};
use super::folder::decode;
use super::geometry::ObjectBox;

/// How far (pixels) a box may reach past its image's edge and be clipped rather than refused:
/// real COCO boxes overshoot by rounding.
const EDGE_SLACK: f64 = 1.0;

#[derive(Debug, Deserialize)]
struct CocoFile {
    images: Vec<CocoImage>,
    #[serde(default)]
    annotations: Vec<CocoAnnotation>,
    categories: Vec<CocoCategory>,
}

#[derive(Debug, Deserialize)]
struct CocoImage {
    id: u64,
    file_name: String,
    width: Option<u32>,
    height: Option<u32>,
}

#[derive(Debug, Deserialize)]
struct CocoAnnotation {
    id: Option<u64>,
    image_id: u64,
    category_id: u64,
    bbox: [f64; 4],
    #[serde(default)]
    iscrowd: u8,
}

#[derive(Debug, Deserialize)]
struct CocoCategory {
    id: u64,
    name: String,
}

/// One image with its objects (boxes in its own pixels).
#[derive(Debug, Clone)]
struct Entry {
    path: PathBuf,
    /// Declared `(width, height)`, checked against the decoded image.
    size: Option<(u32, u32)>,
    objects: Vec<ObjectBox>,
}

/// Images with their boxes; images are decoded on `get`.
pub struct CocoDetection {
    entries: Vec<Entry>,
    max_pixels: u64,
}

impl Dataset for CocoDetection {
    fn len(&self) -> usize {
        self.entries.len()
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        let e = &self.entries[index];
        let image = decode(&e.path, self.max_pixels)?;
        let bad = |reason: String| DataError::BadFile {
            path: e.path.display().to_string(),
            reason,
        };
        if let Some((w, h)) = e.size {
            if (image.width, image.height) != (w as usize, h as usize) {
                return Err(bad(format!(
                    "the image is {}x{} but its annotations declare {w}x{h}; fix the image or its width/height in the annotations",
                    image.width, image.height
                )));
            }
        }
        // Boxes of an image whose annotations leave out its size are checked against it now.
        let (iw, ih) = (image.width as f64, image.height as f64);
        let mut objects = Vec::with_capacity(e.objects.len());
        for o in &e.objects {
            let c = o.corners;
            if c.x0 < -EDGE_SLACK
                || c.y0 < -EDGE_SLACK
                || c.x1 > iw + EDGE_SLACK
                || c.y1 > ih + EDGE_SLACK
            {
                return Err(bad(format!(
                    "a box [{:.1}, {:.1}, {:.1}, {:.1}] (x0, y0, x1, y1) reaches outside the {}x{} image; fix its annotation, or set data.skip_bad = true to skip the image",
                    c.x0, c.y0, c.x1, c.y1, image.width, image.height
                )));
            }
            objects.push(ObjectBox {
                class: o.class,
                corners: c.clipped(iw, ih),
            });
        }
        Ok(Sample {
            image,
            target: Target::Objects(objects),
        })
    }
}

/// The classes of an annotation file: every category in id order, then `wanted`'s selection.
struct Categories {
    names: Vec<String>,
    /// category id → class index, for the selected categories.
    class_of: HashMap<u64, usize>,
    /// Every category id the file declares.
    known: HashMap<u64, String>,
}

fn categories(
    path: &Path,
    file: &CocoFile,
    wanted: Option<&[String]>,
) -> Result<Categories, DataError> {
    let bad = |reason: String| DataError::BadFile {
        path: path.display().to_string(),
        reason,
    };
    if file.categories.is_empty() {
        return Err(bad(
            "`categories` is empty: a detector needs at least one class; list the categories as [{id, name}]".into(),
        ));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(c) = file.categories.iter().find(|c| !seen.insert(c.id)) {
        return Err(bad(format!(
            "category id {} is listed twice in `categories`; give each category its own id",
            c.id
        )));
    }
    let mut cats: Vec<&CocoCategory> = file.categories.iter().collect();
    cats.sort_by_key(|c| c.id);
    let own: Vec<String> = cats.iter().map(|c| c.name.clone()).collect();
    let picked = select_classes(&own, wanted)?;
    Ok(Categories {
        names: picked.iter().map(|&i| own[i].clone()).collect(),
        class_of: picked
            .iter()
            .enumerate()
            .map(|(class, &i)| (cats[i].id, class))
            .collect(),
        known: cats.iter().map(|c| (c.id, c.name.clone())).collect(),
    })
}

fn read_file(path: &Path) -> Result<CocoFile, DataError> {
    let bad = |reason: String| DataError::BadFile {
        path: path.display().to_string(),
        reason,
    };
    // A FIFO or a device would block or never end: only a regular file is read.
    match std::fs::metadata(path) {
        Ok(m) if !m.is_file() => {
            return Err(bad(
                "not a regular file (a folder, a FIFO or a device); point data.annotations at a JSON file".into(),
            ))
        }
        _ => {}
    }
    let file =
        std::fs::File::open(path).map_err(|e| bad(format!("{e}; check data.annotations")))?;
    serde_json::from_reader(std::io::BufReader::new(file)).map_err(|e| {
        bad(format!(
            "not a COCO annotation file: {e} (it needs `images` [{{id, file_name}}], `annotations` [{{image_id, category_id, bbox: [x, y, w, h]}}] and `categories` [{{id, name}}])"
        ))
    })
}

/// Reads one annotation file against its image folder. A bad annotation (unknown image or
/// category, a box outside its image) is an error naming it, or skipped and counted under
/// `skip_bad`. Returns the entries in the file's image order and the count skipped.
fn entries(
    path: &Path,
    file: &CocoFile,
    images: &Path,
    cats: &Categories,
    skip_bad: bool,
) -> Result<(Vec<Entry>, usize), DataError> {
    let bad = |reason: String| DataError::BadFile {
        path: path.display().to_string(),
        reason,
    };
    let mut index_of: HashMap<u64, usize> = HashMap::new();
    let mut entries = Vec::with_capacity(file.images.len());
    for img in &file.images {
        if index_of.insert(img.id, entries.len()).is_some() {
            return Err(bad(format!(
                "image id {} is listed twice in `images`; give each image its own id",
                img.id
            )));
        }
        let name = Path::new(&img.file_name);
        let inside = !img.file_name.is_empty()
            && name
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)));
        if !inside {
            return Err(bad(format!(
                "image id {} has file_name {:?}, which leaves the image folder (absolute, or through ..); give a path inside it",
                img.id, img.file_name
            )));
        }
        entries.push(Entry {
            path: images.join(name),
            size: img.width.zip(img.height),
            objects: Vec::new(),
        });
    }
    let mut skipped = 0;
    for (n, a) in file.annotations.iter().enumerate() {
        let name = match a.id {
            Some(id) => format!("annotation id {id}"),
            None => format!("annotation #{n}"),
        };
        let verdict = check(a, &name, &index_of, &entries, cats, &file.images);
        match verdict {
            Ok(Some((at, object))) => entries[at].objects.push(object),
            Ok(None) => {}
            Err(_) if skip_bad => skipped += 1,
            Err(reason) => {
                return Err(DataError::BadFile {
                    path: path.display().to_string(),
                    reason: format!("{reason}; fix it, or set data.skip_bad = true to skip (and count) such annotations"),
                })
            }
        }
    }
    Ok((entries, skipped))
}

/// One annotation's image index and object, `None` when it is a crowd region or of an
/// unselected class, or why it is bad.
fn check(
    a: &CocoAnnotation,
    name: &str,
    index_of: &HashMap<u64, usize>,
    entries: &[Entry],
    cats: &Categories,
    images: &[CocoImage],
) -> Result<Option<(usize, ObjectBox)>, String> {
    let &at = index_of.get(&a.image_id).ok_or_else(|| {
        format!(
            "{name} refers to image_id {}, which `images` does not list",
            a.image_id
        )
    })?;
    if !cats.known.contains_key(&a.category_id) {
        let mut ids: Vec<&u64> = cats.known.keys().collect();
        ids.sort();
        return Err(format!(
            "{name} has category_id {}, which `categories` does not list (it has {ids:?})",
            a.category_id
        ));
    }
    let [x, y, w, h] = a.bbox;
    if !(x.is_finite() && y.is_finite() && w > 0.0 && h > 0.0 && w.is_finite() && h.is_finite()) {
        return Err(format!(
            "{name} has bbox {:?}; a box is [x, y, width, height] with width and height above 0",
            a.bbox
        ));
    }
    let mut corners = Corners::from_coco(x, y, w, h);
    if let Some((iw, ih)) = entries[at].size {
        let (iw, ih) = (f64::from(iw), f64::from(ih));
        if x < -EDGE_SLACK || y < -EDGE_SLACK || x + w > iw + EDGE_SLACK || y + h > ih + EDGE_SLACK
        {
            return Err(format!(
                "{name}: bbox {:?} reaches outside its image {} ({iw}x{ih})",
                a.bbox, images[at].file_name
            ));
        }
        corners = corners.clipped(iw, ih);
    }
    if a.iscrowd != 0 {
        return Ok(None);
    }
    Ok(cats
        .class_of
        .get(&a.category_id)
        .map(|&class| (at, ObjectBox { class, corners })))
}

/// Where the COCO data of an experiment lives.
pub struct CocoPaths<'a> {
    /// The training images (`data.path`).
    pub images: &'a Path,
    /// `data.annotations`.
    pub annotations: &'a Path,
    /// `data.val_annotations`; unset = hold out `val_split` of the training images.
    pub val_annotations: Option<&'a Path>,
    /// `data.val_path`: the validation images (unset = `images`).
    pub val_images: Option<&'a Path>,
}

/// Opens COCO-style detection data.
pub fn open(
    paths: CocoPaths<'_>,
    wanted: Option<&[String]>,
    val_split: f64,
    seed: u64,
    caps: (Option<usize>, Option<usize>),
    skip_bad: bool,
    max_pixels: u64,
) -> Result<Splits, DataError> {
    if !paths.images.is_dir() {
        return Err(DataError::MissingPath {
            path: paths.images.display().to_string(),
        });
    }
    let train_file = read_file(paths.annotations)?;
    let cats = categories(paths.annotations, &train_file, wanted)?;
    let (mut train, skipped) = entries(
        paths.annotations,
        &train_file,
        paths.images,
        &cats,
        skip_bad,
    )?;
    let (mut val, val_skipped) = match paths.val_annotations {
        Some(val_path) => {
            let val_file = read_file(val_path)?;
            let val_cats = categories(val_path, &val_file, Some(&cats.names))?;
            let images = paths.val_images.unwrap_or(paths.images);
            entries(val_path, &val_file, images, &val_cats, skip_bad)?
        }
        None => {
            let (rest, held) = hold_out(std::mem::take(&mut train), val_split, seed);
            train = rest;
            (held, 0)
        }
    };
    if let Some(cap) = caps.0 {
        train.truncate(cap);
    }
    if let Some(cap) = caps.1 {
        val.truncate(cap);
    }
    let mut source = paths.annotations.display().to_string();
    if skipped + val_skipped > 0 {
        source.push_str(&format!(
            " ({} bad annotations skipped under data.skip_bad)",
            skipped + val_skipped
        ));
    }
    let make = |entries| CocoDetection {
        entries,
        max_pixels,
    };
    Ok(Splits {
        train: Arc::new(make(train)),
        val: Arc::new(make(val)),
        classes: cats.names,
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(json: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("img")).unwrap();
        for name in ["a.png", "b.png", "c.png"] {
            image::RgbImage::new(40, 30)
                .save(dir.path().join("img").join(name))
                .unwrap();
        }
        let ann = dir.path().join("ann.json");
        std::fs::write(&ann, json).unwrap();
        (dir, ann)
    }

    fn open_at(dir: &Path, ann: &Path, skip_bad: bool) -> Result<Splits, DataError> {
        let paths = CocoPaths {
            images: &dir.join("img"),
            annotations: ann,
            val_annotations: None,
            val_images: None,
        };
        open(paths, None, 0.0, 1, (None, None), skip_bad, 1 << 24)
    }

    fn err(r: Result<Splits, DataError>) -> String {
        match r {
            Ok(_) => panic!("opened"),
            Err(e) => e.to_string(),
        }
    }

    const GOOD: &str = r#"{
        "images": [{"id": 10, "file_name": "a.png", "width": 40, "height": 30},
                   {"id": 11, "file_name": "b.png", "width": 40, "height": 30},
                   {"id": 12, "file_name": "c.png"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 90, "bbox": [1, 2, 10, 5]},
            {"id": 2, "image_id": 10, "category_id": 7, "bbox": [20, 10, 20.4, 20]},
            {"id": 3, "image_id": 11, "category_id": 90, "bbox": [0, 0, 5, 5], "iscrowd": 1},
            {"id": 4, "image_id": 12, "category_id": 7, "bbox": [3, 3, 4, 4]}],
        "categories": [{"id": 90, "name": "truck"}, {"id": 7, "name": "car"}]
    }"#;

    #[test]
    fn sparse_category_ids_become_classes_in_id_order() {
        let (dir, ann) = setup(GOOD);
        let s = open_at(dir.path(), &ann, false).unwrap();
        assert_eq!(s.classes, ["car", "truck"]);
        let mut objects: Vec<Vec<ObjectBox>> = (0..s.train.len())
            .map(|i| match s.train.get(i).unwrap().target {
                Target::Objects(o) => o,
                other => panic!("{other:?}"),
            })
            .collect();
        objects.sort_by_key(|o| o.len());
        // b.png's only box is a crowd region: an image without objects.
        assert_eq!(objects[0], vec![]);
        assert_eq!(
            objects[1],
            vec![ObjectBox {
                class: 0,
                corners: Corners::from_coco(3.0, 3.0, 4.0, 4.0)
            }]
        );
        assert_eq!(
            objects[2],
            vec![
                ObjectBox {
                    class: 1,
                    corners: Corners::from_coco(1.0, 2.0, 10.0, 5.0)
                },
                // 20.4 wide from x = 20 overshoots the 40-px image by 0.4: clipped.
                ObjectBox {
                    class: 0,
                    corners: Corners::from_coco(20.0, 10.0, 20.0, 20.0)
                },
            ]
        );
    }

    #[test]
    fn malformed_annotations_name_the_file_and_the_entry() {
        let (dir, ann) = setup("{\"images\": [}");
        let e = err(open_at(dir.path(), &ann, false));
        assert!(e.contains("ann.json") && e.contains("line 1"), "{e}");

        let unknown = GOOD.replace(
            "\"category_id\": 7, \"bbox\": [3",
            "\"category_id\": 8, \"bbox\": [3",
        );
        let (dir, ann) = setup(&unknown);
        let e = err(open_at(dir.path(), &ann, false));
        assert!(
            e.contains("ann.json") && e.contains("annotation id 4") && e.contains("category_id 8"),
            "{e}"
        );
        let s = open_at(dir.path(), &ann, true).unwrap();
        assert!(
            s.source.contains("1 bad annotations skipped"),
            "{}",
            s.source
        );

        let outside = GOOD.replace("[1, 2, 10, 5]", "[35, 2, 10, 5]");
        let (dir, ann) = setup(&outside);
        let e = err(open_at(dir.path(), &ann, false));
        assert!(
            e.contains("annotation id 1") && e.contains("outside its image a.png"),
            "{e}"
        );

        let no_image = GOOD.replace("\"image_id\": 12", "\"image_id\": 99");
        let (dir, ann) = setup(&no_image);
        let e = err(open_at(dir.path(), &ann, false));
        assert!(
            e.contains("annotation id 4") && e.contains("image_id 99"),
            "{e}"
        );

        let wrong_size = GOOD.replace(
            "\"width\": 40, \"height\": 30},\n                   {\"id\": 11",
            "\"width\": 41, \"height\": 30},\n                   {\"id\": 11",
        );
        let (dir, ann) = setup(&wrong_size);
        let s = open_at(dir.path(), &ann, false).unwrap();
        let e: Vec<String> = (0..s.train.len())
            .filter_map(|i| s.train.get(i).err())
            .map(|e| e.to_string())
            .collect();
        assert_eq!(e.len(), 1);
        assert!(e[0].contains("a.png") && e[0].contains("41x30"), "{}", e[0]);
    }

    #[test]
    fn hostile_annotations_are_refused_by_name() {
        for (from, to, said) in [
            ("\"a.png\"", "\"/etc/passwd\"", "leaves the image folder"),
            ("\"a.png\"", "\"../../a.png\"", "leaves the image folder"),
            ("\"a.png\"", "\"\"", "leaves the image folder"),
            (
                "{\"id\": 11,",
                "{\"id\": 10,",
                "image id 10 is listed twice",
            ),
            (
                "{\"id\": 7, \"name\"",
                "{\"id\": 90, \"name\"",
                "category id 90 is listed twice",
            ),
        ] {
            let (dir, ann) = setup(&GOOD.replacen(from, to, 1));
            let e = err(open_at(dir.path(), &ann, false));
            assert!(e.contains("ann.json") && e.contains(said), "{to}: {e}");
        }
        let no_classes = r#"{"images": [], "annotations": [], "categories": []}"#;
        let (dir, ann) = setup(no_classes);
        let e = err(open_at(dir.path(), &ann, false));
        assert!(e.contains("`categories` is empty"), "{e}");

        // A FIFO as the annotations file is refused at once instead of blocking the reader.
        let (dir, ann) = setup(GOOD);
        std::fs::remove_file(&ann).unwrap();
        let made = std::process::Command::new("mkfifo").arg(&ann).status();
        if made.is_ok_and(|s| s.success()) {
            let e = err(open_at(dir.path(), &ann, false));
            assert!(e.contains("not a regular file"), "{e}");
        }

        // Without width/height, a box is checked against the decoded image.
        let sizeless = GOOD
            .replace(", \"width\": 40, \"height\": 30}", "}")
            .replace("[1, 2, 10, 5]", "[35, 2, 10, 5]");
        let (dir, ann) = setup(&sizeless);
        let s = open_at(dir.path(), &ann, false).unwrap();
        let errors: Vec<String> = (0..s.train.len())
            .filter_map(|i| s.train.get(i).err())
            .map(|e| e.to_string())
            .collect();
        assert!(
            errors
                .iter()
                .any(|e| e.contains("a.png") && e.contains("reaches outside")),
            "{errors:?}"
        );
    }
}
