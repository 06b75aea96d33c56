//! `vitrun export` of a detector: the encoder under timm's names (it loads into
//! `timm.create_model(timm_name, num_classes=0, **model_args)` as it is), and the decoder and
//! heads under `detr.` in DETR's own names: `class_embed`, `bbox_embed.layers.N`,
//! `query_embed.weight`, `decoder.layers.N.{self_attn, multihead_attn}` packed as
//! `nn.MultiheadAttention` packs them (`in_proj_weight` = q, k, v rows; `out_proj`),
//! `linear1`/`linear2`, `norm1`–`norm3` and `decoder.norm`; plus `reference_points.weight`, each
//! query's learned point (Deformable DETR's idea, in logit space). Only the first query group is
//! written (what inference decodes), and the patch classifier, a training-only loss, is left
//! out. `scripts/check_detection_export.py` rebuilds the model in PyTorch from the JSON and
//! reproduces `vitrun predict`'s boxes.

use anyhow::Context;

use crate::config::Config;
use crate::kernels::NORM_EPS;
use crate::model::{BackboneShape, StateDict, StateTensor, TimmModel};

/// The prefix of the decoder's and heads' weights in the export.
pub const PREFIX: &str = "detr.";

/// The export's weights: the encoder's as they are, the decoder's and heads' renamed to
/// DETR's names under [`PREFIX`], the first `queries` queries kept.
pub fn weights(sd: StateDict, queries: usize) -> anyhow::Result<StateDict> {
    let (mut ours, mut export): (StateDict, StateDict) = sd
        .into_iter()
        .partition(|(name, _)| name.starts_with("head.") || name.starts_with("detr."));
    let count = |ours: &StateDict, prefix: &str| {
        (0..)
            .take_while(|i| ours.keys().any(|k| k.starts_with(&format!("{prefix}{i}."))))
            .count()
    };
    let (layers, box_layers) = (count(&ours, "detr.layers."), count(&ours, "detr.bbox."));
    let mut renamed = Vec::new();
    for part in ["weight", "bias"] {
        renamed.push((format!("class_embed.{part}"), format!("head.{part}")));
        renamed.push((format!("decoder.norm.{part}"), format!("detr.norm.{part}")));
        for layer in 0..box_layers {
            renamed.push((
                format!("bbox_embed.layers.{layer}.{part}"),
                format!("detr.bbox.{layer}.{part}"),
            ));
        }
        for layer in 0..layers {
            let (theirs, mine) = (
                format!("decoder.layers.{layer}."),
                format!("detr.layers.{layer}."),
            );
            for (a, b) in [
                ("norm1", "norm1"),
                ("norm2", "norm2"),
                ("norm3", "norm3"),
                ("linear1", "fc1"),
                ("linear2", "fc2"),
                ("self_attn.out_proj", "self_attn.proj"),
                ("multihead_attn.out_proj", "cross_attn.proj"),
            ] {
                renamed.push((format!("{theirs}{a}.{part}"), format!("{mine}{b}.{part}")));
            }
        }
    }
    for (theirs, mine) in renamed {
        export.insert(format!("{PREFIX}{theirs}"), take(&mut ours, &mine)?);
    }
    for layer in 0..layers {
        for (attention, name) in [("self_attn", "self_attn"), ("cross_attn", "multihead_attn")] {
            for (part, packed) in [("weight", "in_proj_weight"), ("bias", "in_proj_bias")] {
                let [q, k, v] = ["q", "k", "v"].map(|p| {
                    take(
                        &mut ours,
                        &format!("detr.layers.{layer}.{attention}.{p}.{part}"),
                    )
                });
                export.insert(
                    format!("{PREFIX}decoder.layers.{layer}.{name}.{packed}"),
                    stack_rows([q?, k?, v?])?,
                );
            }
        }
    }
    for (theirs, mine) in [
        ("query_embed", "detr.query_embed"),
        ("reference_points", "detr.reference"),
    ] {
        export.insert(
            format!("{PREFIX}{theirs}.weight"),
            first_rows(take(&mut ours, mine)?, queries)?,
        );
    }
    ours.retain(|name, _| !name.starts_with("detr.patch_head."));
    anyhow::ensure!(
        ours.is_empty(),
        "the detector's checkpoint has tensors the export does not know: {}",
        ours.keys().cloned().collect::<Vec<_>>().join(", ")
    );
    Ok(export)
}

