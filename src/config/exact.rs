//! Deserialisers that refuse what serde would otherwise cut or pad silently.

use serde::{Deserialize, Deserializer};

/// A `[low, high]` pair that must have exactly two values (`[0.9, 0.99, 0.1]` is an error,
/// not `[0.9, 0.99]`).
pub fn pair<'de, D: Deserializer<'de>>(d: D) -> Result<[f64; 2], D::Error> {
    let values = Vec::<f64>::deserialize(d)?;
    <[f64; 2]>::try_from(values.as_slice()).map_err(|_| {
        serde::de::Error::custom(format!(
            "expected exactly 2 values [low, high], found {} ({values:?})",
            values.len()
        ))
    })
}
