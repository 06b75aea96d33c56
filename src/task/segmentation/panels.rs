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

/// A grey copy of `base` with each pixel of a class other than the first painted in its
/// colour (grey first, so that the classes' colours stand out from the image's own).
pub(super) fn masked(base: &Rgb, mask: &Mask, scale: usize) -> Rgb {
    let colours: Vec<Option<[u8; 3]>> = mask
        .labels
        .iter()
        .map(|&l| (l != 0 && l != IGNORE_LABEL).then(|| colour(usize::from(l) - 1)))
        .collect();
    tint(&grey(base), &colours, mask.width, scale, 0.7)
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
        if let Target::Mask(truth) = target {
            tiles.push((
                masked(&base, truth, scale),
                format!("truth: {}", present(truth)),
            ));
        }
        tiles.push((
            masked(&base, &predicted, scale),
            format!("predicted: {}", present(&predicted)),
        ));
    }
    let title = format!(
        "Validation masks: ground truth (left) and prediction (right); {} is left untinted",
        classes.first().map_or("class 0", String::as_str)
    );
    let bars = class_bars(input, Segmentation::METRICS.main(), "iou_", "IoU")?;
    let mut panels = dense_figures(input, &tiles, &title, bars)?;
    panels
        .figures
        .extend(dense_attention(&model.encoder, &images, input)?);
    Ok(panels)
}
