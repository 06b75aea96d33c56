//! PyTorch checkpoints (`torch.save`, the zip format of torch ≥ 1.6) read as data, never run:
//! a bounded pickle machine that builds only dicts, lists, tuples, numbers, strings and tensors,
//! and reads each tensor's storage from the zip at the size its shape needs. Whatever a hostile
//! file declares — huge shapes or counts, deep nesting, a missing or short storage, a storage
//! that inflates far beyond its compressed size, an object that would run code — ends in an
//! error naming the file and the problem, in bounded time and memory.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

/// Deepest nesting of containers a state dict can need.
const MAX_DEPTH: usize = 256;
/// Most values one pickle may build, copies through its memo counted: a state dict with its
/// optimizer state needs thousands.
const MAX_VALUES: usize = 1_000_000;
/// Largest pickle (`data.pkl`) read: a state dict's is kilobytes to a few megabytes.
const MAX_PICKLE_BYTES: u64 = 256 << 20;
/// Most elements one tensor may declare.
const MAX_ELEMENTS: u64 = 1 << 34;
/// A storage may inflate to this many times its compressed size (torch stores them
/// uncompressed) plus a MiB: beyond is a zip bomb.
const MAX_INFLATION: u64 = 64;

/// Why a checkpoint could not be read.
pub type Error = String;

/// A pickled value, as far as a state dict needs one.
#[derive(Debug, Clone)]
enum Value {
    None,
    Bool(bool),
    Int(i64),
    Float,
    Str(String),
    Bytes,
    Tuple(Vec<Value>, Dims),
    List(Vec<Value>, Dims),
    Dict(Vec<(Value, Value)>, Dims),
    /// A global the reader knows by name (`torch._utils._rebuild_tensor_v2`).
    Global(String),
    /// A storage reference: (storage key, dtype, elements).
    Storage(String, Dtype, u64),
    Tensor(TensorRef),
    /// Anything else a pickle builds, by its type's name; never run.
    Opaque(String),
}

/// A container's nesting depth and the values it holds, itself included.
#[derive(Debug, Clone, Copy, Default)]
struct Dims {
    depth: usize,
    size: usize,
}

impl Dims {
    /// The dims of a container of `items`.
    fn of<'v>(items: impl IntoIterator<Item = &'v Value>) -> Dims {
        items
            .into_iter()
            .fold(Dims { depth: 1, size: 1 }, |d, v| Dims {
                depth: d.depth.max(v.depth() + 1),
                size: d.size.saturating_add(v.size()),
            })
    }

    /// These dims after `items` are added.
    fn grown<'v>(self, items: impl IntoIterator<Item = &'v Value>) -> Dims {
        let more = Dims::of(items);
        Dims {
            depth: self.depth.max(more.depth),
            size: self.size.saturating_add(more.size - 1),
        }
    }
}

impl Value {
    /// Containers' nesting depth (scalars 0).
    fn depth(&self) -> usize {
        match self {
            Value::Tuple(_, d) | Value::List(_, d) | Value::Dict(_, d) => d.depth,
            _ => 0,
        }
    }

    /// How many values this one holds, itself included: what a copy of it costs.
    fn size(&self) -> usize {
        match self {
            Value::Tuple(_, d) | Value::List(_, d) | Value::Dict(_, d) => d.size,
            _ => 1,
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::Opaque(name) => format!("a {name} object"),
            Value::Global(name) => format!("the global {name}"),
            Value::Dict(..) => "a dict".into(),
            Value::List(..) => "a list".into(),
            Value::Tuple(..) => "a tuple".into(),
            Value::Str(_) => "a string".into(),
            Value::Int(_) | Value::Float | Value::Bool(_) => "a number".into(),
            Value::None => "None".into(),
            Value::Bytes => "bytes".into(),
            Value::Storage(..) => "a storage".into(),
            Value::Tensor(_) => "a tensor".into(),
        }
    }
}

/// An element type of a storage.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Dtype {
    F32,
    F64,
    F16,
    Bf16,
    I64,
    I32,
    I16,
    I8,
    U8,
    Bool,
}