/// Removes `name` from the checkpoint `ours`.
fn take(ours: &mut StateDict, name: &str) -> anyhow::Result<StateTensor> {
    ours.remove(name)
        .with_context(|| format!("the detector's checkpoint has no tensor {name}"))
}

/// The first `n` rows of a 2-D tensor.
fn first_rows(tensor: StateTensor, n: usize) -> anyhow::Result<StateTensor> {
    let [rows, columns] = tensor.shape[..] else {
        anyhow::bail!("expected a 2-D tensor, found shape {:?}", tensor.shape);
    };
    anyhow::ensure!(n <= rows, "{n} queries asked of a tensor of {rows}");
    Ok(StateTensor {
        shape: vec![n, columns],
        data: tensor.data[..n * columns].to_vec(),
    })
}

/// Tensors of equal trailing shape stacked along their first axis (`nn.MultiheadAttention`'s
/// packed `in_proj_weight` and `in_proj_bias`).
fn stack_rows(parts: [StateTensor; 3]) -> anyhow::Result<StateTensor> {
    let trailing = parts[0].shape[1..].to_vec();
    anyhow::ensure!(
        parts.iter().all(|p| p.shape[1..] == trailing[..]),
        "q, k and v projections of different shapes"
    );
    let rows: usize = parts.iter().map(|p| p.shape[0]).sum();
    Ok(StateTensor {
        shape: [vec![rows], trailing].concat(),
        data: parts.into_iter().flat_map(|p| p.data).collect(),
    })
}

