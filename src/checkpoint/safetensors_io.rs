//! Reading and writing the safetensors container's parts: its header checked for repeated
//! keys, metadata values as JSON, and F32 tensors checked for dtype, shape and finite values.

use std::collections::HashMap;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use super::{CheckpointError, invalid};

/// safetensors reads the header into a map, so a repeated key would silently replace an earlier
/// one. Repeated tensor names or metadata keys are refused instead.
pub(super) fn reject_duplicate_keys(bytes: &[u8]) -> Result<(), CheckpointError> {
    use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
    struct Keys(Option<String>);
    impl<'de> Visitor<'de> for &mut Keys {
        type Value = ();
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
            let mut seen = std::collections::HashSet::new();
            while let Some(key) = map.next_key::<String>()? {
                if key == "__metadata__" {
                    let mut inner = Keys(None);
                    map.next_value_seed(&mut inner)?;
                    if let Some(dup) = inner.0 {
                        self.0.get_or_insert(format!("metadata key \"{dup}\""));
                    }
                } else {
                    map.next_value::<IgnoredAny>()?;
                }
                if !seen.insert(key.clone()) {
                    self.0.get_or_insert(key);
                }
            }
            Ok(())
        }
    }
    impl<'de> serde::de::DeserializeSeed<'de> for &mut Keys {
        type Value = ();
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
            d.deserialize_map(self)
        }
    }
    // Only a well-formed header is checked here; anything else is left to safetensors' errors.
    let Some(len) = bytes
        .get(..8)
        .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
    else {
        return Ok(());
    };
    let Some(header) = usize::try_from(len)
        .ok()
        .and_then(|n| bytes.get(8..8usize.checked_add(n)?))
    else {
        return Ok(());
    };
    let mut keys = Keys(None);
    let mut de = serde_json::Deserializer::from_slice(header);
    if serde::de::DeserializeSeed::deserialize(&mut keys, &mut de).is_ok()
        && let Some(dup) = keys.0
    {
        return Err(invalid(format!("the header names \"{dup}\" twice")));
    }
    Ok(())
}

pub(super) fn parse_meta<T: for<'de> Deserialize<'de> + Default>(
    meta: &HashMap<String, String>,
    key: &str,
) -> Result<T, CheckpointError> {
    match meta.get(key) {
        None => Ok(T::default()),
        Some(text) => serde_json::from_str(text)
            .map_err(|e| invalid(format!("metadata \"{key}\" is malformed: {e}"))),
    }
}

/// Reads an F32 tensor of exactly `shape` with finite values; `None` if absent.
pub(super) fn read_f32(
    file: &SafeTensors,
    name: &str,
    shape: &[usize],
) -> Result<Option<Vec<f32>>, CheckpointError> {
    let view = match file.tensor(name) {
        Ok(v) => v,
        Err(_) => return Ok(None),
    };
    if view.dtype() != Dtype::F32 {
        return Err(invalid(format!(
            "tensor \"{name}\" has dtype {:?}; toylens needs F32",
            view.dtype()
        )));
    }
    if view.shape() != shape {
        return Err(invalid(format!(
            "tensor \"{name}\" has shape {:?}; expected {shape:?}",
            view.shape()
        )));
    }
    let values: Vec<f32> = view
        .data()
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    if let Some(i) = values.iter().position(|v| !v.is_finite()) {
        return Err(invalid(format!(
            "tensor \"{name}\" holds a non-finite value ({}) at flat index {i}",
            values[i]
        )));
    }
    Ok(Some(values))
}

/// A safetensors file of float32 tensors `(name, shape, little-endian bytes)`, with `metadata`.
pub(super) fn serialize_f32(
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    metadata: Option<HashMap<String, String>>,
) -> Result<Vec<u8>, CheckpointError> {
    let views = tensors
        .iter()
        .map(|(name, shape, data)| {
            TensorView::new(Dtype::F32, shape.clone(), data).map(|v| (name.as_str(), v))
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CheckpointError::Format(e.to_string()))?;
    safetensors::serialize(views, metadata).map_err(|e| CheckpointError::Format(e.to_string()))
}

pub(super) fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(super) fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("plain data always serialises")
}
