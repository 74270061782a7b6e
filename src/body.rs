/*!
A verified webhook body, checked once, completely, by the rules its echo in the dispatch payload
must meet, so that what the check accepts the echo can always carry (everyone downstream reads that
payload: the daemon decodes it into Go values, Dify's API into Python, our invoke into serde_json):

- valid JSON (RFC 8259), a top-level object with a non-empty string `type`;
- every number fits a 64-bit float (Go's decoder refuses `1e400`; serde_json too);
- every string is valid Unicode (a lone surrogate escape cannot be decoded by our invoke);
- nesting at most [`MAX_DEPTH`] levels (the daemon's Go decoder stops at 10 000 and Python near
  1 000; OpenAI's events are under ten).

The payload then embeds the body as it came, except that raw line breaks (which in valid JSON can
only be whitespace between tokens) become spaces, so it stays on one protocol line without being
re-serialised.
*/

use std::cell::Cell;
use std::fmt;

use serde::Deserializer;
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

/// Deepest nesting of objects and arrays accepted (the top-level object is level 1).
pub const MAX_DEPTH: usize = 64;

/// Why a body cannot be an event. `Display` names the rule and a position, never the content.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error(
        "body is not JSON that Dify can carry (a syntax error, a number beyond a 64-bit float or an unpaired \
         surrogate) at line {line}, column {column}"
    )]
    NotJson { line: usize, column: usize },
    #[error("body is not a JSON object")]
    NotAnObject,
    #[error("body has no non-empty string \"type\"")]
    NoType,
    #[error("body nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
}

/// A body that passed [`check`]: its OpenAI type, and the JSON text to embed.
#[derive(Debug)]
pub struct EventBody {
    pub openai_type: String,
    pub json: Box<RawValue>,
}

/// Checks `body` (already UTF-8, as verification requires) and prepares its echo.
pub fn check(body: &str) -> Result<EventBody, BodyError> {
    if !body.trim_start().starts_with('{') {
        // Also refuses a BOM, which JSON does not allow (RFC 8259 §8.1).
        return Err(BodyError::NotAnObject);
    }
    let too_deep = Cell::new(false);
    let mut deserializer = serde_json::Deserializer::from_str(body);
    let outcome = TopLevel { too_deep: &too_deep }
        .deserialize(&mut deserializer)
        .and_then(|found| deserializer.end().map(|()| found));
    let openai_type = match outcome {
        Ok(Some(openai_type)) => openai_type,
        Ok(None) => return Err(BodyError::NoType),
        Err(_) if too_deep.get() => return Err(BodyError::TooDeep),
        Err(err) => return Err(BodyError::NotJson { line: err.line(), column: err.column() }),
    };
    let trimmed = body.trim();
    let text = if memchr::memchr2(b'\n', b'\r', trimmed.as_bytes()).is_some() {
        trimmed.replace(['\n', '\r'], " ")
    } else {
        trimmed.to_owned()
    };
    let json =
        RawValue::from_string(text).map_err(|err| BodyError::NotJson { line: err.line(), column: err.column() })?;
    Ok(EventBody { openai_type, json })
}

/// Set when the walk stops at the depth limit (serde's custom errors carry only a message, and the
/// kind must not be read back from text).
type TooDeep<'a> = &'a Cell<bool>;

/// The top-level object: returns its `type` when it is a non-empty string.
struct TopLevel<'a> {
    too_deep: TooDeep<'a>,
}

impl<'de> DeserializeSeed<'de> for TopLevel<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut openai_type = None;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "type" {
                // Any value is checked; only a non-empty string is a type (a later duplicate wins,
                // as it does for every JSON reader downstream).
                openai_type = map.next_value_seed(TypeValue { too_deep: self.too_deep })?;
            } else {
                map.next_value_seed(Nested { depth: 2, too_deep: self.too_deep })?;
            }
        }
        Ok(openai_type)
    }
}