impl Dtype {
    fn size(self) -> u64 {
        match self {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F16 | Dtype::Bf16 | Dtype::I16 => 2,
            Dtype::I8 | Dtype::U8 | Dtype::Bool => 1,
        }
    }

    /// The dtype of a storage class (`torch.FloatStorage`) or dtype (`torch.float32`).
    fn of(name: &str) -> Option<Dtype> {
        let short = name.strip_prefix("torch.")?;
        Some(match short {
            "FloatStorage" | "float32" | "float" => Dtype::F32,
            "DoubleStorage" | "float64" | "double" => Dtype::F64,
            "HalfStorage" | "float16" | "half" => Dtype::F16,
            "BFloat16Storage" | "bfloat16" => Dtype::Bf16,
            "LongStorage" | "int64" | "long" => Dtype::I64,
            "IntStorage" | "int32" | "int" => Dtype::I32,
            "ShortStorage" | "int16" | "short" => Dtype::I16,
            "CharStorage" | "int8" => Dtype::I8,
            "ByteStorage" | "uint8" => Dtype::U8,
            "BoolStorage" | "bool" => Dtype::Bool,
            _ => return None,
        })
    }

    /// Little-endian bytes as f32 values.
    fn widen(self, raw: &[u8]) -> Vec<f32> {
        let n = self.size() as usize;
        raw.chunks_exact(n)
            .map(|b| match self {
                Dtype::F32 => f32::from_le_bytes([b[0], b[1], b[2], b[3]]),
                Dtype::F64 => {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                }
                Dtype::F16 => half::f16::from_le_bytes([b[0], b[1]]).to_f32(),
                Dtype::Bf16 => half::bf16::from_le_bytes([b[0], b[1]]).to_f32(),
                Dtype::I64 => {
                    i64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]) as f32
                }
                Dtype::I32 => i32::from_le_bytes([b[0], b[1], b[2], b[3]]) as f32,
                Dtype::I16 => i16::from_le_bytes([b[0], b[1]]) as f32,
                Dtype::I8 => b[0] as i8 as f32,
                Dtype::U8 | Dtype::Bool => b[0] as f32,
            })
            .collect()
    }
}

/// A tensor as pickled: a view into a storage.
#[derive(Debug, Clone)]
struct TensorRef {
    storage: String,
    dtype: Dtype,
    /// Elements of the storage.
    storage_len: u64,
    offset: u64,
    shape: Vec<u64>,
    stride: Vec<u64>,
}

/// The pickle machine's state.
struct Machine<'a> {
    bytes: &'a [u8],
    at: usize,
    stack: Vec<Value>,
    marks: Vec<usize>,
    memo: HashMap<u64, Value>,
    built: usize,
}

fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Int(i) => Some(*i),
        Value::Bool(b) => Some(i64::from(*b)),
        _ => None,
    }
}

fn ints(v: &Value, what: &str) -> Result<Vec<u64>, Error> {
    let items = match v {
        Value::Tuple(items, _) | Value::List(items, _) => items,
        other => {
            return Err(format!(
                "a tensor's {what} is {}, not a tuple",
                other.describe()
            ))
        }
    };
    items
        .iter()
        .map(|i| match int_of(i) {
            Some(n) if n >= 0 => Ok(n as u64),
            Some(n) => Err(format!("a tensor's {what} holds {n}, below 0")),
            None => Err(format!("a tensor's {what} holds {}", i.describe())),
        })
        .collect()
}

