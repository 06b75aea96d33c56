//! timm-named state dicts: reading `.safetensors` / DeiT `.pth`, writing `.safetensors`, and
//! moving tensors in and out of a burn module by name.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};

/// The container type burn's visitors report for the fields of [`Model`](super::Model)
/// (`encoder`, `head`), which parameter paths and checkpoint names leave out.
const MODEL_CONTAINER: &str = "Struct:Model";

/// Whether parameter names leave out a field of a container of this type: the model's
/// `encoder`/`head`, and an enum's variant (a module slot holding one of several kinds, which
/// PyTorch names by the slot alone: `decoder.cls_emb`).
fn unnamed(container: &str) -> bool {
    container == MODEL_CONTAINER || container.starts_with("Enum:")
}

/// One tensor in PyTorch layout (row-major, torch's shape).
#[derive(Debug, Clone, PartialEq)]
pub struct StateTensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Tensors by timm key name (`blocks.0.attn.qkv.weight`, …).
pub type StateDict = BTreeMap<String, StateTensor>;

/// Why a checkpoint could not be read or applied.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("cannot read checkpoint {file}: {reason}")]
    Read { file: String, reason: String },
    #[error("checkpoint {file} does not fit the model:{details}\nfix: use a checkpoint of the same architecture, or change [model] to match it")]
    Mismatch { file: String, details: String },
    #[error("cannot write checkpoint {file}: {reason}")]
    Write { file: String, reason: String },
}

/// Reads a state dict from `.safetensors`, or from a `.pth`/`.pt`/`.bin` of `torch.save` (a
/// plain state dict, DeiT's `{"model": …}` or a trainer's `{"state_dict": …}`), read as data
/// with bounded work whatever the file declares, never running pickle code.
pub fn read_state_dict(path: &Path) -> Result<StateDict, CheckpointError> {
    let err = |reason: String| CheckpointError::Read {
        file: path.display().to_string(),
        reason,
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            let st =
                safetensors::SafeTensors::deserialize(&bytes).map_err(|e| err(e.to_string()))?;
            let mut out = StateDict::new();
            for (name, view) in st.tensors() {
                let data = widen(view.dtype(), view.data()).ok_or_else(|| {
                    err(format!(
                        "tensor {name} has dtype {:?}; vitrun reads floats and integers",
                        view.dtype()
                    ))
                })?;
                out.insert(
                    name,
                    StateTensor {
                        shape: view.shape().to_vec(),
                        data,
                    },
                );
            }
            Ok(out)
        }
        Some("pth") | Some("pt") | Some("bin") => {
            let tensors = super::torch_zip::read(path).map_err(err)?;
            Ok(tensors
                .into_iter()
                .map(|(name, t)| {
                    let (shape, data) = (t.shape, t.data);
                    (name, StateTensor { shape, data })
                })
                .collect())
        }
        _ => Err(err(
            "unknown checkpoint format; use a .safetensors, .pth, .pt or .bin file".into(),
        )),
    }
}

/// A safetensors buffer as f32 values: floats widened or narrowed, integers (BatchNorm's
/// `num_batches_tracked`) converted as the `.pth` reader converts them; `None` for other dtypes.
fn widen(dtype: safetensors::Dtype, raw: &[u8]) -> Option<Vec<f32>> {
    use safetensors::Dtype;
    Some(match dtype {
        Dtype::F32 => raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Dtype::F16 => raw
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::BF16 => raw
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Dtype::F64 => raw
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        Dtype::I64 => raw
            .chunks_exact(8)
            .map(|b| i64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32)
            .collect(),
        Dtype::I32 => raw
            .chunks_exact(4)
            .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32)
            .collect(),
        Dtype::I16 => raw
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]) as f32)
            .collect(),
        Dtype::I8 => raw.iter().map(|&b| b as i8 as f32).collect(),
        Dtype::U8 | Dtype::BOOL => raw.iter().map(|&b| b as f32).collect(),
        _ => return None,
    })
}

