//! DETR's transformer decoder on the ViT's patch tokens: learned object queries attend to each
//! other and, through cross-attention, to the encoder's patch tokens with their position
//! embeddings added to the keys; every layer's output is normalised and read by the model's
//! class head (a "no object" class last) and a 3-layer box MLP with a sigmoid, giving boxes
//! `[cx, cy, w, h]` in [0, 1] of the input. Layers are pre-norm (DETR's `normalize_before`):
//! on small data from scratch they train more steadily than post-norm.
//!
//! Two additions from DETR's successors make it learn within minutes on a CPU:
//! - each query has a learned reference point (Deformable DETR); its box centre is predicted
//!   as an offset from it (in logit space), the box MLP's last layer starting at zero so that
//!   every box starts on its reference;
//! - positions are 2-D sine encodings (DETR's own for the keys): the patch centres' for the
//!   keys, and the reference point's, added to the query's learned embedding, for the queries,
//!   so that a query and the patches near its reference share a positional code;
//! - a dense auxiliary loss classifies every patch token by the box it lies in (as Co-DETR's
//!   auxiliary heads do), so that the encoder learns what the vehicles look like before the
//!   queries have learned where to look;
//! - training decodes several groups of queries, each matched to the objects on its own and
//!   attending only within its group (Group DETR): more queries learn from every object, and
//!   inference keeps the first group.

use burn::module::{Module, Param};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::activation::{relu, sigmoid};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::kernels::{self, composed, VitKernels};

/// Hidden width of the decoder's feed-forward, as a multiple of the model's width.
pub const FFN_RATIO: usize = 4;
/// The sine encoding's longest wavelength, in units of the image (DETR: 10 000 over 2π·1).
pub const SINE_TEMPERATURE: f64 = 10_000.0;

/// 2-D sine position encodings `[n, dim]` of points `[n, 2]` (`x, y` in [0, 1]): the first
/// half of the features encode y, the second x, each as sines then cosines of the coordinate
/// times 2π at geometrically spaced frequencies (DETR's `PositionEmbeddingSine`).
pub fn sine_positions<B: Backend>(points: Tensor<B, 2>, dim: usize) -> Tensor<B, 2> {
    let [n, _] = points.dims();
    let per_axis = dim / 2;
    let half = per_axis / 2;
    let frequencies: Vec<f32> = (0..half)
        .map(|i| {
            (std::f64::consts::TAU / SINE_TEMPERATURE.powf(2.0 * i as f64 / per_axis as f64)) as f32
        })
        .collect();
    let frequencies =
        Tensor::<B, 1>::from_floats(frequencies.as_slice(), &points.device()).reshape([1, half]);
    let axis = |column: usize| {
        let angles = points.clone().narrow(1, column, 1) * frequencies.clone();
        Tensor::cat(vec![angles.clone().sin(), angles.cos()], 1)
    };
    let encoded = Tensor::cat(vec![axis(1), axis(0)], 1);
    let width = 4 * half;
    if width == dim {
        encoded
    } else {
        Tensor::cat(
            vec![encoded, Tensor::zeros([n, dim - width], &points.device())],
            1,
        )
    }
}

/// The centres `[gh·gw, 2]` (`x, y` in [0, 1]) of a `gh × gw` patch grid, row-major.
pub fn grid_centres<B: Backend>(gh: usize, gw: usize, device: &B::Device) -> Tensor<B, 2> {
    let points: Vec<f32> = (0..gh * gw)
        .flat_map(|i| {
            let (y, x) = (i / gw, i % gw);
            [(x as f32 + 0.5) / gw as f32, (y as f32 + 0.5) / gh as f32]
        })
        .collect();
    Tensor::from_data(burn::tensor::TensorData::new(points, [gh * gw, 2]), device)
}

/// Reference points spread over the whole image, row by row: `⌈√queries⌉` columns and as
/// many rows as they need, each point the centre of its cell, in logit space
/// (`[queries, 2]`).
fn spread_references(queries: usize) -> Vec<f32> {
    let columns = (1..).find(|c| c * c >= queries).unwrap_or(1);
    let rows = queries.div_ceil(columns);
    let logit = |p: f32| (p / (1.0 - p)).ln();
    (0..queries)
        .flat_map(|i| {
            let (row, column) = (i / columns, i % columns);
            [
                logit((column as f32 + 0.5) / columns as f32),
                logit((row as f32 + 0.5) / rows as f32),
            ]
        })
        .collect()
}

/// Multi-head attention with separate query, key and value projections (queries and keys may
/// come from different sequences).
#[derive(Module, Debug)]
pub struct CrossAttention<B: Backend> {
    pub q: Linear<B>,
    pub k: Linear<B>,
    pub v: Linear<B>,
    pub proj: Linear<B>,
    heads: usize,
}

