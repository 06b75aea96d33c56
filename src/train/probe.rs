//! A probe of a trial's model, task, batch size, device and precision on its first training
//! batch: a few training steps, so the scheduler can measure what one trial needs on a GPU
//! (`trials_per_gpu = "auto"`), or more, timed, with inference after them (the GPU
//! benchmark's images per second). The steps read nothing back until the last, as a trial
//! reads every `train.read_every` steps.

use std::sync::Arc;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{ElementConversion, Tensor, TensorData};

use super::grads::gradients;
use super::optim::Optimizer;
use crate::config::Config;
use crate::data::{self, load_batch, LoaderSpec, Pipeline, Targets};
use crate::kernels::TrainBackend;
use crate::model::{with_arch, Arch, ArchTask, Model};
use crate::task::{with_task, Task, TaskWork};

/// How many steps a probe takes: `warmup` untimed, then `steps` timed.
#[derive(Debug, Clone, Copy)]
pub struct ProbeSteps {
    pub warmup: usize,
    pub steps: usize,
}

/// What a probe measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProbeReport {
    pub batch: usize,
    pub steps: usize,
    pub last_loss: f64,
    /// Training steps (forward, backward, optimizer) over the timed steps.
    pub train_images_per_sec: f64,
    /// Forward passes of the weights without autodiff (the validation path) over as many.
    pub infer_images_per_sec: f64,
}

/// Runs the probe's training steps, then as many inference passes.
pub fn probe<B: TrainBackend>(
    config: &Config,
    device: B::Device,
    steps: ProbeSteps,
) -> anyhow::Result<ProbeReport> {
    struct ForArch<'a, B: TrainBackend> {
        config: &'a Config,
        device: B::Device,
        steps: ProbeSteps,
    }
    struct ForTask<'a, B: TrainBackend, A: Arch> {
        at: ForArch<'a, B>,
        arch: A,
    }
    impl<B: TrainBackend> ArchTask for ForArch<'_, B> {
        type Output = anyhow::Result<ProbeReport>;
        fn run<A: Arch>(self, arch: A) -> Self::Output {
            let kind = self.config.head.task;
            with_task(kind, ForTask { at: self, arch })
        }
    }
    impl<B: TrainBackend, A: Arch> TaskWork for ForTask<'_, B, A> {
        type Output = anyhow::Result<ProbeReport>;
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
    steps: ProbeSteps,
) -> anyhow::Result<ProbeReport> {
    let splits = data::open(config, T::Targets::KIND)?;
    let task = T::new(config, &splits.classes)?;
    B::seed(&device, config.seed);
    let model = Model::new(
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
    let data = TensorData::new(batch.images.clone(), shape);
    let mut optimizer = Optimizer::<B::InnerBackend>::new(&config.optimizer);
    let images = || Tensor::from_data(data.clone(), &device);
    let mut training = Some(model);
    let (train, last_loss) = timed(steps, || {
        let model = training
            .take()
            .expect("the model is put back after every step");
        let (loss, _) = task.forward_train(&model, images(), &batch);
        let grads = gradients(loss.clone().backward(), &model);
        training = Some(optimizer.step::<B, _>(model, grads, config.optimizer.lr).0);
        loss.inner()
    });
    let model = training.expect("the model is put back after every step");
    let valid = Model::new(A::valid(&model.encoder), T::valid_head(&model.head));
    let (infer, _) = timed(steps, || {
        task.forward_train(&valid, Tensor::from_data(data.clone(), &device), &batch)
            .0
    });
    let images = (steps.steps * batch.len()) as f64;
    Ok(ProbeReport {
        batch: batch.len(),
        steps: steps.steps,
        last_loss,
        train_images_per_sec: images / train.max(1e-9),
        infer_images_per_sec: images / infer.max(1e-9),
    })
}

/// Runs `step` `warmup + steps` times and times the last `steps`, each end of the clock
/// waiting for the device; returns the seconds and the last step's loss.
fn timed<B: Backend>(steps: ProbeSteps, mut step: impl FnMut() -> Tensor<B, 1>) -> (f64, f64) {
    let mut started = Instant::now();
    let mut last = None;
    for i in 0..steps.warmup + steps.steps {
        if i == steps.warmup {
            finish(last.take());
            started = Instant::now();
        }
        last = Some(step());
    }
    let loss = finish(last);
    (started.elapsed().as_secs_f64(), loss)
}

/// Waits for the device to finish the work behind `loss` by reading it (NaN: no step yet).
fn finish<B: Backend>(loss: Option<Tensor<B, 1>>) -> f64 {
    loss.map_or(f64::NAN, |l| l.into_scalar().elem())
}
