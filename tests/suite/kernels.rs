//! vitrun's fused kernels against references written with burn's ordinary tensor ops: forward
//! values and every gradient, on random shapes including odd and tiny sizes, in training
//! (`Autodiff<Flex>`) and inference (`Flex`) mode.

use burn::backend::{Autodiff, Flex};
use burn::module::AutodiffModule;
use burn::nn::conv::Conv2dConfig;
use burn::nn::BatchNormConfig;
use burn::tensor::activation::gelu;
use burn::tensor::backend::Backend;
use burn::tensor::module::{conv2d, max_pool2d};
use burn::tensor::ops::ConvOptions;
use burn::tensor::{Tensor, TensorData, TensorPrimitive};
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use vitrun::kernels::{self, composed, VitKernels, NORM_EPS};
use vitrun::model::PatchEmbed;

type AD = Autodiff<Flex>;

fn random<B: Backend, const D: usize>(seed: u64, dims: [usize; D], scale: f32) -> Tensor<B, D> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let n = dims.iter().product();
    let values: Vec<f32> = (0..n)
        .map(|_| rng.gen_range(-1.0f32..1.0) * scale)
        .collect();
    Tensor::from_data(TensorData::new(values, dims), &Default::default())
}

fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().to_vec::<f32>().unwrap()
}

/// Largest `|a − b| / (1 + |b|)`.
fn max_err(ours: &[f32], reference: &[f32]) -> f32 {
    assert_eq!(ours.len(), reference.len(), "shapes differ");
    ours.iter()
        .zip(reference)
        .map(|(a, b)| (a - b).abs() / (1.0 + b.abs()))
        .fold(0.0, f32::max)
}

fn assert_close(ours: Vec<f32>, reference: Vec<f32>, tol: f32, what: &str) {
    let err = max_err(&ours, &reference);
    assert!(err <= tol, "{what}: error {err:.2e} > {tol:.0e}");
}

fn float<B: Backend, const D: usize>(t: Tensor<B, D>) -> burn::tensor::ops::FloatTensor<B> {
    t.into_primitive().tensor()
}

fn tensor<B: Backend, const D: usize>(t: burn::tensor::ops::FloatTensor<B>) -> Tensor<B, D> {
    Tensor::from_primitive(TensorPrimitive::Float(t))
}

/// LayerNorm over the last dim written out with mean and variance.
fn reference_norm<B: Backend>(
    x: Tensor<B, 2>,
    gamma: Tensor<B, 1>,
    beta: Tensor<B, 1>,
) -> Tensor<B, 2> {
    let mean = x.clone().mean_dim(1);
    let centered = x - mean;
    let var = centered.clone().powi_scalar(2).mean_dim(1);
    let normed = centered / var.add_scalar(NORM_EPS).sqrt();
    normed * gamma.unsqueeze() + beta.unsqueeze()
}

/// Output and gradients of `op` for the loss `Σ out ⊙ weights`.
fn run_norm(seed: u64, rows: usize, dim: usize, fused: bool) -> [Vec<f32>; 4] {
    let x = random::<AD, 2>(seed, [rows, dim], 3.0)
        .add_scalar(1.5)
        .require_grad();
    let gamma = random::<AD, 1>(seed + 1, [dim], 0.5)
        .add_scalar(1.0)
        .require_grad();
    let beta = random::<AD, 1>(seed + 2, [dim], 0.5).require_grad();
    let weights = random::<AD, 2>(seed + 3, [rows, dim], 1.0);
    let out = if fused {
        tensor(AD::vit_layer_norm(
            float(x.clone()),
            float(gamma.clone()),
            Some(float(beta.clone())),
            NORM_EPS,
        ))
    } else {
        reference_norm(x.clone(), gamma.clone(), beta.clone())
    };
    let grads = (out.clone() * weights).sum().backward();
    [
        values(out),
        values(x.grad(&grads).unwrap()),
        values(gamma.grad(&grads).unwrap()),
        values(beta.grad(&grads).unwrap()),
    ]
}

/// The largest `|x| / σ` of a row of `x` `[rows, dim]`: how much a LayerNorm's input gradient
/// amplifies the rounding of `x − mean`.
fn norm_condition(x: &[f32], dim: usize) -> f32 {
    x.chunks(dim)
        .map(|row| {
            let mean = row.iter().sum::<f32>() / dim as f32;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / dim as f32;
            let peak = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            peak / (var + NORM_EPS as f32).sqrt()
        })
        .fold(1.0, f32::max)
}

