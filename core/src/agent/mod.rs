//! The sans-IO agent: state machines that are handed `now` and parsed replies and answer with
//! the next action. [`registration`] owns the registration life cycle; [`outbound`] composes a
//! message into the HTTP request that carries it; [`signed`] does so for messages after
//! registration (`clientauth` hook); [`messages`] routes bodies and builds policy body `GET`s.

pub mod lifecycle;
pub mod messages;
pub mod outbound;
pub mod registration;
pub mod signed;
pub mod smsid_rewrite;
