//! `vitrun predict` for segmentation, by resize inference (Segmenter's `resize` mode without
//! the sliding window): the whole image is resized to the model's input, the per-pixel logits
//! are resized back to the image's own size (bilinear, as `F.interpolate`), and each pixel
//! takes the class of the largest. Each image gives its class mask, a colour overlay and, when
//! asked, its per-class probability maps.

use burn::backend::Flex;
use burn::tensor::activation::softmax;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::Tensor;

use super::head::{pixel_logits, SegmentationHead};
use super::panels::masked;
use crate::data::geometry::Mask;
use crate::data::Image;
use crate::model::{Backbone, Model};
use crate::plot::raster::Rgb;
use crate::task::outputs::{mask_palette, mask_png, npy_f32, rgb_png};
use crate::task::panels::host;
use crate::task::{Answer, PredictFile, PredictOptions};

/// Per-pixel class logits `[1, classes, height, width]` of `logits` (one image's, at the
/// model's size) resized to `[height, width]`.
pub fn at_size(logits: Tensor<Flex, 4>, size: [usize; 2]) -> Tensor<Flex, 4> {
    let [_, _, h, w] = logits.dims();
    if [h, w] == size {
        return logits;
    }
    interpolate(
        logits,
        size,
        InterpolateOptions {
            mode: InterpolateMode::Bilinear,
            align_corners: false,
        },
    )
}

/// The answers for `images` (the model's input) whose decoded originals are `originals`.
pub fn answers<E: Backbone<Flex>>(
    model: &Model<Flex, E, SegmentationHead<Flex>>,
    classes: &[String],
    images: Tensor<Flex, 4>,
    originals: &[Image],
    options: &PredictOptions,
) -> anyhow::Result<Vec<Answer>> {
    let logits = pixel_logits(model, images);
    let palette = mask_palette(classes.len());
    originals
        .iter()
        .enumerate()
        .map(|(i, original)| {
            let size = [original.height, original.width];
            let full = at_size(logits.clone().narrow(0, i, 1), size);
            let probs = softmax(full, 1);
            let mask = Mask {
                height: size[0],
                width: size[1],
                labels: host(probs.clone().argmax(1).float())
                    .into_iter()
                    .map(|l| l as u8)
                    .collect(),
            };
            let mut files = Vec::new();
            if options.files {
                let overlay = masked(&Rgb::from_image(original, None, 1), &mask, 1);
                files.push(PredictFile {
                    suffix: "mask.png",
                    bytes: mask_png(&mask.labels, mask.width, mask.height, &palette)?,
                });
                files.push(PredictFile {
                    suffix: "overlay.png",
                    bytes: rgb_png(&overlay)?,
                });
            }
            if options.files && options.probs {
                let shape = [classes.len(), size[0], size[1]];
                files.push(PredictFile {
                    suffix: "probs.npy",
                    bytes: npy_f32(&shape, &host(probs))?,
                });
            }
            Ok(answer(classes, &mask, files))
        })
        .collect()
}

/// The answer naming each class's share of `mask`, largest first.
fn answer(classes: &[String], mask: &Mask, files: Vec<PredictFile>) -> Answer {
    let mut areas = vec![0u64; classes.len()];
    for &l in &mask.labels {
        areas[usize::from(l)] += 1;
    }
    let total = mask.labels.len().max(1) as f64;
    let mut order: Vec<usize> = (0..classes.len()).filter(|&k| areas[k] > 0).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(areas[k]));
    let text = order
        .iter()
        .map(|&k| format!("{} {:.1} %", classes[k], 100.0 * areas[k] as f64 / total))
        .collect::<Vec<_>>()
        .join(", ");
    let by_class: serde_json::Map<String, serde_json::Value> = classes
        .iter()
        .zip(&areas)
        .map(|(name, &area)| (name.clone(), area.into()))
        .collect();
    Answer {
        text,
        json: serde_json::json!({
            "size": [mask.height, mask.width],
            "areas": by_class,
        }),
        files,
        boxes: None,
        labels: Some(mask.labels.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Arch, Vit, VitSpec};
    use crate::task::segmentation::head::DecoderChoice;
    use burn::tensor::Distribution;

    fn model() -> Model<Flex, Vit<Flex>, SegmentationHead<Flex>> {
        let spec = VitSpec::plain(16, 4, [16, 1, 2]);
        let device = Default::default();
        let head = SegmentationHead::new(spec.shape(), 3, &DecoderChoice::Linear, &device);
        Model::new(Arch::init::<Flex>(&spec, &device), head)
    }

    fn png_labels(bytes: &[u8]) -> (usize, usize, Vec<u8>) {
        let mut decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        decoder.set_transformations(png::Transformations::IDENTITY);
        let mut reader = decoder.read_info().unwrap();
        let (w, h) = (reader.info().width as usize, reader.info().height as usize);
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        (w, h, buf)
    }

    fn npy_values(bytes: &[u8]) -> Vec<f32> {
        let header = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        bytes[10 + header..]
            .chunks(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    }

    /// At the model's size the mask is the argmax of the logits; at another size it has the
    /// image's size and is the argmax of the probability maps it writes, which sum to 1.
    #[test]
    fn the_mask_is_the_argmax_of_the_logits_at_the_images_size() {
        let model = model();
        let images = Tensor::<Flex, 4>::random(
            [2, 3, 16, 16],
            Distribution::Normal(0.0, 1.0),
            &Default::default(),
        );
        let classes: Vec<String> = ["background", "a", "b"].map(String::from).to_vec();
        let originals = [Image::new(3, 16, 16), Image::new(3, 20, 36)];
        let options = PredictOptions {
            top_k: 1,
            probs: true,
            threshold: None,
            files: true,
        };
        let answers = answers(&model, &classes, images.clone(), &originals, &options).unwrap();
        let argmax = host(pixel_logits(&model, images).argmax(1).float());
        let (w, h, mask) = png_labels(&answers[0].files[0].bytes);
        assert_eq!((w, h), (16, 16));
        let expected: Vec<u8> = argmax[..256].iter().map(|&l| l as u8).collect();
        assert_eq!(mask, expected);
        assert_eq!(answers[0].files[0].suffix, "mask.png");

        let (w, h, mask) = png_labels(&answers[1].files[0].bytes);
        assert_eq!((w, h), (36, 20));
        let probs = answers[1]
            .files
            .iter()
            .find(|f| f.suffix == "probs.npy")
            .unwrap();
        let probs = npy_values(&probs.bytes);
        let plane = 20 * 36;
        assert_eq!(probs.len(), 3 * plane);
        for (p, &label) in mask.iter().enumerate() {
            let column: Vec<f32> = (0..3).map(|k| probs[k * plane + p]).collect();
            assert!((column.iter().sum::<f32>() - 1.0).abs() < 1e-4);
            let best = (0..3).fold(0, |b, k| if column[k] > column[b] { k } else { b });
            assert_eq!(usize::from(label), best, "pixel {p}");
        }
        let areas = &answers[1].json["areas"];
        let total: u64 = classes.iter().map(|c| areas[c].as_u64().unwrap()).sum();
        assert_eq!(total, plane as u64);
    }
}