fn run_gelu(seed: u64, len: usize, fused: bool) -> [Vec<f32>; 2] {
    let x = random::<AD, 1>(seed, [len], 6.0).require_grad();
    let weights = random::<AD, 1>(seed + 1, [len], 1.0);
    let out = if fused {
        tensor(AD::vit_gelu(float(x.clone())))
    } else {
        gelu(x.clone())
    };
    let grads = (out.clone() * weights).sum().backward();
    [values(out), values(x.grad(&grads).unwrap())]
}

fn run_attention(seed: u64, dims: [usize; 4], fused: bool) -> [Vec<f32>; 2] {
    let [batch, tokens, heads, head_dim] = dims;
    let d = heads * head_dim;
    let qkv = random::<AD, 3>(seed, [batch, tokens, 3 * d], 2.0).require_grad();
    let weights = random::<AD, 3>(seed + 1, [batch, tokens, d], 1.0);
    let out = if fused {
        tensor(AD::vit_self_attention(float(qkv.clone()), heads))
    } else {
        composed::self_attention(qkv.clone(), heads).0
    };
    let grads = (out.clone() * weights).sum().backward();
    [values(out), values(qkv.grad(&grads).unwrap())]
}

fn run_linear(seed: u64, dims: [usize; 3], activate: bool, fused: bool) -> [Vec<f32>; 4] {
    let [rows, inputs, outputs] = dims;
    let x = random::<AD, 2>(seed, [rows, inputs], 2.0).require_grad();
    let weight = random::<AD, 2>(seed + 1, [inputs, outputs], 0.5).require_grad();
    let bias = random::<AD, 1>(seed + 2, [outputs], 0.5).require_grad();
    let weights = random::<AD, 2>(seed + 3, [rows, outputs], 1.0);
    let out = if fused {
        tensor(AD::vit_linear(
            float(x.clone()),
            float(weight.clone()),
            Some(float(bias.clone())),
            activate,
        ))
    } else {
        let out = x.clone().matmul(weight.clone()) + bias.clone().unsqueeze();
        if activate {
            gelu(out)
        } else {
            out
        }
    };
    let grads = (out.clone() * weights).sum().backward();
    [
        values(out),
        values(x.grad(&grads).unwrap()),
        values(weight.grad(&grads).unwrap()),
        values(bias.grad(&grads).unwrap()),
    ]
}

/// Sizes of a conv test case: batch, in and out channels, image height and width, kernel,
/// stride, padding.
#[derive(Debug, Clone, Copy)]
struct ConvCase {
    batch: usize,
    channels: [usize; 2],
    size: [usize; 2],
    kernel: usize,
    stride: usize,
    padding: usize,
}

fn conv_case() -> impl Strategy<Value = ConvCase> {
    (
        1usize..12,
        (1usize..6, 1usize..7),
        (1usize..4, 1usize..4, 0usize..3),
        // Narrow and wide outputs: below 16 columns conv and pool take their gather/direct paths.
        (1usize..9, prop_oneof![1usize..9, 32usize..40]),
    )
        .prop_map(|(batch, (cin, cout), (kernel, stride, padding), (h, w))| {
            let padding = padding.min(kernel - 1);
            // Every image at least as large as the window once padded.
            let floor = kernel.saturating_sub(2 * padding + 1);
            ConvCase {
                batch,
                channels: [cin, cout],
                size: [floor + h, floor + w],
                kernel,
                stride,
                padding,
            }
        })
}

/// Output and gradients (input, weight, bias) of the conv for the loss `Σ out ⊙ weights`.
fn run_conv(seed: u64, c: ConvCase, relu: bool, fused: bool) -> [Vec<f32>; 4] {
    let [cin, cout] = c.channels;
    let [h, w] = c.size;
    let x = random::<AD, 4>(seed, [c.batch, cin, h, w], 2.0).require_grad();
    let weight = random::<AD, 4>(seed + 1, [cout, cin, c.kernel, c.kernel], 0.5).require_grad();
    let bias = random::<AD, 1>(seed + 2, [cout], 0.5).require_grad();
    let out: Tensor<AD, 4> = if fused {
        tensor(AD::vit_conv2d(
            float(x.clone()),
            float(weight.clone()),
            float(bias.clone()),
            [c.stride, c.padding],
            relu,
        ))
    } else {
        let options = ConvOptions::new([c.stride; 2], [c.padding; 2], [1, 1], 1);
        let out = conv2d(x.clone(), weight.clone(), Some(bias.clone()), options);
        if relu {
            burn::tensor::activation::relu(out)
        } else {
            out
        }
    };
    let weights = random::<AD, 4>(seed + 3, out.dims(), 1.0);
    let grads = (out.clone() * weights).sum().backward();
    [
        values(out),
        values(x.grad(&grads).unwrap()),
        values(weight.grad(&grads).unwrap()),
        values(bias.grad(&grads).unwrap()),
    ]
}

