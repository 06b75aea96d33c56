//! ViT backbone and heads with timm's layout, plus timm/DeiT checkpoint loading.

mod decoder;
mod detr;
mod freeze;
mod pretrained;
mod resample;
mod state_dict;
mod vit;

pub use decoder::ConvDecoder;
pub use detr::{CrossAttention, DetrDecoder, DetrLayer, QueryFeatures};
pub use freeze::{covers, freeze, Unmatched};
pub use pretrained::{apply_pretrained, filter, is_head, Coverage};
pub use resample::{resample_pos_embed, resize_grid};
pub use state_dict::{
    apply_partial, apply_state_dict, read_state_dict, state_dict, timm_names, write_safetensors,
    Applied, CheckpointError, StateDict, StateTensor,
};
pub use vit::{Attention, Block, DecoderSpec, Mlp, PatchEmbed, Vit, VitSpec, VitTrace};

use std::path::Path;

use burn::backend::Flex;

use crate::config::{Config, Decoder, Pooling, StemKind, StemNorm, Task};

/// Loads an experiment's model with `classes` outputs from the checkpoint at `path`, on the CPU
/// (reports and predictions).
pub fn load_on_cpu(
    config: &Config,
    classes: usize,
    path: &Path,
) -> Result<(Vit<Flex>, VitSpec), CheckpointError> {
    let spec = VitSpec::from_config(config, classes);
    let device = Default::default();
    let model: Vit<Flex> = spec.init(&device);
    let weights = read_state_dict(path)?;
    let model = apply_state_dict(model, &weights, &path.display().to_string(), &device)?;
    Ok((model, spec))
}

impl VitSpec {
    /// The architecture an experiment asks for, with `num_classes` from its dataset (a
    /// detection head adds the "no object" class).
    pub fn from_config(config: &Config, num_classes: usize) -> VitSpec {
        let m = &config.model;
        VitSpec {
            image_size: config.data.image_size,
            in_channels: config.data.channels,
            patch_size: m.patch_size,
            conv_stem: m.conv_stem.clone(),
            conv_stem_pool: m.conv_stem_kind == StemKind::Pooled,
            conv_stem_depth: m.conv_stem_depth,
            conv_stem_batch_norm: m.conv_stem_norm == StemNorm::Batch,
            embed_dim: m.embed_dim.unwrap_or(192),
            depth: m.depth.unwrap_or(12),
            num_heads: m.num_heads.unwrap_or(3),
            mlp_ratio: m.mlp_ratio,
            num_classes: num_classes + usize::from(config.head.task == Task::Detection),
            mean_pool: m.pooling == Pooling::Mean,
            distilled: m.distilled,
            dropout: m.dropout,
            attn_dropout: m.attn_dropout,
            drop_path: m.drop_path,
            decoder: DecoderSpec::from_config(config),
        }
    }
}

impl DecoderSpec {
    /// The decoder an experiment's `[head]` asks for.
    pub fn from_config(config: &Config) -> DecoderSpec {
        let h = &config.head;
        match h.task {
            Task::Classification => DecoderSpec::None,
            Task::Segmentation if h.decoder == Some(Decoder::Conv) => DecoderSpec::Conv,
            Task::Segmentation => DecoderSpec::None,
            Task::Detection => DecoderSpec::Detr {
                queries: h.detection().queries,
                groups: h.detection().groups,
                layers: h.detection().layers,
            },
        }
    }
}
