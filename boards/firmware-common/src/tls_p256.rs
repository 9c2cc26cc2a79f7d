//! Mbed TLS's P-256 scalar multiplication on the P256-Cortex-M4 assembly: the ECDHE key share
//! and shared secret, the ECDSA signature of CertificateVerify, and the ECDSA verifications of
//! the server's key exchange and of its certificate chain.
//!
//! Why: Mbed TLS's own P-256 (portable C bignum, `-Os`) costs about 10 M instructions per scalar
//! multiplication on a Cortex-M4, and a TLS 1.2 ECDHE-ECDSA handshake with a P-256 client
//! certificate does seven of them (key share, shared secret, our signature, and two per ECDSA
//! verification: the server's signature and the CA's signature on its certificate): about 70 M
//! instructions. The assembly multiplies in a few hundred thousand (docs/size.md).
//!
//! How: every ECP operation in Mbed TLS (ECDH, ECDSA sign and verify, through PSA too) ends in
//! one function, `ecp_mul_restartable_internal` (R = m·P). mbedtls-rs-sys builds Mbed TLS with
//! that function provided by Rust (its `ecp_mul` hook, on unless `nohook-ecp-mul`), falling back
//! to Mbed TLS's own code when nothing is hooked. [`install`] hooks [`AsmEcpMul`]: P-256 (the
//! only curve built in) with an affine point and a scalar in 1..n-1, which is every
//! multiplication Mbed TLS asks for in a handshake; anything else is refused with
//! `MBEDTLS_ERR_ECP_BAD_INPUT_DATA`, as Mbed TLS's own code refuses a scalar out of range or a
//! point off the curve. Mbed TLS's own multiplication is then never called, and the boards link
//! with `--wrap=ecp_mul_restartable_internal_soft` so that the linker drops it (about 5 KB; the
//! stub [`__wrap_ecp_mul_restartable_internal_soft`] answers that error too).
//! The point is checked on the curve by Mbed TLS first, as its own code does:
//! the assembly checks only that the coordinates are below p, and a point off the curve is the
//! invalid-curve attack on ECDH. The assembly runs in constant time, so Mbed TLS's coordinate
//! blinding (its RNG argument) is not needed.

use core::ffi::c_void;

use mbedtls_rs::sys::hook::ecp::{hook_ecp_mul, MbedtlsEcpMul, MbedtlsEcpRestartCtx, MbedtlsFRng};
use mbedtls_rs::sys::{
    self, mbedtls_ecp_group, mbedtls_ecp_group_id_MBEDTLS_ECP_DP_SECP256R1, mbedtls_ecp_point,
    mbedtls_mpi, MbedtlsError, MBEDTLS_ERR_ECP_BAD_INPUT_DATA,
};
use p256_cortex_m4_sys as asm;

/// R = m·P on the assembly for P-256, Mbed TLS's own code for the rest.
pub struct AsmEcpMul;

static ASM_ECP_MUL: AsmEcpMul = AsmEcpMul;

/// Routes Mbed TLS's scalar multiplications through [`AsmEcpMul`]; call before the first
/// handshake (the boards call it from [`crate::tls::start`]).
pub fn install() {
    // SAFETY: the hook is a static with no state; it is installed before Mbed TLS runs any ECP
    // operation and never removed.
    unsafe { hook_ecp_mul(Some(&ASM_ECP_MUL)) };
}

impl MbedtlsEcpMul for AsmEcpMul {
    unsafe fn mul(
        &self,
        grp: &mut mbedtls_ecp_group,
        r: &mut mbedtls_ecp_point,
        m: &mbedtls_mpi,
        p: &mbedtls_ecp_point,
        f_rng: MbedtlsFRng,
        p_rng: *mut c_void,
        rs_ctx: *mut MbedtlsEcpRestartCtx,
    ) -> Result<(), MbedtlsError> {
        let _ = (f_rng, p_rng, rs_ctx);
        if grp.id != mbedtls_ecp_group_id_MBEDTLS_ECP_DP_SECP256R1 {
            return Err(MbedtlsError::new(MBEDTLS_ERR_ECP_BAD_INPUT_DATA));
        }
        mul_p256(grp, r, m, p).unwrap_or(Err(MbedtlsError::new(MBEDTLS_ERR_ECP_BAD_INPUT_DATA)))
    }
}