impl<'a> Machine<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Machine {
            bytes,
            at: 0,
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            built: 0,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], Error> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or("the pickle ends in the middle of a value")?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Error> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, Error> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, Error> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, Error> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    fn line(&mut self) -> Result<String, Error> {
        let rest = &self.bytes[self.at..];
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or("a text field has no end")?;
        let text = String::from_utf8_lossy(&rest[..end]).into_owned();
        self.at += end + 1;
        Ok(text)
    }

    fn text(&mut self, n: usize) -> Result<String, Error> {
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }

    fn push(&mut self, v: Value) -> Result<(), Error> {
        self.built = self.built.saturating_add(v.size());
        if self.built > MAX_VALUES {
            return Err(format!("the pickle builds more than {MAX_VALUES} values"));
        }
        if v.depth() > MAX_DEPTH {
            return Err(format!(
                "the pickle nests containers deeper than {MAX_DEPTH}"
            ));
        }
        self.stack.push(v);
        Ok(())
    }

    fn pop(&mut self) -> Result<Value, Error> {
        if self.marks.last().is_some_and(|&m| m >= self.stack.len()) {
            return Err("the pickle pops past a mark".into());
        }
        self.stack
            .pop()
            .ok_or_else(|| "the pickle pops an empty stack".into())
    }

    fn top(&mut self) -> Result<&mut Value, Error> {
        self.stack
            .last_mut()
            .ok_or_else(|| "the pickle reads an empty stack".into())
    }

    fn since_mark(&mut self) -> Result<Vec<Value>, Error> {
        let m = self
            .marks
            .pop()
            .ok_or("the pickle closes a mark it never set")?;
        if m > self.stack.len() {
            return Err("the pickle's marks are out of order".into());
        }
        Ok(self.stack.split_off(m))
    }

    fn memoize(&mut self, key: u64) -> Result<(), Error> {
        let v = self.top()?.clone();
        self.built = self.built.saturating_add(v.size());
        if self.built > MAX_VALUES || self.memo.len() >= MAX_VALUES {
            return Err(format!("the pickle builds more than {MAX_VALUES} values"));
        }
        self.memo.insert(key, v);
        Ok(())
    }

    /// `callable(*args)` for the callables a state dict uses; anything else is opaque.
    fn call(&self, callable: Value, args: Value) -> Result<Value, Error> {
        let Value::Global(name) = callable else {
            return Ok(Value::Opaque(callable.describe()));
        };
        let args = match args {
            Value::Tuple(items, _) => items,
            other => return Err(format!("{name} is called with {}", other.describe())),
        };
        match name.as_str() {
            "collections.OrderedDict" | "builtins.dict" => {
                Ok(Value::Dict(Vec::new(), Dims::of([])))
            }
            "torch._utils._rebuild_tensor_v2" | "torch._utils._rebuild_tensor" => {
                let [storage, offset, shape, stride, ..] = args.as_slice() else {
                    return Err(format!("{name} takes (storage, offset, size, stride, …)"));
                };
                let Value::Storage(key, dtype, len) = storage else {
                    return Err(format!("{name}'s storage is {}", storage.describe()));
                };
                let shape = ints(shape, "size")?;
                let stride = ints(stride, "stride")?;
                if shape.len() != stride.len() {
                    return Err("a tensor's size and stride differ in length".into());
                }
                Ok(Value::Tensor(TensorRef {
                    storage: key.clone(),
                    dtype: *dtype,
                    storage_len: *len,
                    offset: int_of(offset)
                        .filter(|&o| o >= 0)
                        .ok_or("a tensor's storage offset is not a whole number ≥ 0")?
                        as u64,
                    shape,
                    stride,
                }))
            }
            "torch._utils._rebuild_parameter" | "torch._utils._rebuild_parameter_with_state" => {
                match args.into_iter().next() {
                    Some(t @ Value::Tensor(_)) => Ok(t),
                    Some(other) => Ok(Value::Opaque(other.describe())),
                    None => Err(format!("{name} takes a tensor")),
                }
            }
            _ => Ok(Value::Opaque(name)),
        }
    }

    /// `('storage', torch.FloatStorage, key, location, numel)`, or newer torch's
    /// `('storage', torch.storage.UntypedStorage, key, location, bytes)` with the dtype in the
    /// tensor's rebuild call (read here as bytes of u8).
    fn storage(pid: Value) -> Result<Value, Error> {
        let Value::Tuple(items, _) = pid else {
            return Err(format!("a persistent id is {}", pid.describe()));
        };
        match items.as_slice() {
            [Value::Str(kind), Value::Global(class), Value::Str(key), _, count]
                if kind == "storage" =>
            {
                let dtype = Dtype::of(class)
                    .or_else(|| (class == "torch.storage.UntypedStorage").then_some(Dtype::U8));
                let dtype =
                    dtype.ok_or_else(|| format!("storage type {class} is not one vitrun reads"))?;
                let n = int_of(count)
                    .filter(|&n| n >= 0)
                    .ok_or("a storage's size is not a whole number ≥ 0")?
                    as u64;
                Ok(Value::Storage(key.clone(), dtype, n))
            }
            _ => Err("a persistent id is not a torch storage".into()),
        }
    }

    /// Runs the pickle to its `STOP`; returns the value it built.
    fn run(mut self) -> Result<Value, Error> {
        loop {
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?;
                }
                0x95 => {
                    self.u64()?;
                }
                b'.' => return self.pop(),
                b'(' => self.marks.push(self.stack.len()),
                b'N' => self.push(Value::None)?,
                0x88 => self.push(Value::Bool(true))?,
                0x89 => self.push(Value::Bool(false))?,
                b'J' => {
                    let v = self.u32()? as i32;
                    self.push(Value::Int(i64::from(v)))?
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(i64::from(v)))?
                }
                b'M' => {
                    let v = self.u16()?;
                    self.push(Value::Int(i64::from(v)))?
                }
                0x8a => {
                    let n = self.u8()? as usize;
                    let b = self.take(n)?;
                    let v = if n <= 8 {
                        let mut buf = [if b.last().is_some_and(|&x| x & 0x80 != 0) {
                            0xff
                        } else {
                            0
                        }; 8];
                        buf[..n].copy_from_slice(b);
                        i64::from_le_bytes(buf)
                    } else {
                        i64::MAX
                    };
                    self.push(Value::Int(v))?
                }
                b'G' => {
                    self.take(8)?;
                    self.push(Value::Float)?
                }
                b'X' => {
                    let n = self.u32()? as usize;
                    let s = self.text(n)?;
                    self.push(Value::Str(s))?
                }
                0x8c => {
                    let n = self.u8()? as usize;
                    let s = self.text(n)?;
                    self.push(Value::Str(s))?
                }
                0x8d => {
                    let n = self.u64()? as usize;
                    let s = self.text(n)?;
                    self.push(Value::Str(s))?
                }
                b'T' => {
                    let n = self.u32()? as usize;
                    let s = self.text(n)?;
                    self.push(Value::Str(s))?
                }
                b'U' => {
                    let n = self.u8()? as usize;
                    let s = self.text(n)?;
                    self.push(Value::Str(s))?
                }
                b'B' => {
                    let n = self.u32()? as usize;
                    self.take(n)?;
                    self.push(Value::Bytes)?
                }
                b'C' => {
                    let n = self.u8()? as usize;
                    self.take(n)?;
                    self.push(Value::Bytes)?
                }
                0x8e => {
                    let n = self.u64()? as usize;
                    self.take(n)?;
                    self.push(Value::Bytes)?
                }
                b'c' => {
                    let module = self.line()?;
                    let name = self.line()?;
                    self.push(Value::Global(format!("{module}.{name}")))?
                }
                0x93 => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    match (module, name) {
                        (Value::Str(m), Value::Str(n)) => {
                            self.push(Value::Global(format!("{m}.{n}")))?
                        }
                        _ => return Err("STACK_GLOBAL takes two strings".into()),
                    }
                }
                b')' => self.push(Value::Tuple(Vec::new(), Dims::of([])))?,
                b']' => self.push(Value::List(Vec::new(), Dims::of([])))?,
                b'}' => self.push(Value::Dict(Vec::new(), Dims::of([])))?,
                b't' => {
                    let items = self.since_mark()?;
                    let d = Dims::of(&items);
                    self.push(Value::Tuple(items, d))?
                }
                b'l' => {
                    let items = self.since_mark()?;
                    let d = Dims::of(&items);
                    self.push(Value::List(items, d))?
                }
                b'd' => {
                    let items = self.since_mark()?;
                    let d = Dims::of(&items);
                    let pairs = pairs(items)?;
                    self.push(Value::Dict(pairs, d))?
                }
                0x85..=0x87 => {
                    let n = usize::from(op - 0x84);
                    if self.stack.len() < n {
                        return Err("a tuple takes more values than the stack holds".into());
                    }
                    let mut items = Vec::with_capacity(n);
                    for _ in 0..n {
                        items.push(self.pop()?);
                    }
                    items.reverse();
                    let d = Dims::of(&items);
                    self.push(Value::Tuple(items, d))?
                }
                b'a' => {
                    let item = self.pop()?;
                    append(self.top()?, vec![item])?;
                    self.check_top()?
                }
                b'e' => {
                    let items = self.since_mark()?;
                    append(self.top()?, items)?;
                    self.check_top()?
                }
                b's' => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    set_items(self.top()?, vec![(key, value)])?;
                    self.check_top()?
                }
                b'u' => {
                    let items = self.since_mark()?;
                    let pairs = pairs(items)?;
                    set_items(self.top()?, pairs)?;
                    self.check_top()?
                }
                b'b' => {
                    // BUILD sets an object's state (an OrderedDict's `_metadata`): ignored.
                    self.pop()?;
                }
                b'R' => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let v = self.call(callable, args)?;
                    self.push(v)?
                }
                0x81 => {
                    let args = self.pop()?;
                    let class = self.pop()?;
                    let v = self.call(class, args)?;
                    self.push(v)?
                }
                b'Q' => {
                    let pid = self.pop()?;
                    let v = Self::storage(pid)?;
                    self.push(v)?
                }
                b'q' => {
                    let k = u64::from(self.u8()?);
                    self.memoize(k)?
                }
                b'r' => {
                    let k = u64::from(self.u32()?);
                    self.memoize(k)?
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memoize(k)?
                }
                b'h' | b'j' => {
                    let k = if op == b'h' {
                        u64::from(self.u8()?)
                    } else {
                        u64::from(self.u32()?)
                    };
                    let v = self.memo.get(&k).cloned().ok_or_else(|| {
                        format!("the pickle reads memo entry {k}, which it never set")
                    })?;
                    self.push(v)?
                }
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.since_mark()?;
                }
                b'2' => {
                    let v = self.top()?.clone();
                    self.push(v)?
                }
                other => {
                    return Err(format!(
                        "pickle opcode 0x{other:02x} at byte {} is not one a state dict uses",
                        self.at - 1
                    ))
                }
            }
        }
    }

    /// Fails when the container on top of the stack nests too deep.
    fn check_top(&mut self) -> Result<(), Error> {
        if self.top()?.depth() > MAX_DEPTH {
            return Err(format!(
                "the pickle nests containers deeper than {MAX_DEPTH}"
            ));
        }
        Ok(())
    }
}