impl<B: VitKernels> CrossAttention<B> {
    /// The context of `query` `[batch, n, dim]` over `key`/`value` `[batch, m, dim]`, projected
    /// back to `[batch, n, dim]`.
    pub fn forward(
        &self,
        query: Tensor<B, 3>,
        key: Tensor<B, 3>,
        value: Tensor<B, 3>,
    ) -> Tensor<B, 3> {
        self.forward_weights(query, key, value).0
    }

    /// [`CrossAttention::forward`] with the attention weights `[batch, heads, n, m]` (each
    /// query's row sums to 1 over the keys).
    pub fn forward_weights(
        &self,
        query: Tensor<B, 3>,
        key: Tensor<B, 3>,
        value: Tensor<B, 3>,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let split = |x: Tensor<B, 3>| {
            let [b, n, d] = x.dims();
            x.reshape([b, n, self.heads, d / self.heads])
                .swap_dims(1, 2)
        };
        let q = split(kernels::linear(&self.q, query, false));
        let k = split(kernels::linear(&self.k, key, false));
        let v = split(kernels::linear(&self.v, value, false));
        let weights = composed::attention_weights(q, k);
        let context = composed::attend(weights.clone(), v);
        (kernels::linear(&self.proj, context, false), weights)
    }
}

/// One decoder layer: self-attention among the queries, cross-attention to the patch tokens,
/// feed-forward (GELU, where DETR has ReLU); each a pre-norm residual branch.
#[derive(Module, Debug)]
pub struct DetrLayer<B: Backend> {
    pub norm1: LayerNorm<B>,
    pub self_attn: CrossAttention<B>,
    pub norm2: LayerNorm<B>,
    pub cross_attn: CrossAttention<B>,
    pub norm3: LayerNorm<B>,
    pub fc1: Linear<B>,
    pub fc2: Linear<B>,
}

impl<B: VitKernels> DetrLayer<B> {
    /// One layer on `tgt` `[batch, groups·queries, dim]`; queries attend to the queries of
    /// their own group only. Also gives the cross-attention weights `[batch, heads,
    /// groups·queries, patches]`.
    fn forward(
        &self,
        tgt: Tensor<B, 3>,
        query_pos: Tensor<B, 3>,
        memory: Tensor<B, 3>,
        memory_keys: Tensor<B, 3>,
        groups: usize,
    ) -> (Tensor<B, 3>, Tensor<B, 4>) {
        let [b, n, d] = tgt.dims();
        let per_group = |x: Tensor<B, 3>| x.reshape([b * groups, n / groups, d]);
        let normed = kernels::layer_norm(&self.norm1, tgt.clone());
        let with_pos = per_group(normed.clone() + query_pos.clone());
        let attended = self
            .self_attn
            .forward(with_pos.clone(), with_pos, per_group(normed));
        let tgt = tgt + attended.reshape([b, n, d]);
        let normed = kernels::layer_norm(&self.norm2, tgt.clone());
        let (crossed, weights) =
            self.cross_attn
                .forward_weights(normed + query_pos, memory_keys, memory);
        let tgt = tgt + crossed;
        let normed = kernels::layer_norm(&self.norm3, tgt.clone());
        let hidden = kernels::linear(&self.fc1, normed, true);
        (tgt + kernels::linear(&self.fc2, hidden, false), weights)
    }
}

/// The queries, the decoder layers, the final norm and the box MLP.
#[derive(Module, Debug)]
pub struct DetrDecoder<B: Backend> {
    /// The learned object queries (DETR's `query_embed`) of every group, `[groups·queries,
    /// dim]`, added to the queries' queries and keys in every layer.
    pub query_embed: Param<Tensor<B, 2>>,
    /// Each query's reference point `[groups·queries, 2]` (`x, y`, in logit space).
    pub reference: Param<Tensor<B, 2>>,
    /// Query groups: training decodes every group, each matched to the objects on its own
    /// (Group DETR); inference decodes the first.
    groups: usize,
    pub layers: Vec<DetrLayer<B>>,
    pub norm: LayerNorm<B>,
    /// The box MLP: Linear → ReLU → Linear → ReLU → Linear(4) → sigmoid.
    pub bbox: Vec<Linear<B>>,
    /// Classifies each patch token by the box it lies in (no object last): the auxiliary
    /// dense loss that gives the encoder a direct signal.
    pub patch_head: Linear<B>,
}

/// What the decoder's layers give the heads: each layer's normalised query features
/// `[batch, queries, dim]`, the last layer last; and the last layer's cross-attention
/// weights `[batch, heads, queries, patches]` (what each query looked at: DETR's figure).
pub struct QueryFeatures<B: Backend> {
    pub layers: Vec<Tensor<B, 3>>,
    pub cross_attention: Option<Tensor<B, 4>>,
}

