//! Synthetic vehicle scenes for detection and segmentation: one to N vehicles of the five
//! classes per image at random sizes and places, nearer ones drawn over farther ones, each with
//! its class, its box and its pixels; deterministic by seed, split and index. Always labelled
//! synthetic.

use rand::Rng;
use tiny_skia::{Pixmap, PixmapPaint, Transform};

use super::dataset::{DataError, Dataset, Sample, Target};
use super::geometry::{Mask, ObjectBox};
use super::image::Image;
use super::synthetic::{
    contrasting, draw_backdrop, draw_vehicle, generated_rng, to_image, VEHICLE_CLASSES,
};

/// Coverage (alpha out of 255) from which a pixel belongs to the vehicle drawn over it.
const OPAQUE: u8 = 128;

/// One generated scene.
#[derive(Debug, Clone)]
pub struct Scene {
    pub image: Image,
    /// 0 = background, `k` = the pixels of `objects[k - 1]` left visible.
    pub instances: Mask,
    /// Class (an index into the generator's classes) and box of each visible vehicle: the
    /// bounding box of its visible pixels.
    pub objects: Vec<ObjectBox>,
}

impl Scene {
    /// The class mask: 0 = background, `class + 1` under each vehicle.
    pub fn class_mask(&self) -> Mask {
        Mask {
            height: self.instances.height,
            width: self.instances.width,
            labels: self
                .instances
                .labels
                .iter()
                .map(|&k| match k {
                    0 => 0,
                    k => self.objects[usize::from(k) - 1].class as u8 + 1,
                })
                .collect(),
        }
    }
}

/// Which target a scene gives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SceneTarget {
    /// The vehicles' classes and boxes (detection).
    Objects,
    /// The class mask, 0 = background (segmentation).
    ClassMask,
}

/// A generated split of scenes.
pub struct SyntheticScenes {
    seed: u64,
    split: u64,
    len: usize,
    size: usize,
    /// Indices into [`VEHICLE_CLASSES`], in label order.
    classes: Vec<usize>,
    max_objects: usize,
    target: SceneTarget,
}

impl SyntheticScenes {
    /// `split` keeps train and validation apart (0 = train, 1 = val); each scene holds
    /// `1..=max_objects` vehicles (at most 254) before occlusion.
    pub fn new(
        seed: u64,
        split: u64,
        len: usize,
        size: usize,
        classes: Vec<usize>,
        max_objects: usize,
        target: SceneTarget,
    ) -> Self {
        SyntheticScenes {
            seed,
            split,
            len,
            size,
            classes,
            max_objects: max_objects.clamp(1, 254),
            target,
        }
    }

    /// Scene `index` (the same for the same seed, split and index).
    pub fn scene(&self, index: usize) -> Scene {
        let mut rng = generated_rng(self.seed, self.split, index, b"scenes\0\0");
        render_scene(self.size, &self.classes, self.max_objects, &mut rng)
    }
}

impl Dataset for SyntheticScenes {
    fn len(&self) -> usize {
        self.len
    }

    fn get(&self, index: usize) -> Result<Sample, DataError> {
        let scene = self.scene(index);
        let target = match self.target {
            SceneTarget::Objects => Target::Objects(scene.objects.clone()),
            SceneTarget::ClassMask => Target::Mask(scene.class_mask()),
        };
        Ok(Sample {
            image: scene.image,
            target,
        })
    }
}

/// A vehicle about to be drawn: its class label, width and where its wheels touch the ground.
struct Placement {
    class: usize,
    width: f32,
    left: f32,
    base: f32,
    flip: bool,
}