/// Writes a state dict as `.safetensors` (loadable by timm), atomically.
pub fn write_safetensors(path: &Path, sd: &StateDict) -> Result<(), CheckpointError> {
    let err = |reason: String| CheckpointError::Write {
        file: path.display().to_string(),
        reason,
    };
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = sd
        .iter()
        .map(|(k, t)| {
            let raw = t.data.iter().flat_map(|v| v.to_le_bytes()).collect();
            (k.clone(), raw, t.shape.clone())
        })
        .collect();
    let views = bytes
        .iter()
        .map(|(k, raw, shape)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), raw)
                .map(|v| (k.clone(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    let tmp = path.with_extension("tmp");
    safetensors::serialize_to_file(views, None, &tmp).map_err(|e| err(e.to_string()))?;
    std::fs::rename(&tmp, path).map_err(|e| err(e.to_string()))
}

/// Structs that stand for a PyTorch `nn.Sequential`, with their fields in its order.
const SEQUENTIALS: [(&str, &[&str]); 1] = [("Struct:Downsample", &["conv", "norm"])];

/// The position of field `name` of a struct of type `container` that stands for an
/// `nn.Sequential` (ResNet's `downsample.conv` is timm's `downsample.0`).
fn sequential_index(name: &str, container: &str) -> Option<String> {
    SEQUENTIALS
        .iter()
        .find(|(c, _)| *c == container)
        .and_then(|(_, fields)| fields.iter().position(|f| *f == name))
        .map(|i| i.to_string())
}

/// timm's name for the parameter at `path` inside a container of type `container`: burn's
/// field path with LayerNorm/BatchNorm's `gamma`/`beta` named `weight`/`bias`.
fn timm_name(path: &[String], container: &str) -> String {
    let mut parts = path.to_vec();
    if container == "Struct:LayerNorm" || container == "Struct:BatchNorm" {
        if let Some(last) = parts.last_mut() {
            *last = match last.as_str() {
                "gamma" => "weight".into(),
                "beta" => "bias".into(),
                other => other.into(),
            };
        }
    }
    parts.join(".")
}

fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}

/// Where a module visitor is: the field names from the model's root and the type of the
/// struct each field belongs to. The fields of the [`Model`](super::Model) wrapper (`encoder`,
/// `head`) are not part of a parameter's path, so checkpoints and optimizer state keep timm's
/// names.
#[derive(Debug, Default)]
pub struct ParamPath {
    names: Vec<String>,
    containers: Vec<String>,
}

impl ParamPath {
    /// Enters field `name` of a struct of type `container` (as burn's visitors report them).
    pub fn enter(&mut self, name: &str, container: &str) {
        self.names.push(name.to_string());
        self.containers.push(container.to_string());
    }

    /// Leaves the field entered last.
    pub fn exit(&mut self) {
        self.names.pop();
        self.containers.pop();
    }

    /// The field names that name the current parameter.
    fn parts(&self) -> Vec<String> {
        self.names
            .iter()
            .zip(&self.containers)
            .filter(|(_, c)| !unnamed(c))
            .map(|(n, _)| n.clone())
            .collect()
    }

    /// burn's dotted field path of the current parameter (`blocks.0.norm1.gamma`).
    pub fn path(&self) -> String {
        self.parts().join(".")
    }

    /// timm's name of the current parameter (`blocks.0.norm1.weight`): burn's path with the
    /// fields of a struct standing for a PyTorch `nn.Sequential` named by position.
    pub fn timm(&self) -> String {
        let parts: Vec<String> = self
            .names
            .iter()
            .zip(&self.containers)
            .filter(|(_, c)| !unnamed(c))
            .map(|(n, c)| sequential_index(n, c).unwrap_or_else(|| n.clone()))
            .collect();
        timm_name(&parts, self.container())
    }

    /// Whether the current parameter is a `Linear` weight (stored transposed by burn).
    fn is_linear_weight(&self) -> bool {
        self.container() == "Struct:Linear"
            && self.names.last().map(String::as_str) == Some("weight")
    }

    fn container(&self) -> &str {
        self.containers.last().map(String::as_str).unwrap_or("")
    }
}

struct Collector {
    path: ParamPath,
    out: StateDict,
}

impl<B: Backend> ModuleVisitor<B> for Collector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let tensor = param.val();
        let mut shape = tensor.dims().to_vec();
        let mut data = tensor
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .expect("float tensors convert to f32");
        if self.path.is_linear_weight() {
            data = transpose(&data, shape[0], shape[1]);
            shape.swap(0, 1);
        }
        self.out
            .insert(self.path.timm(), StateTensor { shape, data });
    }
}

struct Namer {
    path: ParamPath,
    out: Vec<String>,
}

impl<B: Backend> ModuleVisitor<B> for Namer {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn visit_float<const D: usize>(&mut self, _param: &Param<Tensor<B, D>>) {
        self.out.push(self.path.timm());
    }
}

/// The timm names of the module's float parameters, in visiting order.
pub fn timm_names<B: Backend, M: Module<B>>(module: &M) -> Vec<String> {
    let mut namer = Namer {
        path: ParamPath::default(),
        out: Vec::new(),
    };
    module.visit(&mut namer);
    namer.out
}

