//! Logging shim (embassy's `fmt.rs` pattern): `defmt` on targets, `log` on the host, nothing if
//! neither feature is on. Enabling both is a build error.
#![allow(unused_macros)]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("features `defmt` and `log` are mutually exclusive: pick one logging backend");

macro_rules! debug {
    ($($x:tt)*) => {{
        #[cfg(feature = "defmt")]
        ::defmt::debug!($($x)*);
        #[cfg(feature = "log")]
        ::log::debug!($($x)*);
    }};
}

macro_rules! info {
    ($($x:tt)*) => {{
        #[cfg(feature = "defmt")]
        ::defmt::info!($($x)*);
        #[cfg(feature = "log")]
        ::log::info!($($x)*);
    }};
}

macro_rules! warn {
    ($($x:tt)*) => {{
        #[cfg(feature = "defmt")]
        ::defmt::warn!($($x)*);
        #[cfg(feature = "log")]
        ::log::warn!($($x)*);
    }};
}
