//! Lenient readers for the daemon's request fields (plugin-kinds.md §1.1): maps are marshalled from
//! Go, so an empty one may arrive as `null`, and optional fields may be absent.

use serde::{Deserialize, Deserializer};
use serde_json::{Map, Value};

/// A JSON object (a provider's credentials, a node's parameters, …).
pub type Object = Map<String, Value>;

/// A map that may be `null`: `{}`.
pub(crate) fn object_or_null<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Object, D::Error> {
    Ok(Option::<Object>::deserialize(deserializer)?.unwrap_or_default())
}

/// A value that may be `null` or absent: its default.
pub(crate) fn or_default<'de, D: Deserializer<'de>, T: Deserialize<'de> + Default>(
    deserializer: D,
) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// The input of an action that has none of its own (credential checks, schemas): any object.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub struct NoInput {}
