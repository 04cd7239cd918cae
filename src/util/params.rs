//! The value of a YAML entry that takes no parameters (`- balanced:`, `digits: {}`): nothing,
//! or an empty map. Anything else is refused without being read, so nothing is silently
//! ignored, and an alias bomb hidden there is never expanded.

use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};

/// An empty parameter list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoParameters;

impl<'de> Deserialize<'de> for NoParameters {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Empty;
        impl<'de> Visitor<'de> for Empty {
            type Value = NoParameters;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("no parameters: this entry takes none, write its name alone")
            }
            fn visit_unit<E: de::Error>(self) -> Result<NoParameters, E> {
                Ok(NoParameters)
            }
            fn visit_none<E: de::Error>(self) -> Result<NoParameters, E> {
                Ok(NoParameters)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<NoParameters, A::Error> {
                match map.next_key::<String>()? {
                    None => Ok(NoParameters),
                    Some(key) => Err(de::Error::custom(format!(
                        "this entry takes no parameters (found `{key}`): write its name alone"
                    ))),
                }
            }
        }
        d.deserialize_any(Empty)
    }
}
