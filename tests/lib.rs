//! Shared helpers for the end-to-end tests in `tests/tests/`.

pub mod fault;

use std::path::PathBuf;
use std::process::Command;

use mpagent_core::agent::outbound::{Post, PostParams};
use mpagent_core::agent::registration::{build_request, SigningIdentity};
use mpagent_core::config::AgentConfig;
use mpagent_core::guid::Guid;
use mpagent_core::sink::{emitted_len, Emit, SliceSink};
use mpagent_core::time::UnixTime;
use mpagent_core::wire::header::{endpoint, ReplyMode};
use mpagent_core::wire::registration::{AgentType, RequestType};

/// `tests/interop/NAME` in the source tree.
pub fn interop_script(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("interop")
        .join(name)
}

/// Emit anything into a Vec.
pub fn emit_to_vec(item: &dyn Emit) -> Vec<u8> {
    let len = emitted_len(item).expect("length");
    let mut v = vec![0u8; len];
    let mut sink = SliceSink::new(&mut v);
    item.emit(&mut sink).expect("emit");
    assert_eq!(sink.len(), len);
    v
}

/// The whole HTTP registration request the core sends for this identity, as bytes.
pub fn capture_registration(
    config: &AgentConfig<'_>,
    identity: &SigningIdentity<'_>,
    agent_type: AgentType,
    now: UnixTime,
    message_id: Guid,
) -> Vec<u8> {
    let request = build_request(
        config,
        identity,
        agent_type,
        RequestType::Registration,
        None,
        now,
    )
    .expect("build");
    let params = PostParams {
        endpoint: endpoint::CLIENT_REGISTRATION,
        reply_mode: ReplyMode::Sync,
        source_id: None,
        message_id,
        now,
        hooks: None,
    };
    let post = Post::new(config, params, &request).expect("post");
    emit_to_vec(&post)
}

/// Run `python3 SCRIPT ARGS…`; returns (success, stdout + stderr).
pub fn run_python(script: &str, args: &[&std::ffi::OsStr]) -> (bool, String) {
    let out = Command::new("python3")
        .arg(interop_script(script))
        .args(args)
        .output()
        .expect("python3 runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// One registration attempt of `name` with any signer and certificate against the MP at
/// `mp` (no retries, returns when pending): the tool the forged-signature tests share.
pub async fn register_once(
    mp: std::net::SocketAddr,
    name: &str,
    signer: &dyn mpagent_core::sign::Signer,
    cert: &[u8],
) -> Result<mpagent_core::agent::registration::RegistrationState, mpagent_core::io::RegisterError> {
    use mpagent_core::agent::registration::{Registrar, RegistrationState};
    use mpagent_core::config::SiteMode;
    use mpagent_core::io::{self, RegisterOptions};
    use mpagent_sim::client::transport::{SystemClock, TcpConnector};

    let url = format!("http://{mp}");
    let fqdn = format!("{}.local", name.to_lowercase());
    let config = AgentConfig::new("PS1", SiteMode::Mixed, &url, name, &fqdn).expect("config");
    let mut connector = TcpConnector {
        host: mp.ip().to_string(),
        port: mp.port(),
        connect_timeout: std::time::Duration::from_secs(5),
    };
    let mut registrar = Registrar::new(RegistrationState::Unregistered);
    let mut buf = vec![0u8; 4096];
    io::register(
        &mut connector,
        &mut SystemClock,
        &config,
        &SigningIdentity {
            signer,
            cert_der: cert,
        },
        AgentType::Client,
        &mut registrar,
        &mut rand_core::OsRng,
        &mut buf,
        RegisterOptions {
            return_when_pending: true,
            max_failures: 1,
        },
        &mut |_| {},
    )
    .await
}

/// A signer that signs correctly and then flips one bit: a forged signature.
pub struct Tampering<S>(pub S);

impl<S: mpagent_core::sign::Signer> mpagent_core::sign::Signer for Tampering<S> {
    fn scheme(&self) -> mpagent_core::sign::SignatureScheme {
        self.0.scheme()
    }
    fn sign_sha256(
        &self,
        digest: &[u8; 32],
    ) -> Result<mpagent_core::sign::SignatureBytes, mpagent_core::sign::SignError> {
        let sig = self.0.sign_sha256(digest)?;
        let mut bytes = sig.as_bytes().to_vec();
        bytes[10] ^= 0x01;
        Ok(mpagent_core::sign::SignatureBytes::from_slice(&bytes).expect("same length"))
    }
}

/// A device connected to the ISV proxy at `proxy`: `HELLO` as `id`/`name`, then `REGISTER`,
/// which must answer registered; returns the connection and the device's SMSID.
pub async fn proxy_device(
    proxy: std::net::SocketAddr,
    id: &str,
    name: &str,
) -> (mpagent_sim::proxy::client::DeviceConnection, String) {
    use mpagent_sim::proxy::protocol::{kind, reg_status, Frame};
    let mut conn = mpagent_sim::proxy::client::DeviceConnection::connect(proxy)
        .await
        .expect("the proxy accepts devices");
    let hello = Frame::Hello {
        device_id: id.into(),
        name: name.into(),
    };
    match conn.request(&hello).await.expect("HELLO answered") {
        Frame::Ack {
            of: kind::HELLO, ..
        } => {}
        other => panic!("{id}: HELLO: {other:?}"),
    }
    match conn
        .request(&Frame::Register)
        .await
        .expect("REGISTER answered")
    {
        Frame::RegisterResult {
            status: reg_status::REGISTERED,
            smsid,
        } => (conn, smsid),
        other => panic!("{id}: REGISTER: {other:?}"),
    }
}
