//! A short memory probe: a few training steps of a trial's model at its batch size on random
//! data, so the scheduler can measure what one trial needs on a GPU (`trials_per_gpu = "auto"`).

use crate::kernels::TrainBackend;
use burn::tensor::{Distribution, ElementConversion, Tensor};

use super::loss::cross_entropy;
use super::optim::Optimizer;
use crate::config::Config;
use crate::model::{Vit, VitSpec};

/// Runs `steps` forward/backward/optimizer steps; returns the last loss.
pub fn probe<B: TrainBackend>(config: &Config, device: B::Device, steps: usize) -> f64 {
    let classes = config.data.classes.as_ref().map_or(10, Vec::len).max(2);
    let spec = VitSpec::from_config(config, classes);
    let mut model: Vit<B> = spec.init(&device);
    let mut optimizer = Optimizer::<B::InnerBackend>::new(&config.optimizer);
    let (n, c, s) = (
        config.train.batch_size,
        config.data.channels,
        config.data.image_size,
    );
    let labels: Vec<i64> = (0..n).map(|i| (i % classes) as i64).collect();
    let mut loss_value = f64::NAN;
    for _ in 0..steps {
        let images = Tensor::<B, 4>::random([n, c, s, s], Distribution::Normal(0.0, 1.0), &device);
        let loss = cross_entropy(model.forward(images), &labels, 0.0);
        loss_value = loss.clone().into_scalar().elem();
        let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer
            .step::<B, Vit<B>>(model, grads, config.optimizer.lr)
            .0;
    }
    loss_value
}
