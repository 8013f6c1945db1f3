//! PyTorch state dicts: what `torch.save(model.state_dict(), "model.pth")` writes (the zip
//! format), bare or wrapped as `{"model": sd}`, `{"state_dict": sd}` or `{"model_state_dict":
//! sd}`. candle's pickle machine interprets only tensor data and plain containers: nothing pickled
//! is ever run (classes stay names), and a file it cannot read that way is refused. The archive is
//! read here rather than by candle's `read_all`, which prints every tensor it skips (TL's bool
//! masks) to stderr. The tensors come back as the bytes
//! of a safetensors file without metadata, so that loading them is loading a bare TL state dict:
//! the same checks, the same config sources (`config.json` beside the file, `--tl-config`).

use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use candle_core::pickle::{Object, Stack, TensorInfo};
use candle_core::{DType, Device, Tensor};

use super::{CheckpointError, f32_bytes, invalid, is_tl_buffer, serialize_f32};
use crate::device::error_line;

/// The keys a state dict is commonly wrapped under.
const WRAPPERS: [&str; 3] = ["model", "state_dict", "model_state_dict"];

/// The start of `torch.save`'s zip format (since PyTorch 1.6).
const ZIP_MAGIC: &[u8] = b"PK\x03\x04";
/// The start of its legacy format: pickle protocol 2, then the magic number as a long.
const LEGACY_MAGIC: &[u8] = &[0x80, 0x02, 0x8a, 0x0a];

/// Whether `path` holding `bytes` is a PyTorch file: by its name (`.pt`, `.pth`, `.bin`) or its
/// first bytes.
pub(super) fn is_pytorch_file(path: &Path, bytes: &[u8]) -> bool {
    let named = path.extension().and_then(|e| e.to_str()).is_some_and(|e| {
        ["pt", "pth", "bin"]
            .iter()
            .any(|known| e.eq_ignore_ascii_case(known))
    });
    named || bytes.starts_with(ZIP_MAGIC) || bytes.starts_with(LEGACY_MAGIC)
}

/// The state dict of the PyTorch file `path` as safetensors bytes (every tensor float32), and a
/// note of the tensors that were converted to float32, if any.
pub(super) fn state_dict_as_safetensors(
    path: &Path,
    bytes: &[u8],
) -> Result<(Vec<u8>, Option<String>), CheckpointError> {
    if bytes.starts_with(LEGACY_MAGIC) {
        return Err(invalid(
            "a PyTorch file in the legacy (pre-1.6) format, which toylens does not read: \
             save it again with a current PyTorch (torch.save writes the zip format)",
        ));
    }
    if !bytes.starts_with(ZIP_MAGIC) {
        return Err(invalid(
            "named like a PyTorch file, but not one torch.save writes (no zip archive)",
        ));
    }
    let tensors = read_state_dict(path)?;
    let mut converted: Vec<(String, DType)> = Vec::new();
    let mut named: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, tensor) in tensors {
        let dtype = tensor.dtype();
        match dtype {
            DType::F32 => {}
            DType::F16 | DType::BF16 | DType::F64 => converted.push((name.clone(), dtype)),
            // Integer and boolean buffers (TL's causal mask) carry no parameters.
            _ if is_tl_buffer(&name) => continue,
            other => {
                return Err(invalid(format!(
                    "tensor \"{name}\" holds {other:?} values; a model's parameters are floats"
                )));
            }
        }
        let values = tensor
            .to_dtype(DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(|e| invalid(format!("tensor \"{name}\" cannot be read: {e}")))?;
        named.push((name, tensor.dims().to_vec(), f32_bytes(&values)));
    }
    let bytes = serialize_f32(&named, None)?;
    let note = (!converted.is_empty()).then(|| {
        let mut kinds: Vec<String> = converted.iter().map(|(_, d)| format!("{d:?}")).collect();
        kinds.sort();
        kinds.dedup();
        format!(
            "{} tensors converted from {} to float32",
            converted.len(),
            kinds.join(" and ")
        )
    });
    Ok((bytes, note))
}

