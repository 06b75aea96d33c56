//! AdamW and SGD with per-parameter state keyed by parameter name, decoupled weight decay
//! that skips norms, biases, tokens and positions, and clipping by the global gradient norm.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{ElementConversion, Tensor, TensorData};

use crate::config::{OptimizerConfig, OptimizerKind};
use crate::model::{ParamPath, StateDict, StateTensor};

/// Parameters that never get weight decay, besides every 1-D tensor (biases, norms).
const NO_DECAY: [&str; 3] = ["cls_token", "dist_token", "pos_embed"];

/// Whether the parameter at `path` with `ndims` dimensions is decayed (timm's rule).
pub fn decays(path: &str, ndims: usize) -> bool {
    ndims > 1 && !NO_DECAY.contains(&path)
}

/// timm's layer-wise learning-rate scale of the parameter at `path` in a ViT of `depth`
/// blocks: the embeddings (`patch_embed`, `cls_token`, `dist_token`, `pos_embed`) are layer 0,
/// block i is layer i + 1, everything after the blocks (norms, heads) is layer depth + 1; the
/// scale is `decay^(depth + 1 − layer)`.
pub fn layer_scale(path: &str, depth: usize, decay: f64) -> f64 {
    let first = path.split('.').next().unwrap_or(path);
    let layer = match first {
        "patch_embed" | "cls_token" | "dist_token" | "pos_embed" => 0,
        "blocks" => path
            .split('.')
            .nth(1)
            .and_then(|i| i.parse::<usize>().ok())
            .map_or(depth + 1, |i| i + 1),
        _ => depth + 1,
    };
    decay.powi((depth + 1 - layer.min(depth + 1)) as i32)
}

/// An optimizer whose state survives a checkpoint exactly.
pub struct Optimizer<B: Backend> {
    config: OptimizerConfig,
    /// Layer-wise lr decay: `(decay, depth)`, when on.
    layer_decay: Option<(f64, usize)>,
    /// Optimizer steps taken so far.
    pub steps: u64,
    /// Per parameter path: Adam's first and second moments, or SGD's momentum buffer (flat).
    state: BTreeMap<String, Vec<Tensor<B, 1>>>,
}

struct NormVisitor<'a, B: AutodiffBackend> {
    grads: &'a GradientsParams,
    total: Option<Tensor<B::InnerBackend, 1>>,
}

impl<B: AutodiffBackend> ModuleVisitor<B> for NormVisitor<'_, B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if let Some(g) = self.grads.get::<B::InnerBackend, D>(param.id) {
            let sq = g.powi_scalar(2).sum();
            self.total = Some(match self.total.take() {
                Some(t) => t + sq,
                None => sq,
            });
        }
    }
}

/// The L2 norm of all gradients together.
pub fn global_grad_norm<B: AutodiffBackend, M: Module<B>>(
    model: &M,
    grads: &GradientsParams,
) -> f64 {
    let mut v = NormVisitor::<B> { grads, total: None };
    model.visit(&mut v);
    v.total
        .map(|t| t.into_scalar().elem::<f64>().sqrt())
        .unwrap_or(0.0)
}

struct StepMapper<'a, B: AutodiffBackend> {
    opt: &'a mut Optimizer<B::InnerBackend>,
    grads: &'a mut GradientsParams,
    lr: f64,
    grad_scale: f64,
    path: ParamPath,
}

impl<B: AutodiffBackend> ModuleMapper<B> for StepMapper<'_, B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<B::InnerBackend, D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let dims = tensor.dims();
        let n: usize = dims.iter().product();
        let path = self.path.path();
        let decay = decays(&path, D);
        let p = tensor.inner().reshape([n]);
        let mut g = grad.reshape([n]);
        if self.grad_scale != 1.0 {
            g = g.mul_scalar(self.grad_scale);
        }
        let lr = self.opt.lr_for(&path, self.lr);
        let updated = self.opt.update(&path, p, g, lr, decay);
        let value = Tensor::<B, D>::from_inner(updated.reshape(dims)).require_grad();
        Param::from_mapped_value(id, value, mapper)
    }
}

impl<B: Backend> Optimizer<B> {
    pub fn new(config: &OptimizerConfig) -> Self {
        Optimizer {
            config: config.clone(),
            layer_decay: None,
            steps: 0,
            state: BTreeMap::new(),
        }
    }

