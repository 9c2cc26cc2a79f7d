//! Pure wire formats (smoltcp `wire/` style): each message is a plain struct that emits itself
//! into a [`crate::sink::Sink`], and inbound types parse from bytes. No IO, no time, no allocation.
//!
//! Outbound: [`xml`] (writer, UTF-16LE on the fly), [`multipart`] (the two-part envelope),
//! [`header`] (`<Msg>`), [`registration`] (`ClientRegistrationRequest`), [`clientauth`] (the
//! signing hook of later messages), [`report`] (discovery, hardware inventory), [`state_message`],
//! [`status`], [`policy`] (`RequestAssignments`, and the `ReplyAssignments` parser).
//! Inbound: [`utf16`], [`xml_reader`] (bounded tokenizer), [`reply`] (envelope + reply bodies).

pub mod clientauth;
pub mod header;
pub mod multipart;
pub mod policy;
pub mod registration;
pub mod reply;
pub mod report;
pub mod report_framing;
pub mod state_message;
pub mod status;
pub mod utf16;
pub mod xml;
pub mod xml_reader;