/// A zero-initialised linear layer.
fn zero_linear<B: Backend>(inputs: usize, outputs: usize, device: &B::Device) -> Linear<B> {
    LinearConfig::new(inputs, outputs)
        .with_initializer(Initializer::Zeros)
        .init(device)
}

impl<B: Backend> DetrDecoder<B> {
    /// A decoder of `layers` layers with `groups` groups of `queries` object queries for a
    /// ViT of width `dim` with `heads` attention heads, for `classes` object classes.
    pub fn new(
        dim: usize,
        heads: usize,
        [queries, groups]: [usize; 2],
        layers: usize,
        classes: usize,
        device: &B::Device,
    ) -> Self {
        let trunc = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let linear = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_initializer(trunc.clone())
                .init(device)
        };
        // DETR initialises its transformer's weights Xavier-uniform: attention starts sharp
        // enough for positions to steer it.
        let xavier = |i: usize, o: usize| {
            LinearConfig::new(i, o)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device)
        };
        let norm = || {
            LayerNormConfig::new(dim)
                .with_epsilon(kernels::NORM_EPS)
                .init(device)
        };
        let attention = || CrossAttention {
            q: xavier(dim, dim),
            k: xavier(dim, dim),
            v: xavier(dim, dim),
            proj: xavier(dim, dim),
            heads,
        };
        DetrDecoder {
            query_embed: Initializer::Normal {
                mean: 0.0,
                std: 1.0,
            }
            .init([groups * queries, dim], device),
            reference: Param::from_tensor(Tensor::from_data(
                burn::tensor::TensorData::new(
                    spread_references(queries).repeat(groups),
                    [groups * queries, 2],
                ),
                device,
            )),
            groups,
            layers: (0..layers)
                .map(|_| DetrLayer {
                    norm1: norm(),
                    self_attn: attention(),
                    norm2: norm(),
                    cross_attn: attention(),
                    norm3: norm(),
                    fc1: xavier(dim, FFN_RATIO * dim),
                    fc2: xavier(FFN_RATIO * dim, dim),
                })
                .collect(),
            norm: norm(),
            bbox: vec![
                linear(dim, dim),
                linear(dim, dim),
                zero_linear(dim, 4, device),
            ],
            patch_head: linear(dim, classes + 1),
        }
    }
}

impl<B: VitKernels> DetrDecoder<B> {
    /// Query groups (1 but while training with Group DETR).
    pub fn groups(&self) -> usize {
        self.groups
    }

    /// The queries decoded against `memory`, the patch tokens `[batch, gh·gw, dim]` of a
    /// `gh × gw` grid: every group's (`[batch, groups·queries, dim]`, group-major) when
    /// `all_groups`, else the first group's.
    pub fn forward(
        &self,
        memory: Tensor<B, 3>,
        grid: [usize; 2],
        all_groups: bool,
    ) -> QueryFeatures<B> {
        let [b, patches, d] = memory.dims();
        let groups = if all_groups { self.groups } else { 1 };
        let queries = groups * self.query_embed.dims()[0] / self.groups;
        let device = memory.device();
        let reference = sine_positions(sigmoid(self.reference.val().narrow(0, 0, queries)), d);
        let query_pos = (self.query_embed.val().narrow(0, 0, queries) + reference)
            .reshape([1, queries, d])
            .expand([b, queries, d]);
        let positions = sine_positions(grid_centres::<B>(grid[0], grid[1], &device), d)
            .reshape([1, patches, d]);
        let memory_keys = memory.clone() + positions;
        let mut tgt = Tensor::zeros([b, queries, d], &device);
        let mut layers = Vec::with_capacity(self.layers.len());
        let mut cross_attention = None;
        for layer in &self.layers {
            let (next, weights) = layer.forward(
                tgt,
                query_pos.clone(),
                memory.clone(),
                memory_keys.clone(),
                groups,
            );
            tgt = next;
            cross_attention = Some(weights);
            layers.push(kernels::layer_norm(&self.norm, tgt.clone()));
        }
        QueryFeatures {
            layers,
            cross_attention,
        }
    }

