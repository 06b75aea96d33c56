//! An exponential moving average of the model's weights (timm's `ModelEmaV3`), kept on the
//! inference backend and updated after every optimizer step.

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use crate::config::EmaConfig;

/// The averaged weights and the rule that updates them.
#[derive(Debug, Clone)]
pub struct Ema<M> {
    /// `None` until the first update (reading the weights earlier would initialise lazily
    /// created parameters out of their seeded order, and change the training).
    pub model: Option<M>,
    config: EmaConfig,
}

/// The decay of update number `step` (1-based, = optimizer steps taken): 0 for the first, so
/// the average starts as a copy of the weights; then `decay`, or under warmup
/// `min(decay, 1 − (1 + step − 1)^−power)` (timm's `ModelEmaV3.get_decay`).
pub fn decay_at(config: &EmaConfig, step: u64) -> f64 {
    let step = step.saturating_sub(1);
    if step == 0 {
        return 0.0;
    }
    if config.warmup {
        let ramp = 1.0 - (1.0 + step as f64).powf(-config.warmup_power);
        ramp.clamp(0.0, config.decay)
    } else {
        config.decay
    }
}

/// Collects a module's float parameters, flattened, in visiting order.
struct Collect<B: Backend> {
    tensors: Vec<Tensor<B, 1>>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let value = param.val();
        let n = value.shape().num_elements();
        self.tensors.push(value.reshape([n]));
    }
}

/// Moves each parameter toward the collected one of the same position by `1 − decay`.
struct Blend<B: Backend> {
    live: std::vec::IntoIter<Tensor<B, 1>>,
    decay: f64,
}

impl<B: Backend> ModuleMapper<B> for Blend<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, average, mapper) = param.consume();
        let live = self
            .live
            .next()
            .expect("the average and the weights are the same architecture");
        let live: Tensor<B, D> = live.reshape(average.shape());
        let blended = average.mul_scalar(self.decay) + live.mul_scalar(1.0 - self.decay);
        Param::from_mapped_value(id, blended, mapper)
    }
}

impl<M> Ema<M> {
    /// An average that the first update starts as a copy of the weights.
    pub fn new(config: &EmaConfig) -> Ema<M> {
        Ema {
            model: None,
            config: config.clone(),
        }
    }

    /// An average restored from a checkpoint.
    pub fn resumed(model: M, config: &EmaConfig) -> Ema<M> {
        Ema {
            model: Some(model),
            config: config.clone(),
        }
    }

    /// Update number `step` (the optimizer steps taken so far) from the current weights. They
    /// are taken by value because the first update keeps them as the average: a clone of a
    /// module would share its BatchNorm running statistics (burn's `RunningState`) with it,
    /// and averaging would then write into the caller's.
    pub fn update<B: Backend>(&mut self, weights: M, step: u64)
    where
        M: Module<B>,
    {
        let Some(average) = self.model.take() else {
            self.model = Some(weights);
            return;
        };
        let decay = decay_at(&self.config, step);
        let mut collect = Collect {
            tensors: Vec::new(),
        };
        weights.visit(&mut collect);
        let mut blend = Blend {
            live: collect.tensors.into_iter(),
            decay,
        };
        self.model = Some(average.map(&mut blend));
    }
}
