//! The `clientauth` hook every message after registration carries in its `<Msg>` header
//! (docs/protocol.md §5):
//!
//! ```text
//! <Hook2 Name="clientauth">
//!   <Property Name="AuthSenderMachine">{host}</Property>
//!   <Property Name="PublicKey">{signing certificate DER, hex upper}</Property>
//!   <Property Name="ClientIDSignature">{signature over UTF-16LE("GUID:{SMSID upper}") + 00 00}</Property>
//!   <Property Name="PayloadSignature">{signature over the octet-stream part exactly as sent}</Property>
//!   <Property Name="ClientCapabilities">NonSSL</Property>
//!   <Property Name="HashAlgorithm">{oid}</Property>
//!   [<Property Name="ProxySMSID">GUID:{proxy}</Property>]        ([profile], ISV proxies only)
//! </Hook2>
//! ```
//!
//! - [`ClientIdSignature`] depends only on the key and the SMSID (both signature schemes are
//!   deterministic), so it is computed once per identity and kept by the caller.
//! - [`payload_signature`] hashes [`OctetPart`] — the body, its UTF-16 NUL and the CRLF, exactly
//!   the bytes of the octet-stream part — in one emission pass, and counts the body on the way.
//! - Signing is separate from naming: the key that signs (a client's own, or an ISV proxy's) is
//!   the caller's [`Signer`]; the SMSID that `ClientIDSignature` covers is the message's
//!   `SourceID`. A proxy therefore signs the *client's* SMSID with *its* key and adds
//!   `ProxySMSID` ([profile], see [`crate::profile::CLIENTAUTH_PROXY_SMSID_PROPERTY`]).

use crate::config::SignatureHash;
use crate::guid::Smsid;
use crate::profile;
use crate::sign::hash::{digest_of, sign_digest, Digest, DigestSink};
use crate::sign::{SignError, SignatureBytes, Signer};
use crate::sink::{Emit, Overflow, Sink};
use crate::wire::multipart::{AttachedOctetPart, OctetPart};
use crate::wire::xml::{markup, raw, Escaping, XmlWriter};

/// `ClientCapabilities` of a client talking plain HTTP (docs/protocol.md §5, confirmed).
pub const CLIENT_CAPABILITIES_NON_SSL: &str = "NonSSL";

/// Emits `text` as UTF-16LE followed by a UTF-16 NUL: the input of `ClientIDSignature` and of
/// the policy `ClientTokenSignature` (docs/protocol.md §5). Only meant for ASCII-safe tokens; any text works.
#[derive(Clone, Copy)]
pub struct Utf16z<'a>(pub &'a str);

impl Emit for Utf16z<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        XmlWriter::with(out, |w| {
            w.raw(self.0)?;
            w.nul()
        })
    }
}

/// Sign UTF-16LE(`text`) + `00 00` with the signer's hash (ClientIDSignature,
/// ClientTokenSignature).
pub fn sign_utf16z(signer: &dyn Signer, text: &str) -> Result<SignatureBytes, SignError> {
    // The hashing sink never refuses bytes.
    let digest =
        digest_of(signer.signature_hash(), &Utf16z(text)).map_err(|_| SignError::Crypto)?;
    sign_digest(signer, &digest)
}

/// `ClientIDSignature`: the signature over UTF-16LE(`"GUID:{SMSID upper}"`) + `00 00`, made with
/// the key that signs the messages. Deterministic per (key, SMSID): compute it once after
/// registration and keep it (it can be persisted with [`ClientIdSignature::from_parts`]).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct ClientIdSignature {
    smsid: Smsid,
    signature: SignatureBytes,
}

impl core::fmt::Debug for ClientIdSignature {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ClientIdSignature({}, {:?})", self.smsid, self.signature)
    }
}

impl ClientIdSignature {
    /// Sign `smsid` (the message's `SourceID`) with `signer`. For an ISV proxy acting for a client,
    /// `signer` is the proxy's key and `smsid` the client's ([profile]).
    pub fn compute(signer: &dyn Signer, smsid: Smsid) -> Result<Self, SignError> {
        let text = smsid.to_text();
        let text = core::str::from_utf8(&text).map_err(|_| SignError::Crypto)?;
        Ok(Self {
            smsid,
            signature: sign_utf16z(signer, text)?,
        })
    }

