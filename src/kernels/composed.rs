//! The fused ops written with ordinary burn tensor ops: the defaults of
//! [`super::VitKernels`] and the reference its fused implementations are tested against.

use burn::tensor::activation::{gelu, relu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::module::{conv2d, linear, max_pool2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

use super::{autocast, BatchNormOutput};

fn wrap<B: Backend, const D: usize>(t: FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// [`super::VitKernels::vit_linear`] composed: burn's `linear`, then burn's GELU.
pub fn linear_op<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: Option<FloatTensor<B>>,
    activate: bool,
) -> FloatTensor<B> {
    let (x, back) = autocast::to_compute(wrap::<B, 2>(x));
    let bias = bias.map(|b| autocast::cast_in(wrap::<B, 1>(b)));
    let out = linear(x, autocast::cast_in(wrap(weight)), bias);
    let out = if activate { gelu(out) } else { out };
    autocast::cast_out(out, back).into_primitive().tensor()
}

/// [`super::VitKernels::vit_conv2d`] composed: burn's `conv2d`, then burn's ReLU.
pub fn conv2d_op<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    bias: FloatTensor<B>,
    [stride, padding]: [usize; 2],
    activate: bool,
) -> FloatTensor<B> {
    let options = ConvOptions::new([stride; 2], [padding; 2], [1, 1], 1);
    let (x, back) = autocast::to_compute(wrap::<B, 4>(x));
    let weight = autocast::cast_in(wrap::<B, 4>(weight));
    let bias = autocast::cast_in(wrap::<B, 1>(bias));
    let out = conv2d(x, weight, Some(bias), options);
    let out = if activate { relu(out) } else { out };
    autocast::cast_out(out, back).into_primitive().tensor()
}

/// [`super::VitKernels::vit_conv2d_scaled`] composed: the scale folded into the weight
/// (`w·scale` per output channel), then [`conv2d_op`] with `shift` as its bias.
pub fn conv2d_scaled_op<B: Backend>(
    x: FloatTensor<B>,
    weight: FloatTensor<B>,
    [scale, shift]: [FloatTensor<B>; 2],
    stride_padding: [usize; 2],
    activate: bool,
) -> FloatTensor<B> {
    let weight = wrap::<B, 4>(weight);
    let out = weight.dims()[0];
    let folded = weight.mul(wrap::<B, 1>(scale).reshape([out, 1, 1, 1]));
    conv2d_op::<B>(
        x,
        folded.into_primitive().tensor(),
        shift,
        stride_padding,
        activate,
    )
}

/// [`super::VitKernels::vit_batch_norm`] composed: the statistics by `mean_dim` over each
/// channel's elements, then the normalisation and burn's ReLU (autodiff differentiates
/// through the batch statistics).
pub fn batch_norm_op<B: Backend>(
    x: FloatTensor<B>,
    [gamma, beta]: [FloatTensor<B>; 2],
    running: Option<[FloatTensor<B>; 2]>,
    eps: f64,
    activate: bool,
) -> BatchNormOutput<B> {
    let x = wrap::<B, 4>(x);
    let [batch, channels, h, w] = x.dims();
    let batch_stats = running.is_none();
    let [mean, var] = match running {
        Some(running) => running.map(wrap::<B, 1>),
        None => {
            let flat = x.clone().swap_dims(0, 1).reshape([channels, batch * h * w]);
            let mean = flat.clone().mean_dim(1);
            let var = (flat - mean.clone()).square().mean_dim(1);
            [mean, var].map(|t| t.reshape([channels]))
        }
    };
    let per_channel = |t: Tensor<B, 1>| t.reshape([1, channels, 1, 1]);
    let rstd = per_channel(var.clone().add_scalar(eps).sqrt().recip());
    let out =
        (x - per_channel(mean.clone())) * rstd * per_channel(wrap(gamma)) + per_channel(wrap(beta));
    let out = if activate { relu(out) } else { out };
    let stats = batch_stats.then(|| [mean, var].map(|t| t.detach().into_primitive().tensor()));
    (out.into_primitive().tensor(), stats)
}

/// [`super::VitKernels::vit_max_pool2d`] composed: burn's `max_pool2d`.
pub fn max_pool2d_op<B: Backend>(
    x: FloatTensor<B>,
    [kernel, stride, padding]: [usize; 3],
) -> FloatTensor<B> {
    let out = max_pool2d(
        wrap::<B, 4>(x),
        [kernel; 2],
        [stride; 2],
        [padding; 2],
        [1, 1],
        false,
    );
    out.into_primitive().tensor()
}

/// [`super::VitKernels::vit_self_attention`] composed (see [`self_attention`]).
/// Under mixed precision both products run in the compute format and the softmax in f32.
pub fn self_attention_op<B: Backend>(qkv: FloatTensor<B>, heads: usize) -> FloatTensor<B> {
    let (qkv, back) = autocast::to_compute(wrap::<B, 3>(qkv));
    let context = match back {
        None => self_attention(qkv, heads).0,
        Some(f32) => {
            let [q, k, v] = split_heads(qkv, heads);
            let [_, _, _, hd] = q.dims();
            let scores = q.matmul(k.swap_dims(2, 3)).cast(f32);
            let weights = softmax(scores.mul_scalar((hd as f64).powf(-0.5)), 3);
            attend(autocast::cast_in(weights), v)
        }
    };
    autocast::cast_out(context, back).into_primitive().tensor()
}

/// Splits `qkv` `[batch, tokens, 3·dim]` into q, k and v, each `[batch, heads, tokens,
/// head_dim]`.
pub fn split_heads<B: Backend>(qkv: Tensor<B, 3>, heads: usize) -> [Tensor<B, 4>; 3] {
    let [b, n, d3] = qkv.dims();
    let hd = d3 / 3 / heads;
    let qkv = qkv.reshape([b, n, 3 * heads, hd]).swap_dims(1, 2);
    [0, 1, 2].map(|i| qkv.clone().narrow(1, i * heads, heads))
}

/// The softmax attention weights `[batch, heads, tokens, tokens]` of q and k.
pub fn attention_weights<B: Backend>(q: Tensor<B, 4>, k: Tensor<B, 4>) -> Tensor<B, 4> {
    let [_, _, _, hd] = q.dims();
    let scale = (hd as f64).powf(-0.5);
    softmax(q.matmul(k.swap_dims(2, 3)).mul_scalar(scale), 3)
}

/// The context `[batch, queries, dim]` of `weights` `[batch, heads, queries, keys]` over `v`
/// `[batch, heads, keys, head_dim]` (queries and keys are the same tokens in self-attention).
pub fn attend<B: Backend>(weights: Tensor<B, 4>, v: Tensor<B, 4>) -> Tensor<B, 3> {
    let [b, h, n, _] = weights.dims();
    let [_, _, _, hd] = v.dims();
    weights.matmul(v).swap_dims(1, 2).reshape([b, n, h * hd])
}

/// Self-attention's context `[batch, tokens, dim]` and softmax weights.
pub fn self_attention<B: Backend>(qkv: Tensor<B, 3>, heads: usize) -> (Tensor<B, 3>, Tensor<B, 4>) {
    let [q, k, v] = split_heads(qkv, heads);
    let weights = attention_weights(q, k);
    (attend(weights.clone(), v), weights)
}
