//! The client's side of the fuzz targets (see `crate::fuzzing`): what a
//! call does with a reply's properties and body, without a broker.

use std::time::Duration;

use super::control::{decode_description, decode_ping};
use crate::{
    codec::{Codec, Json},
    protocol,
    transport::Properties,
};

pub(crate) fn fuzz_reply(properties: &Properties, body: Vec<u8>) {
    let _ = properties.correlation_id();
    match protocol::decode_reply(properties, body) {
        Ok(reply) => {
            let _ = reply.text();
            let _ = Json::decode::<serde_json::Value>(reply.body());
            let _ = decode_ping("fuzz", reply.body(), Duration::ZERO);
            let _ = decode_description("fuzz", reply.body());
        }
        Err(status) => {
            let _ = status.details::<serde_json::Value>();
            let _ = status.to_string();
        }
    }
}
