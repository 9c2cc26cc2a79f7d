//! std networking for the core's async driver: a tokio `TcpStream` per exchange, wrapped in
//! `embedded-io-adapters` so the core's `Connector` sees `embedded-io-async` traits, plus a clock.
//!
//! Every connection is bounded in time: the core's driver reads until the reply is complete, so a
//! peer that accepts and then never answers (or trickles one byte at a time) would otherwise hold
//! the agent forever. [`TimedConnection`] fails a read, write or flush with
//! `ErrorKind::TimedOut` when it makes no progress for the I/O timeout, or once the whole
//! exchange has run past its deadline (60 s after the connection was made, by default).
//! The driver reports that as `AttemptFailure::Transport(TimedOut)` and backs off.

use std::time::Duration;

use embedded_io_adapters::tokio_1::FromTokio;
use mpagent_core::io::{Clock, Connector};
use mpagent_core::time::UnixTime;
use tokio::net::TcpStream;
use tokio::time::Instant;

/// Default bound on connecting.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Default bound on one read, write or flush making progress.
pub const DEFAULT_IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Default bound on a whole exchange (request out, reply in): the 60 s our `<Msg>` header
/// announces as the message's `Timeout`.
pub const DEFAULT_EXCHANGE_TIMEOUT: Duration = Duration::from_secs(60);

/// Connects to `host:port` with a bounded connect time; the connection it makes has the default
/// I/O and exchange deadlines ([`DEFAULT_IO_TIMEOUT`], [`DEFAULT_EXCHANGE_TIMEOUT`]). Use
/// [`TcpConnector::with_timeouts`] for others.
#[derive(Debug, Clone)]
pub struct TcpConnector {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl TcpConnector {
    /// The same connector with other I/O and exchange deadlines.
    pub fn with_timeouts(self, io_timeout: Duration, exchange_timeout: Duration) -> TimedConnector {
        TimedConnector {
            tcp: self,
            io_timeout,
            exchange_timeout,
        }
    }

    /// A TCP connection within the connect timeout, without deadlines on its I/O (the TLS
    /// connector wraps it first).
    pub async fn connect_stream(&self) -> std::io::Result<TcpStream> {
        let addr = (self.host.as_str(), self.port);
        // The core sees only the error's kind (a failed name look-up is `Other` to it), so the
        // cause is told here, with the name and port that were tried.
        let connected = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "connecting to {}:{} timed out after {} s",
                        self.host,
                        self.port,
                        self.connect_timeout.as_secs()
                    ),
                )
            })
            .and_then(|r| r);
        let stream = match connected {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("connecting to the MP at {}:{}: {e}", self.host, self.port);
                return Err(e);
            }
        };
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    async fn connect_timed(
        &self,
        io_timeout: Duration,
        exchange_timeout: Duration,
    ) -> std::io::Result<TimedConnection> {
        let stream = self.connect_stream().await?;
        Ok(TimedConnection::new(stream, io_timeout, exchange_timeout))
    }
}

impl Connector for TcpConnector {
    type Error = std::io::Error;
    type Connection<'c> = TimedConnection;

    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error> {
        self.connect_timed(DEFAULT_IO_TIMEOUT, DEFAULT_EXCHANGE_TIMEOUT)
            .await
    }
}

/// A [`TcpConnector`] with chosen I/O and exchange deadlines.
#[derive(Debug, Clone)]
pub struct TimedConnector {
    /// Where and how long to connect.
    pub tcp: TcpConnector,
    /// A read, write or flush that makes no progress for this long fails with `TimedOut`.
    pub io_timeout: Duration,
    /// Every read, write or flush fails with `TimedOut` once this long has passed since the
    /// connection was made (a peer that drips bytes slowly defeats `io_timeout` alone).
    pub exchange_timeout: Duration,
}

impl Connector for TimedConnector {
    type Error = std::io::Error;
    type Connection<'c> = TimedConnection;

    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error> {
        self.tcp
            .connect_timed(self.io_timeout, self.exchange_timeout)
            .await
    }
}

/// A connection whose every operation has a deadline (see the module docs): TCP, or TLS over
/// TCP in native mode ([`super::tls::TlsConnector`]).
pub struct TimedConnection<S = TcpStream> {
    inner: FromTokio<S>,
    io_timeout: Duration,
    deadline: Instant,
}