    /// Restore a kept signature (e.g. read back from storage). Not checked: the MP checks it.
    pub fn from_parts(smsid: Smsid, signature: SignatureBytes) -> Self {
        Self { smsid, signature }
    }

    /// The SMSID the signature covers: the `SourceID` of the messages that carry it.
    pub fn smsid(&self) -> Smsid {
        self.smsid
    }

    /// The signature in wire form.
    pub fn signature(&self) -> &SignatureBytes {
        &self.signature
    }
}

/// The digest of the octet-stream part of `body` and the body's own length, from one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PayloadDigest {
    /// The hash (SHA-256 unless the site says SHA-1) over `body ‖ 00 00 ‖ CRLF`.
    pub digest: Digest,
    /// Bytes `body` emits (UTF-16LE XML, without the NUL and CRLF).
    pub body_len: usize,
}

impl PayloadDigest {
    /// `<Body Length>`: the body plus its terminating NUL (docs/protocol.md §2).
    pub fn body_range_length(&self) -> Result<usize, Overflow> {
        self.body_len.checked_add(2).ok_or(Overflow)
    }
}

/// Hash [`OctetPart`]`{ body }` — exactly what `PayloadSignature` covers — with SHA-256, and
/// count the body.
pub fn payload_digest(body: &dyn Emit) -> Result<PayloadDigest, Overflow> {
    payload_digest_with(body, SignatureHash::Sha256)
}

/// [`payload_digest`] with `hash`'s algorithm.
pub fn payload_digest_with(
    body: &dyn Emit,
    hash: SignatureHash,
) -> Result<PayloadDigest, Overflow> {
    let mut sink = CountingDigest {
        digest: DigestSink::new(hash),
        count: 0,
    };
    OctetPart { body }.emit(&mut sink)?;
    Ok(PayloadDigest {
        digest: sink.digest.finish(),
        body_len: sink.count.checked_sub(4).ok_or(Overflow)?,
    })
}

/// [`payload_signature`] of a report sent as body + attachment: over
/// [`AttachedOctetPart`]`{ stream }` (the stream carries the body's NUL; `body_len` is the
/// stream's length).
pub fn payload_signature_attached(
    signer: &dyn Signer,
    stream: &dyn Emit,
) -> Result<(SignatureBytes, PayloadDigest), PayloadSignError> {
    let d = payload_digest_attached(stream, signer.signature_hash())
        .map_err(|_| PayloadSignError::Body)?;
    let sig = sign_digest(signer, &d.digest).map_err(PayloadSignError::Sign)?;
    Ok((sig, d))
}

/// The digest half of [`payload_signature_attached`], with the site's `hash`.
pub fn payload_digest_attached(
    stream: &dyn Emit,
    hash: SignatureHash,
) -> Result<PayloadDigest, Overflow> {
    let mut sink = CountingDigest {
        digest: DigestSink::new(hash),
        count: 0,
    };
    AttachedOctetPart { stream }.emit(&mut sink)?;
    Ok(PayloadDigest {
        digest: sink.digest.finish(),
        body_len: sink.count.checked_sub(2).ok_or(Overflow)?,
    })
}

/// Hashes and counts in one sink: one dynamic call per write instead of a tee's three.
struct CountingDigest {
    digest: DigestSink,
    count: usize,
}

impl Sink for CountingDigest {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.count = self.count.checked_add(bytes.len()).ok_or(Overflow)?;
        self.digest.write(bytes)
    }
}

/// Why a payload could not be signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum PayloadSignError {
    /// The body could not be emitted (a length overflowed, or the body refused to emit, e.g. an
    /// invalid XML name in an inventory description).
    Body,
    /// The signer failed.
    Sign(SignError),
}

/// `PayloadSignature` over the octet-stream part of `body` (with the signer's hash), with the
/// digest pass's body length.
pub fn payload_signature(
    signer: &dyn Signer,
    body: &dyn Emit,
) -> Result<(SignatureBytes, PayloadDigest), PayloadSignError> {
    let d =
        payload_digest_with(body, signer.signature_hash()).map_err(|_| PayloadSignError::Body)?;
    let sig = sign_digest(signer, &d.digest).map_err(PayloadSignError::Sign)?;
    Ok((sig, d))
}

