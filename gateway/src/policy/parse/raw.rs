//! The policy file as written: every section with the span of each key and value, so that
//! faults can be reported at their line.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use toml::Spanned;

/// The whole file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    pub(super) out_of_range_mm: Option<Spanned<f64>>,
    pub(super) mechanical_max_mm: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) classes: Entries<f64>,
    #[serde(default)]
    pub(super) qualifications: Entries<f64>,
    #[serde(default)]
    pub(super) cartridge_models: Entries<u64>,
    #[serde(default)]
    pub(super) operators: Vec<RawOperator>,
    #[serde(default)]
    pub(super) devices: Vec<RawDevice>,
    #[serde(default)]
    pub(super) zones: Entries<Entries<f64>>,
    #[serde(default)]
    pub(super) clinics: Entries<RawClinic>,
}

/// One `[clinics.CLINIC]` section.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClinic {
    pub(super) jurisdiction: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) registered_premises: bool,
}

/// One `[[operators]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOperator {
    pub(super) id: Spanned<String>,
    pub(super) clinic: Spanned<String>,
    pub(super) qualification: Spanned<String>,
    pub(super) cap_mm: Option<Spanned<f64>>,
    #[serde(default)]
    pub(super) healthcare_professional: bool,
}

/// One `[[devices]]` entry.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDevice {
    pub(super) id: Spanned<String>,
    pub(super) clinic: Spanned<String>,
    pub(super) class: Spanned<String>,
}

/// A TOML table in file order, with the span of every key and value.
pub(super) struct Entries<V>(pub(super) Vec<(Spanned<String>, Spanned<V>)>);

impl<V> Default for Entries<V> {
    fn default() -> Self {
        Entries(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a table")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some(entry) = map.next_entry()? {
                    entries.push(entry);
                }
                // The parser may hand keys over sorted; restore the order of the file.
                entries.sort_by_key(|(k, _): &(Spanned<String>, Spanned<V>)| k.span().start);
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(PhantomData))
    }
}