    /// Scales each parameter's lr by [`layer_scale`] (a `decay` of 1 leaves it off).
    pub fn with_layer_decay(mut self, decay: f64, depth: usize) -> Self {
        self.layer_decay = (decay < 1.0).then_some((decay, depth));
        self
    }

    /// The lr of the parameter at `path` when the schedule says `lr`.
    pub fn lr_for(&self, path: &str, lr: f64) -> f64 {
        match self.layer_decay {
            Some((decay, depth)) => lr * layer_scale(path, depth, decay),
            None => lr,
        }
    }

    /// One update of every parameter that has a gradient; returns the new module and the
    /// gradient norm before clipping.
    pub fn step<AB, M>(&mut self, model: M, grads: GradientsParams, lr: f64) -> (M, f64)
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: Module<AB>,
    {
        self.step_unscaled::<AB, M>(model, grads, lr, 1.0)
    }

    /// [`Optimizer::step`] on gradients of a loss multiplied by `1 / unscale` (float16 loss
    /// scaling): each gradient is multiplied by `unscale` first, and clipping sees the result.
    pub fn step_unscaled<AB, M>(
        &mut self,
        model: M,
        mut grads: GradientsParams,
        lr: f64,
        unscale: f64,
    ) -> (M, f64)
    where
        AB: AutodiffBackend<InnerBackend = B>,
        M: Module<AB>,
    {
        self.steps += 1;
        let clip = self.config.grad_clip;
        let norm = if clip > 0.0 {
            global_grad_norm::<AB, M>(&model, &grads) * unscale
        } else {
            f64::NAN
        };
        let grad_scale = unscale
            * if clip > 0.0 && norm > clip {
                clip / (norm + 1e-6)
            } else {
                1.0
            };
        let mut mapper = StepMapper::<AB> {
            opt: self,
            grads: &mut grads,
            lr,
            grad_scale,
            path: ParamPath::default(),
        };
        (model.map(&mut mapper), norm)
    }

    fn update(
        &mut self,
        path: &str,
        p: Tensor<B, 1>,
        g: Tensor<B, 1>,
        lr: f64,
        decay: bool,
    ) -> Tensor<B, 1> {
        let c = &self.config;
        let wd = if decay { c.weight_decay } else { 0.0 };
        match c.name {
            OptimizerKind::Adamw => {
                let [b1, b2] = c.betas;
                let (m, v) = match self.state.remove(path) {
                    Some(mut s) if s.len() == 2 => {
                        let v = s.pop().expect("two moments");
                        let m = s.pop().expect("two moments");
                        (
                            m.mul_scalar(b1) + g.clone().mul_scalar(1.0 - b1),
                            v.mul_scalar(b2) + g.powi_scalar(2).mul_scalar(1.0 - b2),
                        )
                    }
                    _ => (
                        g.clone().mul_scalar(1.0 - b1),
                        g.powi_scalar(2).mul_scalar(1.0 - b2),
                    ),
                };
                let t = self.steps as i32;
                let m_hat = m.clone().div_scalar(1.0 - b1.powi(t));
                let v_hat = v.clone().div_scalar(1.0 - b2.powi(t));
                let p = if wd > 0.0 {
                    p.mul_scalar(1.0 - lr * wd)
                } else {
                    p
                };
                let p = p - m_hat.div(v_hat.sqrt().add_scalar(c.eps)).mul_scalar(lr);
                self.state.insert(path.to_string(), vec![m, v]);
                p
            }
            OptimizerKind::Sgd => {
                let g = if wd > 0.0 {
                    g + p.clone().mul_scalar(wd)
                } else {
                    g
                };
                let buf = match self.state.remove(path) {
                    Some(mut s) if s.len() == 1 && c.momentum > 0.0 => {
                        s.pop().expect("one buffer").mul_scalar(c.momentum) + g.clone()
                    }
                    _ => g.clone(),
                };
                let dir = if c.nesterov {
                    g + buf.clone().mul_scalar(c.momentum)
                } else {
                    buf.clone()
                };
                if c.momentum > 0.0 {
                    self.state.insert(path.to_string(), vec![buf]);
                }
                p - dir.mul_scalar(lr)
            }
        }
    }

    /// The optimizer state as named flat tensors (`<param path>#<slot>`).
    pub fn state_dict(&self) -> StateDict {
        let mut out = StateDict::new();
        for (path, slots) in &self.state {
            for (i, t) in slots.iter().enumerate() {
                let data = t
                    .clone()
                    .into_data()
                    .convert::<f32>()
                    .to_vec::<f32>()
                    .expect("f32 state");
                out.insert(
                    format!("{path}#{i}"),
                    StateTensor {
                        shape: vec![data.len()],
                        data,
                    },
                );
            }
        }
        out
    }