impl<S> TimedConnection<S> {
    /// Wrap `stream`: each operation may wait `io_timeout`, all of them together `exchange_timeout`
    /// from now.
    pub fn new(stream: S, io_timeout: Duration, exchange_timeout: Duration) -> Self {
        Self {
            inner: FromTokio::new(stream),
            io_timeout,
            deadline: Instant::now() + exchange_timeout,
        }
    }

    /// The underlying stream.
    pub fn stream(&self) -> &S {
        self.inner.inner()
    }

    async fn bounded<T>(
        io_timeout: Duration,
        deadline: Instant,
        what: &str,
        op: impl core::future::Future<Output = std::io::Result<T>>,
    ) -> std::io::Result<T> {
        let op_deadline = Instant::now() + io_timeout;
        let (limit, why) = if op_deadline < deadline {
            (op_deadline, "no progress for the I/O timeout")
        } else {
            (deadline, "the exchange deadline passed")
        };
        match tokio::time::timeout_at(limit, op).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("{what} timed out: {why}"),
            )),
        }
    }
}

impl<S> embedded_io_async::ErrorType for TimedConnection<S> {
    type Error = std::io::Error;
}

impl<S: tokio::io::AsyncRead + Unpin> embedded_io_async::Read for TimedConnection<S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let (t, d) = (self.io_timeout, self.deadline);
        Self::bounded(t, d, "read", self.inner.read(buf)).await
    }
}

impl<S: tokio::io::AsyncWrite + Unpin> embedded_io_async::Write for TimedConnection<S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        let (t, d) = (self.io_timeout, self.deadline);
        Self::bounded(t, d, "write", self.inner.write(buf)).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        let (t, d) = (self.io_timeout, self.deadline);
        Self::bounded(t, d, "flush", self.inner.flush()).await
    }
}

/// The system clock; sleeps with tokio.
pub struct SystemClock;

/// Seconds since the Unix epoch now.
pub fn unix_now() -> UnixTime {
    UnixTime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
    )
}

impl Clock for SystemClock {
    fn now(&self) -> UnixTime {
        unix_now()
    }

    async fn sleep_until(&mut self, t: UnixTime) {
        let now = unix_now();
        if t > now {
            tokio::time::sleep(Duration::from_secs(t.0 - now.0)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_io_async::{Read as _, Write as _};
    use tokio::io::AsyncWriteExt;

    #[tokio::test]
    async fn a_silent_peer_times_out_instead_of_hanging() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // Accepts, then says nothing (the socket stays open until the test ends).
        let silent = tokio::spawn(async move { listener.accept().await.map(|(s, _)| s) });
        let mut connector =
            tcp(port).with_timeouts(Duration::from_millis(200), Duration::from_secs(10));
        let mut conn = connector.connect().await.unwrap();
        conn.write_all(b"hello").await.unwrap();
        let started = std::time::Instant::now();
        let mut buf = [0u8; 16];
        let err = conn.read(&mut buf).await.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(silent);
    }

    #[tokio::test]
    async fn a_dripping_peer_hits_the_exchange_deadline() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        // One byte every 20 ms, for ever: each read makes progress, the exchange never ends.
        let drip = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            while s.write_all(b"x").await.is_ok() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        });
        let mut connector =
            tcp(port).with_timeouts(Duration::from_secs(1), Duration::from_millis(300));
        let mut conn = connector.connect().await.unwrap();
        let mut buf = [0u8; 16];
        let err = loop {
            match conn.read(&mut buf).await {
                Ok(n) => assert!(n > 0),
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert!(err.to_string().contains("exchange deadline"), "{err}");
        drop(conn);
        drip.abort();
    }

    fn tcp(port: u16) -> TcpConnector {
        TcpConnector {
            host: "127.0.0.1".into(),
            port,
            connect_timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn the_plain_connector_has_the_default_deadlines() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conn = tcp(port).connect().await.unwrap();
        let left = conn.deadline - Instant::now();
        assert!(left <= DEFAULT_EXCHANGE_TIMEOUT && left > DEFAULT_EXCHANGE_TIMEOUT / 2);
        assert_eq!(conn.io_timeout, DEFAULT_IO_TIMEOUT);
        assert!(DEFAULT_IO_TIMEOUT < DEFAULT_EXCHANGE_TIMEOUT);
    }
}
