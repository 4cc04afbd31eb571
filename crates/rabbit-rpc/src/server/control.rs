//! Control requests: those a server answers itself, for any procedure,
//! without running its handler: `ping` (which instance answers, its
//! version, whether it is serving or draining) and `describe` (what the
//! procedure takes and returns). A request is one when it carries the
//! header [`CONTROL_HEADER`]; see `docs/PROTOCOL.md`.
//!
//! A control request goes through the same checks as any request until its
//! `reply_to` is known to be answerable (present, not the request queue,
//! allowed, its caller still there), then is answered from here: no
//! deadline check, no handler, nothing counted in [`ServerStats`](crate::ServerStats).
//! It waits for a handler slot like any request, so a ping's round trip
//! shows how long a request waits for one.

use tracing::{debug, warn};

use super::{
    about::VERSION,
    reply::{Origin, ack, publish, reject},
    running::Running,
};
use crate::{
    Code, Status,
    codec::{Codec, Json},
    protocol::{self, CONTROL_DESCRIBE, CONTROL_HEADER, CONTROL_PING, ERROR_CONTENT_TYPE},
    transport::{Acker, Confirmed, HeaderValue, Properties},
};

impl Running {
    /// Answers the control request `control` (a request whose `reply_to`
    /// passed the checks), then acknowledges it. Nothing is counted.
    pub(super) async fn answer_control(
        &self,
        control: &str,
        properties: &Properties,
        body: &[u8],
        reply_to: &str,
        acker: &Acker,
        origin: &Origin,
    ) {
        let answer = self.check(properties, body).and_then(|()| match control {
            CONTROL_PING => Ok(self.ping()),
            CONTROL_DESCRIBE => Ok(self.control.description.clone()),
            other => Err(Status::unimplemented(format!(
                "unknown control request '{other}' ({CONTROL_HEADER}); this server (rabbit-rpc \
                 {VERSION}) answers '{CONTROL_PING}' and '{CONTROL_DESCRIBE}'"
            ))),
        });
        let (code, content_type, body) = match answer {
            Ok(json) => (Code::Ok, Json::CONTENT_TYPE, json),
            Err(status) => (
                status.code(),
                ERROR_CONTENT_TYPE,
                status.message().as_bytes().to_vec(),
            ),
        };
        let mut message = protocol::reply(
            protocol::request_id(properties),
            code,
            Some(content_type),
            None,
        );
        message
            .headers
            .push((CONTROL_HEADER, HeaderValue::Text(control)));
        let confirmed = publish(&self.queue, origin, reply_to, &message, &body).await;
        match confirmed {
            Some(Confirmed::Taken | Confirmed::Returned) => {
                debug!(queue = %self.queue, control, "answered a control request");
                ack(acker, &origin.lost).await;
            }
            Some(Confirmed::Refused) => {
                warn!(queue = %self.queue, %reply_to, "the broker refused the reply to a control request; dropping it");
                reject(acker, &origin.lost).await;
            }
            None => {}
        }
    }

    /// The `ping` reply: who answers, and how it is doing now.
    fn ping(&self) -> Vec<u8> {
        self.control.ping(
            &self.queue,
            self.shared.draining.is_cancelled(),
            self.permits.available_permits(),
        )
    }
}
