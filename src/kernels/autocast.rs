//! Mixed precision as PyTorch's autocast does it: while a [`Guard`] is alive on a thread, the
//! composed matrix ops (linear, convolution, the attention products) cast their inputs to a
//! 16-bit format, compute there, and hand back f32. Weights, their gradients, the optimizer
//! state, norms and the softmax stay in f32; autodiff casts each gradient back through the
//! casts. burn-flex's fused kernels compute in f32 and ignore it (vitrun refuses a 16-bit
//! `train.precision` on that backend before a trial starts).

use std::cell::Cell;

use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};

thread_local! {
    static COMPUTE: Cell<Option<FloatDType>> = const { Cell::new(None) };
}

/// The format matrix ops compute in on this thread, when mixed precision is on.
pub fn compute_dtype() -> Option<FloatDType> {
    COMPUTE.with(Cell::get)
}

/// Mixed precision in `dtype` (`None`: plain f32) on this thread until the guard drops.
#[must_use = "mixed precision ends when the guard drops"]
pub fn enable(dtype: Option<FloatDType>) -> Guard {
    Guard(COMPUTE.with(|c| c.replace(dtype)))
}

/// Restores the previous compute format when dropped.
pub struct Guard(Option<FloatDType>);

impl Drop for Guard {
    fn drop(&mut self) {
        COMPUTE.with(|c| c.set(self.0));
    }
}

/// `x` in the compute format, and the format to cast results back to; `x` unchanged and
/// `None` when mixed precision is off.
pub fn to_compute<B: Backend, const D: usize>(
    x: Tensor<B, D>,
) -> (Tensor<B, D>, Option<FloatDType>) {
    match compute_dtype() {
        Some(dtype) => {
            let back = FloatDType::from(x.dtype());
            (x.cast(dtype), Some(back))
        }
        None => (x, None),
    }
}

/// `t` cast to the compute format when mixed precision is on.
pub fn cast_in<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    match compute_dtype() {
        Some(dtype) => t.cast(dtype),
        None => t,
    }
}

/// `t` back in `back`, the format its op's input had.
pub fn cast_out<B: Backend, const D: usize>(
    t: Tensor<B, D>,
    back: Option<FloatDType>,
) -> Tensor<B, D> {
    match back {
        Some(dtype) => t.cast(dtype),
        None => t,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::composed::{linear_op, self_attention_op};
    use burn::backend::{Autodiff, Flex};
    use burn::tensor::{DType, TensorData, TensorPrimitive};

    type AB = Autodiff<Flex>;

    /// A deterministic `[rows, cols]` matrix of values in about (−1, 1).
    fn matrix(rows: usize, cols: usize, seed: f32) -> Tensor<AB, 2> {
        let values: Vec<f32> = (0..rows * cols)
            .map(|i| ((i as f32 * 0.618 + seed) * 12.9898).sin())
            .collect();
        Tensor::from_data(TensorData::new(values, [rows, cols]), &Default::default())
    }

    fn linear(x: &Tensor<AB, 2>, w: &Tensor<AB, 2>) -> Tensor<AB, 2> {
        let out = linear_op::<AB>(
            x.clone().into_primitive().tensor(),
            w.clone().into_primitive().tensor(),
            None,
            true,
        );
        Tensor::from_primitive(TensorPrimitive::Float(out))
    }

    fn max_diff<const D: usize>(a: Tensor<AB, D>, b: Tensor<AB, D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    #[test]
    fn matrix_ops_compute_in_16_bits_and_hand_back_f32_with_f32_gradients() {
        let x = matrix(8, 64, 0.1).require_grad();
        let w = matrix(64, 16, 0.7).require_grad();
        let plain = linear(&x, &w);
        let plain_grad = w.grad(&plain.clone().sum().backward()).unwrap();
        for (dtype, tolerance) in [(FloatDType::BF16, 0.1), (FloatDType::F16, 0.01)] {
            let mixed = {
                let _mixed = enable(Some(dtype));
                linear(&x, &w)
            };
            assert_eq!(compute_dtype(), None, "the guard ends mixed precision");
            assert_eq!(mixed.dtype(), DType::F32, "results come back in f32");
            let diff = max_diff(plain.clone(), mixed.clone());
            assert!(
                diff > 0.0 && diff < tolerance,
                "{dtype:?}: differs from f32 by {diff}: it must round, and only as much as 16 bits do"
            );
            let grad = w.grad(&mixed.sum().backward()).unwrap();
            assert_eq!(grad.dtype(), DType::F32, "the weight's gradient is f32");
            let grad_diff = (grad - plain_grad.clone()).abs().max().into_scalar();
            assert!(
                grad_diff > 0.0 && grad_diff < 4.0 * tolerance,
                "{dtype:?}: gradient off by {grad_diff}"
            );
        }
    }

    #[test]
    fn attention_runs_its_products_in_16_bits_and_its_softmax_in_f32() {
        let qkv: Tensor<AB, 3> = matrix(2 * 5, 3 * 8, 0.3).reshape([2, 5, 24]);
        let attend = |qkv: Tensor<AB, 3>| -> Tensor<AB, 3> {
            let out = self_attention_op::<AB>(qkv.into_primitive().tensor(), 2);
            Tensor::from_primitive(TensorPrimitive::Float(out))
        };
        let plain = attend(qkv.clone());
        let mixed = {
            let _mixed = enable(Some(FloatDType::BF16));
            attend(qkv)
        };
        assert_eq!(mixed.dtype(), DType::F32);
        let diff = max_diff(plain, mixed);
        assert!(
            diff > 0.0 && diff < 0.03,
            "bf16 attention differs by {diff}"
        );
    }
}
