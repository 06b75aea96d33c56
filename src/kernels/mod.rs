//! vitrun's fused ops for the ViT's hot paths, on burn's backend-extension pattern.
//!
//! [`VitKernels`] is a backend trait whose every method has a default composed of ordinary
//! burn ops ([`composed`]): burn-tch and burn-cuda use those unchanged, and they are the
//! reference the fused kernels are tested against. burn-flex and `Autodiff<Flex>` override
//! them with the kernels of [`cpu`] and hand-written backward passes ([`flex`]).
//!
//! Model code calls the tensor-level functions of this module ([`layer_norm`], [`linear`],
//! [`gelu`], [`self_attention`], [`conv2d`], [`batch_norm`], [`max_pool2d`]), never the trait
//! methods.

pub mod autocast;
pub mod composed;
pub mod cpu;
mod flex;
mod others;

use burn::nn::conv::Conv2d;
use burn::nn::{BatchNorm, LayerNorm, Linear, PaddingConfig2d};
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::ops::FloatTensor;
use burn::tensor::{Tensor, TensorPrimitive};

/// The epsilon of every LayerNorm in a timm ViT.
pub const NORM_EPS: f64 = 1e-6;

/// A backend's implementation of vitrun's fused ops. Defaults compose burn's own ops.
pub trait VitKernels: Backend {
    /// Whether this backend overrides the defaults with fused kernels.
    fn fused_kernels() -> bool {
        false
    }

    /// LayerNorm of every row of `x` `[rows, dim]`, scaled by `gamma` and shifted by `beta`.
    fn vit_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: Option<FloatTensor<Self>>,
        eps: f64,
    ) -> FloatTensor<Self> {
        Self::layer_norm(x, gamma, beta, eps)
    }

    /// GELU (erf form), elementwise.
    fn vit_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `x` `[rows, inputs]` times `weight` `[inputs, outputs]` plus `bias`, then GELU (erf)
    /// when `gelu`.
    fn vit_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        gelu: bool,
    ) -> FloatTensor<Self> {
        composed::linear_op::<Self>(x, weight, bias, gelu)
    }

    /// `x` `[batch, in, h, w]` convolved with `weight` `[out, in, k, k]` plus `bias`, with
    /// `[stride, padding]` (zeros) on both axes, then ReLU when `relu`.
    fn vit_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride_padding: [usize; 2],
        relu: bool,
    ) -> FloatTensor<Self> {
        composed::conv2d_op::<Self>(x, weight, bias, stride_padding, relu)
    }

    /// [`VitKernels::vit_conv2d`] without a bias, each output channel then multiplied by
    /// `scale` `[out]` and shifted by `shift` `[out]`, then ReLU when `relu`: a BatchNorm on
    /// its running statistics applied in the conv's own pass. Inference only (no gradient).
    fn vit_conv2d_scaled(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        [scale, shift]: [FloatTensor<Self>; 2],
        stride_padding: [usize; 2],
        relu: bool,
    ) -> FloatTensor<Self> {
        composed::conv2d_scaled_op::<Self>(x, weight, [scale, shift], stride_padding, relu)
    }

    /// BatchNorm of `x` `[batch, channels, h, w]`, each channel scaled by `gamma` and shifted
    /// by `beta`, then ReLU when `relu`. With `running` (`[mean, var]`) it normalises by those
    /// and returns no statistics; without, by the batch's own (over batch, h and w), which it
    /// returns as `[mean, biased var]`, carrying no gradient.
    fn vit_batch_norm(
        x: FloatTensor<Self>,
        scale_shift: [FloatTensor<Self>; 2],
        running: Option<[FloatTensor<Self>; 2]>,
        eps: f64,
        relu: bool,
    ) -> BatchNormOutput<Self> {
        composed::batch_norm_op::<Self>(x, scale_shift, running, eps, relu)
    }

    /// The max of each `kernel`² window of `x` `[batch, channels, h, w]`, `[kernel, stride,
    /// padding]` on both axes; padding never wins.
    fn vit_max_pool2d(
        x: FloatTensor<Self>,
        kernel_stride_padding: [usize; 3],
    ) -> FloatTensor<Self> {
        composed::max_pool2d_op::<Self>(x, kernel_stride_padding)
    }

    /// Multi-head self-attention from the fused projection `qkv` `[batch, tokens, 3·dim]`
    /// (columns ordered q, k, v, then head, then channel, as timm's) to the context
    /// `[batch, tokens, dim]`, before the output projection.
    fn vit_self_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        composed::self_attention_op::<Self>(qkv, heads)
    }
}

/// [`VitKernels::vit_batch_norm`]'s output, and the batch statistics when it took them.
pub type BatchNormOutput<B> = (FloatTensor<B>, Option<[FloatTensor<B>; 2]>);

