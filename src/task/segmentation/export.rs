//! `vitrun export` of a segmenter: the encoder under timm's names (it loads into
//! `timm.create_model(timm_name, num_classes=0, **model_args)` as it is), the head and decoder
//! under `decode_head.` (vitrun's names: `decode_head.head.weight`, Segmenter's
//! `decode_head.decoder.cls_emb`, …), and a JSON of what rebuilds the whole model:
//! `scripts/check_segmentation_export.py` does it in PyTorch and reproduces `vitrun predict`.

use super::head::DecoderChoice;
use crate::config::{upsampling_stages, Config};
use crate::model::{StateDict, TimmModel};

/// The prefix of the head's and decoder's weights in the export.
pub const PREFIX: &str = "decode_head.";

/// The export's weights: the head's and decoder's moved under [`PREFIX`].
pub fn weights(sd: StateDict) -> StateDict {
    sd.into_iter()
        .map(|(name, tensor)| {
            if name.starts_with("head.") || name.starts_with("decoder.") {
                (format!("{PREFIX}{name}"), tensor)
            } else {
                (name, tensor)
            }
        })
        .collect()
}

/// The export's JSON: the timm encoder, the classes, the input and the decoder.
pub fn args(
    config: &Config,
    classes: &[String],
    timm: TimmModel,
    decoder: &DecoderChoice,
) -> serde_json::Value {
    let mut model_args = timm.args;
    model_args.insert("num_classes".into(), 0.into());
    let normalize = &config.augment.normalize;
    let patch = config.model.patch_size;
    let decoder = match decoder {
        DecoderChoice::Linear => serde_json::json!({"kind": "linear"}),
        DecoderChoice::Conv => serde_json::json!({
            "kind": "conv",
            "stages": upsampling_stages(patch),
        }),
        DecoderChoice::Mask { layers } => serde_json::json!({
            "kind": "mask",
            "layers": layers,
            "norm_eps": 1e-5,
            "two_class_temperature": (classes.len() < 3).then_some(0.07),
        }),
        DecoderChoice::Unet { skip_blocks, .. } => serde_json::json!({
            "kind": "unet",
            "stages": upsampling_stages(patch),
            "skip_blocks": skip_blocks,
        }),
    };
    serde_json::json!({
        "task": "segmentation",
        "architecture": timm.architecture,
        "timm_name": timm.name,
        "model_args": model_args,
        "label_names": classes,
        "input": {
            "size": [config.data.channels, config.data.image_size, config.data.image_size],
            "resize": "the whole image to size × size",
            "mean": normalize.enabled.then_some(&normalize.mean),
            "std": normalize.enabled.then_some(&normalize.std),
        },
        "decoder": decoder,
        "prefix": PREFIX,
        "output": "per-pixel class logits [classes, size, size]; vitrun predict resizes them bilinearly (align_corners=False) to the image and takes the argmax",
    })
}
