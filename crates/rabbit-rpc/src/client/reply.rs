//! [`Reply`]: a successful answer as the caller receives it.

use crate::codec::{Codec, CodecError};

/// A successful reply's body and content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    body: Vec<u8>,
    content_type: Option<String>,
    /// The `rpc-control` header: set on a rabbit-rpc server's answer to a
    /// control request (ping, describe).
    control: Option<String>,
}

impl Reply {
    pub(crate) fn new(body: Vec<u8>, content_type: Option<&str>) -> Reply {
        Reply {
            body,
            content_type: content_type.map(str::to_owned),
            control: None,
        }
    }

    /// Received with this `rpc-control` header.
    pub(crate) fn with_control(mut self, control: Option<String>) -> Reply {
        self.control = control;
        self
    }

    /// The `rpc-control` header of the reply, if it had one.
    pub(crate) fn control(&self) -> Option<&str> {
        self.control.as_deref()
    }

    /// The reply body as sent.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes the body.
    pub fn into_body(self) -> Vec<u8> {
        self.body
    }

    /// The body as text, with invalid UTF-8 replaced.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.body)
    }

    /// The `content_type` property of the reply, if the server set one.
    pub fn content_type(&self) -> Option<&str> {
        self.content_type.as_deref()
    }

    /// The body decoded by codec `C`, e.g. [`Json`](crate::codec::Json).
    ///
    /// # Errors
    /// The codec's, when the body is not a `T`.
    pub fn decode<C: Codec, T: serde::de::DeserializeOwned>(&self) -> Result<T, CodecError> {
        C::decode(&self.body)
    }
}