/// Output and input gradient of the max pool for the loss `Σ out ⊙ weights`.
fn run_pool(seed: u64, c: ConvCase, fused: bool) -> [Vec<f32>; 2] {
    let [h, w] = c.size;
    let x = random::<AD, 4>(seed, [c.batch, c.channels[0], h, w], 2.0).require_grad();
    let out: Tensor<AD, 4> = if fused {
        tensor(AD::vit_max_pool2d(
            float(x.clone()),
            [c.kernel, c.stride, c.padding],
        ))
    } else {
        max_pool2d(
            x.clone(),
            [c.kernel; 2],
            [c.stride; 2],
            [c.padding; 2],
            [1, 1],
            false,
        )
    };
    let weights = random::<AD, 4>(seed + 3, out.dims(), 1.0);
    let grads = (out.clone() * weights).sum().backward();
    [values(out), values(x.grad(&grads).unwrap())]
}

/// Output, batch mean and variance, and gradients (input, scale, shift) of batch-statistics
/// BatchNorm (+ ReLU) for the loss `Σ out ⊙ weights`.
fn run_batch_norm(seed: u64, dims: [usize; 4], relu: bool, fused: bool) -> [Vec<f32>; 6] {
    let x = random::<AD, 4>(seed, dims, 2.0)
        .add_scalar(0.5)
        .require_grad();
    let gamma = random::<AD, 1>(seed + 1, [dims[1]], 1.5).require_grad();
    let beta = random::<AD, 1>(seed + 2, [dims[1]], 1.0).require_grad();
    let inputs = (
        float(x.clone()),
        [float(gamma.clone()), float(beta.clone())],
    );
    let (out, stats) = if fused {
        AD::vit_batch_norm(inputs.0, inputs.1, None, 1e-5, relu)
    } else {
        composed::batch_norm_op::<AD>(inputs.0, inputs.1, None, 1e-5, relu)
    };
    let [mean, var] = stats.expect("batch statistics were taken");
    let out: Tensor<AD, 4> = tensor(out);
    let weights = random::<AD, 4>(seed + 3, dims, 1.0);
    let grads = (out.clone() * weights).sum().backward();
    [
        values(out),
        values(tensor::<AD, 1>(mean)),
        values(tensor::<AD, 1>(var)),
        values(x.grad(&grads).unwrap()),
        values(gamma.grad(&grads).unwrap()),
        values(beta.grad(&grads).unwrap()),
    ]
}

fn batch_norm_dims() -> impl Strategy<Value = [usize; 4]> {
    (1usize..5, 1usize..7, 1usize..9, 1usize..9).prop_map(|(b, c, h, w)| [b, c, h, w])
}

