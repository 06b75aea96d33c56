//! Gradients of a model's parameters, collected and accumulated by visiting the model. burn's
//! own helpers ask for an `AutodiffModule`; these need only a `Module` on an autodiff backend,
//! which a model generic over its backbone and head always is.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::AutodiffBackend;
use burn::tensor::Tensor;

struct Collect<'a, B: AutodiffBackend> {
    grads: &'a mut B::Gradients,
    out: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Collect<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(grad) = param.val().grad_remove(self.grads) {
            self.out.register::<B::InnerBackend, D>(param.id, grad);
        }
    }
}

/// Each parameter's gradient from a backward pass.
pub fn gradients<B: AutodiffBackend, M: Module<B>>(
    mut grads: B::Gradients,
    model: &M,
) -> GradientsParams {
    let mut visitor = Collect::<B> {
        grads: &mut grads,
        out: GradientsParams::new(),
    };
    model.visit(&mut visitor);
    visitor.out
}

/// The sum of several backward passes' gradients (gradient accumulation).
#[derive(Default)]
pub struct Accumulator {
    sum: GradientsParams,
}

struct Add<'a> {
    sum: &'a mut GradientsParams,
    new: GradientsParams,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for Add<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let old = self.sum.remove::<B::InnerBackend, D>(param.id);
        let total = match (old, self.new.remove::<B::InnerBackend, D>(param.id)) {
            (Some(old), Some(new)) => old.add(new),
            (Some(only), None) | (None, Some(only)) => only,
            (None, None) => return,
        };
        self.sum.register::<B::InnerBackend, D>(param.id, total);
    }
}

impl Accumulator {
    /// Adds the gradients `grads` of `model`'s parameters.
    pub fn add<B: AutodiffBackend, M: Module<B>>(&mut self, model: &M, grads: GradientsParams) {
        let mut visitor = Add {
            sum: &mut self.sum,
            new: grads,
        };
        Module::<B>::visit(model, &mut visitor);
    }

    /// The sum so far; the accumulator starts again from nothing.
    pub fn take(&mut self) -> GradientsParams {
        std::mem::take(&mut self.sum)
    }
}
