//! What a call sends: bytes as they are, or a typed value a codec encodes
//! ([`RequestBody`]).

use std::borrow::Cow;

use serde::Serialize;

use crate::{
    Error,
    codec::{Codec, Encoded},
};

/// A request's body, as [`Client::call_with`](crate::Client::call_with)
/// takes it: any bytes as they are (`&str`, `String`, `&[u8]`, `Vec<u8>`,
/// …), or a typed value for a codec to encode
/// ([`Encoded`](crate::codec::Encoded), e.g. from
/// [`codec::json`](crate::codec::json)), sent with the codec's content
/// type.
pub trait RequestBody: sealed::Sealed {}

impl<T: AsRef<[u8]>> RequestBody for T {}
impl<C: Codec, T: Serialize + ?Sized> RequestBody for Encoded<'_, C, T> {}

pub(crate) mod sealed {
    use super::*;

    /// How a [`RequestBody`] becomes bytes and a content type: not for
    /// other crates to implement.
    pub trait Sealed {
        /// The bytes to send, and the content type they are in when the
        /// body knows it.
        fn bytes(&self) -> Result<(Cow<'_, [u8]>, Option<&'static str>), Error>;
    }

    impl<T: AsRef<[u8]>> Sealed for T {
        fn bytes(&self) -> Result<(Cow<'_, [u8]>, Option<&'static str>), Error> {
            Ok((Cow::Borrowed(self.as_ref()), None))
        }
    }

    impl<C: Codec, T: Serialize + ?Sized> Sealed for Encoded<'_, C, T> {
        fn bytes(&self) -> Result<(Cow<'_, [u8]>, Option<&'static str>), Error> {
            let body = C::encode(self.value()).map_err(|error| Error::InvalidRequest {
                reason: format!(
                    "the arguments do not encode as {}: {error}",
                    C::CONTENT_TYPE
                ),
            })?;
            Ok((Cow::Owned(body), Some(C::CONTENT_TYPE)))
        }
    }
}
