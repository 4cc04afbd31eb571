//! The one vocabulary of outcomes shared by client, server, CLI and docs.

use std::fmt;

/// What happened to a call, as a machine-readable code.
///
/// The code travels on the wire as its [`Code::as_str`] name in the
/// `rpc-status` header of a reply (see `docs/PROTOCOL.md`). The client maps
/// its own failures (timeouts, unroutable requests, lost connections) onto the
/// same codes, so callers can branch on one enum whatever the failure's origin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Code {
    /// The call succeeded.
    Ok,
    /// The caller gave up on the call (cancelled it).
    Cancelled,
    /// The request was malformed or its arguments were out of range; retrying
    /// the same request will fail the same way.
    InvalidArgument,
    /// The deadline passed before the call completed.
    DeadlineExceeded,
    /// The request named something that does not exist (for example a queue
    /// no server declared).
    NotFound,
    /// What the request would create exists already.
    AlreadyExists,
    /// A limit was hit (for example the request body is too large).
    ResourceExhausted,
    /// The caller is known but may not do this (a broker's `ACCESS_REFUSED`,
    /// a server's caller policy).
    PermissionDenied,
    /// The caller is not known: a login the broker refused, or a request
    /// that names no caller where one is required.
    Unauthenticated,
    /// The system is not in a state that allows this as asked (a queue
    /// setting the broker refuses, a queue held by another connection);
    /// retrying unchanged will fail the same way.
    FailedPrecondition,
    /// The operation was aborted by a conflict (a concurrent change, a lost
    /// transaction); retrying the whole sequence may succeed.
    Aborted,
    /// A value outside the range that is valid now (past the end of a list,
    /// more than is in stock); unlike `invalid_argument`, it may become valid.
    OutOfRange,
    /// The service cannot be reached right now; retrying later may succeed.
    Unavailable,
    /// The server does not implement what was asked.
    Unimplemented,
    /// The server failed while handling the request (a bug or a panic).
    Internal,
    /// Data was lost or corrupted beyond recovery.
    DataLoss,
    /// A code this version does not know, received from a peer.
    Unknown,
}

impl Code {
    /// Every code, in [`Code::index`] order.
    pub(crate) const ALL: [Code; 17] = [
        Code::Ok,
        Code::Cancelled,
        Code::Unknown,
        Code::InvalidArgument,
        Code::DeadlineExceeded,
        Code::NotFound,
        Code::AlreadyExists,
        Code::PermissionDenied,
        Code::ResourceExhausted,
        Code::FailedPrecondition,
        Code::Aborted,
        Code::OutOfRange,
        Code::Unimplemented,
        Code::Internal,
        Code::Unavailable,
        Code::DataLoss,
        Code::Unauthenticated,
    ];

    /// The code's place in [`Code::ALL`].
    pub(crate) fn index(self) -> usize {
        match self {
            Code::Ok => 0,
            Code::Cancelled => 1,
            Code::Unknown => 2,
            Code::InvalidArgument => 3,
            Code::DeadlineExceeded => 4,
            Code::NotFound => 5,
            Code::AlreadyExists => 6,
            Code::PermissionDenied => 7,
            Code::ResourceExhausted => 8,
            Code::FailedPrecondition => 9,
            Code::Aborted => 10,
            Code::OutOfRange => 11,
            Code::Unimplemented => 12,
            Code::Internal => 13,
            Code::Unavailable => 14,
            Code::DataLoss => 15,
            Code::Unauthenticated => 16,
        }
    }