/// A backend that trains with vitrun's kernels: its autodiff and inner backends both have them.
pub trait TrainBackend: AutodiffBackend<InnerBackend: VitKernels> + VitKernels {}

impl<B> TrainBackend for B where B: AutodiffBackend<InnerBackend: VitKernels> + VitKernels {}

/// `norm` applied over the last dimension of `x`.
pub fn layer_norm<B: VitKernels, const D: usize>(
    norm: &LayerNorm<B>,
    x: Tensor<B, D>,
) -> Tensor<B, D> {
    layer_norm_eps(norm, x, NORM_EPS)
}

/// [`layer_norm`] with another epsilon (PyTorch's `nn.LayerNorm` default is 1e-5).
pub fn layer_norm_eps<B: VitKernels, const D: usize>(
    norm: &LayerNorm<B>,
    x: Tensor<B, D>,
    eps: f64,
) -> Tensor<B, D> {
    let dims = x.dims();
    let dim = dims[D - 1];
    let rows = dims[..D - 1].iter().product();
    let out = B::vit_layer_norm(
        x.reshape([rows, dim]).into_primitive().tensor(),
        norm.gamma.val().into_primitive().tensor(),
        norm.beta
            .as_ref()
            .map(|beta| beta.val().into_primitive().tensor()),
        eps,
    );
    Tensor::<B, 2>::from_primitive(TensorPrimitive::Float(out)).reshape(dims)
}

/// `layer` applied to every token of `x` `[batch, tokens, inputs]` as one 2-D matrix
/// multiply over `batch × tokens` rows, then GELU when `gelu`. (burn's `Linear` on a 3-D input
/// multiplies per batch item, and its backward pass builds a `[batch, inputs, outputs]` weight
/// gradient before summing it.)
pub fn linear<B: VitKernels>(layer: &Linear<B>, x: Tensor<B, 3>, gelu: bool) -> Tensor<B, 3> {
    let [b, n, d] = x.dims();
    let bias = layer.bias.as_ref().map(|bias| bias.val());
    let out = linear_2d(x.reshape([b * n, d]), layer.weight.val(), bias, gelu);
    let [_, outputs] = out.dims();
    out.reshape([b, n, outputs])
}

/// `x` `[rows, inputs]` times `weight` `[inputs, outputs]` plus `bias`, then GELU when `gelu`.
pub fn linear_2d<B: VitKernels>(
    x: Tensor<B, 2>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
    gelu: bool,
) -> Tensor<B, 2> {
    Tensor::from_primitive(TensorPrimitive::Float(B::vit_linear(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.map(|bias| bias.into_primitive().tensor()),
        gelu,
    )))
}

/// `[stride, padding]` of a conv the fused ops run: a square kernel with one stride and one
/// zero padding on every side, no dilation or groups.
fn fused_conv_geometry<B: Backend>(conv: &Conv2d<B>) -> Option<[usize; 2]> {
    let padding = match conv.padding {
        PaddingConfig2d::Valid => 0,
        PaddingConfig2d::Explicit(top, left, bottom, right)
            if [left, bottom, right] == [top; 3] =>
        {
            top
        }
        _ => return None,
    };
    let [kh, kw] = conv.kernel_size;
    let [sy, sx] = conv.stride;
    let plain = kh == kw && sy == sx && conv.dilation == [1, 1] && conv.groups == 1;
    plain.then_some([sy, padding])
}

/// `conv` applied to `x` `[batch, in, h, w]`, then ReLU when `relu`. A conv the fused ops
/// run (see [`fused_conv_geometry`]; a missing bias adds zeros) runs the backend's fused op;
/// any other conv runs as burn's.
pub fn conv2d<B: VitKernels>(conv: &Conv2d<B>, x: Tensor<B, 4>, relu: bool) -> Tensor<B, 4> {
    let Some(stride_padding) = fused_conv_geometry(conv) else {
        let out = conv.forward(x);
        return if relu {
            burn::tensor::activation::relu(out)
        } else {
            out
        };
    };
    // The weight is read first: a lazily initialised conv draws it before its bias.
    let weight = conv.weight.val();
    // A conv without a bias (a ResNet's, before its BatchNorm) adds zeros.
    let bias = match &conv.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([weight.dims()[0]], &x.device()),
    };
    Tensor::from_primitive(TensorPrimitive::Float(B::vit_conv2d(
        x.into_primitive().tensor(),
        weight.into_primitive().tensor(),
        bias.into_primitive().tensor(),
        stride_padding,
        relu,
    )))
}

