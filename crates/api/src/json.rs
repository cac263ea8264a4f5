//! JSON a user writes into the policy or a network CR, checked as strictly as the programs
//! that read it: a duplicate object key (at any depth) is an error, where serde_json and many
//! CNI plugins would silently keep one of the values.

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use std::collections::HashSet;
use std::fmt;

/// Whether `text` is a JSON object (else another JSON value); an error for invalid JSON or a
/// duplicate key, with its position.
pub fn is_object(text: &str) -> Result<bool, serde_json::Error> {
    serde_json::from_str::<Checked>(text).map(|checked| checked.is_object)
}

/// A JSON document walked without keeping it: refuses duplicate object keys at any depth and
/// remembers whether the top level is an object.
struct Checked {
    is_object: bool,
}

impl<'de> Deserialize<'de> for Checked {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(CheckVisitor)
    }
}

struct CheckVisitor;

impl<'de> Visitor<'de> for CheckVisitor {
    type Value = Checked;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<Checked, E> {
        Ok(Checked { is_object: false })
    }

    fn visit_i64<E>(self, _: i64) -> Result<Checked, E> {
        Ok(Checked { is_object: false })
    }

    fn visit_u64<E>(self, _: u64) -> Result<Checked, E> {
        Ok(Checked { is_object: false })
    }

    fn visit_f64<E>(self, _: f64) -> Result<Checked, E> {
        Ok(Checked { is_object: false })
    }

    fn visit_str<E>(self, _: &str) -> Result<Checked, E> {
        Ok(Checked { is_object: false })
    }

    fn visit_unit<E>(self) -> Result<Checked, E> {
        Ok(Checked { is_object: false })
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Checked, A::Error> {
        while seq.next_element::<Checked>()?.is_some() {}
        Ok(Checked { is_object: false })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Checked, A::Error> {
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            map.next_value::<Checked>()?;
        }
        Ok(Checked { is_object: true })
    }
}
