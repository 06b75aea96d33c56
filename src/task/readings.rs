//! A training step's numbers besides its loss (the score, the loss's parts), kept on the
//! device where a task computes them there, so that the trial copies a step's numbers to the
//! host only every `train.read_every` steps instead of waiting for the GPU at each one.

use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::Tensor;

/// One number of a step: already on the host, or a one-element tensor not read yet.
pub enum Reading<B: Backend> {
    Host(f64),
    Device(Tensor<B, 1>),
}

impl<B: AutodiffBackend> Reading<B> {
    /// The same number off the autodiff graph.
    pub fn inner(self) -> Reading<B::InnerBackend> {
        match self {
            Reading::Host(v) => Reading::Host(v),
            Reading::Device(t) => Reading::Device(t.inner()),
        }
    }
}

/// A training batch's score (summed over its images) and its loss's named parts (each
/// averaged over the batch).
pub struct StepReadings<B: Backend> {
    pub score: Reading<B>,
    pub parts: Vec<(&'static str, Reading<B>)>,
}

impl<B: AutodiffBackend> StepReadings<B> {
    /// The same numbers off the autodiff graph.
    pub fn inner(self) -> StepReadings<B::InnerBackend> {
        StepReadings {
            score: self.score.inner(),
            parts: self
                .parts
                .into_iter()
                .map(|(name, r)| (name, r.inner()))
                .collect(),
        }
    }
}

/// Every reading of `steps` as host values, in order, with one copy from the device for
/// all the device tensors among them.
pub fn read_all<B: Backend>(readings: Vec<Reading<B>>) -> Vec<f64> {
    let device: Vec<Tensor<B, 1>> = readings
        .iter()
        .filter_map(|r| match r {
            Reading::Device(t) => Some(t.clone()),
            Reading::Host(_) => None,
        })
        .collect();
    let mut copied = if device.is_empty() {
        Vec::new()
    } else {
        Tensor::cat(device, 0)
            .into_data()
            .convert::<f64>()
            .to_vec::<f64>()
            .unwrap_or_default()
    }
    .into_iter();
    readings
        .into_iter()
        .map(|r| match r {
            Reading::Host(v) => v,
            Reading::Device(_) => copied.next().unwrap_or(f64::NAN),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    #[test]
    fn readings_come_back_in_order_with_one_copy() {
        let device = Default::default();
        let t = |v: f32| Reading::<Flex>::Device(Tensor::from_floats([v], &device));
        let values = read_all(vec![
            t(1.5),
            Reading::Host(2.0),
            t(-3.0),
            Reading::Host(4.0),
        ]);
        assert_eq!(values, [1.5, 2.0, -3.0, 4.0]);
        assert!(read_all::<Flex>(Vec::new()).is_empty());
    }
}