/// `batch_norm(norm, conv2d(conv, x))`, then ReLU if `relu`. Without autodiff (inference, a
/// distillation teacher) the BatchNorm on its running statistics becomes a scale and shift of
/// each output channel — `γ/√(var+ε)` and `(b − mean)·γ/√(var+ε) + β` — that the fused conv
/// applies as it writes its output, so the pair is one pass (and the weight is not touched);
/// in training the batch statistics need the conv's output, and it is two passes.
pub fn conv_batch_norm<B: VitKernels>(
    conv: &Conv2d<B>,
    norm: &BatchNorm<B>,
    x: Tensor<B, 4>,
    relu: bool,
) -> Tensor<B, 4> {
    let device = x.device();
    if B::ad_enabled(&device) {
        return batch_norm(norm, conv2d(conv, x, false), relu);
    }
    let weight = conv.weight.val();
    let out = weight.dims()[0];
    let mean = norm.running_mean.value_sync().to_device(&device);
    let var = norm.running_var.value_sync().to_device(&device);
    let scale = norm.gamma.val().div(var.add_scalar(norm.epsilon).sqrt());
    let bias = match &conv.bias {
        Some(b) => b.val(),
        None => Tensor::zeros([out], &device),
    };
    let shift = bias.sub(mean).mul(scale.clone()).add(norm.beta.val());
    match fused_conv_geometry(conv) {
        Some(stride_padding) => {
            Tensor::from_primitive(TensorPrimitive::Float(B::vit_conv2d_scaled(
                x.into_primitive().tensor(),
                weight.into_primitive().tensor(),
                [scale, shift].map(|t| t.into_primitive().tensor()),
                stride_padding,
                relu,
            )))
        }
        None => {
            let folded = Conv2d {
                weight: burn::module::Param::from_tensor(weight.mul(scale.reshape([out, 1, 1, 1]))),
                bias: Some(burn::module::Param::from_tensor(shift)),
                ..conv.clone()
            };
            conv2d(&folded, x, relu)
        }
    }
}

/// `norm` applied to `x` `[batch, channels, h, w]`, then ReLU when `relu`: PyTorch's
/// `BatchNorm2d`. Where autodiff is on (training) it normalises by the batch's statistics and
/// moves the running ones toward them by `norm.momentum` (the variance unbiased, as PyTorch);
/// elsewhere it normalises by the running statistics.
pub fn batch_norm<B: VitKernels>(norm: &BatchNorm<B>, x: Tensor<B, 4>, relu: bool) -> Tensor<B, 4> {
    let device = x.device();
    let [batch, _, h, w] = x.dims();
    let training = B::ad_enabled(&device);
    let running = (!training).then(|| {
        [&norm.running_mean, &norm.running_var].map(|state| {
            state
                .value_sync()
                .to_device(&device)
                .into_primitive()
                .tensor()
        })
    });
    let (out, stats) = B::vit_batch_norm(
        x.into_primitive().tensor(),
        [&norm.gamma, &norm.beta].map(|p| p.val().into_primitive().tensor()),
        running,
        norm.epsilon,
        relu,
    );
    if let Some([mean, var]) = stats {
        let count = (batch * h * w) as f64;
        let unbiased = count / (count - 1.0).max(1.0);
        let m = norm.momentum;
        for (state, stat, factor) in [
            (&norm.running_mean, mean, 1.0),
            (&norm.running_var, var, unbiased),
        ] {
            let stat = Tensor::<B, 1>::from_primitive(TensorPrimitive::Float(stat));
            let old = state.value_sync().to_device(&device);
            state.update(
                old.mul_scalar(1.0 - m)
                    .add(stat.mul_scalar(m * factor))
                    .detach(),
            );
        }
    }
    Tensor::from_primitive(TensorPrimitive::Float(out))
}

/// The max of each `kernel`² window of `x` `[batch, channels, h, w]` at `stride`, with
/// `padding` that never wins on every side.
pub fn max_pool2d<B: VitKernels>(
    x: Tensor<B, 4>,
    kernel: usize,
    stride: usize,
    padding: usize,
) -> Tensor<B, 4> {
    Tensor::from_primitive(TensorPrimitive::Float(B::vit_max_pool2d(
        x.into_primitive().tensor(),
        [kernel, stride, padding],
    )))
}

/// GELU (erf form).
pub fn gelu<B: VitKernels, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(B::vit_gelu(
        x.into_primitive().tensor(),
    )))
}

/// Multi-head self-attention's context `[batch, tokens, dim]` from the fused qkv projection
/// `[batch, tokens, 3·dim]`.
pub fn self_attention<B: VitKernels>(qkv: Tensor<B, 3>, heads: usize) -> Tensor<B, 3> {
    Tensor::from_primitive(TensorPrimitive::Float(B::vit_self_attention(
        qkv.into_primitive().tensor(),
        heads,
    )))
}