/// The value of the top-level `type`: a non-empty string, or anything else (checked, then None).
struct TypeValue<'a> {
    too_deep: TooDeep<'a>,
}

impl<'de> DeserializeSeed<'de> for TypeValue<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for TypeValue<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
        Ok((!value.is_empty()).then(|| value.to_owned()))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
        Nested { depth: 2, too_deep: self.too_deep }.visit_seq(seq).map(|()| None)
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        Nested { depth: 2, too_deep: self.too_deep }.visit_map(map).map(|()| None)
    }
}

/// Any nested value, at `depth`: numbers are parsed (so out-of-range ones fail), strings decoded
/// (so unpaired surrogates fail), containers counted.
#[derive(Clone, Copy)]
struct Nested<'a> {
    depth: usize,
    too_deep: TooDeep<'a>,
}

impl Nested<'_> {
    fn deeper<E: de::Error>(self) -> Result<Self, E> {
        if self.depth > MAX_DEPTH {
            self.too_deep.set(true);
            return Err(E::custom("nesting over the limit"));
        }
        Ok(Nested { depth: self.depth + 1, ..self })
    }
}

impl<'de> DeserializeSeed<'de> for Nested<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Nested<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while seq.next_element_seed(inner)?.is_some() {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let inner = self.deeper()?;
        while map.next_key::<IgnoredAny>()?.is_some() {
            map.next_value_seed(inner)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{{\"type\":\"x\",\"data\":{}1{}}}", "{\"a\":".repeat(levels - 1), "}".repeat(levels - 1))
    }

    #[test]
    fn accepts_events_and_keeps_them_verbatim_on_one_line() {
        let body = "{\n  \"id\": \"evt_1\",\r\n  \"created_at\": 1.5e3,\n  \"type\": \"batch.completed\",\n  \"data\": {\"n\": \"a\\nb\"}\n}";
        let event = check(body).unwrap();
        assert_eq!(event.openai_type, "batch.completed");
        assert!(!event.json.get().contains(['\n', '\r']));
        assert_eq!(event.json.get().len(), body.trim().len(), "only line breaks became spaces");
        let compact = r#"{"type":"x","big":18446744073709551615,"tiny":1e-400,"s":"\ud83d\ude00"}"#;
        assert_eq!(check(compact).unwrap().json.get(), compact);
    }

    #[test]
    fn refuses_what_downstream_cannot_carry() {
        assert!(matches!(check(r#"{"type":"x","created_at":1e400}"#), Err(BodyError::NotJson { line: 1, .. })));
        assert!(matches!(check(r#"{"type":"x","s":"\ud800"}"#), Err(BodyError::NotJson { .. })));
        assert!(matches!(check(r#"{"type":"x"} trailing"#), Err(BodyError::NotJson { .. })));
        assert!(matches!(check(r#"{"type":"x""#), Err(BodyError::NotJson { .. })));
        assert_eq!(check("\u{feff}{\"type\":\"x\"}").unwrap_err(), BodyError::NotAnObject);
        assert_eq!(check("[1]").unwrap_err(), BodyError::NotAnObject);
        assert_eq!(check(r#"{"type":""}"#).unwrap_err(), BodyError::NoType);
        assert_eq!(check(r#"{"type":7}"#).unwrap_err(), BodyError::NoType);
        assert_eq!(check(r#"{"id":"e"}"#).unwrap_err(), BodyError::NoType);
    }

    #[test]
    fn depth_is_bounded_at_64() {
        assert!(check(&nested(MAX_DEPTH)).is_ok());
        assert_eq!(check(&nested(MAX_DEPTH + 1)).unwrap_err(), BodyError::TooDeep);
        assert_eq!(
            check(&nested(50_000)).unwrap_err(),
            BodyError::TooDeep,
            "refused early, without exhausting the stack"
        );
        let arrays = format!("{{\"type\":\"x\",\"a\":{}{}}}", "[".repeat(200), "]".repeat(200));
        assert_eq!(check(&arrays).unwrap_err(), BodyError::TooDeep);
    }
}