fn pairs(items: Vec<Value>) -> Result<Vec<(Value, Value)>, Error> {
    if !items.len().is_multiple_of(2) {
        return Err("a dict's items are not key-value pairs".into());
    }
    let mut out = Vec::with_capacity(items.len() / 2);
    let mut it = items.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        out.push((k, v));
    }
    Ok(out)
}

fn append(target: &mut Value, items: Vec<Value>) -> Result<(), Error> {
    match target {
        Value::List(list, dims) => {
            *dims = dims.grown(&items);
            list.extend(items);
            Ok(())
        }
        Value::Opaque(_) => Ok(()),
        other => Err(format!("the pickle appends to {}", other.describe())),
    }
}

fn set_items(target: &mut Value, items: Vec<(Value, Value)>) -> Result<(), Error> {
    match target {
        Value::Dict(dict, dims) => {
            *dims = dims.grown(items.iter().flat_map(|(k, v)| [k, v]));
            dict.extend(items);
            Ok(())
        }
        Value::Opaque(_) => Ok(()),
        other => Err(format!("the pickle sets items of {}", other.describe())),
    }
}

/// The state dict in a checkpoint's top value: under `model` or `state_dict` when the
/// checkpoint is a trainer's dict (DeiT: `{"model": …}`), else the value itself.
fn state_of(top: Value) -> Result<Vec<(Value, Value)>, Error> {
    let Value::Dict(items, _) = top else {
        return Err(format!(
            "the checkpoint holds {}, not a dict of tensors",
            top.describe()
        ));
    };
    let nested = items.iter().position(|(k, v)| {
        matches!(k, Value::Str(s) if s == "model" || s == "state_dict")
            && matches!(v, Value::Dict(..))
    });
    Ok(match nested {
        Some(at) => match items.into_iter().nth(at) {
            Some((_, Value::Dict(inner, _))) => inner,
            _ => Vec::new(),
        },
        None => items,
    })
}