/// The module's parameters under timm's names and layouts.
pub fn state_dict<B: Backend, M: Module<B>>(module: &M) -> StateDict {
    let mut collector = Collector {
        path: ParamPath::default(),
        out: StateDict::new(),
    };
    module.visit(&mut collector);
    collector.out
}

struct Applier<'a, B: Backend> {
    path: ParamPath,
    sd: &'a StateDict,
    device: B::Device,
    used: Vec<String>,
    missing: Vec<String>,
    misshaped: Vec<Misfit>,
}

impl<B: Backend> ModuleMapper<B> for Applier<'_, B> {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path.enter(name, container_type);
    }
    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.exit();
    }
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let name = self.path.timm();
        let linear = self.path.is_linear_weight();
        let (id, tensor, mapper) = param.consume();
        let mut expected = tensor.dims().to_vec();
        if linear {
            expected.swap(0, 1);
        }
        let Some(found) = self.sd.get(&name) else {
            self.missing.push(format!("{name} {expected:?}"));
            return Param::from_mapped_value(id, tensor, mapper);
        };
        self.used.push(name.clone());
        if found.shape != expected {
            self.misshaped.push(Misfit {
                name,
                file: found.shape.clone(),
                model: expected,
            });
            return Param::from_mapped_value(id, tensor, mapper);
        }
        let (data, shape) = if linear {
            (
                transpose(&found.data, expected[0], expected[1]),
                [expected[1], expected[0]].to_vec(),
            )
        } else {
            (found.data.clone(), expected)
        };
        let mut value = Tensor::<B, D>::from_data(TensorData::new(data, shape), &self.device);
        if tensor.is_require_grad() {
            value = value.require_grad();
        }
        Param::from_mapped_value(id, value, mapper)
    }
}

/// A tensor the state dict has with another shape than the model's.
#[derive(Debug, Clone, PartialEq)]
pub struct Misfit {
    /// timm's name.
    pub name: String,
    /// Its shape in the file.
    pub file: Vec<usize>,
    /// The model's shape of it.
    pub model: Vec<usize>,
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "checkpoint {:?}, model {:?}", self.file, self.model)
    }
}

/// What [`apply_partial`] did with each tensor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Applied {
    /// Parameters set from the state dict (timm names).
    pub loaded: Vec<String>,
    /// Parameters the state dict lacks (`name [shape]`); they keep their current values.
    pub missing: Vec<String>,
    /// Parameters whose tensor has another shape; they keep their current values.
    pub misshaped: Vec<Misfit>,
    /// State-dict entries no parameter has (`name [shape]`).
    pub unexpected: Vec<String>,
}

/// Loads every parameter of `module` that `sd` has with the right shape, leaving the others as
/// they are, and says what happened to each.
pub fn apply_partial<B: Backend, M: Module<B>>(
    module: M,
    sd: &StateDict,
    device: &B::Device,
) -> (M, Applied) {
    let mut applier = Applier::<B> {
        path: ParamPath::default(),
        sd,
        device: device.clone(),
        used: Vec::new(),
        missing: Vec::new(),
        misshaped: Vec::new(),
    };
    let module = module.map(&mut applier);
    let unexpected: Vec<String> = sd
        .iter()
        .filter(|(k, _)| !applier.used.contains(k))
        .map(|(k, t)| format!("{k} {:?}", t.shape))
        .collect();
    let loaded = applier
        .used
        .iter()
        .filter(|k| !applier.misshaped.iter().any(|m| &m.name == *k))
        .cloned()
        .collect();
    let applied = Applied {
        loaded,
        missing: applier.missing,
        misshaped: applier.misshaped,
        unexpected,
    };
    (module, applied)
}

/// Loads every parameter of `module` from `sd` by name; any missing, unexpected or mis-shaped
/// key is an error that lists them all.
pub fn apply_state_dict<B: Backend, M: Module<B>>(
    module: M,
    sd: &StateDict,
    file: &str,
    device: &B::Device,
) -> Result<M, CheckpointError> {
    let (module, applied) = apply_partial(module, sd, device);
    let mut details = String::new();
    let misshaped: Vec<String> = applied
        .misshaped
        .iter()
        .map(|m| format!("{}: {m}", m.name))
        .collect();
    for (label, list) in [
        ("missing", &applied.missing),
        ("unexpected", &applied.unexpected),
        ("mis-shaped", &misshaped),
    ] {
        if !list.is_empty() {
            details.push_str(&format!(
                "\n  {label} ({}): {}",
                list.len(),
                list.join(", ")
            ));
        }
    }
    if details.is_empty() {
        Ok(module)
    } else {
        Err(CheckpointError::Mismatch {
            file: file.to_string(),
            details,
        })
    }
}
