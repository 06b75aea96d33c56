//! Segmentation's report panels: validation images with their ground-truth masks beside the
//! predicted ones, and IoU per class at the best epoch.

use burn::backend::Flex;

use super::head::{pixel_logits, SegmentationHead};
use super::Segmentation;
use crate::data::geometry::{Mask, IGNORE_LABEL};
use crate::data::Target;
use crate::model::{Backbone, Model};
use crate::plot::raster::{grey, tint, Rgb};
use crate::task::panels::{
    batch, class_bars, colour, denorm, dense_attention, dense_augmentations, dense_figures,
    display_scale, host, names, val_samples,
};
use crate::task::{PanelInput, Panels, Task};

/// A grey copy of `base` with each region of a class other than the first filled with its
/// colour at half strength and outlined in it (grey first, so that the classes' colours stand
/// out from the image's own).
pub(super) fn masked(base: &Rgb, mask: &Mask, scale: usize) -> Rgb {
    let colours: Vec<Option<[u8; 3]>> = mask
        .labels
        .iter()
        .map(|&l| (l != 0 && l != IGNORE_LABEL).then(|| colour(usize::from(l) - 1)))
        .collect();
    let edges: Vec<Option<[u8; 3]>> = colours
        .iter()
        .zip(boundary(mask))
        .map(|(c, edge)| c.filter(|_| edge))
        .collect();
    let filled = tint(&grey(base), &colours, mask.width, scale, 0.5);
    tint(&filled, &edges, mask.width, scale, 1.0)
}

/// Whether each pixel of `mask` lies on the edge of its region: a 4-neighbour has another
/// label (the image's border is not an edge).
pub(super) fn boundary(mask: &Mask) -> Vec<bool> {
    let (w, h) = (mask.width, mask.height);
    let label = |x: usize, y: usize| mask.labels[y * w + x];
    (0..h)
        .flat_map(|y| (0..w).map(move |x| (x, y)))
        .map(|(x, y)| {
            let here = label(x, y);
            (x > 0 && label(x - 1, y) != here)
                || (x + 1 < w && label(x + 1, y) != here)
                || (y > 0 && label(x, y - 1) != here)
                || (y + 1 < h && label(x, y + 1) != here)
        })
        .collect()
}

/// Where `predicted` is wrong against `truth`: a foreground class predicted where it is not
/// (a false positive, or the wrong class) in red, a foreground pixel predicted as background
/// (a false negative) in blue, right and ignored pixels untinted; with the share of pixels
/// wrong (among those that count).
pub(super) fn errors(base: &Rgb, truth: &Mask, predicted: &Mask, scale: usize) -> (Rgb, f64) {
    const FALSE_POSITIVE: [u8; 3] = [220, 30, 30];
    const FALSE_NEGATIVE: [u8; 3] = [30, 90, 230];
    let mut counted = 0usize;
    let mut wrong = 0usize;
    let colours: Vec<Option<[u8; 3]>> = truth
        .labels
        .iter()
        .zip(&predicted.labels)
        .map(|(&t, &p)| {
            if t == IGNORE_LABEL {
                return None;
            }
            counted += 1;
            if t == p {
                return None;
            }
            wrong += 1;
            Some(if p == 0 {
                FALSE_NEGATIVE
            } else {
                FALSE_POSITIVE
            })
        })
        .collect();
    let share = wrong as f64 / counted.max(1) as f64;
    (tint(&grey(base), &colours, truth.width, scale, 0.8), share)
}

/// Training images and augmentations of them with their masks.
pub fn augmentations(input: &PanelInput<'_>) -> anyhow::Result<Panels> {
    dense_augmentations(
        input,
        &|image: &Rgb, target: &Target, scale: usize| match target {
            Target::Mask(mask) => masked(image, mask, scale),
            _ => image.clone(),
        },
    )
}