/// One tensor read from the file, widened to f32, in torch's row-major layout.
#[derive(Debug, Clone, PartialEq)]
pub struct Tensor {
    pub shape: Vec<usize>,
    pub data: Vec<f32>,
}

/// Reads `path`, a zip of `torch.save`, as f32 tensors by key.
pub fn read(path: &Path) -> Result<BTreeMap<String, Tensor>, Error> {
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|_| "not a zip archive: vitrun reads the checkpoints of torch ≥ 1.6 (torch.save); re-save an older one with torch.save(torch.load(f), \"new.pth\")".to_string())?;
    let pickles: Vec<String> = zip
        .file_names()
        .filter(|n| *n == "data.pkl" || n.ends_with("/data.pkl"))
        .map(str::to_string)
        .collect();
    let [pickle] = pickles.as_slice() else {
        return Err(format!(
            "a torch checkpoint holds one data.pkl, and this zip holds {}",
            pickles.len()
        ));
    };
    let prefix = pickle
        .strip_suffix("data.pkl")
        .unwrap_or_default()
        .to_string();
    let mut bytes = Vec::new();
    zip.by_name(pickle)
        .map_err(|e| e.to_string())?
        .take(MAX_PICKLE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{pickle}: {e}"))?;
    if bytes.len() as u64 > MAX_PICKLE_BYTES {
        return Err(format!(
            "{pickle} inflates past {} MiB, far beyond any state dict's",
            MAX_PICKLE_BYTES >> 20
        ));
    }
    let top = Machine::new(&bytes).run()?;
    let mut storages: HashMap<String, Vec<u8>> = HashMap::new();
    let mut out = BTreeMap::new();
    for (key, value) in state_of(top)? {
        let Value::Str(name) = key else {
            return Err(format!(
                "a state-dict key is {}, not a string",
                key.describe()
            ));
        };
        let t = match value {
            Value::Tensor(t) => t,
            // Counters and flags beside the tensors are not weights.
            Value::Int(_) | Value::Float | Value::Bool(_) | Value::None | Value::Str(_) => continue,
            other => {
                return Err(format!(
                    "{name} is {}, not a tensor; vitrun never runs a checkpoint's code",
                    other.describe()
                ))
            }
        };
        let elements = t
            .shape
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= MAX_ELEMENTS)
            .ok_or_else(|| {
                format!(
                    "{name} declares a shape of {:?} elements, more than a tensor can hold",
                    t.shape
                )
            })?;
        // The furthest element the view reaches, in storage elements.
        let reach = if elements == 0 {
            0
        } else {
            t.shape
                .iter()
                .zip(&t.stride)
                .try_fold(t.offset, |r, (&d, &s)| {
                    r.checked_add((d - 1).checked_mul(s)?)
                })
                .and_then(|r| r.checked_add(1))
                .ok_or_else(|| format!("{name}'s stride reaches past any storage"))?
        };
        if reach > t.storage_len {
            return Err(format!(
                "{name} reads {reach} elements of storage {}, which declares {}",
                t.storage, t.storage_len
            ));
        }
        if !storages.contains_key(&t.storage) {
            let entry = format!("{prefix}data/{}", t.storage);
            let raw = read_storage(&mut zip, &entry, t.storage_len * t.dtype.size())?;
            storages.insert(t.storage.clone(), raw);
        }
        let raw = &storages[&t.storage];
        let size = t.dtype.size() as usize;
        let mut data = Vec::with_capacity(elements as usize);
        let mut index = vec![0u64; t.shape.len()];
        for _ in 0..elements {
            let at = t.offset + index.iter().zip(&t.stride).map(|(i, s)| i * s).sum::<u64>();
            let at = at as usize * size;
            data.extend(t.dtype.widen(&raw[at..at + size]));
            for d in (0..index.len()).rev() {
                index[d] += 1;
                if index[d] < t.shape[d] {
                    break;
                }
                index[d] = 0;
            }
        }
        out.insert(
            name,
            Tensor {
                shape: t.shape.iter().map(|&d| d as usize).collect(),
                data,
            },
        );
    }
    Ok(out)
}

