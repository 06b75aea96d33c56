//! Which validation images the report draws predictions of, for `--samples random` (seeded by
//! the trial's seed) and `--samples worst` (the highest validation loss among the first
//! [`WORST_POOL`] images, each scored alone through the task's own loss).

use burn::backend::Flex;
use rand::seq::index::sample;
use rand::SeedableRng;

use crate::config::Config;
use burn::tensor::ElementConversion;

use crate::data::{Batch, Splits, Targets};
use crate::model::{Backbone, Model};
use crate::task::{images_tensor, val_samples, Chosen, SampleOrder, Samples, Task, WORST_POOL};

/// The report's choice of validation images; `None` leaves it to the task (`first`).
pub fn choose<T: Task, E: Backbone<Flex>>(
    task: &T,
    model: &Model<Flex, E, T::Head<Flex>>,
    config: &Config,
    splits: &Splits,
    samples: Samples,
) -> anyhow::Result<Option<Chosen>> {
    let available = splits.val.len();
    let count = samples.count.min(available);
    match samples.order {
        SampleOrder::First => Ok(None),
        SampleOrder::Random => {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
            let mut indices = sample(&mut rng, available, count).into_vec();
            indices.sort_unstable();
            Ok(Some(Chosen {
                indices,
                what: format!(
                    "Validation images: {count} of {available} drawn at random (seed {}).",
                    config.seed
                ),
            }))
        }
        SampleOrder::Worst => {
            let pool = available.min(WORST_POOL);
            let mut losses: Vec<(f64, usize)> = Vec::with_capacity(pool);
            for i in 0..pool {
                losses.push((loss_of(task, model, config, splits, i)?, i));
            }
            // Highest loss first; a non-finite loss counts as the worst.
            let key = |l: f64| if l.is_finite() { l } else { f64::INFINITY };
            losses.sort_by(|a, b| key(b.0).total_cmp(&key(a.0)).then(a.1.cmp(&b.1)));
            let worst = &losses[..count];
            Ok(Some(Chosen {
                indices: worst.iter().map(|(_, i)| *i).collect(),
                what: format!(
                    "Validation images: the {count} with the highest loss of the first {pool} (losses {}), worst first.",
                    worst
                        .iter()
                        .map(|(l, _)| format!("{l:.3}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            }))
        }
    }
}

/// Validation image `i`'s loss, alone in its batch, as the trial's validation computes it.
fn loss_of<T: Task, E: Backbone<Flex>>(
    task: &T,
    model: &Model<Flex, E, T::Head<Flex>>,
    config: &Config,
    splits: &Splits,
    i: usize,
) -> anyhow::Result<f64> {
    let (images, targets) = val_samples(config, splits, &[i])?;
    let mut one = Batch::<T::Targets> {
        channels: config.data.channels,
        size: config.data.image_size,
        ..Batch::default()
    };
    for target in targets {
        one.targets.push(target).map_err(|_| {
            anyhow::anyhow!("validation image {i}'s target is not of the trial's task")
        })?;
    }
    let tensor = images_tensor(&images, &Default::default());
    let (loss, _) = task.forward_loss(model, tensor, &one, false);
    Ok(loss.into_scalar().elem::<f64>())
}
