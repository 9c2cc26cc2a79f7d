//! `proxy-client`: a simulated constrained device speaking the compact protocol to the proxy
//! (no crypto of its own), for tests and the demo.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::net::TcpStream;

use super::protocol::{self, Frame};

/// Time allowed for the proxy to answer one frame (it may be talking to the MP).
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// One connection to the proxy.
pub struct DeviceConnection {
    stream: TcpStream,
}

impl DeviceConnection {
    /// Connect to the proxy.
    pub async fn connect(proxy: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(proxy)
            .await
            .with_context(|| format!("connecting to the proxy at {proxy}"))?;
        Ok(Self { stream })
    }

    /// Send `frame` and read the proxy's answer.
    pub async fn request(&mut self, frame: &Frame) -> Result<Frame> {
        protocol::write_frame(&mut self.stream, frame).await?;
        self.read().await
    }

    /// Send raw bytes (tests: malformed frames) and read the answer.
    pub async fn request_raw(&mut self, bytes: &[u8]) -> Result<Frame> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await?;
        self.stream.flush().await?;
        self.read().await
    }

    /// Read one frame.
    pub async fn read(&mut self) -> Result<Frame> {
        tokio::time::timeout(ANSWER_TIMEOUT, protocol::read_frame(&mut self.stream))
            .await
            .map_err(|_| anyhow!("the proxy did not answer in time"))?
            .map_err(|e| anyhow!("reading the proxy's answer: {e}"))
    }

    /// Whether the proxy closed the connection (reads until EOF or a short timeout).
    pub async fn is_closed(&mut self) -> bool {
        matches!(
            tokio::time::timeout(
                Duration::from_secs(5),
                protocol::read_frame(&mut self.stream)
            )
            .await,
            Ok(Err(protocol::ReadError::Closed)) | Ok(Err(protocol::ReadError::Io(_)))
        )
    }
}

/// What the simulated device does.
#[derive(Debug, Clone)]
pub struct DeviceOptions {
    /// The proxy.
    pub proxy: SocketAddr,
    /// Stable device ID.
    pub id: String,
    /// Device name.
    pub name: String,
    /// Send a heartbeat.
    pub heartbeat: bool,
    /// Send an inventory of this many items (0: none).
    pub inventory: usize,
    /// Send a status message.
    pub status: bool,
    /// Send a state message (topic, state).
    pub state: Option<(String, u32)>,
    /// Ask for policy.
    pub policy: bool,
}

/// Describe an answer for people.
pub fn describe(frame: &Frame) -> String {
    match frame {
        Frame::Ack { of, detail } => format!("ok (0x{of:02X}) {detail}"),
        Frame::RegisterResult { status, smsid } => match *status {
            protocol::reg_status::REGISTERED => format!("registered {smsid}"),
            protocol::reg_status::PENDING => format!("pending approval {smsid}"),
            protocol::reg_status::REJECTED => "rejected by the site".into(),
            s => format!("status {s} {smsid}"),
        },
        Frame::PolicyList { policies } => {
            let list: Vec<String> = policies.iter().map(|(i, v)| format!("{i}@{v}")).collect();
            format!("{} policies [{}]", policies.len(), list.join(", "))
        }
        Frame::Error { code, text } => format!("ERROR {code}: {text}"),
        other => format!("{other:?}"),
    }
}

/// The synthetic inventory of `n` items.
pub fn synthetic_items(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("sensor-{i}"), format!("{}", (i * 37) % 101)))
        .collect()
}

/// Run the device: HELLO, REGISTER, then what `opts` asks; returns each request with its
/// answer. Stops at the first `ERROR` answer.
pub async fn run_device(
    opts: &DeviceOptions,
    on: &mut dyn FnMut(&str, &Frame),
) -> Result<Vec<(String, Frame)>> {
    let mut conn = DeviceConnection::connect(opts.proxy).await?;
    let mut steps: Vec<(&str, Frame)> = vec![
        (
            "hello",
            Frame::Hello {
                device_id: opts.id.clone(),
                name: opts.name.clone(),
            },
        ),
        ("register", Frame::Register),
    ];
    if opts.heartbeat {
        steps.push(("heartbeat", Frame::Heartbeat));
    }
    if opts.inventory > 0 {
        steps.push((
            "inventory",
            Frame::Inventory {
                items: synthetic_items(opts.inventory),
            },
        ));
    }
    if opts.status {
        steps.push((
            "status",
            Frame::Status {
                message_type: "device-online".into(),
                properties: vec![("Firmware".into(), "1.0".into())],
            },
        ));
    }
    if let Some((topic, state)) = &opts.state {
        steps.push((
            "state",
            Frame::State {
                topic: topic.clone(),
                state: *state,
            },
        ));
    }
    if opts.policy {
        steps.push(("policy", Frame::PolicyRequest));
    }
    let mut out = Vec::new();
    for (what, frame) in steps {
        let answer = conn.request(&frame).await?;
        on(what, &answer);
        let failed = matches!(answer, Frame::Error { .. });
        out.push((what.to_string(), answer));
        if failed {
            break;
        }
    }
    Ok(out)
}
