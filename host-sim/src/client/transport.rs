//! std networking for the core's async driver: a tokio `TcpStream` per exchange, wrapped in
//! `embedded-io-adapters` so the core's `Connector` sees `embedded-io-async` traits, plus a clock.

use std::time::Duration;

use embedded_io_adapters::tokio_1::FromTokio;
use mpagent_core::io::{Clock, Connector};
use mpagent_core::time::UnixTime;
use tokio::net::TcpStream;

/// Connects to `host:port` with a bounded connect time.
pub struct TcpConnector {
    /// Host name or address.
    pub host: String,
    /// TCP port.
    pub port: u16,
    /// Connect timeout.
    pub connect_timeout: Duration,
}

impl Connector for TcpConnector {
    type Error = std::io::Error;
    type Connection<'c> = FromTokio<TcpStream>;

    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error> {
        let addr = (self.host.as_str(), self.port);
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        Ok(FromTokio::new(stream))
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
