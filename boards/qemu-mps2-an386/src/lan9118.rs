//! A small `embassy-net-driver` for the SMSC LAN9118 Ethernet controller of the MPS2 boards
//! (a LAN9220 on the real FPGA board; QEMU models the LAN9118 at `0x4020_0000`, interrupt 13).
//!
//! Hand-written because nothing drives this chip for embassy-net: embassy's own driver family
//! (adin1110, enc28j60, wiznet, esp-hosted, tuntap, ppp) has no LAN9118 and no crate on crates.io
//! provides one (`shared/spec/facts.md`). The chip is simple enough that a polled driver is a page
//! of code. It moves frames through the chip's PIO FIFOs one 32-bit word at a time: receive pops a
//! status word, then the frame (plus its 4-byte FCS, dropped here); transmit pushes the two
//! command words and the frame as one segment. The only interrupt used is "RX status FIFO level",
//! and only to wake the network task instead of polling on a timer.
//!
//! Scope: what QEMU models and what a small device needs. No checksum offload, no multicast
//! filter, no PHY management (the link is reported up), no flow control, and the transmit path
//! waits for FIFO room by re-polling. A real LAN9220 also needs the PHY brought up and the TX
//! FIFO's byte count checked the way the data sheet says; QEMU reports it in words.

use core::ptr::{read_volatile, write_volatile};
use core::task::Context;

use cortex_m::interrupt::InterruptNumber;
use embassy_net_driver::{Capabilities, HardwareAddress, LinkState};
use embassy_sync::waitqueue::AtomicWaker;

const BASE: usize = 0x4020_0000;
/// The LAN9118's line on the NVIC of mps2-an385/an386.
pub const IRQ: u16 = 13;

// System control and status registers (offsets from BASE).
const RX_DATA_FIFO: usize = 0x00;
const TX_DATA_FIFO: usize = 0x20;
const RX_STATUS_FIFO: usize = 0x40;
const IRQ_CFG: usize = 0x54;
const INT_STS: usize = 0x58;
const INT_EN: usize = 0x5C;
const BYTE_TEST: usize = 0x64;
const TX_CFG: usize = 0x70;
const HW_CFG: usize = 0x74;
const RX_FIFO_INF: usize = 0x7C;
const TX_FIFO_INF: usize = 0x80;
const PMT_CTRL: usize = 0x84;
const MAC_CSR_CMD: usize = 0xA4;
const MAC_CSR_DATA: usize = 0xA8;

const BYTE_TEST_VALUE: u32 = 0x8765_4321;
const HW_CFG_SRST: u32 = 1;
const PMT_CTRL_READY: u32 = 1;
const IRQ_CFG_EN_ACTIVE_HIGH_PUSH_PULL: u32 = 0x100 | 0x10 | 0x01;
const INT_RSFL: u32 = 1 << 3;
const TX_CFG_ON_ALLOW_STATUS_OVERRUN: u32 = (1 << 1) | (1 << 2);
const MAC_CSR_BUSY: u32 = 1 << 31;
const MAC_CSR_READ: u32 = 1 << 30;
const RX_STATUS_ERROR: u32 = 1 << 15;
const TX_CMD_A_FIRST_LAST: u32 = (1 << 13) | (1 << 12);

// MAC registers, reached through MAC_CSR_CMD / MAC_CSR_DATA.
const MAC_CR: u32 = 1;
const MAC_ADDRH: u32 = 2;
const MAC_ADDRL: u32 = 3;
const MAC_CR_FDPX: u32 = 1 << 20;
const MAC_CR_TXEN: u32 = 1 << 3;
const MAC_CR_RXEN: u32 = 1 << 2;

/// Largest Ethernet frame handled (no VLAN tag, no FCS).
pub const MTU: usize = 1514;
const FCS_LEN: usize = 4;

static RX_WAKER: AtomicWaker = AtomicWaker::new();

/// Bringing the controller up failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum InitError {
    /// BYTE_TEST did not read back 0x87654321: no LAN9118 at the address.
    NotFound,
    /// The soft reset or the power-management READY bit never completed.
    ResetTimeout,
}

/// One frame buffer per direction (kept in a `static`: moving 3 KB around costs stack).
pub struct Frames {
    rx: [u8; MTU + FCS_LEN],
    tx: [u8; MTU],
}

impl Frames {
    /// Zeroed buffers (a `const fn`, so they can live in `.bss`).
    pub const fn new() -> Self {
        Self {
            rx: [0; MTU + FCS_LEN],
            tx: [0; MTU],
        }
    }
}

/// The controller, owning its registers and its frame buffers.
pub struct Lan9118 {
    mac: [u8; 6],
    frames: &'static mut Frames,
}

fn read(offset: usize) -> u32 {
    // SAFETY: BASE..BASE+0x100 is the LAN9118's register window on this machine; reads of it
    // have no effect besides the FIFO pops the callers intend.
    unsafe { read_volatile((BASE + offset) as *const u32) }
}

fn write(offset: usize, value: u32) {
    // SAFETY: as in `read`; only `Lan9118` (a single instance, see `new`) writes the window.
    unsafe { write_volatile((BASE + offset) as *mut u32, value) }
}

fn wait_until(mut done: impl FnMut() -> bool) -> Result<(), InitError> {
    for _ in 0..100_000 {
        if done() {
            return Ok(());
        }
    }
    Err(InitError::ResetTimeout)
}

fn mac_write(reg: u32, value: u32) -> Result<(), InitError> {
    write(MAC_CSR_DATA, value);
    write(MAC_CSR_CMD, MAC_CSR_BUSY | reg);
    wait_until(|| read(MAC_CSR_CMD) & MAC_CSR_BUSY == 0)
}

