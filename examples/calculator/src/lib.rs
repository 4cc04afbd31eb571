//! An example service for rabbit-rpc: a calculator, defined once for its
//! server and its clients.
//!
//! `Calculator` is the service: each method is a procedure on its own queue
//! (`calculator.add`, `calculator.divide`, …), taking and returning JSON,
//! so a client in any language can call it. [`Arithmetic`] implements it.
//! `src/bin/server.rs` serves it; `src/bin/client.rs` calls it; the tests in
//! `tests/` check the handlers on the in-memory broker, with no RabbitMQ.
//!
//! `#[rabbit_rpc::service(schema)]` makes each procedure describe itself
//! with the JSON Schemas of its argument and result (`rabbit-rpc describe
//! --queue calculator.add`): their types derive `JsonSchema` beside serde's
//! derives, through rabbit-rpc's re-export of schemars (feature `schema`),
//! so this crate does not depend on schemars itself.

use rabbit_rpc::{Context, JsonSchema, Status};
use serde::{Deserialize, Serialize};

/// Two numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "rabbit_rpc::schemars")]
pub struct Operands {
    /// The first.
    pub a: i64,
    /// The second.
    pub b: i64,
}

/// A quotient and its remainder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[schemars(crate = "rabbit_rpc::schemars")]
pub struct Division {
    /// `a / b`, rounded toward zero.
    pub quotient: i64,
    /// `a % b`.
    pub remainder: i64,
}

/// The details of an error about one operand: which, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BadOperand {
    /// `a` or `b`.
    pub operand: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Integer arithmetic that never overflows silently.
#[rabbit_rpc::service(schema)]
pub trait Calculator {
    /// `a + b`; `invalid_argument` if it overflows.
    async fn add(&self, operands: Operands) -> Result<i64, Status>;

    /// `a / b` and `a % b`; `invalid_argument` with [`BadOperand`] details
    /// when `b` is zero.
    async fn divide(&self, operands: Operands) -> Result<Division, Status>;

    /// The sum of a list; `invalid_argument` if it overflows.
    async fn sum(&self, numbers: Vec<i64>) -> Result<i64, Status>;

    /// Says hello to the caller named in the `user` metadata, or gives up
    /// when the caller's deadline is too close.
    async fn greet(&self, context: Context) -> Result<String, Status>;
}

/// The calculator's implementation.
#[derive(Debug, Clone, Copy, Default)]
pub struct Arithmetic;

impl Calculator for Arithmetic {
    async fn add(&self, operands: Operands) -> Result<i64, Status> {
        operands
            .a
            .checked_add(operands.b)
            .ok_or_else(|| Status::invalid_argument("a + b overflows a 64-bit integer"))
    }

    async fn divide(&self, operands: Operands) -> Result<Division, Status> {
        if operands.b == 0 {
            return Err(
                Status::invalid_argument("cannot divide by zero").with_details(&BadOperand {
                    operand: "b".to_owned(),
                    reason: "is zero".to_owned(),
                }),
            );
        }
        match (
            operands.a.checked_div(operands.b),
            operands.a.checked_rem(operands.b),
        ) {
            (Some(quotient), Some(remainder)) => Ok(Division {
                quotient,
                remainder,
            }),
            _ => Err(Status::invalid_argument("a / b overflows a 64-bit integer")),
        }
    }

    async fn sum(&self, numbers: Vec<i64>) -> Result<i64, Status> {
        numbers
            .iter()
            .try_fold(0_i64, |sum, n| sum.checked_add(*n))
            .ok_or_else(|| Status::invalid_argument("the sum overflows a 64-bit integer"))
    }

    async fn greet(&self, context: Context) -> Result<String, Status> {
        if context
            .remaining()
            .is_some_and(|left| left < std::time::Duration::from_millis(10))
        {
            return Err(Status::deadline_exceeded("no time left to greet"));
        }
        let user = context.metadata().get("user").unwrap_or("stranger");
        Ok(format!("hello, {user}"))
    }
}