/// Draws a scene of `1..=max_objects` vehicles of `classes` (indices into
/// [`VEHICLE_CLASSES`]), the nearest (lowest in the picture) last.
pub fn render_scene(
    size: usize,
    classes: &[usize],
    max_objects: usize,
    rng: &mut impl Rng,
) -> Scene {
    let s = size as f32;
    let mut pix = Pixmap::new(size as u32, size as u32).expect("image size is at least 1");
    let (sky, horizon) = draw_backdrop(&mut pix, rng);
    let count = rng.gen_range(1..=max_objects);
    let mut placements: Vec<Placement> = (0..count)
        .map(|_| {
            let width = s * rng.gen_range(0.3..0.6);
            // Tall vehicles reach 0.9 of their length above the wheels: keep them in frame.
            let lowest = (0.9 * width).max(horizon - 0.3 * width);
            Placement {
                class: rng.gen_range(0..classes.len()),
                width,
                left: rng.gen_range(0.0..(s - width).max(1.0)),
                base: rng.gen_range(lowest.min(s - 1.0)..=s - 1.0),
                flip: rng.gen_bool(0.5),
            }
        })
        .collect();
    placements.sort_by(|a, b| a.base.total_cmp(&b.base));
    let mut instances = Mask::filled(size, size, 0);
    for (k, p) in placements.iter().enumerate() {
        let mut layer = Pixmap::new(size as u32, size as u32).expect("image size is at least 1");
        let t = if p.flip {
            Transform::from_row(-p.width, 0.0, 0.0, p.width, p.left + p.width, p.base)
        } else {
            Transform::from_row(p.width, 0.0, 0.0, p.width, p.left, p.base)
        };
        let body = contrasting(rng, sky);
        draw_vehicle(&mut layer, VEHICLE_CLASSES[classes[p.class]], t, body, rng);
        for (label, px) in instances.labels.iter_mut().zip(layer.pixels()) {
            if px.alpha() >= OPAQUE {
                *label = k as u8 + 1;
            }
        }
        pix.draw_pixmap(
            0,
            0,
            layer.as_ref(),
            &PixmapPaint::default(),
            Transform::identity(),
            None,
        );
    }
    // Number the vehicles left visible 1, 2, … in drawing order.
    let mut renumber = vec![0u8; placements.len() + 1];
    let mut objects = Vec::new();
    for (k, p) in placements.iter().enumerate() {
        if let Some(corners) = instances.bounding_box(k as u8 + 1) {
            objects.push(ObjectBox {
                class: p.class,
                corners,
            });
            renumber[k + 1] = objects.len() as u8;
        }
    }
    for label in &mut instances.labels {
        *label = renumber[usize::from(*label)];
    }
    Scene {
        image: to_image(&pix),
        instances,
        objects,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::augment::random_resized_crop_step;
    use crate::data::geometry::{transform_boxes, Step};
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn scenes_are_deterministic_and_boxes_frame_their_pixels() {
        let gen = SyntheticScenes::new(3, 0, 10, 64, vec![0, 1, 2, 3, 4], 4, SceneTarget::Objects);
        let mut seen = 0;
        for i in 0..10 {
            let a = gen.scene(i);
            let b = gen.scene(i);
            assert_eq!(a.image, b.image);
            assert_eq!(a.instances, b.instances);
            assert!(!a.objects.is_empty() && a.objects.len() <= 4);
            for (k, o) in a.objects.iter().enumerate() {
                assert_eq!(a.instances.bounding_box(k as u8 + 1), Some(o.corners));
                assert!(o.class < 5);
            }
            let classes = a.class_mask();
            assert_eq!(classes.count(0), a.instances.count(0));
            seen += a.objects.len();
        }
        assert!(seen > 10, "scenes hold several vehicles: {seen} in 10");
        let other_split =
            SyntheticScenes::new(3, 1, 10, 64, vec![0, 1, 2, 3, 4], 4, SceneTarget::Objects);
        assert_ne!(other_split.scene(0).image, gen.scene(0).image);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// After a random resized crop and flip, every box still holds all of its object's
        /// pixels that are left; a box the crop did not cut frames them to within a pixel and
        /// a half when the crop does not shrink the image (nearest sampling moves an edge by
        /// at most one output pixel; shrinking can skip a thin stroke at the edge altogether).
        /// A box dropped as mostly cut away leaves at most a few pixels.
        #[test]
        fn boxes_follow_their_masks_through_geometry(index in 0usize..1000, lo in 0.08f64..1.0, flip: bool, out in 24usize..80) {
            let gen = SyntheticScenes::new(11, 0, 1000, 64, vec![0, 1, 2, 3, 4], 3, SceneTarget::Objects);
            let scene = gen.scene(index);
            let mut rng = ChaCha8Rng::seed_from_u64(index as u64);
            let crop = random_resized_crop_step(64, 64, [lo, 1.0], [0.75, 4.0 / 3.0], out, &mut rng);
            let Step::CropResize { h, w, .. } = crop else { unreachable!("a crop") };
            let enlarging = out as f32 >= h.max(w);
            let mut steps = vec![crop];
            if flip {
                steps.push(Step::HFlip);
            }
            let mut mask = scene.instances.clone();
            for step in &steps {
                mask = step.mask(&mask);
            }
            for (k, o) in scene.objects.iter().enumerate() {
                let moved = transform_boxes(std::slice::from_ref(o), &steps, 64, 64, 0.0);
                let uncut = transform_boxes(std::slice::from_ref(o), &steps, 64, 64, 1.0).len() == 1;
                let framed = mask.bounding_box(k as u8 + 1);
                match (moved.first(), framed) {
                    (Some(b), Some(m)) => {
                        let b = b.corners;
                        prop_assert!(m.x0 >= b.x0 - 1.5 && m.y0 >= b.y0 - 1.5 && m.x1 <= b.x1 + 1.5 && m.y1 <= b.y1 + 1.5,
                            "object {k}: mask {m:?} outside box {b:?} after {steps:?}");
                        if uncut && enlarging {
                            for (e, f) in [(b.x0, m.x0), (b.y0, m.y0), (b.x1, m.x1), (b.y1, m.y1)] {
                                prop_assert!((e - f).abs() <= 1.5, "object {k}: box {b:?} vs mask {m:?} after {steps:?}");
                            }
                        }
                    }
                    (None, Some(m)) => prop_assert!(m.area() <= 4.0, "object {k} dropped but {m:?} visible"),
                    // A cut box may keep a corner of the frame that the object never
                    // reached (boxes are not masks); an uncut one keeps its pixels.
                    (Some(b), None) => prop_assert!(!(uncut && enlarging), "object {k} kept {b:?} whole with no pixel left"),
                    (None, None) => {}
                }
            }
        }
    }
}
