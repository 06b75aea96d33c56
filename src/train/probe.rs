//! A short memory probe: a few training steps of a trial's model, task and batch size on its
//! first training batch, so the scheduler can measure what one trial needs on a GPU
//! (`trials_per_gpu = "auto"`).

use std::sync::Arc;

use burn::tensor::{ElementConversion, Tensor, TensorData};

use super::grads::gradients;
use super::optim::Optimizer;
use crate::config::Config;
use crate::data::{self, load_batch, LoaderSpec, Pipeline, Targets};
use crate::kernels::TrainBackend;
use crate::model::{with_arch, Arch, ArchTask, Model};
use crate::task::{with_task, Task, TaskWork};

/// Runs `steps` forward/backward/optimizer steps; returns the last loss.
pub fn probe<B: TrainBackend>(
    config: &Config,
    device: B::Device,
    steps: usize,
) -> anyhow::Result<f64> {
    struct ForArch<'a, B: TrainBackend> {
        config: &'a Config,
        device: B::Device,
        steps: usize,
    }
    struct ForTask<'a, B: TrainBackend, A: Arch> {
        at: ForArch<'a, B>,
        arch: A,
    }
    impl<B: TrainBackend> ArchTask for ForArch<'_, B> {
        type Output = anyhow::Result<f64>;
        fn run<A: Arch>(self, arch: A) -> Self::Output {
            let kind = self.config.head.task;
            with_task(kind, ForTask { at: self, arch })
        }
    }
    impl<B: TrainBackend, A: Arch> TaskWork for ForTask<'_, B, A> {
        type Output = anyhow::Result<f64>;
        fn run<T: Task>(self) -> Self::Output {
            probe_task::<B, A, T>(self.at.config, &self.arch, self.at.device, self.at.steps)
        }
    }
    with_arch(
        config,
        ForArch::<B> {
            config,
            device,
            steps,
        },
    )
}

fn probe_task<B: TrainBackend, A: Arch, T: Task>(
    config: &Config,
    arch: &A,
    device: B::Device,
    steps: usize,
) -> anyhow::Result<f64> {
    let splits = data::open(config, T::Targets::KIND)?;
    let task = T::new(config, &splits.classes)?;
    B::seed(&device, config.seed);
    let mut model = Model::new(
        arch.init::<B>(&device),
        task.head::<B>(arch.shape(), &device),
    );
    let spec = LoaderSpec {
        dataset: splits.train.clone(),
        pipeline: Arc::new(
            Pipeline::train(
                &config.augment,
                config.data.image_size,
                config.data.channels,
            )
            .with_interpolation(config.data.interpolation),
        ),
        batch_size: config.train.batch_size,
        shuffle: false,
        seed: config.seed,
        skip_bad: config.data.skip_bad,
        prefetch: 1,
        pool: Arc::new(rayon::ThreadPoolBuilder::new().num_threads(1).build()?),
        repeats: 1,
        transform: None,
    };
    let first: Vec<usize> = (0..config.train.batch_size.min(splits.train.len())).collect();
    let batch = load_batch(&spec, 1, &first)?;
    let shape = [batch.len(), batch.channels, batch.size, batch.size];
    let mut optimizer = Optimizer::<B::InnerBackend>::new(&config.optimizer);
    let mut loss_value = f64::NAN;
    for _ in 0..steps {
        let images =
            Tensor::<B, 4>::from_data(TensorData::new(batch.images.clone(), shape), &device);
        let (loss, _) = task.forward_loss(&model, images, &batch, true);
        loss_value = loss.clone().into_scalar().elem();
        let grads = gradients(loss.backward(), &model);
        model = optimizer.step::<B, _>(model, grads, config.optimizer.lr).0;
    }
    Ok(loss_value)
}