    /// The code's name on the wire, e.g. `"invalid_argument"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Ok => "ok",
            Code::Cancelled => "cancelled",
            Code::AlreadyExists => "already_exists",
            Code::Aborted => "aborted",
            Code::OutOfRange => "out_of_range",
            Code::DataLoss => "data_loss",
            Code::InvalidArgument => "invalid_argument",
            Code::DeadlineExceeded => "deadline_exceeded",
            Code::NotFound => "not_found",
            Code::ResourceExhausted => "resource_exhausted",
            Code::PermissionDenied => "permission_denied",
            Code::Unauthenticated => "unauthenticated",
            Code::FailedPrecondition => "failed_precondition",
            Code::Unavailable => "unavailable",
            Code::Unimplemented => "unimplemented",
            Code::Internal => "internal",
            Code::Unknown => "unknown",
        }
    }

    /// Parses a wire name; names this version does not know become
    /// [`Code::Unknown`].
    pub fn from_wire(name: &str) -> Code {
        match name {
            "ok" => Code::Ok,
            "cancelled" => Code::Cancelled,
            "already_exists" => Code::AlreadyExists,
            "aborted" => Code::Aborted,
            "out_of_range" => Code::OutOfRange,
            "data_loss" => Code::DataLoss,
            "invalid_argument" => Code::InvalidArgument,
            "deadline_exceeded" => Code::DeadlineExceeded,
            "not_found" => Code::NotFound,
            "resource_exhausted" => Code::ResourceExhausted,
            "permission_denied" => Code::PermissionDenied,
            "unauthenticated" => Code::Unauthenticated,
            "failed_precondition" => Code::FailedPrecondition,
            "unavailable" => Code::Unavailable,
            "unimplemented" => Code::Unimplemented,
            "internal" => Code::Internal,
            _ => Code::Unknown,
        }
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An error outcome that crosses the wire: a [`Code`], a human message,
/// and optionally structured details.
///
/// Handlers return it to fail a call; the client hands it back inside
/// [`Error::Remote`](crate::Error::Remote). The code travels in the
/// `rpc-status` header, the message as the body (so a tutorial client sees
/// it as the reply), and the details as JSON in the `rpc-error-details`
/// header.
///
/// ```
/// use rabbit_rpc::Status;
///
/// #[derive(serde::Serialize, serde::Deserialize, Debug, PartialEq)]
/// struct Range { min: u64, max: u64 }
///
/// let status = Status::invalid_argument("n is out of range")
///     .with_details(&Range { min: 0, max: 100 });
/// assert_eq!(status.details_json(), Some(r#"{"min":0,"max":100}"#));
/// let range: Option<Range> = status.details()?;
/// assert_eq!(range, Some(Range { min: 0, max: 100 }));
/// assert_eq!(Status::internal("no details").details::<Range>()?, None);
/// # Ok::<(), rabbit_rpc::codec::CodecError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    code: Code,
    message: String,
    /// JSON text.
    details: Option<String>,
    /// The `rpc-control` header of the error reply this came from, if any:
    /// a control request a rabbit-rpc server refused, not a handler's error
    /// (see [`Client::ping`](crate::Client::ping)).
    control: Option<String>,
}

impl Status {
    /// A status with the given code and message.
    pub fn new(code: Code, message: impl Into<String>) -> Status {
        Status {
            code,
            message: message.into(),
            details: None,
            control: None,
        }
    }

    /// This status with `details`, encoded as JSON, for the caller to read
    /// with [`Status::details`]. Details that do not encode (a map with
    /// non-string keys, say) are left out, with a note in the message.
    pub fn with_details<T: serde::Serialize + ?Sized>(mut self, details: &T) -> Status {
        match serde_json::to_string(details) {
            Ok(json) => self.details = Some(json),
            Err(error) => {
                self.message = format!("{} (details left out: {error})", self.message);
            }
        }
        self
    }

    /// The details, decoded as a `T`: `Ok(None)` when there are none.
    ///
    /// # Errors
    /// [`CodecError`](crate::codec::CodecError) when there are details but
    /// they are not a valid `T` (the server sent another type, say); the
    /// text as sent is still in [`Status::details_json`].
    pub fn details<T: serde::de::DeserializeOwned>(
        &self,
    ) -> Result<Option<T>, crate::codec::CodecError> {
        use crate::codec::Codec;
        self.details
            .as_deref()
            .map(|json| crate::codec::Json::decode(json.as_bytes()))
            .transpose()
    }

    /// The details as the JSON text that crossed the wire.
    pub fn details_json(&self) -> Option<&str> {
        self.details.as_deref()
    }