/// The tensors of the state dict in `path`: at the top level, or under one of [`WRAPPERS`]. TL's
/// attention masks (bool tensors, which candle's reader does not take) and entries that are not
/// tensors are passed over.
fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>, CheckpointError> {
    let not_torch = |why: String| {
        invalid(format!(
            "not a PyTorch state dict toylens can read ({why}); it reads tensors in plain dicts, \
             as torch.save(model.state_dict()) writes them"
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| not_torch(e.to_string()))?;
    let mut zip =
        zip::ZipArchive::new(BufReader::new(file)).map_err(|e| not_torch(e.to_string()))?;
    let pickle = (0..zip.len())
        .filter_map(|i| zip.name_for_index(i)?.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| not_torch("the archive has no data.pkl".into()))?;
    let dir = PathBuf::from(pickle.strip_suffix(".pkl").unwrap_or(&pickle));
    let object = {
        let entry = zip.by_name(&pickle).map_err(|e| not_torch(e.to_string()))?;
        let mut stack = Stack::empty();
        stack
            .read_loop(&mut BufReader::new(entry))
            .map_err(|e| not_torch(error_line(&e)))?;
        stack.finalize().map_err(|e| not_torch(error_line(&e)))?
    };
    let entries = state_dict_entries(object).ok_or_else(|| {
        invalid(format!(
            "holds no tensors at the top level or under {}: not a state dict",
            WRAPPERS.map(|w| format!("\"{w}\"")).join(", ")
        ))
    })?;
    let mut tensors = Vec::new();
    for (key, value) in entries {
        let Object::Unicode(name) = &key else {
            continue;
        };
        if is_tl_buffer(name) {
            continue;
        }
        let name = name.clone();
        let info = match value.into_tensor_info(key, &dir) {
            Ok(Some(info)) => info,
            Ok(None) => continue,
            Err(e) => return Err(invalid(format!("tensor \"{name}\": {}", error_line(&e)))),
        };
        let tensor = read_tensor(&mut zip, &info)
            .map_err(|e| invalid(format!("tensor \"{name}\": {}", error_line(&e))))?;
        tensors.push((name, tensor));
    }
    Ok(tensors)
}

/// The entries of the dict that holds tensors: the top-level object, or the value under one of
/// [`WRAPPERS`].
fn state_dict_entries(object: Object) -> Option<Vec<(Object, Object)>> {
    let Object::Dict(entries) = object else {
        return None;
    };
    let holds_tensors = |entries: &[(Object, Object)]| {
        entries
            .iter()
            .any(|(_, v)| matches!(v, Object::Reduce { .. }))
    };
    if holds_tensors(&entries) {
        return Some(entries);
    }
    entries
        .into_iter()
        .find_map(|(key, value)| match (key, value) {
            (Object::Unicode(k), Object::Dict(inner))
                if WRAPPERS.contains(&k.as_str()) && holds_tensors(&inner) =>
            {
                Some(inner)
            }
            _ => None,
        })
}

/// A tensor's data from the archive: contiguous (C or Fortran order), from its storage's offset.
fn read_tensor(
    zip: &mut zip::ZipArchive<BufReader<std::fs::File>>,
    info: &TensorInfo,
) -> candle_core::Result<Tensor> {
    let fortran = info.layout.is_fortran_contiguous();
    if !info.layout.is_contiguous() && !fortran {
        candle_core::bail!("a strided view, not a whole tensor; save tensor.contiguous()");
    }
    let mut entry = zip
        .by_name(&info.path)
        .map_err(|e| candle_core::Error::Msg(format!("its data: {e}")))?;
    let skip = info.layout.start_offset() as u64;
    std::io::copy(&mut (&mut entry).take(skip), &mut std::io::sink())?;
    let dims = info.layout.dims();
    let mut data = vec![0u8; info.layout.shape().elem_count() * info.dtype.size_in_bytes()];
    entry.read_exact(&mut data)?;
    if dims.len() > 1 && fortran {
        let reversed: Vec<usize> = dims.iter().rev().copied().collect();
        let order: Vec<usize> = (0..dims.len()).rev().collect();
        Tensor::from_raw_buffer(&data, info.dtype, &reversed, &Device::Cpu)?
            .permute(order)?
            .contiguous()
    } else {
        Tensor::from_raw_buffer(&data, info.dtype, dims, &Device::Cpu)
    }
}
