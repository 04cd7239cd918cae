//! Serialises `Vec<f32>` as the `u32` bit patterns of its values, so floats stored as text come
//! back bit for bit (`#[serde(with = "crate::util::bits")]`).

use serde::{Deserialize, Deserializer, Serialize, Serializer};

pub fn serialize<S: Serializer>(v: &[f32], s: S) -> Result<S::Ok, S::Error> {
    v.iter()
        .map(|x| x.to_bits())
        .collect::<Vec<u32>>()
        .serialize(s)
}

pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f32>, D::Error> {
    Ok(Vec::<u32>::deserialize(d)?
        .into_iter()
        .map(f32::from_bits)
        .collect())
}