/// The `<Hook2 Name="clientauth">` element, emitted UTF-16LE into the `<Hooks>` of a
/// [`crate::wire::header::MsgHeader`].
#[derive(Clone, Copy)]
pub struct ClientAuthHook<'a> {
    /// `AuthSenderMachine`: the sending machine's (NetBIOS) name.
    pub auth_sender_machine: &'a str,
    /// DER of the signing certificate, sent hex upper as `PublicKey` ([profile]:
    /// [`profile::PUBLIC_KEY_IS_CERT_DER`]). For a proxy: the proxy's certificate.
    pub signing_cert_der: &'a [u8],
    /// `ClientIDSignature` (see [`ClientIdSignature`]).
    pub client_id_signature: &'a SignatureBytes,
    /// `PayloadSignature` (see [`payload_signature`]).
    pub payload_signature: SignatureBytes,
    /// `HashAlgorithm`: [`crate::sign::hash_algorithm_oid`] of the signer; `None` sends no
    /// property (SHA-1, the ConfigMgr 2007 form).
    pub hash_algorithm_oid: Option<&'a str>,
    /// `ProxySMSID` ([profile]): set when an ISV proxy signs for one of its clients.
    pub proxy_smsid: Option<Smsid>,
}

fn property_open(w: &mut XmlWriter<'_>, name: &str) -> Result<(), Overflow> {
    w.parts(&[
        markup!("<Property Name=\""),
        (name, Escaping::Attr),
        markup!("\">"),
    ])
}

