//! Every error variant formatted: a sentence, never a Rust `Debug` value.

extern crate std;

use std::string::{String, ToString};
use std::vec;
use std::vec::Vec;

use embedded_storage::nor_flash::NorFlashErrorKind;

use super::*;
use crate::wire::report_framing::FramingError;

/// What a `Debug` print gives away: braces, a variant name wrapped in parentheses, or a field
/// name followed by a colon.
fn assert_sentence(text: &str, debug: &str) {
    assert!(!text.is_empty(), "empty Display for {debug}");
    assert!(
        !text.contains('{') && !text.contains('}'),
        "{debug} prints braces: {text}"
    );
    assert_ne!(text, debug, "Display equals Debug: {text}");
    let variant = debug.split(['(', ' ', '{']).next().unwrap_or(debug);
    assert!(
        !text.contains(&std::format!("{variant}(")),
        "{debug} prints its variant name: {text}"
    );
    assert!(
        !text.split_whitespace().any(|w| w == variant),
        "{debug} prints its variant name: {text}"
    );
}

fn check<T: core::error::Error>(all: &[T]) -> Vec<String> {
    let texts: Vec<String> = all.iter().map(ToString::to_string).collect();
    for (e, t) in all.iter().zip(&texts) {
        assert_sentence(t, &std::format!("{e:?}"));
    }
    texts
}

fn distinct(texts: &[String]) {
    for (i, a) in texts.iter().enumerate() {
        for b in texts.iter().skip(i + 1) {
            assert_ne!(a, b, "two variants print the same sentence");
        }
    }
}

#[test]
fn config_errors() {
    distinct(&check(&[
        ConfigError::InvalidSiteCode,
        ConfigError::InvalidMpUrl,
        ConfigError::SchemeDoesNotMatchMode,
        ConfigError::InvalidHostName,
        ConfigError::Sha1NeedsRsa,
        ConfigError::UnknownSiteGeneration,
    ]));
}

#[test]
fn http_errors() {
    let all = [
        HttpError::InvalidHeaderValue,
        HttpError::InvalidHeaderName,
        HttpError::InvalidPath,
        HttpError::MalformedHead,
        HttpError::TooManyHeaders,
        HttpError::UnexpectedStatus,
        HttpError::InvalidContentLength,
        HttpError::ConflictingFraming,
        HttpError::UnsupportedTransferEncoding,
        HttpError::InvalidBoundary,
        HttpError::InvalidChunkSize,
        HttpError::ChunkSizeOverflow,
        HttpError::MalformedChunk,
        HttpError::UnexpectedEof,
        HttpError::too_large(4096),
        HttpError::ResponseTooLarge {
            buffer: 4096,
            at_least: Some(16384),
        },
    ];
    let texts = check(&all);
    distinct(&texts);
    assert!(HttpError::TooManyHeaders
        .to_string()
        .contains(&MAX_HEADERS.to_string()));
    // A size error names the sizes.
    assert!(texts[texts.len() - 1].contains("16384") && texts[texts.len() - 1].contains("4096"));
    assert!(texts[texts.len() - 2].contains("4096"));
    let nested = check(&[
        StreamError::Http(HttpError::MalformedHead),
        StreamError::Sink,
    ]);
    assert!(nested[0].ends_with(&HttpError::MalformedHead.to_string()));
}

#[test]
fn sign_and_cert_errors() {
    let sign = [SignError::Crypto, SignError::Device, SignError::Unsupported];
    distinct(&check(&sign));
    let cert = check(&[
        CertError::BufferTooSmall,
        CertError::Encoding,
        CertError::InvalidName,
        CertError::InvalidValidity,
        CertError::InvalidSerial,
        CertError::InvalidKey,
        CertError::Malformed,
        CertError::Unsupported,
        CertError::Sign(SignError::Device),
    ]);
    distinct(&cert);
    // The validity limit prints as a date, not as seconds since 1970.
    assert!(cert[3].contains("9999-12-31"), "{}", cert[3]);
    assert!(cert[2].contains(&MAX_COMMON_NAME_LEN.to_string()));
    distinct(&check(&[
        RsaKeyError::Malformed,
        RsaKeyError::NotRsa,
        RsaKeyError::Unsupported,
        RsaKeyError::Inconsistent,
        RsaKeyError::BufferTooSmall,
        RsaKeyError::Generation,
    ]));
    let payload = check(&[
        PayloadSignError::Body,
        PayloadSignError::Sign(SignError::Crypto),
    ]);
    assert!(payload[1].ends_with(&SignError::Crypto.to_string()));
    distinct(&check(&[
        BuildError::Sign(SignError::Crypto),
        BuildError::Overflow,
    ]));
}

