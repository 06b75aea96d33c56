//! Starting from pretrained weights, kept apart from the model as timm's
//! `checkpoint_filter_fn` is: the state dict is adapted to the backbone's architecture
//! ([`Arch::adapt`]), then applied tensor by tensor, and what was loaded, re-initialised and
//! ignored is reported with why.

use burn::module::{Module, ModuleDisplay};

use super::backbone::{Arch, Model};
use super::coverage::Coverage;
use super::state_dict::{apply_partial, timm_names, StateDict};
use crate::kernels::VitKernels;

/// Adapts `sd` to the model's architecture and applies it to a freshly initialised model;
/// parameters it cannot fill keep their initialisation and are reported.
pub fn apply_pretrained<B: VitKernels, A: Arch, H: Module<B> + ModuleDisplay>(
    model: Model<B, A::Net<B>, H>,
    sd: StateDict,
    arch: &A,
    device: &B::Device,
) -> (Model<B, A::Net<B>, H>, Coverage) {
    let mut coverage = Coverage {
        head: timm_names(&model.head),
        ..Coverage::default()
    };
    let sd = arch.adapt(sd, &mut coverage);
    let (model, applied) = apply_partial(model, &sd, device);
    coverage.loaded = applied.loaded;
    for m in &applied.misshaped {
        let why = if coverage.is_head(&m.name) {
            format!(
                "class count differs ({m}); re-initialised for {} outputs",
                m.model.first().copied().unwrap_or(0)
            )
        } else {
            arch.misfit(&m.name).map_or_else(
                || format!("shape differs ({m})"),
                |why| format!("{why} ({m})"),
            )
        };
        coverage.reinitialised.push((m.name.clone(), why));
    }
    for m in &applied.missing {
        let name = m.split_whitespace().next().unwrap_or(m).to_string();
        coverage
            .reinitialised
            .push((name, "missing in the checkpoint".into()));
    }
    for u in &applied.unexpected {
        let name = u.split_whitespace().next().unwrap_or(u).to_string();
        coverage
            .ignored
            .push((name, "the model has no such parameter".into()));
    }
    (model, coverage)
}
