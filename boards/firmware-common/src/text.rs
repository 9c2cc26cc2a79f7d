//! Addresses as text for the heartbeat DDR, without `core::fmt` (which would link several KiB).

use heapless::String;

/// `a.b.c.d` without `core::fmt` (which would link several KiB).
pub(crate) fn ip_text(ip: [u8; 4]) -> String<15> {
    let mut s = String::new();
    for (i, octet) in ip.iter().enumerate() {
        if i > 0 {
            let _ = s.push('.');
        }
        let mut digits = [0u8; 3];
        let mut n = *octet;
        let mut len = 0;
        loop {
            digits[len] = b'0' + n % 10;
            len += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for d in digits[..len].iter().rev() {
            let _ = s.push(char::from(*d));
        }
    }
    s
}

/// `AA:BB:CC:DD:EE:FF`, as Windows reports `MACAddress`.
pub(crate) fn mac_text(mac: [u8; 6]) -> String<17> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut s = String::new();
    for (i, b) in mac.iter().enumerate() {
        if i > 0 {
            let _ = s.push(':');
        }
        let _ = s.push(char::from(HEX[usize::from(b >> 4)]));
        let _ = s.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    s
}
