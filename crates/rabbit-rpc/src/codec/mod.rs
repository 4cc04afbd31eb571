//! How typed values become message bodies and back: the [`Codec`] trait,
//! and which codec a request's `content_type` asks for.
//!
//! JSON ([`Json`], `application/json`) is the one codec today: every
//! language reads it, and a tutorial client can send it by hand. The trait
//! leaves room for MessagePack, CBOR or protobuf, each a content type.

mod encoded;
mod json;

use std::fmt;

use serde::{Serialize, de::DeserializeOwned};

pub use encoded::{Encoded, json};
pub use json::Json;

/// Encodes and decodes typed values, for one content type.
pub trait Codec: Send + Sync + 'static {
    /// The content type this codec writes and reads, e.g.
    /// `application/json`.
    const CONTENT_TYPE: &'static str;

    /// Encodes `value`.
    ///
    /// # Errors
    /// When the value cannot be represented (for JSON: a map with
    /// non-string keys, say).
    fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, CodecError>;

    /// Decodes a `T` from `bytes`.
    ///
    /// # Errors
    /// When the bytes are not a `T`; the error says where and why (for
    /// JSON: `missing field `n` at line 1 column 2`).
    fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError>;
}

/// Why a value could not be encoded or decoded, in the codec's words, with
/// where it happened when known (`args.n: invalid type: string "x",
/// expected u64 at line 1 column 16`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError {
    message: String,
}

impl CodecError {
    pub(crate) fn new(message: impl Into<String>) -> CodecError {
        CodecError {
            message: message.into(),
        }
    }
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for CodecError {}

/// The media type of a `content_type` property, without parameters and in
/// lower case: `Application/JSON; charset=utf-8` is `application/json`.
pub(crate) fn media_type(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a request with `content_type` is for codec `C`. Requests with no
/// content type, or `text/plain` (what tutorial clients send), are taken
/// as `C` too: someone typing JSON by hand into a tutorial client gets an
/// answer.
pub(crate) fn accepts<C: Codec>(content_type: Option<&str>) -> bool {
    match content_type.map(media_type).as_deref() {
        None | Some("") | Some("text/plain") => true,
        Some(media) => media == C::CONTENT_TYPE,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types_ignore_parameters_and_case() {
        assert_eq!(
            media_type("Application/JSON; charset=utf-8"),
            "application/json"
        );
        assert!(accepts::<Json>(Some("application/json")));
        assert!(accepts::<Json>(None));
        assert!(accepts::<Json>(Some("text/plain")));
        assert!(!accepts::<Json>(Some("application/msgpack")));
    }
}
