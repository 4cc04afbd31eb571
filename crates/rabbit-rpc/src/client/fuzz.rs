//! The client's side of the fuzz targets (see `crate::fuzzing`): what a
//! call does with a reply's properties and body, without a broker.

use std::time::Duration;

use super::control::{decode_description, decode_ping};
use crate::{
    Code,
    codec::{Codec, Json},
    protocol::{self, STATUS_HEADER},
    transport::{Header, Properties},
};

pub(crate) fn fuzz_reply(properties: &Properties, body: Vec<u8>) {
    let _ = properties.correlation_id();
    // A success needs a status that says so, or none: a reply whose
    // rpc-status is of the wrong type was once read as a success.
    let says_ok = match properties.header(STATUS_HEADER) {
        None => true,
        Some(Header::Text(name)) => Code::from_wire(&name) == Code::Ok,
        Some(_) => false,
    };
    match protocol::decode_reply(properties, body) {
        Ok(reply) => {
            assert!(
                says_ok,
                "a reply whose status is not ok was read as a success"
            );
            let _ = reply.text();
            let _ = Json::decode::<serde_json::Value>(reply.body());
            let _ = decode_ping("fuzz", reply.body(), Duration::ZERO);
            let _ = decode_description("fuzz", reply.body());
        }
        Err(status) => {
            assert!(!says_ok, "a reply that says ok was read as an error");
            let _ = status.details::<serde_json::Value>();
            let _ = status.to_string();
        }
    }
}
