//! burn-flex's implementation of [`VitKernels`]: the [`cpu`](super::cpu) kernels on
//! `FlexTensor` storage, and for `Autodiff<Flex>` graph nodes whose backward passes call the
//! fused backward kernels. Anything but f32 takes the composed defaults.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::{FlexTensor, Layout};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::ops::{ActivationOps, FloatTensor, FloatTensorOps, ModuleOps};
use burn::tensor::{Bytes, DType, Shape, TensorMetadata};

use super::cpu::attention::{self, AttentionShape};
use super::cpu::batch_norm::{self, PlaneShape, Statistics};
use super::cpu::conv::{self, ConvShape};
use super::cpu::pool::{self, PoolShape};
use super::cpu::{gelu, layer_norm, linear};
use super::{composed, BatchNormOutput, VitKernels};

/// `t`'s elements in row-major order (copied only when `t` is a strided view).
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.as_slice::<f32>().is_some() {
        t
    } else {
        t.to_contiguous()
    }
}

/// The f32 elements of a contiguous tensor.
fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().unwrap_or_else(|| {
        panic!(
            "fused kernel given a {:?} view; it expects contiguous f32",
            t.dtype()
        )
    })
}

fn tensor(values: Vec<f32>, dims: &[usize]) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(dims.to_vec())),
        DType::F32,
    )
}

fn is_f32(tensors: &[&FlexTensor]) -> bool {
    tensors.iter().all(|t| t.dtype() == DType::F32)
}

fn attention_shape(qkv: &FlexTensor, heads: usize) -> AttentionShape {
    let dims = qkv.shape().dims::<3>();
    AttentionShape {
        batch: dims[0],
        tokens: dims[1],
        heads,
        head_dim: dims[2] / 3 / heads,
    }
}

fn conv_shape(x: &FlexTensor, weight: &FlexTensor, [stride, padding]: [usize; 2]) -> ConvShape {
    let [batch, in_channels, height, width] = x.shape().dims::<4>();
    let [out_channels, _, kernel, _] = weight.shape().dims::<4>();
    ConvShape {
        batch,
        in_channels,
        height,
        width,
        out_channels,
        kernel,
        stride,
        padding,
    }
}

/// The backward pass of a one-input op: `input_grad` turns the saved state and the output's
/// gradient into the input's.
fn unary_backward<S>(
    ops: Ops<S, 1>,
    grads: &mut Gradients,
    input_grad: impl FnOnce(S, &FlexTensor) -> FlexTensor,
) {
    let grad = contiguous(grads.consume::<Flex>(&ops.node));
    let [parent] = ops.parents;
    if let Some(parent) = parent {
        grads.register::<Flex>(parent.id, input_grad(ops.state, &grad));
    }
}

/// What the fused convolution's backward pass needs.
#[derive(Debug, Clone)]
struct ConvSaved {
    x: FlexTensor,
    weight: FlexTensor,
    /// The output, when ReLU followed (its sign is ReLU's gradient).
    out: Option<FlexTensor>,
    shape: ConvShape,
}

/// The fused conv of contiguous `x` and `weight`, each output channel then times `scale` (when
/// given) plus `bias` (see [`conv::Epilogue`]), and its shape.
fn conv_output(
    x: &FlexTensor,
    weight: &FlexTensor,
    (scale, bias): (Option<&FlexTensor>, &FlexTensor),
    stride_padding: [usize; 2],
    relu: bool,
) -> (FlexTensor, ConvShape) {
    let shape = conv_shape(x, weight, stride_padding);
    let epilogue = conv::Epilogue {
        scale: scale.map(values),
        bias: values(bias),
        relu,
    };
    let out = tensor(
        conv::forward(values(x), values(weight), epilogue, shape),
        &[
            shape.batch,
            shape.out_channels,
            shape.out_height(),
            shape.out_width(),
        ],
    );
    (out, shape)
}

fn conv_forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    stride_padding: [usize; 2],
    relu: bool,
) -> (FlexTensor, ConvSaved) {
    let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
    let (out, shape) = conv_output(&x, &weight, (None, &bias), stride_padding, relu);
    let saved = ConvSaved {
        x,
        weight,
        out: relu.then(|| out.clone()),
        shape,
    };
    (out, saved)
}

fn pool_shape(x: &FlexTensor, [kernel, stride, padding]: [usize; 3]) -> PoolShape {
    let [batch, channels, height, width] = x.shape().dims::<4>();
    PoolShape {
        planes: batch * channels,
        height,
        width,
        kernel,
        stride,
        padding,
    }
}