#[test]
fn flex_and_its_autodiff_run_the_fused_kernels() {
    assert!(<Flex as VitKernels>::fused_kernels());
    assert!(<AD as VitKernels>::fused_kernels());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn layer_norm_and_its_gradients_match_the_reference(
        seed in 0u64..1_000_000, rows in 1usize..70, dim in 1usize..200,
    ) {
        let fused = run_norm(seed, rows, dim, true);
        let reference = run_norm(seed, rows, dim, false);
        // The input gradient divides the rounding of x − mean by σ: rows whose values nearly
        // agree amplify it (by |x| / σ), whichever order either side sums in.
        let x = values(random::<Flex, 2>(seed, [rows, dim], 3.0).add_scalar(1.5));
        let amplified = 2e-4 * (norm_condition(&x, dim) / 8.0).max(1.0);
        for (what, (a, b)) in ["output", "d input", "d gamma", "d beta"].iter().zip(fused.into_iter().zip(reference)) {
            let tol = if *what == "d input" { amplified } else { 2e-4 };
            assert_close(a, b, tol, what);
        }
    }

    #[test]
    fn gelu_and_its_gradient_match_burns_erf_gelu(seed in 0u64..1_000_000, len in 1usize..40_000) {
        let [out, grad] = run_gelu(seed, len, true);
        let [ref_out, ref_grad] = run_gelu(seed, len, false);
        assert_close(out, ref_out, 1e-6, "output");
        assert_close(grad, ref_grad, 1e-6, "gradient");
    }

    #[test]
    fn linear_with_and_without_gelu_and_its_gradients_match_matmul_plus_bias(
        seed in 0u64..1_000_000, rows in 1usize..150, inputs in 1usize..40, outputs in 1usize..50,
        activate: bool,
    ) {
        let dims = [rows, inputs, outputs];
        let fused = run_linear(seed, dims, activate, true);
        let reference = run_linear(seed, dims, activate, false);
        for (what, (a, b)) in ["output", "d input", "d weight", "d bias"].iter().zip(fused.into_iter().zip(reference)) {
            assert_close(a, b, 1e-5, what);
        }
    }

    #[test]
    fn conv_with_and_without_relu_and_its_gradients_match_burns_conv(
        seed in 0u64..1_000_000, case in conv_case(), relu: bool,
    ) {
        let fused = run_conv(seed, case, relu, true);
        let reference = run_conv(seed, case, relu, false);
        // The weight and bias gradients sum over every image's output pixels, in another order
        // than burn's: float error grows with the square root of the terms.
        let [h, w] = case.size;
        let out = |size: usize| (size + 2 * case.padding - case.kernel) / case.stride + 1;
        let terms = (case.batch * out(h) * out(w)) as f32;
        let sum_tol = 1e-5 * (terms / 256.0).sqrt().max(1.0);
        for (what, (a, b)) in ["output", "d input", "d weight", "d bias"].iter().zip(fused.into_iter().zip(reference)) {
            let tol = if what.starts_with("d w") || what.starts_with("d b") { sum_tol } else { 1e-5 };
            assert_close(a, b, tol, what);
        }
        let [cin, cout] = case.channels;
        let [h, w] = case.size;
        let x = random::<Flex, 4>(seed, [case.batch, cin, h, w], 2.0);
        let weight = random::<Flex, 4>(seed + 1, [cout, cin, case.kernel, case.kernel], 0.5);
        let bias = random::<Flex, 1>(seed + 2, [cout], 0.5);
        let inferred: Tensor<Flex, 4> = tensor(Flex::vit_conv2d(float(x.clone()), float(weight.clone()), float(bias.clone()), [case.stride, case.padding], relu));
        let reference: Tensor<Flex, 4> = tensor(composed::conv2d_op::<Flex>(float(x.clone()), float(weight.clone()), float(bias.clone()), [case.stride, case.padding], relu));
        assert_close(values(inferred), values(reference), 1e-5, "inference output");
        // A BatchNorm folded in as a per-channel scale and shift (the ResNet's inference).
        let scale = random::<Flex, 1>(seed + 4, [cout], 1.5);
        let affine = || [float(scale.clone()), float(bias.clone())];
        let scaled: Tensor<Flex, 4> = tensor(Flex::vit_conv2d_scaled(float(x.clone()), float(weight.clone()), affine(), [case.stride, case.padding], relu));
        let reference: Tensor<Flex, 4> = tensor(composed::conv2d_scaled_op::<Flex>(float(x), float(weight), affine(), [case.stride, case.padding], relu));
        assert_close(values(scaled), values(reference), 1e-5, "scaled inference output");
    }

    #[test]
    fn batch_norm_with_and_without_relu_and_its_gradients_match_the_composed_ops(
        seed in 0u64..1_000_000, dims in batch_norm_dims(), relu: bool,
    ) {
        let fused = run_batch_norm(seed, dims, relu, true);
        let reference = run_batch_norm(seed, dims, relu, false);
        let names = ["output", "batch mean", "batch variance", "d input", "d gamma", "d beta"];
        for (what, (a, b)) in names.iter().zip(fused.into_iter().zip(reference)) {
            assert_close(a, b, 2e-4, what);
        }
        let x = random::<Flex, 4>(seed, dims, 2.0);
        let scale_shift = [random::<Flex, 1>(seed + 1, [dims[1]], 1.5), random::<Flex, 1>(seed + 2, [dims[1]], 1.0)].map(float);
        let running = [random::<Flex, 1>(seed + 4, [dims[1]], 1.0), random::<Flex, 1>(seed + 5, [dims[1]], 1.0).abs().add_scalar(0.1)].map(float);
        let (inferred, none) = Flex::vit_batch_norm(float(x.clone()), scale_shift.clone(), Some(running.clone()), 1e-5, relu);
        assert!(none.is_none(), "running statistics given: no batch statistics taken");
        let (reference, _) = composed::batch_norm_op::<Flex>(float(x), scale_shift, Some(running), 1e-5, relu);
        assert_close(values(tensor::<Flex, 4>(inferred)), values(tensor::<Flex, 4>(reference)), 1e-5, "inference output");
    }

    #[test]
    fn max_pool_and_its_gradient_match_burns_max_pool(seed in 0u64..1_000_000, case in conv_case()) {
        let [out, grad] = run_pool(seed, case, true);
        let [ref_out, ref_grad] = run_pool(seed, case, false);
        assert_close(out, ref_out, 0.0, "output");
        assert_close(grad, ref_grad, 0.0, "d input");
        let [h, w] = case.size;
        let x = random::<Flex, 4>(seed, [case.batch, case.channels[0], h, w], 2.0);
        let window = [case.kernel, case.stride, case.padding];
        let inferred: Tensor<Flex, 4> = tensor(Flex::vit_max_pool2d(float(x.clone()), window));
        let reference: Tensor<Flex, 4> = tensor(composed::max_pool2d_op::<Flex>(float(x), window));
        assert_close(values(inferred), values(reference), 0.0, "inference output");
    }

    #[test]
    fn attention_and_its_gradient_match_the_composed_ops(
        seed in 0u64..1_000_000,
        batch in 1usize..4, tokens in 1usize..24, heads in 1usize..5, head_dim in 1usize..18,
    ) {
        let dims = [batch, tokens, heads, head_dim];
        let [out, grad] = run_attention(seed, dims, true);
        let [ref_out, ref_grad] = run_attention(seed, dims, false);
        assert_close(out, ref_out, 1e-5, "context");
        assert_close(grad, ref_grad, 1e-5, "d qkv");
    }

    #[test]
    fn inference_kernels_match_the_training_ones(
        seed in 0u64..1_000_000, batch in 1usize..3, tokens in 1usize..20, heads in 1usize..4,
        head_dim in 1usize..12,
    ) {
        let d = heads * head_dim;
        let qkv = random::<Flex, 3>(seed, [batch, tokens, 3 * d], 2.0);
        let context: Tensor<Flex, 3> = tensor(Flex::vit_self_attention(float(qkv.clone()), heads));
        assert_close(values(context), values(composed::self_attention(qkv, heads).0), 1e-5, "context");
        let x = random::<Flex, 2>(seed + 1, [batch * tokens, 3 * d], 2.0);
        let gamma = random::<Flex, 1>(seed + 2, [3 * d], 1.0);
        let beta = random::<Flex, 1>(seed + 3, [3 * d], 1.0);
        let normed: Tensor<Flex, 2> = tensor(Flex::vit_layer_norm(float(x.clone()), float(gamma.clone()), Some(float(beta.clone())), NORM_EPS));
        assert_close(values(normed), values(reference_norm(x.clone(), gamma, beta)), 2e-4, "layer norm");
        let activated: Tensor<Flex, 2> = tensor(Flex::vit_gelu(float(x.clone())));
        assert_close(values(activated), values(gelu(x.clone())), 1e-6, "gelu");
        let weight = random::<Flex, 2>(seed + 4, [3 * d, d], 0.5);
        let bias = random::<Flex, 1>(seed + 5, [d], 0.5);
        let projected: Tensor<Flex, 2> = tensor(Flex::vit_linear(float(x.clone()), float(weight.clone()), Some(float(bias.clone())), true));
        assert_close(values(projected), values(gelu(x.matmul(weight) + bias.unsqueeze())), 1e-5, "linear + gelu");
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn long_sequences_span_several_query_blocks(seed in 0u64..1_000_000, tokens in 257usize..420) {
        let dims = [1, tokens, 2, 8];
        let [out, grad] = run_attention(seed, dims, true);
        let [ref_out, ref_grad] = run_attention(seed, dims, false);
        assert_close(out, ref_out, 1e-5, "context");
        assert_close(grad, ref_grad, 1e-5, "d qkv");
        let qkv = random::<Flex, 3>(seed, [1, tokens, 3 * 16], 2.0);
        let context: Tensor<Flex, 3> = tensor(Flex::vit_self_attention(float(qkv.clone()), 2));
        assert_close(values(context), values(composed::self_attention(qkv, 2).0), 1e-5, "inference context");
    }
}

/// Per-channel mean and unbiased variance of `x` `[batch, channels, h, w]`, written out.
fn channel_moments(x: &[f32], [b, c, h, w]: [usize; 4]) -> Vec<(f32, f32)> {
    (0..c)
        .map(|channel| {
            let all: Vec<f64> = (0..b)
                .flat_map(|n| {
                    let start = (n * c + channel) * h * w;
                    x[start..start + h * w].iter().map(|&v| f64::from(v))
                })
                .collect();
            let count = all.len() as f64;
            let mean = all.iter().sum::<f64>() / count;
            let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (count - 1.0);
            (mean as f32, var as f32)
        })
        .collect()
}

/// The model's BatchNorm is PyTorch's `BatchNorm2d`: while training it normalises as burn's
/// `BatchNorm` module does and moves the running statistics 10 % toward the batch's (the
/// variance unbiased, as PyTorch); in inference it normalises by the running statistics.
#[test]
fn batch_norm_trains_on_batch_statistics_and_infers_on_running_ones() {
    let device = Default::default();
    let dims = [6, 4, 5, 7];
    let ours = BatchNormConfig::new(4).init::<AD>(&device);
    let burns = BatchNormConfig::new(4).init::<AD>(&device);
    let mut expected = vec![(0.0f32, 1.0f32); 4];
    for step in 0..3u64 {
        let x = random::<AD, 4>(20 + step, dims, 2.0).add_scalar(step as f32);
        let out = kernels::batch_norm(&ours, x.clone(), false);
        assert_close(
            values(out),
            values(burns.forward(x.clone())),
            1e-5,
            "training output",
        );
        for ((mean, var), (m, v)) in expected.iter_mut().zip(channel_moments(&values(x), dims)) {
            *mean = 0.9 * *mean + 0.1 * m;
            *var = 0.9 * *var + 0.1 * v;
        }
    }
    let running_mean = values(ours.running_mean.value_sync());
    let running_var = values(ours.running_var.value_sync());
    let (mean, var): (Vec<f32>, Vec<f32>) = expected.into_iter().unzip();
    assert_close(running_mean.clone(), mean, 1e-5, "running mean");
    assert_close(running_var.clone(), var, 1e-5, "running variance");

    let inference = ours.valid();
    let x = random::<Flex, 4>(30, dims, 2.0);
    let out = values(kernels::batch_norm(&inference, x.clone(), true));
    let x = values(x);
    let plane = dims[2] * dims[3];
    let reference: Vec<f32> = x
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            let c = i / plane % dims[1];
            ((v - running_mean[c]) / (running_var[c] + 1e-5).sqrt()).max(0.0)
        })
        .collect();
    assert_close(out, reference, 1e-5, "inference output");
}