/// Stands in for Mbed TLS's own scalar multiplication (the boards link with
/// `--wrap=ecp_mul_restartable_internal_soft`): [`AsmEcpMul`] does every one, so the only caller
/// left is mbedtls-rs-sys's path for when no hook is installed, which [`install`] rules out.
#[no_mangle]
pub extern "C" fn __wrap_ecp_mul_restartable_internal_soft(
    _grp: *mut mbedtls_ecp_group,
    _r: *mut mbedtls_ecp_point,
    _m: *const mbedtls_mpi,
    _p: *const mbedtls_ecp_point,
    _f_rng: MbedtlsFRng,
    _p_rng: *mut c_void,
    _rs_ctx: *mut MbedtlsEcpRestartCtx,
) -> core::ffi::c_int {
    MBEDTLS_ERR_ECP_BAD_INPUT_DATA
}

/// An integer below 2^256 as eight little-endian words, or `None` if it does not fit.
fn words(x: &mbedtls_mpi) -> Option<[u32; 8]> {
    let mut w = [0u32; 8];
    // SAFETY: `x` is an initialised MPI; the buffer is 32 writable bytes. The words are
    // little-endian in memory (Cortex-M is little-endian), which is the library's layout.
    let r = unsafe { sys::mbedtls_mpi_write_binary_le(x, w.as_mut_ptr().cast(), 32) };
    (r == 0).then_some(w)
}

/// Sets `x` from eight little-endian words.
fn set_words(x: &mut mbedtls_mpi, w: &[u32; 8]) -> Result<(), MbedtlsError> {
    // SAFETY: `x` is an initialised MPI; the buffer is 32 readable bytes.
    let r = unsafe { sys::mbedtls_mpi_read_binary_le(x, w.as_ptr().cast(), 32) };
    if r == 0 {
        Ok(())
    } else {
        Err(MbedtlsError::new(r))
    }
}

/// Overwrites secret words in a way the compiler keeps.
fn wipe(w: &mut [u32; 8]) {
    for x in w.iter_mut() {
        // SAFETY: `x` is a valid, aligned `u32`.
        unsafe { core::ptr::write_volatile(x, 0) };
    }
}

/// R = m·P on the assembly, or `None` for inputs it does not take: a projective point (Mbed TLS
/// passes affine ones), a point off the curve, a scalar outside 1..n-1.
fn mul_p256(
    grp: &mbedtls_ecp_group,
    r: &mut mbedtls_ecp_point,
    m: &mbedtls_mpi,
    p: &mbedtls_ecp_point,
) -> Option<Result<(), MbedtlsError>> {
    // SAFETY (all calls below): pointers to initialised Mbed TLS objects owned by the caller.
    if unsafe { sys::mbedtls_mpi_cmp_int(&p.private_Z, 1) } != 0
        || unsafe { sys::mbedtls_mpi_cmp_int(m, 0) } <= 0
        || unsafe { sys::mbedtls_ecp_check_pubkey(grp, p) } != 0
    {
        return None;
    }
    let mut k = words(m)?;
    let mut x = [0u32; 8];
    let mut y = [0u32; 8];
    let ok = if unsafe { sys::mbedtls_ecp_point_cmp(p, &grp.G) } == 0 {
        // The base point: the library's fixed-base multiplication (precomputed table).
        // SAFETY: three distinct arrays of eight words.
        unsafe { asm::p256_keygen(x.as_mut_ptr(), y.as_mut_ptr(), k.as_ptr()) }
    } else {
        let (Some(px), Some(py)) = (words(&p.private_X), words(&p.private_Y)) else {
            wipe(&mut k);
            return None;
        };
        // SAFETY: five distinct arrays of eight words.
        unsafe {
            asm::p256_scalarmult_generic(
                x.as_mut_ptr(),
                y.as_mut_ptr(),
                k.as_ptr(),
                px.as_ptr(),
                py.as_ptr(),
            )
        }
    };
    wipe(&mut k);
    if !ok {
        // The scalar is not in 1..n-1 (or a coordinate not below p).
        return None;
    }
    let done = set_words(&mut r.private_X, &x)
        .and_then(|()| set_words(&mut r.private_Y, &y))
        .and_then(|()| {
            // SAFETY: `r.private_Z` is an initialised MPI.
            match unsafe { sys::mbedtls_mpi_lset(&mut r.private_Z, 1) } {
                0 => Ok(()),
                e => Err(MbedtlsError::new(e)),
            }
        });
    // The product of a secret scalar (an ECDH shared point) is secret too.
    wipe(&mut x);
    wipe(&mut y);
    Some(done)
}