fn mac_read(reg: u32) -> Result<u32, InitError> {
    write(MAC_CSR_CMD, MAC_CSR_BUSY | MAC_CSR_READ | reg);
    wait_until(|| read(MAC_CSR_CMD) & MAC_CSR_BUSY == 0)?;
    Ok(read(MAC_CSR_DATA))
}

#[derive(Clone, Copy)]
struct Irq(u16);

// SAFETY: 13 is a valid external interrupt number on this NVIC.
unsafe impl InterruptNumber for Irq {
    fn number(self) -> u16 {
        self.0
    }
}

impl Lan9118 {
    /// Reset the controller, start the MAC and unmask its interrupt. The MAC address is the one
    /// the chip loaded from its EEPROM (QEMU: `-nic …,mac=`, default 52:54:00:12:34:56).
    ///
    /// Create one instance only: it owns the register window and interrupt [`IRQ`].
    pub fn new(frames: &'static mut Frames) -> Result<Self, InitError> {
        if read(BYTE_TEST) != BYTE_TEST_VALUE {
            return Err(InitError::NotFound);
        }
        write(HW_CFG, HW_CFG_SRST);
        wait_until(|| read(HW_CFG) & HW_CFG_SRST == 0)?;
        wait_until(|| read(PMT_CTRL) & PMT_CTRL_READY != 0)?;
        let lo = mac_read(MAC_ADDRL)?.to_le_bytes();
        let hi = mac_read(MAC_ADDRH)?.to_le_bytes();
        let mac = [lo[0], lo[1], lo[2], lo[3], hi[0], hi[1]];
        write(TX_CFG, TX_CFG_ON_ALLOW_STATUS_OVERRUN);
        mac_write(MAC_CR, MAC_CR_TXEN | MAC_CR_RXEN | MAC_CR_FDPX)?;
        write(INT_STS, u32::MAX);
        write(INT_EN, INT_RSFL);
        write(IRQ_CFG, IRQ_CFG_EN_ACTIVE_HIGH_PUSH_PULL);
        // SAFETY: the handler (`on_interrupt`) only touches INT_STS and an AtomicWaker.
        unsafe { cortex_m::peripheral::NVIC::unmask(Irq(IRQ)) };
        Ok(Self { mac, frames })
    }

    /// The MAC address in use.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// Pop the next good frame into `self.rx`; its length without FCS.
    fn pop_frame(&mut self) -> Option<usize> {
        loop {
            if (read(RX_FIFO_INF) >> 16) & 0xFF == 0 {
                return None;
            }
            let status = read(RX_STATUS_FIFO);
            let len = ((status >> 16) & 0x3FFF) as usize;
            let fits = len > FCS_LEN && len <= self.frames.rx.len();
            let mut chunks = self.frames.rx.chunks_mut(4);
            for _ in 0..len.div_ceil(4) {
                let word = read(RX_DATA_FIFO).to_le_bytes();
                if let (true, Some(chunk)) = (fits, chunks.next()) {
                    let n = chunk.len();
                    chunk.copy_from_slice(word.get(..n).unwrap_or(&word));
                }
            }
            if fits && status & RX_STATUS_ERROR == 0 {
                return Some(len - FCS_LEN);
            }
            defmt::warn!("lan9118: dropped frame, status {=u32:#x}", status);
        }
    }
}

/// Interrupt 13: acknowledge and wake the network task.
pub fn on_interrupt() {
    write(INT_STS, INT_RSFL);
    RX_WAKER.wake();
}

/// A received frame.
pub struct RxToken<'a> {
    frame: &'a mut [u8],
}

/// Room to send one frame.
pub struct TxToken<'a> {
    buf: &'a mut [u8; MTU],
}

impl embassy_net_driver::RxToken for RxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, f: F) -> R {
        f(self.frame)
    }
}

impl embassy_net_driver::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let len = len.min(MTU);
        let frame = &mut self.buf[..len];
        let result = f(frame);
        // One segment: command A (first + last, byte count), command B (tag, frame length).
        write(TX_DATA_FIFO, TX_CMD_A_FIRST_LAST | len as u32);
        write(TX_DATA_FIFO, ((len as u32) << 16) | len as u32);
        for chunk in frame.chunks(4) {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            write(TX_DATA_FIFO, u32::from_le_bytes(word));
        }
        result
    }
}

impl embassy_net_driver::Driver for Lan9118 {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, cx: &mut Context) -> Option<(RxToken<'_>, TxToken<'_>)> {
        // Register first: a frame that lands after the FIFO check still wakes us.
        RX_WAKER.register(cx.waker());
        let len = self.pop_frame()?;
        let Frames { rx, tx } = &mut *self.frames;
        Some((
            RxToken {
                frame: &mut rx[..len],
            },
            TxToken { buf: tx },
        ))
    }

    fn transmit(&mut self, cx: &mut Context) -> Option<TxToken<'_>> {
        // Free data FIFO space (QEMU counts words, the chip bytes: both exceed a frame when idle).
        if (read(TX_FIFO_INF) & 0xFFFF) as usize >= MTU + 8 {
            Some(TxToken {
                buf: &mut self.frames.tx,
            })
        } else {
            cx.waker().wake_by_ref();
            None
        }
    }

    fn link_state(&mut self, _cx: &mut Context) -> LinkState {
        LinkState::Up
    }

    fn capabilities(&self) -> Capabilities {
        let mut caps = Capabilities::default();
        caps.max_transmission_unit = MTU;
        caps
    }

    fn hardware_address(&self) -> HardwareAddress {
        HardwareAddress::Ethernet(self.mac)
    }
}