    /// Details received from the wire (JSON text, as sent).
    pub(crate) fn with_details_json(mut self, json: Option<String>) -> Status {
        self.details = json;
        self
    }

    /// Received with this `rpc-control` header.
    pub(crate) fn with_control(mut self, control: Option<String>) -> Status {
        self.control = control;
        self
    }

    /// The `rpc-control` header of the error reply, if it had one.
    pub(crate) fn control(&self) -> Option<&str> {
        self.control.as_deref()
    }

    /// [`Code::InvalidArgument`]: the request itself is wrong.
    pub fn invalid_argument(message: impl Into<String>) -> Status {
        Status::new(Code::InvalidArgument, message)
    }

    /// [`Code::DeadlineExceeded`]: the caller's deadline has passed.
    pub fn deadline_exceeded(message: impl Into<String>) -> Status {
        Status::new(Code::DeadlineExceeded, message)
    }

    /// [`Code::ResourceExhausted`]: a limit was hit.
    pub fn resource_exhausted(message: impl Into<String>) -> Status {
        Status::new(Code::ResourceExhausted, message)
    }

    /// [`Code::Cancelled`]: the caller gave up.
    pub fn cancelled(message: impl Into<String>) -> Status {
        Status::new(Code::Cancelled, message)
    }

    /// [`Code::NotFound`]: nothing by that name.
    pub fn not_found(message: impl Into<String>) -> Status {
        Status::new(Code::NotFound, message)
    }

    /// [`Code::AlreadyExists`]: it exists already.
    pub fn already_exists(message: impl Into<String>) -> Status {
        Status::new(Code::AlreadyExists, message)
    }

    /// [`Code::Aborted`]: a conflict; retry the whole sequence.
    pub fn aborted(message: impl Into<String>) -> Status {
        Status::new(Code::Aborted, message)
    }

    /// [`Code::OutOfRange`]: outside what is valid now.
    pub fn out_of_range(message: impl Into<String>) -> Status {
        Status::new(Code::OutOfRange, message)
    }

    /// [`Code::DataLoss`]: data lost or corrupted.
    pub fn data_loss(message: impl Into<String>) -> Status {
        Status::new(Code::DataLoss, message)
    }

    /// [`Code::PermissionDenied`]: the caller may not do this.
    pub fn permission_denied(message: impl Into<String>) -> Status {
        Status::new(Code::PermissionDenied, message)
    }

    /// [`Code::Unauthenticated`]: the caller is not known.
    pub fn unauthenticated(message: impl Into<String>) -> Status {
        Status::new(Code::Unauthenticated, message)
    }

    /// [`Code::FailedPrecondition`]: not possible in the present state.
    pub fn failed_precondition(message: impl Into<String>) -> Status {
        Status::new(Code::FailedPrecondition, message)
    }

    /// [`Code::Unavailable`]: try again later.
    pub fn unavailable(message: impl Into<String>) -> Status {
        Status::new(Code::Unavailable, message)
    }

    /// [`Code::Unimplemented`]: the server does not do that.
    pub fn unimplemented(message: impl Into<String>) -> Status {
        Status::new(Code::Unimplemented, message)
    }

    /// [`Code::Internal`]: the server failed.
    pub fn internal(message: impl Into<String>) -> Status {
        Status::new(Code::Internal, message)
    }

    /// The code.
    pub fn code(&self) -> Code {
        self.code
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl std::error::Error for Status {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip_and_indexes_match() {
        for (index, code) in Code::ALL.into_iter().enumerate() {
            assert_eq!(Code::from_wire(code.as_str()), code);
            assert_eq!(code.index(), index);
        }
    }

    #[test]
    fn unknown_names_map_to_unknown() {
        assert_eq!(Code::from_wire("teapot"), Code::Unknown);
        assert_eq!(Code::from_wire(""), Code::Unknown);
    }

    #[test]
    fn display_shows_code_and_message() {
        let status = Status::invalid_argument("n must be at least 0");
        assert_eq!(status.to_string(), "invalid_argument: n must be at least 0");
    }
}