impl Emit for ClientAuthHook<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        XmlWriter::with(out, |w| {
            // Markup between the hex runs in one writer call each.
            w.parts(&[
                markup!("<Hook2 Name=\"clientauth\"><Property Name=\"AuthSenderMachine\">"),
                (self.auth_sender_machine, Escaping::Text),
                markup!("</Property><Property Name=\"PublicKey\">"),
            ])?;
            // PublicKey: the signing certificate's DER as hex ([profile] PUBLIC_KEY_IS_CERT_DER).
            w.hex_upper(self.signing_cert_der)?;
            raw!(w, "</Property><Property Name=\"ClientIDSignature\">")?;
            w.hex_upper(self.client_id_signature.as_bytes())?;
            raw!(w, "</Property><Property Name=\"PayloadSignature\">")?;
            w.hex_upper(self.payload_signature.as_bytes())?;
            let (oid_open, oid, oid_close) = match self.hash_algorithm_oid {
                Some(oid) => ("<Property Name=\"HashAlgorithm\">", oid, "</Property>"),
                None => ("", "", ""),
            };
            w.parts(&[
                markup!("</Property><Property Name=\"ClientCapabilities\">"),
                (CLIENT_CAPABILITIES_NON_SSL, Escaping::Text),
                markup!("</Property>"),
                (oid_open, Escaping::Raw),
                (oid, Escaping::Text),
                (oid_close, Escaping::Raw),
            ])?;
            if let Some(proxy) = self.proxy_smsid {
                property_open(w, profile::CLIENTAUTH_PROXY_SMSID_PROPERTY)?;
                w.ascii(&proxy.to_text())?;
                raw!(w, "</Property>")?;
            }
            raw!(w, "</Hook2>")
        })
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use crate::sign::P256Signer;
    use crate::sink::SliceSink;
    use p256::ecdsa::signature::hazmat::PrehashVerifier;
    use p256::ecdsa::signature::Verifier;
    use std::string::String;
    use std::vec::Vec;

    fn utf16(s: &str) -> Vec<u8> {
        s.encode_utf16().flat_map(u16::to_le_bytes).collect()
    }

    fn smsid() -> Smsid {
        Smsid::parse(b"GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42").unwrap()
    }

    fn verify(signer: &P256Signer, msg: &[u8], sig: &SignatureBytes) -> bool {
        let s = p256::ecdsa::Signature::from_slice(sig.as_bytes()).unwrap();
        signer.verifying_key().verify(msg, &s).is_ok()
    }

    #[test]
    fn client_id_signature_covers_upper_case_smsid_utf16_and_nul() {
        let signer = P256Signer::from_secret_bytes(&[3; 32]).unwrap();
        let cid = ClientIdSignature::compute(&signer, smsid()).unwrap();
        let mut msg = utf16("GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42");
        msg.extend_from_slice(&[0, 0]);
        assert!(verify(&signer, &msg, cid.signature()));
        // Not over the lower-case text, nor without the NUL.
        let lower = utf16("GUID:1af488d8-7b42-4842-a4bd-b3a2842bbc42\0");
        assert!(!verify(&signer, &lower, cid.signature()));
        assert!(!verify(&signer, &msg[..msg.len() - 2], cid.signature()));
        // Deterministic (RFC 6979): the same value every time, so it can be cached.
        assert_eq!(ClientIdSignature::compute(&signer, smsid()).unwrap(), cid);
        assert_eq!(cid.smsid(), smsid());
        assert_eq!(
            ClientIdSignature::from_parts(smsid(), *cid.signature()),
            cid
        );
    }

    #[test]
    fn payload_signature_covers_exactly_the_octet_part() {
        let signer = P256Signer::from_secret_bytes(&[4; 32]).unwrap();
        let body = |out: &mut dyn Sink| XmlWriter::with(out, |w| w.raw("<Report>é</Report>"));
        let (sig, d) = payload_signature(&signer, &body).unwrap();
        let mut octets = utf16("<Report>é</Report>");
        assert_eq!(d.body_len, octets.len());
        assert_eq!(d.body_range_length().unwrap(), octets.len() + 2);
        octets.extend_from_slice(&[0, 0, b'\r', b'\n']);
        assert!(verify(&signer, &octets, &sig));
        let digest: [u8; 32] = sha2::Sha256::digest(&octets).into();
        assert_eq!(d.digest, crate::sign::hash::Digest::Sha256(digest));
        let s = p256::ecdsa::Signature::from_slice(sig.as_bytes()).unwrap();
        signer.verifying_key().verify_prehash(&digest, &s).unwrap();
        // The body alone (no NUL + CRLF) does not verify.
        assert!(!verify(&signer, &octets[..octets.len() - 4], &sig));
        use sha2::Digest;
    }

    #[test]
    fn hook_shape_matches_the_spec_template() {
        let sig = SignatureBytes::from_slice(&[0xAB, 0x01]).unwrap();
        let hook = ClientAuthHook {
            auth_sender_machine: "PRN-1",
            signing_cert_der: &[0x30, 0x82, 0x0F],
            client_id_signature: &sig,
            payload_signature: SignatureBytes::from_slice(&[0xCD]).unwrap(),
            hash_algorithm_oid: Some("1.2.840.10045.4.3.2"),
            proxy_smsid: None,
        };
        let mut buf = [0u8; 2048];
        let mut s = SliceSink::new(&mut buf);
        hook.emit(&mut s).unwrap();
        let want = "<Hook2 Name=\"clientauth\"><Property Name=\"AuthSenderMachine\">PRN-1</Property>\
<Property Name=\"PublicKey\">30820F</Property><Property Name=\"ClientIDSignature\">AB01</Property>\
<Property Name=\"PayloadSignature\">CD</Property><Property Name=\"ClientCapabilities\">NonSSL</Property>\
<Property Name=\"HashAlgorithm\">1.2.840.10045.4.3.2</Property></Hook2>";
        assert_eq!(s.written(), utf16(want).as_slice());

        let proxied = ClientAuthHook {
            proxy_smsid: Some(smsid()),
            ..hook
        };
        let mut buf = [0u8; 2048];
        let mut s = SliceSink::new(&mut buf);
        proxied.emit(&mut s).unwrap();
        let text: String = char::decode_utf16(
            s.written()
                .chunks(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]])),
        )
        .map(|c| c.unwrap())
        .collect();
        assert!(text.ends_with("<Property Name=\"ProxySMSID\">GUID:1AF488D8-7B42-4842-A4BD-B3A2842BBC42</Property></Hook2>"), "{text}");
    }
}
