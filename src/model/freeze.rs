//! Freezing parameters by timm name: a frozen parameter stops requiring a gradient, so the
//! backward pass skips it (and everything only it depends on) and the optimizer keeps no state.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::Tensor;

use super::state_dict::timm_names;

/// Whether `name` is `pattern` or lies under it (`blocks.1` covers `blocks.1.attn.qkv.weight`,
/// not `blocks.10.…`).
pub fn covers(pattern: &str, name: &str) -> bool {
    name == pattern
        || name
            .strip_prefix(pattern)
            .is_some_and(|rest| rest.starts_with('.'))
}

struct Freezer<'a> {
    names: std::vec::IntoIter<String>,
    patterns: &'a [String],
    frozen: Vec<String>,
}

impl<B: Backend> ModuleMapper<B> for Freezer<'_> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name = self.names.next().unwrap_or_default();
        if self.patterns.iter().any(|p| covers(p, &name)) {
            self.frozen.push(name);
            param.set_require_grad(false)
        } else {
            param
        }
    }
}

/// Patterns that name no parameter.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{} names no parameter of this model; parameters are named like {}", .patterns.iter().map(|p| format!("`{p}`")).collect::<Vec<_>>().join(", "), .examples.join(", "))]
pub struct Unmatched {
    pub patterns: Vec<String>,
    /// A few of the model's parameter names.
    pub examples: Vec<String>,
}

/// Freezes every parameter covered by one of `patterns`; returns the frozen names.
pub fn freeze<B: Backend, M: Module<B>>(
    module: M,
    patterns: &[String],
) -> Result<(M, Vec<String>), Unmatched> {
    let names = timm_names(&module);
    let unmatched: Vec<String> = patterns
        .iter()
        .filter(|p| !names.iter().any(|n| covers(p, n)))
        .cloned()
        .collect();
    if !unmatched.is_empty() {
        let mut examples: Vec<String> = names.iter().take(3).cloned().collect();
        examples.extend(
            names
                .iter()
                .filter(|n| n.starts_with("blocks.0."))
                .take(2)
                .cloned(),
        );
        return Err(Unmatched {
            patterns: unmatched,
            examples,
        });
    }
    let mut freezer = Freezer {
        names: names.into_iter(),
        patterns,
        frozen: Vec::new(),
    };
    let module = module.map(&mut freezer);
    Ok((module, freezer.frozen))
}