/// The pooled output of `x`, and with `keep` what its backward pass needs.
fn pool_forward(x: FlexTensor, window: [usize; 3], keep: bool) -> (FlexTensor, PoolSaved) {
    let x = contiguous(x);
    let shape = pool_shape(&x, window);
    let [batch, channels, ..] = x.shape().dims::<4>();
    let (out, winners) = pool::forward(values(&x), shape, keep);
    let out = tensor(
        out,
        &[batch, channels, shape.out_height(), shape.out_width()],
    );
    let saved = PoolSaved {
        winners: winners.unwrap_or_default(),
        input_dims: x.shape().to_vec(),
        shape,
    };
    (out, saved)
}

/// What the fused max pool's backward pass needs.
#[derive(Debug, Clone)]
struct PoolSaved {
    /// Each output's winning input, within its plane (empty unless kept).
    winners: Vec<u32>,
    input_dims: Vec<usize>,
    shape: PoolShape,
}

fn plane_shape(x: &FlexTensor) -> PlaneShape {
    let [batch, channels, height, width] = x.shape().dims::<4>();
    PlaneShape {
        batch,
        channels,
        plane: height * width,
    }
}

/// What the fused BatchNorm's backward pass needs.
#[derive(Debug, Clone)]
struct BatchNormSaved {
    x: FlexTensor,
    gamma: FlexTensor,
    /// The output, when ReLU followed (its sign is ReLU's gradient).
    out: Option<FlexTensor>,
    stats: Statistics,
    eps: f32,
}

/// BatchNorm (+ ReLU) of `x` by `running` statistics or, without them, by the batch's own;
/// the output, and the statistics used with the inputs the backward pass needs.
fn batch_norm_forward(
    x: FlexTensor,
    [gamma, beta]: [FlexTensor; 2],
    running: Option<[FlexTensor; 2]>,
    eps: f64,
    relu: bool,
) -> (FlexTensor, BatchNormSaved) {
    let (x, gamma, beta) = (contiguous(x), contiguous(gamma), contiguous(beta));
    let shape = plane_shape(&x);
    let stats = match running {
        Some([mean, var]) => Statistics {
            mean: values(&contiguous(mean)).to_vec(),
            var: values(&contiguous(var)).to_vec(),
        },
        None => batch_norm::statistics(values(&x), shape),
    };
    let eps = eps as f32;
    let out = tensor(
        batch_norm::normalize(
            values(&x),
            [values(&gamma), values(&beta)],
            &stats,
            eps,
            relu,
            shape,
        ),
        &x.shape(),
    );
    let saved = BatchNormSaved {
        out: relu.then(|| out.clone()),
        x,
        gamma,
        stats,
        eps,
    };
    (out, saved)
}

/// Statistics as `[mean, var]` tensors.
fn statistics_tensors(stats: &Statistics) -> [FlexTensor; 2] {
    [&stats.mean, &stats.var].map(|v| tensor(v.clone(), &[v.len()]))
}

/// What the fused LayerNorm's backward pass needs.
#[derive(Debug, Clone)]
struct NormSaved {
    x: FlexTensor,
    gamma: FlexTensor,
    mean: FlexTensor,
    rstd: FlexTensor,
}

fn norm_forward(
    x: FlexTensor,
    gamma: FlexTensor,
    beta: Option<FlexTensor>,
    eps: f64,
) -> (FlexTensor, NormSaved) {
    let (x, gamma) = (contiguous(x), contiguous(gamma));
    let dims = x.shape().dims::<2>();
    let beta = match beta {
        Some(beta) => contiguous(beta),
        None => tensor(vec![0.0; dims[1]], &[dims[1]]),
    };
    let normed = layer_norm::forward(values(&x), values(&gamma), values(&beta), eps as f32);
    let saved = NormSaved {
        mean: tensor(normed.mean, &[dims[0]]),
        rstd: tensor(normed.rstd, &[dims[0]]),
        x,
        gamma,
    };
    (tensor(normed.out, &dims), saved)
}

impl VitKernels for Flex {
    fn fused_kernels() -> bool {
        true
    }

