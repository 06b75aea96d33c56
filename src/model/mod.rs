//! Models: a backbone with timm's layout under a task's head ([`Model`]), and timm/DeiT
//! checkpoints read, written and adapted by key name. Backbones: the ViT ([`Vit`]) and timm's
//! ResNet ([`resnet::ResNet`]).

mod backbone;
mod coverage;
mod freeze;
mod pretrained;
pub mod resnet;
mod state_dict;
mod torch_zip;
mod vit;

pub use backbone::{
    with_arch, Arch, ArchTask, Backbone, BackboneShape, Features, Model, Pooled, TimmModel, Trace,
};
pub use coverage::Coverage;
pub use freeze::{covers, freeze, Unmatched};
pub use pretrained::apply_pretrained;
pub use resnet::ResNetSpec;
pub use state_dict::{
    apply_partial, apply_state_dict, read_state_dict, state_dict, timm_names, write_safetensors,
    Applied, CheckpointError, Misfit, ParamPath, StateDict, StateTensor,
};
pub use vit::resample::{resample_pos_embed, resize_grid};
pub use vit::{Attention, Block, Mlp, PatchEmbed, Vit, VitSpec};

use std::path::Path;

use burn::module::{Module, ModuleDisplay};
use burn::tensor::backend::Backend;

use crate::config::{Config, Pooling, StemKind, StemNorm};

/// Builds the model of `encoder` and `head` and loads its weights from the checkpoint at `path`.
pub fn load<B: Backend, E: Module<B> + ModuleDisplay, H: Module<B> + ModuleDisplay>(
    encoder: E,
    head: H,
    path: &Path,
    device: &B::Device,
) -> Result<Model<B, E, H>, CheckpointError> {
    let weights = read_state_dict(path)?;
    apply_state_dict(
        Model::new(encoder, head),
        &weights,
        &path.display().to_string(),
        device,
    )
}

impl VitSpec {
    /// The encoder an experiment's `[model]` and `[data]` ask for.
    pub fn from_config(config: &Config) -> VitSpec {
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
            mean_pool: m.pooling == Pooling::Mean,
            distilled: m.distilled,
            dropout: m.dropout,
            attn_dropout: m.attn_dropout,
            drop_path: m.drop_path,
        }
    }
}

impl resnet::ResNetSpec {
    /// The ResNet an experiment's `model.arch`, `model.widths` and `[data]` ask for.
    pub fn from_config(config: &Config) -> resnet::ResNetSpec {
        let m = &config.model;
        let widths = <[usize; 4]>::try_from(m.widths.as_slice()).unwrap_or(resnet::RESNET_WIDTHS);
        resnet::ResNetSpec::preset(m.arch.name(), widths, config.data.channels)
            .expect("model.arch names a ResNet preset when it is not vit")
    }
}
