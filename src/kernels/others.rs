//! Backends without fused kernels: every op is [`VitKernels`](super::VitKernels)' composed
//! default, and autodiff derives the backward passes.

#[cfg(feature = "tch")]
mod tch {
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::libtorch::LibTorch;
    use burn::backend::Autodiff;

    use crate::kernels::VitKernels;

    impl VitKernels for LibTorch {}
    impl<C: CheckpointStrategy> VitKernels for Autodiff<LibTorch, C> {}
}

#[cfg(feature = "cuda")]
mod cuda {
    use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
    use burn::backend::cuda::Cuda;
    use burn::backend::Autodiff;

    use crate::kernels::VitKernels;

    impl VitKernels for Cuda {}
    impl<C: CheckpointStrategy> VitKernels for Autodiff<Cuda, C> {}
}