    fn vit_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: Option<FloatTensor<Self>>,
        eps: f64,
    ) -> FloatTensor<Self> {
        if !is_f32(&[&x, &gamma]) {
            return Self::layer_norm(x, gamma, beta, eps);
        }
        norm_forward(x, gamma, beta, eps).0
    }

    fn vit_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[&x]) {
            return Self::gelu(x);
        }
        let x = contiguous(x);
        let dims = x.shape().to_vec();
        tensor(gelu::forward(values(&x)), &dims)
    }

    fn vit_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        gelu: bool,
    ) -> FloatTensor<Self> {
        match bias {
            Some(bias) if is_f32(&[&x, &weight, &bias]) => {
                linear_forward(x, weight, bias, gelu, false).0
            }
            bias => composed::linear_op::<Self>(x, weight, bias, gelu),
        }
    }

    fn vit_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride_padding: [usize; 2],
        relu: bool,
    ) -> FloatTensor<Self> {
        if !is_f32(&[&x, &weight, &bias]) {
            return composed::conv2d_op::<Self>(x, weight, bias, stride_padding, relu);
        }
        conv_forward(x, weight, bias, stride_padding, relu).0
    }

    fn vit_conv2d_scaled(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        [scale, shift]: [FloatTensor<Self>; 2],
        stride_padding: [usize; 2],
        relu: bool,
    ) -> FloatTensor<Self> {
        if !is_f32(&[&x, &weight, &scale, &shift]) {
            return composed::conv2d_scaled_op::<Self>(
                x,
                weight,
                [scale, shift],
                stride_padding,
                relu,
            );
        }
        let [x, weight, scale, shift] = [x, weight, scale, shift].map(contiguous);
        conv_output(&x, &weight, (Some(&scale), &shift), stride_padding, relu).0
    }

    fn vit_batch_norm(
        x: FloatTensor<Self>,
        scale_shift: [FloatTensor<Self>; 2],
        running: Option<[FloatTensor<Self>; 2]>,
        eps: f64,
        relu: bool,
    ) -> BatchNormOutput<Self> {
        let running_f32 = running.iter().flatten().all(|t| is_f32(&[t]));
        if !(running_f32 && is_f32(&[&x, &scale_shift[0], &scale_shift[1]])) {
            return composed::batch_norm_op::<Self>(x, scale_shift, running, eps, relu);
        }
        let batch_stats = running.is_none();
        let (out, saved) = batch_norm_forward(x, scale_shift, running, eps, relu);
        (out, batch_stats.then(|| statistics_tensors(&saved.stats)))
    }

    fn vit_max_pool2d(x: FloatTensor<Self>, window: [usize; 3]) -> FloatTensor<Self> {
        if !is_f32(&[&x]) {
            return composed::max_pool2d_op::<Self>(x, window);
        }
        pool_forward(x, window, false).0
    }

    fn vit_self_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        if !is_f32(&[&qkv]) {
            return composed::self_attention_op::<Self>(qkv, heads);
        }
        let qkv = contiguous(qkv);
        let shape = attention_shape(&qkv, heads);
        let context = attention::forward(values(&qkv), shape);
        tensor(
            context,
            &[shape.batch, shape.tokens, shape.heads * shape.head_dim],
        )
    }
}

/// What the fused linear's backward pass needs.
#[derive(Debug, Clone)]
struct LinearSaved {
    x: FlexTensor,
    weight: FlexTensor,
    /// `x·W + b` when GELU followed.
    pre_activation: Option<FlexTensor>,
}

fn linear_forward(
    x: FlexTensor,
    weight: FlexTensor,
    bias: FlexTensor,
    gelu: bool,
    keep: bool,
) -> (FlexTensor, LinearSaved) {
    let (x, weight, bias) = (contiguous(x), contiguous(weight), contiguous(bias));
    let rows = x.shape().dims::<2>()[0];
    let outputs = bias.shape().num_elements();
    let projected = linear::forward(values(&x), values(&weight), values(&bias), gelu, keep);
    let saved = LinearSaved {
        pre_activation: projected
            .pre_activation
            .map(|pre| tensor(pre, &[rows, outputs])),
        x,
        weight,
    };
    (tensor(projected.out, &[rows, outputs]), saved)
}

#[derive(Debug)]
struct LinearBackward;

impl Backward<Flex, 3> for LinearBackward {
    type State = LinearSaved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let LinearSaved {
            x,
            weight,
            pre_activation,
        } = ops.state;
        let grad = match pre_activation {
            Some(pre) => tensor(gelu::backward(values(&pre), values(&grad)), &grad.shape()),
            None => grad,
        };
        let [node_x, node_weight, node_bias] = ops.parents;
        if let Some(node) = node_x {
            let dx = Flex::float_matmul(grad.clone(), Flex::float_transpose(weight));
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_weight {
            let dw = Flex::float_matmul(Flex::float_transpose(x), grad.clone());
            grads.register::<Flex>(node.id, dw);
        }
        if let Some(node) = node_bias {
            let outputs = grad.shape().dims::<2>()[1];
            let db = Flex::float_reshape(Flex::float_sum_dim(grad, 0), Shape::from(vec![outputs]));
            grads.register::<Flex>(node.id, db);
        }
    }
}

