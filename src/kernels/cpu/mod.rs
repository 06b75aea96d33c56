//! Slice-level f32 kernels behind the burn-flex implementation of [`super::VitKernels`]:
//! rayon across rows or (batch, head) pairs, SIMD within a row by runtime dispatch.

pub mod attention;
pub mod batch_norm;
pub mod conv;
pub mod gelu;
pub mod layer_norm;
pub mod linear;
pub mod math;
pub mod pool;
