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

/// What serde expected of a field of the wrong type (`expected a string`), without the value it
/// found, which may be a secret; its message cut to 120 characters when it names no expectation.
pub(crate) fn expected_of(err: &serde_json::Error) -> String {
    let message = err.to_string();
    match message.split_once(", expected") {
        Some((_, expected)) => format!("expected{expected}"),
        None => message.chars().take(120).collect(),
    }
}