/// Gradients summed across threads come out bit for bit the same on every call (a resumed run
/// replays the same numbers), whatever thread ran which block.
#[test]
fn gradients_are_bitwise_reproducible() {
    let first = run_norm(11, 3000, 96, true);
    for _ in 0..5 {
        assert!(
            run_norm(11, 3000, 96, true) == first,
            "layer norm gradients changed between calls"
        );
    }
    let case = ConvCase {
        batch: 40,
        channels: [8, 16],
        size: [14, 14],
        kernel: 3,
        stride: 1,
        padding: 1,
    };
    let first = run_conv(13, case, true, true);
    for _ in 0..5 {
        assert!(
            run_conv(13, case, true, true) == first,
            "conv gradients changed between calls"
        );
    }
    let first = run_batch_norm(14, [64, 8, 14, 14], true, true);
    for _ in 0..5 {
        assert!(
            run_batch_norm(14, [64, 8, 14, 14], true, true) == first,
            "batch norm gradients changed between calls"
        );
    }
    let first = run_linear(12, [3000, 24, 40], true, true);
    for _ in 0..5 {
        assert!(
            run_linear(12, [3000, 24, 40], true, true) == first,
            "linear gradients changed"
        );
    }
}

/// The patch embedding, one matrix multiply over unfolded patches, equals the strided conv it
/// replaces (timm's layout) in output and gradients, also where the image is not a whole
/// number of patches.
#[test]
fn patch_embedding_matches_the_strided_conv() {
    for (seed, (h, w, patch)) in [(32, 32, 4), (30, 35, 4), (16, 16, 16), (9, 7, 3)]
        .into_iter()
        .enumerate()
    {
        let device = Default::default();
        let embed = PatchEmbed {
            stem: Vec::new(),
            stem_norm: Vec::new(),
            stem_pool: false,
            stem_depth: 1,
            proj: Conv2dConfig::new([3, 24], [patch, patch])
                .with_stride([patch, patch])
                .init::<AD>(&device),
        };
        let images = random::<AD, 4>(seed as u64, [2, 3, h, w], 1.0);
        let run = |by_conv: bool| {
            let tokens = if by_conv {
                let out = embed.proj.forward(images.clone());
                let [b, d, gh, gw] = out.dims();
                out.reshape([b, d, gh * gw]).swap_dims(1, 2)
            } else {
                embed.forward(images.clone())
            };
            let weights = random::<AD, 3>(seed as u64 + 9, tokens.dims(), 1.0);
            let grads = (tokens.clone() * weights).sum().backward();
            let bias = embed.proj.bias.as_ref().expect("bias").val();
            [
                values(tokens),
                values(
                    embed
                        .proj
                        .weight
                        .val()
                        .grad(&grads)
                        .expect("weight gradient"),
                ),
                values(bias.grad(&grads).expect("bias gradient")),
            ]
        };
        for (what, (ours, conv)) in ["tokens", "d weight", "d bias"]
            .iter()
            .zip(run(false).into_iter().zip(run(true)))
        {
            assert_close(ours, conv, 1e-5, &format!("{h}x{w}, patch {patch}: {what}"));
        }
    }
}

