//! A typed value on its way to being a request body: [`Encoded`].

use std::marker::PhantomData;

use serde::Serialize;

use super::{Codec, Json};

/// A typed value, encoded by codec `C` when the call is made.
///
/// ```no_run
/// # async fn example(client: rabbit_rpc::Client) -> Result<(), Box<dyn std::error::Error>> {
/// use rabbit_rpc::{CallOptions, codec::{Encoded, Json}};
/// use std::time::Duration;
///
/// #[derive(serde::Serialize)]
/// struct Add { a: i64, b: i64 }
/// let options = CallOptions::new().timeout(Duration::from_secs(1));
/// let reply = client
///     .call_with("calculator.add", Encoded::<Json, _>::new(&Add { a: 2, b: 3 }), &options)
///     .await?;
/// let sum: i64 = reply.decode::<Json, _>()?;
/// # Ok(()) }
/// ```
pub struct Encoded<'a, C, T: ?Sized> {
    value: &'a T,
    _codec: PhantomData<fn() -> C>,
}

impl<'a, C: Codec, T: Serialize + ?Sized> Encoded<'a, C, T> {
    /// `value`, to be encoded by `C`.
    pub fn new(value: &'a T) -> Encoded<'a, C, T> {
        Encoded {
            value,
            _codec: PhantomData,
        }
    }
}

impl<C, T: ?Sized> Encoded<'_, C, T> {
    /// The value.
    pub(crate) fn value(&self) -> &T {
        self.value
    }
}

impl<C, T: ?Sized> std::fmt::Debug for Encoded<'_, C, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoded")
            .field("codec", &std::any::type_name::<C>())
            .field("value", &std::any::type_name::<T>())
            .finish()
    }
}

/// `value` as a JSON request body: `Encoded::<Json, _>::new(value)`.
pub fn json<T: Serialize + ?Sized>(value: &T) -> Encoded<'_, Json, T> {
    Encoded::new(value)
}