    /// Restores state written by [`Optimizer::state_dict`] after `steps` steps. Every entry
    /// must name a parameter of `sizes` (path → element count) with a matching size and a
    /// slot the optimizer uses; otherwise nothing is restored and the error says which entry.
    pub fn load_state_dict(
        &mut self,
        sd: &StateDict,
        steps: u64,
        sizes: &BTreeMap<String, usize>,
        device: &B::Device,
    ) -> Result<(), String> {
        let slots = match self.config.name {
            OptimizerKind::Adamw => 2,
            OptimizerKind::Sgd => 1,
        };
        let mut state: BTreeMap<String, Vec<Option<Tensor<B, 1>>>> = BTreeMap::new();
        for (key, t) in sd {
            let (path, slot) = key
                .rsplit_once('#')
                .and_then(|(p, s)| Some((p, s.parse::<usize>().ok()?)))
                .ok_or_else(|| format!("`{key}` is not a `<parameter>#<slot>` entry"))?;
            let expected = sizes
                .get(path)
                .ok_or_else(|| format!("`{key}` names no parameter of this model"))?;
            if t.data.len() != *expected || slot >= slots {
                return Err(format!(
                    "`{key}` holds {} values for slot {slot}, but parameter {path} has {expected} values and {slots} slot(s) in this optimizer",
                    t.data.len()
                ));
            }
            let tensor =
                Tensor::<B, 1>::from_data(TensorData::new(t.data.clone(), [t.data.len()]), device);
            let entry = state.entry(path.to_string()).or_default();
            entry.resize(slots, None);
            entry[slot] = Some(tensor);
        }
        let mut restored = BTreeMap::new();
        for (path, entry) in state {
            let full: Option<Vec<_>> = entry.into_iter().collect();
            let full = full.ok_or_else(|| format!("parameter {path} is missing a slot"))?;
            restored.insert(path, full);
        }
        self.state = restored;
        self.steps = steps;
        Ok(())
    }
}

struct SizeVisitor {
    path: ParamPath,
    sizes: BTreeMap<String, usize>,
}

impl<B: Backend> ModuleVisitor<B> for SizeVisitor {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let n = param.val().dims().iter().product();
        self.sizes.insert(self.path.path(), n);
    }
}

/// Every float parameter's path (as the optimizer names it) and element count.
pub fn param_sizes<B: Backend, M: burn::module::Module<B>>(model: &M) -> BTreeMap<String, usize> {
    let mut v = SizeVisitor {
        path: ParamPath::default(),
        sizes: BTreeMap::new(),
    };
    model.visit(&mut v);
    v.sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::OptimizerConfig;
    use burn::backend::{Autodiff, Flex};
    use burn::nn::{Linear, LinearConfig};

    type AB = Autodiff<Flex>;

    fn layer() -> Linear<AB> {
        let device = Default::default();
        AB::seed(&device, 4);
        LinearConfig::new(6, 3).init(&device)
    }

    /// The weights after one step on the loss `sum(layer(x)²) × scale`, unscaled by `1/scale`.
    fn stepped(scale: f64, clip: f64) -> Vec<f32> {
        let config = OptimizerConfig {
            grad_clip: clip,
            ..OptimizerConfig::default()
        };
        let mut optimizer = Optimizer::new(&config);
        let model = layer();
        let x = Tensor::<AB, 2>::from_data(
            TensorData::new((0..12).map(|i| i as f32 / 7.0 - 0.8).collect(), [2, 6]),
            &Default::default(),
        );
        let loss = model.forward(x).powi_scalar(2).sum().mul_scalar(scale);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let model = optimizer
            .step_unscaled::<AB, _>(model, grads, 1e-2, 1.0 / scale)
            .0;
        model.weight.val().into_data().to_vec().unwrap()
    }

    #[test]
    fn a_scaled_loss_unscaled_at_the_step_updates_as_the_plain_loss() {
        for clip in [0.0, 0.05] {
            let plain = stepped(1.0, clip);
            assert_eq!(stepped(65536.0, clip), plain, "clip {clip}");
            assert_eq!(stepped(0.125, clip), plain, "clip {clip}");
        }
        assert_ne!(stepped(1.0, 0.05), stepped(1.0, 0.0), "the clip applies");
    }
}
