//! mpagent host simulator: runs the same no_std core over std networking ([`client`]), the
//! bundled management point emulator ([`mp`], independent of the core's parsers), the demo, and a
//! test PKI for native mode ([`pki`]).

pub mod buffers;
pub mod client;
pub mod demo;
pub mod fleet;
pub mod group_commit;
pub mod human;
pub mod mp;
pub mod ossl;
pub mod pki;
pub mod proxy;
pub mod render;
pub mod sign;
pub mod state_lock;