    /// Boxes `[batch, queries, 4]` (`cx, cy, w, h` in [0, 1]) from query features: the
    /// centre offset from the query's reference point, in logit space.
    pub fn boxes(&self, features: Tensor<B, 3>) -> Tensor<B, 3> {
        let last = self.bbox.len() - 1;
        let mut x = features;
        for (i, layer) in self.bbox.iter().enumerate() {
            x = kernels::linear(layer, x, false);
            if i < last {
                x = relu(x);
            }
        }
        let [b, queries, _] = x.dims();
        let reference = Tensor::cat(
            vec![
                self.reference.val().narrow(0, 0, queries),
                Tensor::zeros([queries, 2], &x.device()),
            ],
            1,
        )
        .reshape([1, queries, 4])
        .expand([b, queries, 4]);
        sigmoid(x + reference)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;
    use burn::tensor::activation::softmax;
    use burn::tensor::Distribution;

    /// Attention written out for one head and one image, element by element.
    #[test]
    fn cross_attention_matches_the_written_out_formula() {
        let device = Default::default();
        let decoder = DetrDecoder::<Flex>::new(4, 1, [2, 1], 1, 3, &device);
        let attn = &decoder.layers[0].cross_attn;
        let query = Tensor::<Flex, 3>::random([1, 2, 4], Distribution::Normal(0.0, 1.0), &device);
        let key = Tensor::<Flex, 3>::random([1, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        let value = Tensor::<Flex, 3>::random([1, 3, 4], Distribution::Normal(0.0, 1.0), &device);
        let ours = attn.forward(query.clone(), key.clone(), value.clone());
        let q = attn.q.forward(query.reshape([2, 4]));
        let k = attn.k.forward(key.reshape([3, 4]));
        let v = attn.v.forward(value.reshape([3, 4]));
        let weights = softmax(q.matmul(k.transpose()).div_scalar(2.0), 1);
        let reference = attn.proj.forward(weights.matmul(v)).reshape([1, 2, 4]);
        let diff = (ours - reference).abs().max().into_scalar();
        assert!(diff < 1e-5, "max difference {diff}");
    }

    /// Every layer gives features for every query, and boxes lie in [0, 1].
    #[test]
    fn each_layer_gives_every_query_a_box_inside_the_image() {
        let device = Default::default();
        let decoder = DetrDecoder::<Flex>::new(8, 2, [5, 1], 3, 3, &device);
        let memory = Tensor::<Flex, 3>::random([2, 16, 8], Distribution::Normal(0.0, 1.0), &device);
        let features = decoder.forward(memory, [4, 4], true);
        assert_eq!(features.layers.len(), 3);
        for layer in features.layers {
            assert_eq!(layer.dims(), [2, 5, 8]);
            let boxes = decoder.boxes(layer);
            assert_eq!(boxes.dims(), [2, 5, 4]);
            let (lo, hi) = (
                boxes.clone().min().into_scalar(),
                boxes.clone().max().into_scalar(),
            );
            assert!(lo > 0.0 && hi < 1.0, "boxes in ({lo}, {hi})");
            // Untrained, each box sits on its query's reference point, half the image wide.
            let first: Vec<f32> = boxes.narrow(0, 0, 1).into_data().to_vec().unwrap();
            // Five queries: three columns, two rows (at y = 1/4 and 3/4).
            let expected = [
                1.0 / 6.0,
                0.25,
                0.5,
                0.5,
                0.5,
                0.25,
                0.5,
                0.5,
                5.0 / 6.0,
                0.25,
                0.5,
                0.5,
                1.0 / 6.0,
                0.75,
                0.5,
                0.5,
                0.5,
                0.75,
                0.5,
                0.5,
            ];
            for (got, want) in first.iter().zip(expected) {
                assert!((got - want).abs() < 1e-5, "{first:?}");
            }
        }
    }

    /// Sine codes of nearby points are more alike than of distant ones, and a code is
    /// `dim` wide whatever `dim`'s remainder by 4.
    #[test]
    fn sine_codes_are_most_alike_for_nearby_points() {
        let device = Default::default();
        let points = Tensor::<Flex, 2>::from_floats([[0.5, 0.5], [0.55, 0.5], [0.9, 0.1]], &device);
        let codes = sine_positions(points.clone(), 64);
        assert_eq!(codes.dims(), [3, 64]);
        let dot = |i: usize, j: usize| {
            (codes.clone().narrow(0, i, 1) * codes.clone().narrow(0, j, 1))
                .sum()
                .into_scalar()
        };
        assert!(dot(0, 0) > dot(0, 1) && dot(0, 1) > dot(0, 2));
        assert_eq!(sine_positions(points, 10).dims(), [3, 10]);
        let centres: Vec<f32> = grid_centres::<Flex>(2, 3, &device)
            .into_data()
            .to_vec()
            .unwrap();
        let expected =
            [1.0, 1.5, 3.0, 1.5, 5.0, 1.5, 1.0, 4.5, 3.0, 4.5, 5.0, 4.5].map(|v| v / 6.0);
        for (got, want) in centres.iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{centres:?}");
        }
    }
}
