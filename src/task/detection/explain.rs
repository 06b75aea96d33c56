//! A detector's explanation, DETR's figure: what the query behind its best box looked at, as
//! the last decoder layer's cross-attention of that query over the patch tokens.

use burn::backend::Flex;
use burn::tensor::Tensor;

use super::head::{detect, DetectionHead, LastLayer, PredictedBox, Wanted};
use crate::model::{Backbone, Model};
use crate::task::explain::{min_max, resize_bilinear, Map};
use crate::task::panels::host;

/// Each image's map: the cross-attention of the query of its best-scoring box (of `class`,
/// when given), averaged over the heads, on the patch grid, resized bilinearly to the input
/// and scaled to `[0, 1]`; with the box and its class.
pub fn box_attention<E: Backbone<Flex>>(
    model: &Model<Flex, E, DetectionHead<Flex>>,
    images: Tensor<Flex, 4>,
    class: Option<usize>,
) -> anyhow::Result<Vec<Map>> {
    let [b, _, h, w] = images.dims();
    let outputs = detect(model, images, Wanted::default());
    let last = LastLayer::from_outputs(&outputs)?;
    let Some(weights) = outputs.cross_attention else {
        anyhow::bail!("the detection model gave no decoder output");
    };
    let [_, _, _, patches] = weights.dims();
    let weights = host(weights.mean_dim(1));
    let queries = last.queries();
    Ok((0..b)
        .map(|j| {
            let image = last.image(j);
            let columns = image.classes + 1;
            // A class's best box: its query's probability of that class, as mAP ranks it.
            let best = match class {
                None => image.above(h.max(w), 0.0).into_iter().next(),
                Some(k) => image
                    .all(h.max(w))
                    .into_iter()
                    .enumerate()
                    .max_by(|(a, _), (b, _)| {
                        let p = |q: usize| image.probs[q * columns + k];
                        p(*a).total_cmp(&p(*b))
                    })
                    .map(|(q, b)| PredictedBox {
                        class: k,
                        score: f64::from(image.probs[q * columns + k]),
                        ..b
                    }),
            };
            let query = best.map_or(0, |b| b.query);
            let row =
                &weights[(j * queries + query) * patches..(j * queries + query + 1) * patches];
            let mut values = resize_bilinear(row, outputs.grid, [h, w]);
            min_max(&mut values);
            Map {
                values,
                size: [h, w],
                class: best.map(|b| b.class),
                region: best.map(|b| {
                    let c = b.corners;
                    [c.x0, c.y0, c.x1, c.y1]
                }),
            }
        })
        .collect())
}
