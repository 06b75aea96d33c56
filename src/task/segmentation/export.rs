//! `vitrun export` of a segmenter: the encoder under timm's names (it loads into
//! `timm.create_model(timm_name, num_classes=0, **model_args)` as it is), the head and decoder
//! under `decode_head.` (vitrun's names: `decode_head.head.weight`, Segmenter's
//! `decode_head.decoder.cls_emb`, …), and a JSON of what rebuilds the whole model:
//! `scripts/check_segmentation_export.py` does it in PyTorch and reproduces `vitrun predict`.

use super::head::DecoderChoice;
use crate::config::{upsampling_stages, Config, MaskNorm};
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
    let patch = config.model.patch_size;
    let decoder = match decoder {
        DecoderChoice::Linear => serde_json::json!({"kind": "linear"}),
        DecoderChoice::Conv => serde_json::json!({
            "kind": "conv",
            "stages": upsampling_stages(patch),
        }),
        DecoderChoice::Mask { layers, norm } => serde_json::json!({
            "kind": "mask",
            "layers": layers,
            "norm_eps": 1e-5,
            "mask_norm": norm,
            "temperature": (*norm == MaskNorm::Tempered).then_some(super::mask::TEMPERATURE),
        }),
        DecoderChoice::Unet { skip_blocks, .. } => serde_json::json!({
            "kind": "unet",
            "stages": upsampling_stages(patch),
            "skip_blocks": skip_blocks,
        }),
    };
    let fields = serde_json::json!({
        "decoder": decoder,
        "prefix": PREFIX,
        "output": "per-pixel class logits [classes, size, size]; vitrun predict resizes them bilinearly (align_corners=False) to the image and takes the argmax",
    });
    crate::task::dense_export::args("segmentation", config, classes, timm, fields)
}