/// The validation images' ground-truth masks beside the predicted ones, and IoU per class.
pub fn panels<E: Backbone<Flex>>(
    model: &Model<Flex, E, SegmentationHead<Flex>>,
    input: &PanelInput<'_>,
) -> anyhow::Result<Panels> {
    let config = input.config;
    let classes = &input.splits.classes;
    let picks = input.picks(|count| Ok((0..count).collect()))?;
    let (images, targets) = val_samples(config, input.splits, &picks)?;
    let labels = host(
        pixel_logits(model, batch(&images, &Default::default()))
            .argmax(1)
            .float(),
    );
    let size = config.data.image_size;
    let plane = size * size;
    let scale = display_scale(size);
    let mut tiles = Vec::new();
    for (j, (image, target)) in images.iter().zip(&targets).enumerate() {
        let base = Rgb::from_image(image, denorm(config), scale);
        let predicted = Mask {
            height: size,
            width: size,
            labels: labels[j * plane..(j + 1) * plane]
                .iter()
                .map(|&l| l as u8)
                .collect(),
        };
        let present = |m: &Mask| {
            let mut ids: Vec<u8> = m.labels.clone();
            ids.sort_unstable();
            ids.dedup();
            names(
                ids.into_iter()
                    .filter(|&l| l != 0 && l != IGNORE_LABEL)
                    .filter_map(|l| classes.get(usize::from(l)).cloned()),
            )
        };
        let Target::Mask(truth) = target else {
            continue;
        };
        tiles.push((base.clone(), "validation image".into()));
        tiles.push((
            masked(&base, truth, scale),
            format!("truth: {}", present(truth)),
        ));
        tiles.push((
            masked(&base, &predicted, scale),
            format!("predicted: {}", present(&predicted)),
        ));
        let (wrong, share) = errors(&base, truth, &predicted, scale);
        tiles.push((wrong, format!("errors: {:.1}% of pixels", share * 100.0)));
    }
    let title = format!(
        "Validation masks: image, ground truth, prediction ({} untinted), errors (red: a class predicted where it is not; blue: missed)",
        classes.first().map_or("class 0", String::as_str)
    );
    let bars = class_bars(input, Segmentation::METRICS.main(), "iou_", "IoU")?;
    let mut panels = dense_figures(input, (&tiles, 4), &title, bars)?;
    panels
        .figures
        .extend(dense_attention(&model.encoder, &images, input)?);
    Ok(panels)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A square's ring of edge pixels is outlined at full colour, its inside at half.
    #[test]
    fn masks_are_filled_and_outlined() {
        let mut labels = vec![0u8; 36];
        for y in 1..5 {
            for x in 1..5 {
                labels[y * 6 + x] = 1;
            }
        }
        let mask = Mask {
            height: 6,
            width: 6,
            labels,
        };
        let edge = boundary(&mask);
        assert!(edge[6 + 1] && edge[4 * 6 + 4] && edge[6 + 3]);
        assert!(!edge[2 * 6 + 2] && !edge[3 * 6 + 3], "inside");
        assert!(
            edge[1] && !edge[0],
            "background beside the square, not the corner"
        );
        let base = Rgb {
            width: 6,
            height: 6,
            pixels: vec![200; 108],
        };
        let shown = masked(&base, &mask, 1);
        let px = |i: usize| shown.pixels[3 * i..3 * i + 3].to_vec();
        assert_eq!(px(6 + 1), colour(0).to_vec(), "edge at full colour");
        assert_ne!(px(2 * 6 + 2), colour(0).to_vec(), "inside blended");
        assert_ne!(px(2 * 6 + 2), px(0), "inside tinted");
    }

    #[test]
    fn errors_mark_false_positives_red_and_misses_blue_and_skip_ignored_pixels() {
        let base = Rgb {
            width: 4,
            height: 1,
            pixels: vec![128; 12],
        };
        let mask = |labels: Vec<u8>| Mask {
            height: 1,
            width: 4,
            labels,
        };
        // right, false positive, missed, ignored.
        let truth = mask(vec![1, 0, 2, IGNORE_LABEL]);
        let predicted = mask(vec![1, 2, 0, 1]);
        let (image, share) = errors(&base, &truth, &predicted, 1);
        assert!((share - 2.0 / 3.0).abs() < 1e-12, "{share}");
        let px = |i: usize| &image.pixels[i * 3..i * 3 + 3];
        assert_eq!(px(0), px(3), "right and ignored pixels stay grey");
        assert!(px(1)[0] > px(1)[2], "false positive: red");
        assert!(px(2)[2] > px(2)[0], "missed: blue");
    }
}
