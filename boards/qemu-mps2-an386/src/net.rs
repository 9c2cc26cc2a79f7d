//! The core's IO seams on this board: [`Connector`] over an embassy-net `TcpSocket` (one
//! connection per exchange, bounded in time) and [`Clock`] over embassy-time plus the host's
//! epoch time read once at boot.

use embassy_net::tcp::{Error as TcpError, TcpSocket};
use embassy_net::{IpEndpoint, Stack};
use embassy_time::{with_timeout, Duration, Instant, Timer};
use mpagent_core::io::{Clock, Connector};
use mpagent_core::time::UnixTime;

/// Opens a TCP connection to the MP through the embassy-net stack, reusing its two buffers.
pub struct TcpConnector<'a> {
    /// The network stack.
    pub stack: Stack<'static>,
    /// The MP's address and port.
    pub remote: IpEndpoint,
    /// Receive buffer of the socket.
    pub rx: &'a mut [u8],
    /// Transmit buffer of the socket.
    pub tx: &'a mut [u8],
    /// Bound on connecting, and on silence once connected.
    pub timeout: Duration,
}

impl Connector for TcpConnector<'_> {
    type Error = TcpError;
    type Connection<'c>
        = TcpSocket<'c>
    where
        Self: 'c;

    async fn connect(&mut self) -> Result<TcpSocket<'_>, TcpError> {
        let mut socket = TcpSocket::new(self.stack, self.rx, self.tx);
        socket.set_timeout(Some(self.timeout));
        match with_timeout(self.timeout, socket.connect(self.remote)).await {
            Ok(Ok(())) => Ok(socket),
            Ok(Err(e)) => {
                defmt::warn!("connect to {} failed: {}", self.remote, e);
                Err(TcpError::ConnectionReset)
            }
            Err(_) => {
                defmt::warn!("connect to {} timed out", self.remote);
                socket.abort();
                Err(TcpError::ConnectionReset)
            }
        }
    }
}

/// UTC from the host's clock at boot (semihosting SYS_TIME) plus embassy-time since then.
///
/// Boards without a clock can take the time from the MP instead: every reply's `Date` header is
/// parsed into `ResponseHead.date`.
pub struct BoardClock {
    /// Unix seconds when `Instant` was zero.
    pub epoch_at_boot: u64,
}

impl Clock for BoardClock {
    fn now(&self) -> UnixTime {
        UnixTime(self.epoch_at_boot + Instant::now().as_secs())
    }

    async fn sleep_until(&mut self, t: UnixTime) {
        let at = t.0.saturating_sub(self.epoch_at_boot);
        Timer::at(Instant::from_secs(at)).await;
    }
}
