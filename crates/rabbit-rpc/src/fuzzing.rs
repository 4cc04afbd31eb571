//! Entry points for the fuzz targets in `fuzz/` (`cargo fuzz`; see
//! `scripts/fuzz.sh`), compiled only with `--cfg fuzzing`, as `cargo fuzz`
//! builds: never part of the API.
//!
//! Each takes bytes as a broker hands a message over: an AMQP 0-9-1
//! content header's property list (flags, then the fields they name,
//! headers table included), and after it the body. Bytes that are not a
//! property list are skipped, as lapin would close the connection on them.

use crate::transport::Properties;

/// A request as a server reads it: every step it takes on the request's
/// properties and body before and after its handler, with a typed handler
/// that decodes JSON.
pub fn request(data: &[u8]) {
    if let Some((properties, body)) = message(data) {
        crate::server::fuzz::fuzz_request(&properties, body);
    }
}

/// A reply as a client reads it: its status, details, control header and
/// body as a typed, ping or describe call decodes them.
pub fn reply(data: &[u8]) {
    if let Some((properties, body)) = message(data) {
        crate::client::fuzz::fuzz_reply(&properties, body);
    }
}

fn message(data: &[u8]) -> Option<(Properties, Vec<u8>)> {
    let (body, properties) = lapin::protocol::basic::parse_properties(data).ok()?;
    Some((Properties::Amqp(properties), body.to_vec()))
}
