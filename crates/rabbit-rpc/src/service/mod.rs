//! Services: a named set of procedures, one queue each.
//!
//! A [`Service`] named `s` puts its method `m` on the queue `s.m`: one
//! queue per procedure, so each has its own prefetch and limits, shows in
//! the management UI, and any tutorial client in any language can call it
//! by sending JSON to that queue. The [`service`](crate::service) attribute
//! generates a service, its typed client and its server adapter from one
//! trait; a `Service` can also be put together by hand.

use crate::{Handler, Procedure};

/// A named set of procedures, added to a server with
/// [`ServerBuilder::add_service`](crate::ServerBuilder::add_service).
///
/// ```
/// use rabbit_rpc::{typed_fn, Context, Service, Status};
///
/// let service = Service::new("calculator")
///     .procedure("add", typed_fn(|_context: Context, (a, b): (i64, i64)| async move {
///         Ok::<_, Status>(a + b)
///     }))
///     .configure("add", |procedure| procedure.prefetch(32));
/// assert_eq!(Service::queue_of("calculator", "add"), "calculator.add");
/// # let _ = service;
/// ```
#[derive(Debug)]
pub struct Service {
    name: String,
    procedures: Vec<(String, Procedure)>,
}

impl Service {
    /// An empty service named `name`.
    pub fn new(name: impl Into<String>) -> Service {
        Service {
            name: name.into(),
            procedures: Vec::new(),
        }
    }

    /// The queue of method `method` of service `service`: `service.method`.
    pub fn queue_of(service: &str, method: &str) -> String {
        format!("{service}.{method}")
    }

    /// The service's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Adds method `method`, answered by `handler` on the queue
    /// `name.method`.
    pub fn procedure(mut self, method: &str, handler: impl Handler) -> Service {
        let queue = Service::queue_of(&self.name, method);
        self.procedures
            .push((method.to_owned(), Procedure::new(queue, handler)));
        self
    }

    /// Changes the settings of method `method` (prefetch, concurrency,
    /// limits, queue settings). A method the service does not have is
    /// ignored.
    pub fn configure(mut self, method: &str, f: impl FnOnce(Procedure) -> Procedure) -> Service {
        if let Some(index) = self.procedures.iter().position(|(m, _)| m == method) {
            let (method, procedure) = self.procedures.remove(index);
            self.procedures.insert(index, (method, f(procedure)));
        }
        self
    }

    /// The methods' names, in the order they were added.
    pub fn methods(&self) -> impl Iterator<Item = &str> {
        self.procedures.iter().map(|(method, _)| method.as_str())
    }

    pub(crate) fn into_procedures(self) -> impl Iterator<Item = Procedure> {
        self.procedures.into_iter().map(|(_, procedure)| procedure)
    }
}