#[test]
fn store_errors() {
    let all: Vec<StoreError<RamFlashError>> = vec![
        StoreError::Flash(RamFlashError::NotErased),
        StoreError::Layout,
        StoreError::QueueFull,
        StoreError::TooLarge,
        StoreError::NotHead,
        StoreError::BufferTooSmall,
        StoreError::BodyChanged,
        StoreError::IdentityTooLarge,
        StoreError::UnknownVersion(7),
        StoreError::Corrupt,
        StoreError::Exhausted,
    ];
    let texts = check(&all);
    distinct(&texts);
    assert!(texts[8].contains("version 7"), "{}", texts[8]);
    distinct(&check(&[
        RamFlashError::NotAligned,
        RamFlashError::OutOfBounds,
        RamFlashError::NotErased,
    ]));
    distinct(&check(&[
        FaultError::PowerLost,
        FaultError::Flash(RamFlashError::OutOfBounds),
    ]));
    distinct(&check(&[
        BodyFault::Flash(NorFlashErrorKind::NotAligned),
        BodyFault::Corrupt,
        BodyFault::Busy,
    ]));
}

#[test]
fn reply_and_xml_errors() {
    let xml_kinds = [
        XmlErrorKind::UnexpectedEof,
        XmlErrorKind::Doctype,
        XmlErrorKind::UnsupportedMarkup,
        XmlErrorKind::UnknownEntity,
        XmlErrorKind::BadReference,
        XmlErrorKind::InvalidChar,
        XmlErrorKind::InvalidName,
        XmlErrorKind::MalformedTag,
        XmlErrorKind::DuplicateAttribute,
        XmlErrorKind::TooManyAttributes,
        XmlErrorKind::MismatchedEndTag,
        XmlErrorKind::UnexpectedEndTag,
        XmlErrorKind::TooDeep,
        XmlErrorKind::ContentOutsideRoot,
        XmlErrorKind::NoRoot,
        XmlErrorKind::MalformedComment,
        XmlErrorKind::UnexpectedElement,
        XmlErrorKind::BufferTooSmall,
    ];
    distinct(&check(&xml_kinds));
    let at = XmlError::new(XmlErrorKind::Doctype, 42);
    assert!(at.to_string().ends_with("at byte 42"), "{at}");
    let xml = check(&[at]);
    let utf16 = check(&[
        Utf16Error::OddLength,
        Utf16Error::UnpairedSurrogate { offset: 6 },
        Utf16Error::BufferTooSmall,
    ]);
    assert!(utf16[1].contains("byte 6"), "{}", utf16[1]);
    let replies = [
        ReplyError::Empty,
        ReplyError::NoBoundary,
        ReplyError::MissingDelimiter,
        ReplyError::MalformedMultipart,
        ReplyError::MissingCloseDelimiter,
        ReplyError::PartCount,
        ReplyError::UnexpectedPartType,
        ReplyError::Utf16(Utf16Error::OddLength),
        ReplyError::Xml(at),
        ReplyError::WrongRoot,
        ReplyError::BadBodyLength,
        ReplyError::BadCorrelationId,
        ReplyError::PayloadTruncated,
        ReplyError::Compressed,
        ReplyError::MissingStatus,
        ReplyError::BadStatus,
        ReplyError::BadSmsid,
        ReplyError::MissingSmsid,
        ReplyError::BadApprovalStatus,
        ReplyError::BufferTooSmall,
    ];
    let texts = check(&replies);
    distinct(&texts);
    assert!(texts[8].ends_with(&xml[0]));
    let policy = check(&[
        PolicyError::Reply(ReplyError::Empty),
        PolicyError::Xml(at),
        PolicyError::WrongRoot,
        PolicyError::MissingPolicy,
        PolicyError::MissingPolicyId,
        PolicyError::MissingPolicyVersion,
        PolicyError::BadPolicyFlags,
        PolicyError::MissingLocation,
        PolicyError::BadPolicyHash,
    ]);
    distinct(&policy);
    distinct(&check(&[FramingError::NoReportHeader, FramingError::Emit]));
    check(&[crate::sink::Overflow]);
    distinct(&check(&[
        LocationError::NotHttp,
        LocationError::ForeignHost,
        LocationError::BadPath,
        LocationError::TooLong,
    ]));
}