/// A strided view (a transpose) is read in its logical order.
#[test]
fn strided_views_are_read_in_logical_order() {
    let x = random::<AD, 2>(7, [48, 33], 2.0);
    let fused: Tensor<AD, 2> = tensor(AD::vit_gelu(float(x.clone().transpose())));
    assert_close(
        values(fused),
        values(gelu(x).transpose()),
        1e-6,
        "gelu of a transposed view",
    );
}

/// burn-cuda keeps burn's composed ops (built by CI's `cargo check --features cuda
/// --all-targets`; run where CUDA is).
#[cfg(feature = "cuda")]
#[test]
fn cuda_keeps_the_composed_ops() {
    use burn::backend::Cuda;
    assert!(!<Cuda as VitKernels>::fused_kernels());
    assert!(!<Autodiff<Cuda> as VitKernels>::fused_kernels());
}

/// burn-tch keeps burn's composed ops, and they agree with the fused ones (run with
/// `--features tch` where LibTorch is installed, as `just bench` sets it up).
#[cfg(feature = "tch")]
#[test]
fn libtorch_keeps_the_composed_ops_and_agrees_with_the_fused_ones() {
    use burn::backend::LibTorch;
    assert!(!<LibTorch as VitKernels>::fused_kernels());
    assert!(!<Autodiff<LibTorch> as VitKernels>::fused_kernels());
    let qkv = random::<Flex, 3>(3, [2, 9, 3 * 16], 2.0).into_data();
    let x = random::<Flex, 3>(4, [2, 9, 48], 2.0).into_data();
    let on_flex = |data| float(Tensor::<Flex, 3>::from_data(data, &Default::default()));
    let on_torch = |data| float(Tensor::<LibTorch, 3>::from_data(data, &Default::default()));
    let fused: Tensor<Flex, 3> = tensor(Flex::vit_self_attention(on_flex(qkv.clone()), 2));
    let composed: Tensor<LibTorch, 3> = tensor(LibTorch::vit_self_attention(on_torch(qkv), 2));
    assert_close(values(fused), values(composed), 1e-5, "attention");
    let fused: Tensor<Flex, 3> = tensor(Flex::vit_gelu(on_flex(x.clone())));
    let composed: Tensor<LibTorch, 3> = tensor(LibTorch::vit_gelu(on_torch(x)));
    assert_close(values(fused), values(composed), 1e-6, "gelu");
}

