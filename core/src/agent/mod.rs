//! The sans-IO agent: state machines that are handed `now` and parsed replies and answer with
//! the next action. [`registration`] owns the registration life cycle; [`outbound`] composes a
//! message into the HTTP request that carries it.

pub mod outbound;
pub mod registration;