/// The bytes of storage `entry`, which must hold at least `need`: never more than its
/// compressed size allows (a zip bomb stops early).
fn read_storage<R: std::io::Read + std::io::Seek>(
    zip: &mut zip::ZipArchive<R>,
    entry: &str,
    need: u64,
) -> Result<Vec<u8>, Error> {
    let file = zip
        .by_name(entry)
        .map_err(|_| format!("storage {entry} is missing from the archive"))?;
    let cap = file
        .compressed_size()
        .saturating_mul(MAX_INFLATION)
        .saturating_add(1 << 20)
        .min(need);
    let mut raw = Vec::new();
    file.take(cap)
        .read_to_end(&mut raw)
        .map_err(|e| format!("{entry}: {e}"))?;
    if (raw.len() as u64) < need {
        return Err(format!(
            "storage {entry} holds {} bytes, and its tensors need {need}: the file is truncated or forged",
            raw.len()
        ));
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// Pickle bytes, written opcode by opcode.
    #[derive(Default)]
    struct Pickle(Vec<u8>);

    impl Pickle {
        fn op(mut self, bytes: &[u8]) -> Self {
            self.0.extend_from_slice(bytes);
            self
        }
        fn global(self, module: &str, name: &str) -> Self {
            self.op(format!("c{module}\n{name}\n").as_bytes())
        }
        fn string(self, s: &str) -> Self {
            let mut b = vec![b'X'];
            b.extend_from_slice(&(s.len() as u32).to_le_bytes());
            b.extend_from_slice(s.as_bytes());
            self.op(&b)
        }
        fn int(self, i: i32) -> Self {
            let mut b = vec![b'J'];
            b.extend_from_slice(&i.to_le_bytes());
            self.op(&b)
        }
        fn ints(mut self, values: &[i32]) -> Self {
            self = self.op(b"(");
            for &v in values {
                self = self.int(v);
            }
            self.op(b"t")
        }
        /// `_rebuild_tensor_v2(storage(key, FloatStorage, numel), offset, size, stride, False,
        /// OrderedDict())` on the stack.
        fn tensor(self, key: &str, numel: i32, size: &[i32], stride: &[i32]) -> Self {
            self.global("torch._utils", "_rebuild_tensor_v2")
                .op(b"(")
                .op(b"(")
                .string("storage")
                .global("torch", "FloatStorage")
                .string(key)
                .string("cpu")
                .int(numel)
                .op(b"tQ")
                .int(0)
                .ints(size)
                .ints(stride)
                .op(&[0x89])
                .global("collections", "OrderedDict")
                .op(b")R")
                .op(b"tR")
        }
        /// `{name: tensor}` as the whole pickle.
        fn state(name: &str, tensor: Pickle) -> Vec<u8> {
            let mut p = Pickle::default().op(&[0x80, 2]).op(b"}").string(name);
            p.0.extend(tensor.0);
            p.op(b"s.").0
        }
    }

    /// A torch-style zip of `pickle` and `storages` (`archive/data/<key>`), deflated or stored.
    fn checkpoint(
        pickle: &[u8],
        storages: &[(&str, Vec<u8>)],
        deflate: bool,
    ) -> tempfile::NamedTempFile {
        let file = tempfile::Builder::new().suffix(".pth").tempfile().unwrap();
        let mut zip = zip::ZipWriter::new(file.reopen().unwrap());
        let method = if deflate {
            zip::CompressionMethod::Deflated
        } else {
            zip::CompressionMethod::Stored
        };
        let options = zip::write::SimpleFileOptions::default().compression_method(method);
        zip.start_file("archive/data.pkl", options).unwrap();
        zip.write_all(pickle).unwrap();
        for (key, bytes) in storages {
            zip.start_file(format!("archive/data/{key}"), options)
                .unwrap();
            zip.write_all(bytes).unwrap();
        }
        zip.finish().unwrap();
        file
    }

    fn floats(values: &[f32]) -> Vec<u8> {
        values.iter().flat_map(|v| v.to_le_bytes()).collect()
    }

    fn error(pickle: &[u8], storages: &[(&str, Vec<u8>)]) -> String {
        read(checkpoint(pickle, storages, false).path()).unwrap_err()
    }

    #[test]
    fn a_state_dict_reads_with_its_strides() {
        // A 2×2 transposed view of [1, 2, 3, 4]: [[1, 3], [2, 4]].
        let p = Pickle::state("w", Pickle::default().tensor("0", 4, &[2, 2], &[1, 2]));
        let sd =
            read(checkpoint(&p, &[("0", floats(&[1.0, 2.0, 3.0, 4.0]))], false).path()).unwrap();
        assert_eq!(sd["w"].shape, [2, 2]);
        assert_eq!(sd["w"].data, [1.0, 3.0, 2.0, 4.0]);
        // An empty tensor is a tensor, not a crash.
        let p = Pickle::state("e", Pickle::default().tensor("0", 0, &[0], &[1]));
        let sd = read(checkpoint(&p, &[("0", Vec::new())], false).path()).unwrap();
        assert_eq!((sd["e"].shape.clone(), sd["e"].data.len()), (vec![0], 0));
    }

    #[test]
    fn huge_or_negative_shapes_are_refused_before_any_allocation() {
        let huge = Pickle::state(
            "w",
            Pickle::default().tensor("0", 4, &[1 << 30, 1 << 30], &[1, 1]),
        );
        let e = error(&huge, &[("0", floats(&[1.0; 4]))]);
        assert!(
            e.contains("w declares a shape") && e.contains("more than a tensor can hold"),
            "{e}"
        );
        let beyond = Pickle::state("w", Pickle::default().tensor("0", 4, &[1 << 20], &[1]));
        let e = error(&beyond, &[("0", floats(&[1.0; 4]))]);
        assert!(
            e.contains("reads 1048576 elements of storage 0, which declares 4"),
            "{e}"
        );
        let negative = Pickle::state("w", Pickle::default().tensor("0", 4, &[-1], &[1]));
        let e = error(&negative, &[("0", floats(&[1.0; 4]))]);
        assert!(e.contains("holds -1, below 0"), "{e}");
    }

    #[test]
    fn missing_short_and_inflating_storages_are_refused() {
        let p = Pickle::state("w", Pickle::default().tensor("0", 4, &[4], &[1]));
        let e = error(&p, &[]);
        assert!(e.contains("storage archive/data/0 is missing"), "{e}");
        let e = error(&p, &[("0", floats(&[1.0, 2.0]))]);
        assert!(e.contains("holds 8 bytes, and its tensors need 16"), "{e}");
        // 64 MiB of zeros deflate to ~64 KiB: declaring them as 16M floats would inflate far
        // beyond what the compressed entry could hold honestly.
        let numel = 1 << 24;
        let p = Pickle::state("w", Pickle::default().tensor("0", numel, &[numel], &[1]));
        let file = checkpoint(&p, &[("0", vec![0u8; (numel as usize) * 4])], true);
        let e = read(file.path()).unwrap_err();
        assert!(e.contains("the file is truncated or forged"), "{e}");
    }

    #[test]
    fn deep_nesting_and_huge_value_counts_end_in_an_error() {
        let mut deep = Pickle::default().op(&[0x80, 2]).int(1);
        deep.0.extend(std::iter::repeat_n(0x85, 100_000));
        let e = error(&deep.op(b".").0, &[]);
        assert!(e.contains("deeper than 256"), "{e}");
        // A list memoized and copied into itself doubles each round: its size is charged.
        let mut copies = Pickle::default().op(&[0x80, 2]).op(b"]q\x00");
        for _ in 0..40 {
            copies = copies.op(b"(h\x00h\x00lq\x00");
        }
        let e = error(&copies.op(b".").0, &[]);
        assert!(e.contains("more than 1000000 values"), "{e}");
    }

    #[test]
    fn code_in_place_of_a_tensor_is_named_and_never_run() {
        let p = Pickle::state(
            "cls_token",
            Pickle::default()
                .global("posix", "system")
                .op(b"(")
                .string("touch /tmp/never")
                .op(b"tR"),
        );
        let e = error(&p, &[]);
        assert!(e.contains("cls_token is a posix.system object"), "{e}");
        let e = read(Path::new("/no/such.pth")).unwrap_err();
        assert!(e.contains("No such file"), "{e}");
    }
}
