//! Dynamic loss scaling for float16 training, as PyTorch's `GradScaler` does it: the loss is
//! multiplied by a large scale before the backward pass so that small gradients survive in
//! float16; the gradients are divided by it before the optimizer step. A step whose gradients
//! overflowed (inf or NaN) is skipped and the scale halved; after `GROWTH_INTERVAL` good steps
//! in a row it doubles.

use serde::{Deserialize, Serialize};

/// The scale a trial starts from (`GradScaler`'s `init_scale`).
pub const INITIAL_SCALE: f64 = 65536.0;
/// Good steps in a row before the scale doubles.
pub const GROWTH_INTERVAL: u32 = 2000;

/// The scaler's state, kept in `last/progress.json` so that a resumed trial scales as the
/// uninterrupted one would.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    pub scale: f64,
    /// Good steps since the scale last changed.
    pub good_steps: u32,
    /// Steps skipped for overflowed gradients, over the whole trial.
    pub skipped: u64,
}

impl Default for LossScale {
    fn default() -> Self {
        LossScale {
            scale: INITIAL_SCALE,
            good_steps: 0,
            skipped: 0,
        }
    }
}

impl LossScale {
    /// Takes the verdict on a step's scaled gradients (`finite`: no inf or NaN among them);
    /// returns whether the optimizer applies the step.
    pub fn update(&mut self, finite: bool) -> bool {
        if finite {
            self.good_steps += 1;
            if self.good_steps == GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.good_steps = 0;
            self.skipped += 1;
        }
        finite
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overflow_halves_and_skips_a_run_of_good_steps_doubles() {
        let mut s = LossScale::default();
        assert!(!s.update(false), "an overflowed step is skipped");
        assert_eq!((s.scale, s.skipped), (INITIAL_SCALE / 2.0, 1));
        for _ in 0..GROWTH_INTERVAL - 1 {
            assert!(s.update(true));
        }
        assert_eq!(
            s.scale,
            INITIAL_SCALE / 2.0,
            "one step short of the interval"
        );
        assert!(s.update(true));
        assert_eq!((s.scale, s.good_steps), (INITIAL_SCALE, 0));
        s.update(true);
        s.update(false);
        assert_eq!(
            (s.scale, s.good_steps, s.skipped),
            (INITIAL_SCALE / 2.0, 0, 2),
            "an overflow also restarts the count"
        );
    }
}
