//! Render a message body once on the host: the core's streaming path renders a signed body twice
//! (once to hash and count it, once to send it), which a device needs to keep RAM small but a
//! host does not. [`render_once`] writes the body into a reused `Vec`; [`Rendered`] then hands
//! those bytes to `SignedMessage::new` and `io::send_message`, which hash, count and send them
//! without rendering the XML again. The bytes on the wire are the same (tested below).

use mpagent_core::sink::{Emit, Overflow, Sink};

/// Appends everything written to a `Vec`.
struct VecSink<'v>(&'v mut Vec<u8>);

impl Sink for VecSink<'_> {
    fn write(&mut self, bytes: &[u8]) -> Result<(), Overflow> {
        self.0.extend_from_slice(bytes);
        Ok(())
    }
}

/// Bytes already rendered, emitted as they are.
pub struct Rendered<'b>(pub &'b [u8]);

impl Emit for Rendered<'_> {
    fn emit(&self, out: &mut dyn Sink) -> Result<(), Overflow> {
        out.write(self.0)
    }
}

/// Renders `body` into `buf` (cleared first; its capacity is kept across calls).
pub fn render_once<'b>(body: &dyn Emit, buf: &'b mut Vec<u8>) -> Result<Rendered<'b>, Overflow> {
    buf.clear();
    body.emit(&mut VecSink(buf))?;
    Ok(Rendered(buf))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mpagent_core::agent::registration::SigningIdentity;
    use mpagent_core::agent::signed::{MessageParams, MessageSigner, SignedMessage};
    use mpagent_core::config::{AgentConfig, SiteMode};
    use mpagent_core::guid::{Guid, Smsid};
    use mpagent_core::identity::{build_self_signed_p256, CertParams, MAX_CERT_LEN};
    use mpagent_core::sign::P256Signer;
    use mpagent_core::sink::emitted_len;
    use mpagent_core::store::Endpoint;
    use mpagent_core::time::UnixTime;
    use mpagent_core::wire::clientauth::ClientIdSignature;
    use mpagent_core::wire::header::ReplyMode;
    use mpagent_core::wire::report::{Report, ReportIdentity};
    use rand_core::OsRng;

    fn request(msg: &SignedMessage<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        msg.emit(&mut VecSink(&mut out)).unwrap();
        out
    }

    #[test]
    fn a_rendered_body_gives_the_same_request_as_the_streamed_one() {
        // The core's P-256 signer signs deterministically (RFC 6979): equal bytes in, equal
        // signatures out, so the two requests must be equal byte for byte.
        let signer = P256Signer::from_secret_bytes(&[0x42; 32]).unwrap();
        let now = UnixTime(1_764_000_000);
        let params = CertParams::self_signed_now("APPLIANCE1", now, &mut OsRng);
        let mut cert = vec![0u8; MAX_CERT_LEN];
        let n = build_self_signed_p256(&params, &signer, &mut cert).unwrap();
        let config = AgentConfig::new(
            "ABC",
            SiteMode::Mixed,
            "http://mp.example",
            "APPLIANCE1",
            "appliance1.example",
        )
        .unwrap();
        let smsid = Smsid::parse(b"GUID:5E0B8A9C-1D2E-4F60-8A7B-9C0D1E2F3A4B").unwrap();
        let client_id = ClientIdSignature::compute(&signer, smsid).unwrap();
        let signing = SigningIdentity {
            signer: &signer,
            cert_der: &cert[..n],
        };
        let me = MessageSigner::client(signing, &client_id);
        let discovery = crate::client::host_discovery("appliance1.example", &["127.0.0.1"]);
        let report = Report::discovery(
            ReportIdentity::new(smsid, "APPLIANCE1"),
            now.to_datetime(),
            &discovery,
        );
        let params = MessageParams {
            endpoint: Endpoint::Ddr.name(),
            reply_mode: ReplyMode::Async,
            message_id: Guid([7; 16]),
            now,
        };
        let streamed = SignedMessage::new(&config, &me, params, &report).unwrap();
        let mut buf = vec![0xAA; 3]; // earlier contents must not leak into the body
        let rendered = render_once(&report, &mut buf).unwrap();
        assert_eq!(rendered.0.len(), emitted_len(&report).unwrap());
        let once = SignedMessage::new(&config, &me, params, &rendered).unwrap();
        let bytes = request(&once);
        assert!(bytes.len() > rendered.0.len());
        assert_eq!(bytes, request(&streamed));
    }
}
