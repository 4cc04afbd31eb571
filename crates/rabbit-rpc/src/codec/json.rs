//! JSON, with serde_json; decoding errors name the path to the bad field
//! (serde_path_to_error).

use serde::{Serialize, de::DeserializeOwned};

use super::{Codec, CodecError};

/// JSON: `application/json`, the codec of typed procedures.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json;

impl Codec for Json {
    const CONTENT_TYPE: &'static str = "application/json";

    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|error| CodecError::new(error.to_string()))
    }

    /// An empty body (or only white space) reads as `null`: what a method
    /// without arguments takes, whoever calls it.
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
        let bytes = if bytes.trim_ascii().is_empty() {
            b"null"
        } else {
            bytes
        };
        let mut deserializer = serde_json::Deserializer::from_slice(bytes);
        let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
            let path = error.path().to_string();
            let inner = error.into_inner();
            // "." is the root: nothing to add.
            if path == "." {
                CodecError::new(inner.to_string())
            } else {
                CodecError::new(format!("{path}: {inner}"))
            }
        })?;
        deserializer
            .end()
            .map_err(|error| CodecError::new(error.to_string()))?;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Args {
        n: u64,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Inner {
        flag: bool,
    }

    #[test]
    fn decoding_errors_say_what_and_where() {
        let missing = Json::decode::<Args>(b"{}").unwrap_err();
        assert_eq!(missing.to_string(), "missing field `n` at line 1 column 2");
        let nested = Json::decode::<Args>(br#"{"n": 1, "inner": {"flag": "yes"}}"#).unwrap_err();
        assert!(
            nested
                .to_string()
                .starts_with("inner.flag: invalid type: string \"yes\""),
            "{nested}"
        );
        let trailing = Json::decode::<Args>(br#"{"n": 1} x"#).unwrap_err();
        assert!(
            trailing.to_string().contains("trailing characters"),
            "{trailing}"
        );
        assert_eq!(
            Json::decode::<Args>(br#"{"n": 30}"#).unwrap(),
            Args { n: 30, inner: None }
        );
        Json::decode::<()>(b"").unwrap();
        Json::decode::<()>(b" null ").unwrap();
    }
}