#[derive(Debug)]
struct ConvBackward;

impl Backward<Flex, 3> for ConvBackward {
    type State = ConvSaved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let ConvSaved {
            x,
            weight,
            out,
            shape,
        } = ops.state;
        let [node_x, node_weight, node_bias] = ops.parents;
        let d = conv::backward(
            values(&x),
            values(&weight),
            out.as_ref().map(values),
            values(&grad),
            node_x.is_some(),
            shape,
        );
        if let (Some(node), Some(dx)) = (node_x, d.x) {
            grads.register::<Flex>(node.id, tensor(dx, &x.shape()));
        }
        if let Some(node) = node_weight {
            grads.register::<Flex>(node.id, tensor(d.weight, &weight.shape()));
        }
        if let Some(node) = node_bias {
            grads.register::<Flex>(node.id, tensor(d.bias, &[shape.out_channels]));
        }
    }
}

#[derive(Debug)]
struct PoolBackward;

impl Backward<Flex, 1> for PoolBackward {
    type State = PoolSaved;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary_backward(ops, grads, |saved, grad| {
            let dx = pool::backward(values(grad), &saved.winners, saved.shape);
            tensor(dx, &saved.input_dims)
        });
    }
}

#[derive(Debug)]
struct GeluBackward;

impl Backward<Flex, 1> for GeluBackward {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary_backward(ops, grads, |x, grad| {
            tensor(gelu::backward(values(&x), values(grad)), &x.shape())
        });
    }
}

#[derive(Debug)]
struct NormBackward;

impl Backward<Flex, 3> for NormBackward {
    type State = NormSaved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let NormSaved {
            x,
            gamma,
            mean,
            rstd,
        } = ops.state;
        let dims = x.shape().to_vec();
        let dim = dims[1];
        let d = layer_norm::backward(
            values(&x),
            values(&gamma),
            values(&mean),
            values(&rstd),
            values(&grad),
        );
        let [node_x, node_gamma, node_beta] = ops.parents;
        for (node, value, dims) in [
            (node_x, d.x, dims.as_slice()),
            (node_gamma, d.gamma, &[dim][..]),
            (node_beta, d.beta, &[dim][..]),
        ] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(value, dims));
            }
        }
    }
}

#[derive(Debug)]
struct BatchNormBackward;

impl Backward<Flex, 3> for BatchNormBackward {
    type State = BatchNormSaved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad = contiguous(grads.consume::<Flex>(&ops.node));
        let BatchNormSaved {
            x,
            gamma,
            out,
            stats,
            eps,
        } = ops.state;
        let d = batch_norm::backward(
            values(&x),
            out.as_ref().map(values),
            values(&grad),
            values(&gamma),
            &stats,
            eps,
            plane_shape(&x),
        );
        let channels = [stats.mean.len()];
        let [node_x, node_gamma, node_beta] = ops.parents;
        for (node, value, dims) in [
            (node_x, d.x, &x.shape()[..]),
            (node_gamma, d.gamma, &channels[..]),
            (node_beta, d.beta, &channels[..]),
        ] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, tensor(value, dims));
            }
        }
    }
}

/// What the fused attention's backward pass needs.
#[derive(Debug, Clone)]
struct AttentionSaved {
    qkv: FlexTensor,
    weights: FlexTensor,
    shape: AttentionShape,
}

#[derive(Debug)]
struct AttentionBackward;

impl Backward<Flex, 1> for AttentionBackward {
    type State = AttentionSaved;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        unary_backward(ops, grads, |saved, grad| {
            let AttentionSaved {
                qkv,
                weights,
                shape,
            } = saved;
            let dqkv = attention::backward(values(&qkv), values(&weights), values(grad), shape);
            tensor(dqkv, &qkv.shape())
        });
    }
}

impl<C: CheckpointStrategy> VitKernels for Autodiff<Flex, C> {
    fn fused_kernels() -> bool {
        true
    }

