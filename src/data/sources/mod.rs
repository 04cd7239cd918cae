//! Dataset sources: where a training pool and its test set come from. Each source is one file
//! that holds its YAML fields, their checks and its loader (a [`Source`]), plus one row of the
//! `sources!` catalog below, which gives it its YAML key.
//!
//! In YAML a source is its key alone when it needs no fields (`dataset: digits`,
//! `dataset: fashion-mnist`) or its key with its fields (`dataset: {cifar10: {root: DIR}}`). A
//! field named `root` says where the data lives: it is left out of run ids, so moving a dataset
//! keeps finished runs.

pub mod cifar;
pub mod digits;
pub mod folder;
pub mod idx;

use std::fmt;

use anyhow::Result;
use serde::de::{self, DeserializeOwned, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::augment::Augment;
use super::preprocess::Preprocess;
use super::Dataset;

/// What every dataset source provides.
pub trait Source: Serialize + DeserializeOwned + Clone + fmt::Debug + PartialEq {
    /// The source written as its key alone (`dataset: digits`); `None` when it needs fields.
    fn bare() -> Option<Self> {
        None
    }
    /// Whether it is stored as its key alone (it has no fields at all).
    const KEY_ONLY: bool = false;
    /// Checks the fields once they are parsed.
    fn check(&self) -> Result<(), String> {
        Ok(())
    }
    /// Short name for messages and reports.
    fn name(&self) -> String;
    /// The raw training pool and test set, before padding and normalisation.
    fn load(&self) -> Result<(Dataset, Dataset)>;
    /// Preprocessing when the experiment gives none.
    fn default_preprocess(&self) -> Preprocess {
        Preprocess::default()
    }
    /// Training augmentation when the experiment gives none.
    fn default_augment(&self) -> Option<Augment> {
        None
    }
}

/// Builds [`DatasetSpec`] (one variant per source) and its YAML form from the catalog rows
/// `"key" => Variant(FieldsType)`.
macro_rules! sources {
    ($($key:literal => $variant:ident($fields:ty),)*) => {
        /// Which dataset the runs train on: one variant per source.
        #[derive(Debug, Clone, PartialEq)]
        pub enum DatasetSpec {
            $($variant($fields),)*
        }

        /// Every source's YAML key.
        pub const SOURCE_KEYS: &[&str] = &[$($key),*];

        impl DatasetSpec {
            /// The YAML key of the source.
            pub fn key(&self) -> &'static str {
                match self { $(DatasetSpec::$variant(_) => $key,)* }
            }
            /// Short name for messages and reports.
            pub fn name(&self) -> String {
                match self { $(DatasetSpec::$variant(s) => s.name(),)* }
            }
            /// The raw training pool and test set.
            pub fn load_raw(&self) -> Result<(Dataset, Dataset)> {
                match self { $(DatasetSpec::$variant(s) => s.load(),)* }
            }
            /// Preprocessing when the experiment gives none.
            pub fn default_preprocess(&self) -> Preprocess {
                match self { $(DatasetSpec::$variant(s) => s.default_preprocess(),)* }
            }
            /// Training augmentation when the experiment gives none.
            pub fn default_augment(&self) -> Option<Augment> {
                match self { $(DatasetSpec::$variant(s) => s.default_augment(),)* }
            }
            fn key_only(&self) -> bool {
                match self { $(DatasetSpec::$variant(_) => <$fields as Source>::KEY_ONLY,)* }
            }
            fn fields_json(&self) -> serde_json::Result<serde_json::Value> {
                match self { $(DatasetSpec::$variant(s) => serde_json::to_value(s),)* }
            }
            fn from_key<E: de::Error>(key: &str) -> Result<DatasetSpec, E> {
                match key {
                    $($key => <$fields as Source>::bare().map(DatasetSpec::$variant).ok_or_else(|| {
                        E::custom(format!(
                            "dataset `{key}` needs its folder: write `{key}: {{root: /path/to/data}}`"
                        ))
                    }),)*
                    other => Err(E::unknown_variant(other, SOURCE_KEYS)),
                }
            }
            fn from_entry<'de, A: MapAccess<'de>>(key: &str, map: &mut A) -> Result<DatasetSpec, A::Error> {
                match key {
                    $($key => {
                        let spec = if <$fields as Source>::KEY_ONLY {
                            map.next_value::<crate::util::NoParameters>()?;
                            <$fields as Source>::bare()
                        } else {
                            map.next_value::<Option<$fields>>()?.or_else(<$fields as Source>::bare)
                        };
                        let spec = spec.ok_or_else(|| {
                            de::Error::custom(format!("dataset `{key}` needs its fields, e.g. `{key}: {{root: /path/to/data}}`"))
                        })?;
                        spec.check().map_err(de::Error::custom)?;
                        Ok(DatasetSpec::$variant(spec))
                    })*
                    other => Err(de::Error::unknown_variant(other, SOURCE_KEYS)),
                }
            }
        }
    };
}

sources! {
    "digits" => Digits(digits::Digits),
    "fashion-mnist" => FashionMnist(idx::FashionMnist),
    "idx" => Idx(idx::Idx),
    "cifar10" => Cifar10(cifar::Cifar10),
    "cifar100" => Cifar100(cifar::Cifar100),
    "folder" => Folder(folder::Folder),
}

impl Default for DatasetSpec {
    /// The embedded UCI digits: no download, no setup.
    fn default() -> Self {
        DatasetSpec::Digits(digits::Digits {})
    }
}

impl Serialize for DatasetSpec {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        use serde::ser::{Error, SerializeMap};
        if self.key_only() {
            return s.serialize_str(self.key());
        }
        let fields = self.fields_json().map_err(S::Error::custom)?;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(self.key(), &fields)?;
        m.end()
    }
}

impl<'de> Deserialize<'de> for DatasetSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct DatasetVisitor;
        impl<'de> Visitor<'de> for DatasetVisitor {
            type Value = DatasetSpec;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(
                    f,
                    "a dataset source: `{}` alone or with its fields (`cifar10: {{root: DIR}}`)",
                    SOURCE_KEYS.join("`, `")
                )
            }
            fn visit_str<E: de::Error>(self, v: &str) -> std::result::Result<DatasetSpec, E> {
                DatasetSpec::from_key(v)
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut map: A,
            ) -> std::result::Result<DatasetSpec, A::Error> {
                let key: String = map
                    .next_key()?
                    .ok_or_else(|| de::Error::custom("empty dataset entry"))?;
                let spec = DatasetSpec::from_entry(&key, &mut map)?;
                if let Some(extra) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "one dataset per experiment: unexpected `{extra}`"
                    )));
                }
                Ok(spec)
            }
        }
        d.deserialize_any(DatasetVisitor)
    }
}