/// The AVX2 and the scalar builds of every kernel pass the same tests: this binary re-runs
/// itself under qemu-user as a Haswell (AVX2 + FMA, no AVX-512) and as a Nehalem (no AVX), so
/// the runtime dispatch picks each build whatever CPU runs the suite. Skipped with a printed
/// reason when `qemu-x86_64` is missing, unless `VITRUN_REQUIRE_QEMU` is set
/// (`apt-get install qemu-user`).
#[cfg(target_arch = "x86_64")]
#[test]
fn the_avx2_and_scalar_builds_pass_the_same_tests() {
    const EMULATED: &str = "VITRUN_KERNELS_EMULATED";
    if std::env::var_os(EMULATED).is_some() {
        return;
    }
    let qemu = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .map(|dir| dir.join("qemu-x86_64"))
        .find(|candidate| candidate.is_file());
    let Some(qemu) = qemu else {
        assert!(
            std::env::var_os("VITRUN_REQUIRE_QEMU").is_none(),
            "VITRUN_REQUIRE_QEMU is set but qemu-x86_64 is missing (apt-get install qemu-user)"
        );
        eprintln!("skipping the AVX2 and scalar kernel builds: qemu-x86_64 is not installed");
        return;
    };
    let me = std::env::current_exe().expect("the test binary's path");
    for cpu in ["Haswell-v4", "Nehalem-v1"] {
        let out = std::process::Command::new(&qemu)
            .args(["-cpu", cpu])
            .arg(&me)
            .args(["kernels::", "--test-threads", "1"])
            .env(EMULATED, "1")
            .output()
            .expect("qemu-x86_64 starts");
        assert!(
            out.status.success(),
            "the kernel tests fail on an emulated {cpu}:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(report.contains("test result: ok"), "{cpu}: {report}");
    }
}

/// `train.grad_checkpointing`: burn's balanced strategy recomputes activations in the
/// backward pass instead of keeping them; every parameter's gradient of a whole ViT (conv
/// stem with BatchNorm, two blocks, distillation token) is the one kept activations give.
#[test]
fn gradient_checkpointing_gives_the_same_gradients() {
    use burn::backend::autodiff::checkpoint::strategy::{
        BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
    };
    use burn::module::{Module, ModuleVisitor, Param};
    use burn::tensor::backend::AutodiffBackend;
    use vitrun::model::VitSpec;
    use vitrun::task::classification::vit_classifier;

    struct Grads<'a, B: AutodiffBackend> {
        grads: &'a B::Gradients,
        out: Vec<Vec<f32>>,
    }
    impl<B: AutodiffBackend> ModuleVisitor<B> for Grads<'_, B> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
            if let Some(g) = param.val().grad(self.grads) {
                self.out.push(values(g));
            }
        }
    }

    fn gradients<C: CheckpointStrategy>() -> Vec<Vec<f32>> {
        type B<C> = Autodiff<Flex, C>;
        let spec = VitSpec {
            image_size: 16,
            in_channels: 3,
            patch_size: 4,
            conv_stem: vec![4, 8],
            conv_stem_pool: false,
            conv_stem_depth: 1,
            conv_stem_batch_norm: true,
            embed_dim: 16,
            depth: 2,
            num_heads: 2,
            mlp_ratio: 2.0,
            mean_pool: false,
            distilled: true,
            dropout: 0.0,
            attn_dropout: 0.0,
            drop_path: 0.0,
        };
        let device = Default::default();
        <B<C> as Backend>::seed(&device, 5);
        let model = vit_classifier::<B<C>>(&spec, 3, &device);
        let images = random::<B<C>, 4>(9, [4, 3, 16, 16], 1.0);
        let (cls, dist) = model.forward_heads(images);
        let loss = (cls.powi_scalar(2) + dist.unwrap().sin()).sum();
        let grads = loss.backward();
        let mut visitor = Grads::<B<C>> {
            grads: &grads,
            out: Vec::new(),
        };
        model.visit(&mut visitor);
        visitor.out
    }

    let kept = gradients::<NoCheckpointing>();
    let recomputed = gradients::<BalancedCheckpointing>();
    assert!(
        kept.len() > 20,
        "every parameter has a gradient: {}",
        kept.len()
    );
    assert_eq!(kept.len(), recomputed.len());
    for (i, (a, b)) in kept.iter().zip(&recomputed).enumerate() {
        assert!(a.iter().any(|&v| v != 0.0), "parameter {i} has a gradient");
        assert_eq!(a, b, "parameter {i}: recomputation changed the gradient");
    }
}