/// The export's JSON: the timm encoder, the classes, the input, the decoder and how its
/// outputs become `vitrun predict`'s boxes.
pub fn args(
    config: &Config,
    classes: &[String],
    timm: TimmModel,
    backbone: BackboneShape,
) -> serde_json::Value {
    let detection = config.head.detection();
    let fields = serde_json::json!({
        "memory": "the encoder's dense features, row-major over its grid: a ViT's patch tokens after its final norm (timm's forward_features without the class or distillation tokens, then fc_norm), a ResNet's forward_features map flattened",
        "decoder": {
            "kind": "detr",
            "layers": detection.layers,
            "queries": detection.queries,
            "dim": backbone.dim,
            "heads": backbone.heads,
            "ffn_dim": super::detr::FFN_RATIO * backbone.dim,
            "activation": "gelu",
            "norm_first": true,
            "norm_eps": NORM_EPS,
            "dropout": 0.0,
            "positions": "2-D sine codes in the manner of DETR's PositionEmbeddingSine, not interleaved: a point (x, y) in [0, 1] is coded [sin(y·f_i), cos(y·f_i), sin(x·f_i), cos(x·f_i)], each block over i < dim/4, with f_i = 2π / sine_temperature^(2i/(dim/2)), zeros padding a width not divisible by 4; keys = memory + the codes of the patch centres ((column + 0.5)/columns, (row + 0.5)/rows); values = memory; query position = query_embed + the code of sigmoid(reference_points); decoding starts from zeros; layers are DETR's forward_pre",
            "sine_temperature": super::detr::SINE_TEMPERATURE,
        },
        "prefix": PREFIX,
        "score_threshold": detection.score_threshold,
        "output": "per query, from the last layer's normed output h: class probabilities softmax(class_embed(h)), no object last; the box sigmoid(bbox_embed(h) + [reference_points, 0, 0]) as (cx, cy, w, h) in [0, 1] of the input (bbox_embed: 3 linear layers, ReLU between). vitrun predict keeps each query's best object class with its probability when at least the threshold, best first, in pixels of the image",
    });
    crate::task::dense_export::args("detection", config, classes, timm, fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(shape: &[usize], first: f32) -> StateTensor {
        let n = shape.iter().product::<usize>();
        StateTensor {
            shape: shape.to_vec(),
            data: (0..n).map(|i| first + i as f32).collect(),
        }
    }

    /// A one-layer decoder's checkpoint of width `d` with 4 queries in two groups, each
    /// attention's q, k, v and proj starting at 0, 100, 200 and 300.
    fn checkpoint(d: usize) -> StateDict {
        let mut sd = StateDict::new();
        sd.insert("blocks.0.attn.qkv.weight".into(), tensor(&[3 * d, d], 0.0));
        sd.insert("head.weight".into(), tensor(&[3, d], 0.0));
        sd.insert("head.bias".into(), tensor(&[3], 0.0));
        sd.insert("detr.query_embed".into(), tensor(&[4, d], 0.0));
        sd.insert("detr.reference".into(), tensor(&[4, 2], 0.0));
        sd.insert("detr.patch_head.weight".into(), tensor(&[3, d], 0.0));
        sd.insert("detr.patch_head.bias".into(), tensor(&[3], 0.0));
        for part in ["weight", "bias"] {
            let shape: &[usize] = if part == "weight" { &[d, d] } else { &[d] };
            sd.insert(format!("detr.norm.{part}"), tensor(shape, 0.0));
            sd.insert(format!("detr.bbox.0.{part}"), tensor(shape, 0.0));
            for attention in ["self_attn", "cross_attn"] {
                for (i, p) in ["q", "k", "v", "proj"].iter().enumerate() {
                    let name = format!("detr.layers.0.{attention}.{p}.{part}");
                    sd.insert(name, tensor(shape, 100.0 * i as f32));
                }
            }
            for m in ["norm1", "norm2", "norm3", "fc1", "fc2"] {
                sd.insert(format!("detr.layers.0.{m}.{part}"), tensor(shape, 0.0));
            }
        }
        sd
    }

    /// q, k, v packed in that order, the first group's queries kept, the patch head dropped,
    /// the encoder untouched.
    #[test]
    fn the_decoder_is_renamed_to_detrs_names_and_packed_as_torch_packs_it() {
        let d = 2;
        let sd = checkpoint(d);
        let export = weights(sd, 2).unwrap();
        let packed = &export["detr.decoder.layers.0.multihead_attn.in_proj_weight"];
        assert_eq!(packed.shape, [3 * d, d]);
        assert_eq!(
            packed.data,
            [0.0, 1.0, 2.0, 3.0, 100.0, 101.0, 102.0, 103.0, 200.0, 201.0, 202.0, 203.0]
        );
        assert_eq!(
            export["detr.decoder.layers.0.self_attn.in_proj_bias"].data,
            [0.0, 1.0, 100.0, 101.0, 200.0, 201.0]
        );
        assert_eq!(
            export["detr.decoder.layers.0.self_attn.out_proj.bias"].data,
            [300.0, 301.0]
        );
        assert_eq!(export["detr.query_embed.weight"].shape, [2, d]);
        assert_eq!(
            export["detr.reference_points.weight"].data,
            [0.0, 1.0, 2.0, 3.0]
        );
        assert!(export.contains_key("detr.decoder.layers.0.linear2.bias"));
        assert!(export.contains_key("detr.bbox_embed.layers.0.weight"));
        assert!(export.contains_key("detr.class_embed.bias"));
        assert!(export.contains_key("blocks.0.attn.qkv.weight"));
        assert!(!export.keys().any(|k| k.contains("patch_head")));
        // encoder 1, class_embed 2, decoder.norm 2, queries 1, references 1, bbox_embed 2,
        // the layer's two attentions 2 × 4 and its norms and linears 5 × 2.
        assert_eq!(export.len(), 27);
    }

    #[test]
    fn a_tensor_the_export_does_not_know_is_an_error_not_a_silent_drop() {
        let mut sd = checkpoint(2);
        sd.insert("detr.extra".into(), tensor(&[1], 0.0));
        let err = weights(sd, 1).unwrap_err().to_string();
        assert!(err.contains("does not know: detr.extra"), "{err}");
        let mut sd = checkpoint(2);
        sd.remove("detr.layers.0.cross_attn.k.bias");
        let err = weights(sd, 1).unwrap_err().to_string();
        assert!(
            err.contains("no tensor detr.layers.0.cross_attn.k.bias"),
            "{err}"
        );
    }
}