    fn vit_layer_norm(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: Option<FloatTensor<Self>>,
        eps: f64,
    ) -> FloatTensor<Self> {
        let beta = match beta {
            Some(beta) if is_f32(&[&x.primitive, &gamma.primitive, &beta.primitive]) => beta,
            beta => return Self::layer_norm(x, gamma, beta, eps),
        };
        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        match NormBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, saved) =
                    norm_forward(x.primitive, gamma.primitive, Some(beta.primitive), eps);
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::vit_layer_norm(
                x.primitive,
                gamma.primitive,
                Some(beta.primitive),
                eps,
            )),
        }
    }

    fn vit_gelu(x: FloatTensor<Self>) -> FloatTensor<Self> {
        if !is_f32(&[&x.primitive]) {
            return Self::gelu(x);
        }
        match GeluBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = contiguous(x.primitive);
                let out = Flex::vit_gelu(input.clone());
                prep.finish(input, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::vit_gelu(x.primitive)),
        }
    }

    fn vit_linear(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: Option<FloatTensor<Self>>,
        gelu: bool,
    ) -> FloatTensor<Self> {
        let bias = match bias {
            Some(bias) if is_f32(&[&x.primitive, &weight.primitive, &bias.primitive]) => bias,
            bias => return composed::linear_op::<Self>(x, weight, bias, gelu),
        };
        let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
        match LinearBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, saved) =
                    linear_forward(x.primitive, weight.primitive, bias.primitive, gelu, true);
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => {
                let (out, _) =
                    linear_forward(x.primitive, weight.primitive, bias.primitive, gelu, false);
                prep.finish(out)
            }
        }
    }

    fn vit_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        stride_padding: [usize; 2],
        relu: bool,
    ) -> FloatTensor<Self> {
        if !is_f32(&[&x.primitive, &weight.primitive, &bias.primitive]) {
            return composed::conv2d_op::<Self>(x, weight, bias, stride_padding, relu);
        }
        let nodes = [x.node.clone(), weight.node.clone(), bias.node.clone()];
        match ConvBackward.prepare::<C>(nodes).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let (out, saved) = conv_forward(
                    x.primitive,
                    weight.primitive,
                    bias.primitive,
                    stride_padding,
                    relu,
                );
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::vit_conv2d(
                x.primitive,
                weight.primitive,
                bias.primitive,
                stride_padding,
                relu,
            )),
        }
    }

    fn vit_batch_norm(
        x: FloatTensor<Self>,
        [gamma, beta]: [FloatTensor<Self>; 2],
        running: Option<[FloatTensor<Self>; 2]>,
        eps: f64,
        relu: bool,
    ) -> BatchNormOutput<Self> {
        if running.is_some() || !is_f32(&[&x.primitive, &gamma.primitive, &beta.primitive]) {
            return composed::batch_norm_op::<Self>(x, [gamma, beta], running, eps, relu);
        }
        let nodes = [x.node.clone(), gamma.node.clone(), beta.node.clone()];
        let primitives = [gamma.primitive, beta.primitive];
        let (out, saved) = batch_norm_forward(x.primitive, primitives, None, eps, relu);
        let stats = statistics_tensors(&saved.stats).map(<Self as AutodiffBackend>::from_inner);
        let out = match BatchNormBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => prep.finish(saved, out),
            OpsKind::UnTracked(prep) => prep.finish(out),
        };
        (out, Some(stats))
    }

    fn vit_max_pool2d(x: FloatTensor<Self>, window: [usize; 3]) -> FloatTensor<Self> {
        if !is_f32(&[&x.primitive]) {
            return composed::max_pool2d_op::<Self>(x, window);
        }
        match PoolBackward
            .prepare::<C>([x.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (out, saved) = pool_forward(x.primitive, window, true);
                prep.finish(saved, out)
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::vit_max_pool2d(x.primitive, window)),
        }
    }

    fn vit_self_attention(qkv: FloatTensor<Self>, heads: usize) -> FloatTensor<Self> {
        if !is_f32(&[&qkv.primitive]) {
            return composed::self_attention_op::<Self>(qkv, heads);
        }
        match AttentionBackward
            .prepare::<C>([qkv.node.clone()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let input = contiguous(qkv.primitive);
                let shape = attention_shape(&input, heads);
                let (context, weights) = attention::forward_keeping_weights(values(&input), shape);
                let dims = [shape.batch, shape.tokens, shape.heads * shape.head_dim];
                let saved = AttentionSaved {
                    weights: tensor(
                        weights,
                        &[shape.batch, shape.heads, shape.tokens, shape.tokens],
                    ),
                    qkv: input,
                    shape,
                };
                prep.finish(saved, tensor(context, &dims))
            }
            OpsKind::UnTracked(prep) => prep.finish(Flex::vit_self_attention(qkv.primitive, heads)),
        }
    }
}
