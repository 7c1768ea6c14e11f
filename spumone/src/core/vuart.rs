//! The console UART a Linux partition sees: a PL011 register model, enough for the
//! `amba-pl011` driver in SBSA mode (`arm,sbsa-uart`) and the `pl011` earlycon.
//!
//! Transmission is instant (bytes leave through [`UartEffects::tx`] to the partition's console
//! channel), so the TX FIFO is always empty. Received bytes wait in a 32-byte FIFO fed by
//! [`Vuart::push_rx`]. The interrupt is a level, [`Vuart::irq_level`], for the arch to mirror
//! onto the guest's SPI (INTID 33 on QEMU `virt`).

use heapless::Deque;

/// Register offsets.
pub mod reg {
    pub const DR: u64 = 0x000;
    pub const RSR_ECR: u64 = 0x004;
    pub const FR: u64 = 0x018;
    pub const ILPR: u64 = 0x020;
    pub const IBRD: u64 = 0x024;
    pub const FBRD: u64 = 0x028;
    pub const LCR_H: u64 = 0x02c;
    pub const CR: u64 = 0x030;
    pub const IFLS: u64 = 0x034;
    pub const IMSC: u64 = 0x038;
    pub const RIS: u64 = 0x03c;
    pub const MIS: u64 = 0x040;
    pub const ICR: u64 = 0x044;
    pub const DMACR: u64 = 0x048;
    /// PeriphID0..3 then PCellID0..3, one byte per word.
    pub const ID_BASE: u64 = 0xfe0;
}

/// Flag register bits.
pub mod fr {
    pub const BUSY: u32 = 1 << 3;
    pub const RXFE: u32 = 1 << 4;
    pub const TXFF: u32 = 1 << 5;
    pub const RXFF: u32 = 1 << 6;
    pub const TXFE: u32 = 1 << 7;
}

/// Interrupt bits (RIS, MIS, IMSC, ICR).
pub mod int {
    pub const RX: u32 = 1 << 4;
    pub const TX: u32 = 1 << 5;
    pub const RT: u32 = 1 << 6;
    pub const OE: u32 = 1 << 10;
    /// Every bit the PL011 defines (modem, errors, RX, TX, timeout).
    pub const ALL: u32 = 0x7ff;
}

/// Control register bits.
pub mod cr {
    pub const UARTEN: u32 = 1 << 0;
    pub const TXE: u32 = 1 << 8;
    pub const RXE: u32 = 1 << 9;
}

const LCR_H_FEN: u32 = 1 << 4;
/// RSR/DR overrun error bit.
const RSR_OE: u32 = 1 << 3;

/// RX FIFO depth (PL011 r1p5).
pub const RX_FIFO_DEPTH: usize = 32;

/// PeriphID0..3 (part 0x011, designer ARM, revision 3 = r1p5) and PrimeCell ID0..3.
pub const ID: [u8; 8] = [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1];

// Reset values; SBSA guests never program CR, so it starts enabled as firmware leaves it.
const CR_RESET: u32 = cr::UARTEN | cr::TXE | cr::RXE;
const IFLS_RESET: u32 = 0x12;

/// What a register access caused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UartEffects {
    /// Value read (0 for writes and for read-as-zero registers).
    pub value: u32,
    /// Byte to send on the partition's console channel.
    pub tx: Option<u8>,
    /// `irq_level()` after the access differs from before.
    pub irq_changed: bool,
    /// Offset, size or direction is not a PL011 register access: read as zero, write ignored.
    pub bad: bool,
}

#[derive(Debug, Clone)]
pub struct Vuart {
    rx: Deque<u8, RX_FIFO_DEPTH>,
    cr: u32,
    lcr_h: u32,
    ibrd: u32,
    fbrd: u32,
    ifls: u32,
    imsc: u32,
    dmacr: u32,
    /// Latched interrupt bits (overrun); RX, RT and TX are levels derived from the FIFOs.
    latched: u32,
    rsr: u32,
}

impl Default for Vuart {
    fn default() -> Self {
        Self::new()
    }
}

impl Vuart {
    pub const fn new() -> Self {
        Self {
            rx: Deque::new(),
            cr: CR_RESET,
            lcr_h: 0,
            ibrd: 0,
            fbrd: 0,
            ifls: IFLS_RESET,
            imsc: 0,
            dmacr: 0,
            latched: 0,
            rsr: 0,
        }
    }

    fn enabled(&self, bit: u32) -> bool {
        self.cr & cr::UARTEN != 0 && self.cr & bit != 0
    }

    /// RX trigger level in bytes (IFLS.RXIFLSEL; 1 with the FIFO off).
    fn rx_trigger(&self) -> usize {
        if self.lcr_h & LCR_H_FEN == 0 {
            return 1;
        }
        match (self.ifls >> 3) & 7 {
            0 => RX_FIFO_DEPTH / 8,
            1 => RX_FIFO_DEPTH / 4,
            2 => RX_FIFO_DEPTH / 2,
            3 => RX_FIFO_DEPTH * 3 / 4,
            _ => RX_FIFO_DEPTH * 7 / 8,
        }
    }

    /// Raw interrupt status.
    pub fn ris(&self) -> u32 {
        let mut ris = self.latched;
        if self.rx.len() >= self.rx_trigger() {
            ris |= int::RX;
        }
        // Bytes below the trigger level are reported by the timeout at once.
        if !self.rx.is_empty() {
            ris |= int::RT;
        }
        // The TX FIFO is always empty, so below any trigger level.
        if self.enabled(cr::TXE) {
            ris |= int::TX;
        }
        ris
    }

    pub fn mis(&self) -> u32 {
        self.ris() & self.imsc
    }

    /// Whether the UART's interrupt line is asserted.
    pub fn irq_level(&self) -> bool {
        self.mis() != 0
    }

    /// A byte from the host for the guest; `false` when dropped (receiver off, or FIFO full,
    /// which latches an overrun).
    pub fn push_rx(&mut self, byte: u8) -> bool {
        if !self.enabled(cr::RXE) {
            return false;
        }
        if self.rx.push_back(byte).is_err() {
            self.latched |= int::OE;
            self.rsr |= RSR_OE;
            return false;
        }
        true
    }

    /// Bytes waiting in the RX FIFO.
    pub fn rx_len(&self) -> usize {
        self.rx.len()
    }

    fn flags(&self) -> u32 {
        let mut f = fr::TXFE;
        if self.rx.is_empty() {
            f |= fr::RXFE;
        }
        if self.rx.is_full() {
            f |= fr::RXFF;
        }
        f
    }

    fn valid(offset: u64, size: u8) -> bool {
        matches!(size, 1 | 2 | 4) && offset.is_multiple_of(u64::from(size)) && offset < 0x1000
    }

    /// A guest load of `size` bytes at `offset` in the register frame.
    pub fn read(&mut self, offset: u64, size: u8) -> UartEffects {
        let before = self.irq_level();
        let mut fx = UartEffects::default();
        if !Self::valid(offset, size) {
            fx.bad = true;
            return fx;
        }
        // Narrow accesses see the low bytes of the word at their aligned offset.
        let word = offset & !3;
        let value = match word {
            reg::DR => self.rx.pop_front().map_or(0, u32::from),
            reg::RSR_ECR => self.rsr,
            reg::FR => self.flags(),
            reg::ILPR => 0,
            reg::IBRD => self.ibrd,
            reg::FBRD => self.fbrd,
            reg::LCR_H => self.lcr_h,
            reg::CR => self.cr,
            reg::IFLS => self.ifls,
            reg::IMSC => self.imsc,
            reg::RIS => self.ris(),
            reg::MIS => self.mis(),
            reg::DMACR => self.dmacr,
            w if (reg::ID_BASE..reg::ID_BASE + 0x20).contains(&w) => {
                u32::from(ID[((w - reg::ID_BASE) / 4) as usize])
            }
            // ICR is write-only.
            _ => {
                fx.bad = true;
                0
            }
        };
        let shift = (offset & 3) * 8;
        let mask = if size == 4 {
            u32::MAX
        } else {
            (1u32 << (u32::from(size) * 8)) - 1
        };
        fx.value = (value >> shift) & mask;
        fx.irq_changed = self.irq_level() != before;
        fx
    }

    /// A guest store of `size` bytes at `offset`.
    pub fn write(&mut self, offset: u64, size: u8, value: u32) -> UartEffects {
        let before = self.irq_level();
        let mut fx = UartEffects::default();
        // Registers are written whole; a narrow store only makes sense at offset 0 of a word.
        if !Self::valid(offset, size) || offset & 3 != 0 {
            fx.bad = true;
            return fx;
        }
        match offset {
            reg::DR => {
                if self.enabled(cr::TXE) {
                    fx.tx = Some(value as u8);
                }
            }
            reg::RSR_ECR => self.rsr = 0,
            reg::ILPR => {}
            reg::IBRD => self.ibrd = value & 0xffff,
            reg::FBRD => self.fbrd = value & 0x3f,
            reg::LCR_H => {
                // Turning the FIFO off flushes it.
                if value & LCR_H_FEN == 0 && self.lcr_h & LCR_H_FEN != 0 {
                    self.rx.clear();
                }
                self.lcr_h = value & 0xff;
            }
            reg::CR => self.cr = value & 0xff87,
            reg::IFLS => self.ifls = value & 0x3f,
            reg::IMSC => self.imsc = value & int::ALL,
            reg::ICR => self.latched &= !value,
            reg::DMACR => self.dmacr = value & 0x7,
            _ => fx.bad = true,
        }
        fx.irq_changed = self.irq_level() != before;
        fx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rd(u: &mut Vuart, off: u64) -> u32 {
        let fx = u.read(off, 4);
        assert!(!fx.bad, "{off:#x}");
        fx.value
    }

    fn wr(u: &mut Vuart, off: u64, v: u32) -> UartEffects {
        let fx = u.write(off, 4, v);
        assert!(!fx.bad, "{off:#x}");
        fx
    }

    #[test]
    fn id_registers() {
        let mut u = Vuart::new();
        let ids: Vec<u32> = (0..8).map(|i| rd(&mut u, 0xfe0 + 4 * i)).collect();
        assert_eq!(ids, [0x11, 0x10, 0x34, 0x00, 0x0d, 0xf0, 0x05, 0xb1]);
        // AMBA bus probing assembles the PrimeCell ID and the part/designer.
        let cid = ids[4..].iter().rev().fold(0, |a, &b| (a << 8) | b);
        assert_eq!(cid, 0xb105_f00d);
        let pid = ids[..4].iter().rev().fold(0, |a, &b| (a << 8) | b);
        assert_eq!(pid & 0x000f_ffff, 0x0004_1011);
    }

    #[test]
    fn reset_state() {
        let mut u = Vuart::new();
        assert_eq!(rd(&mut u, reg::FR), fr::TXFE | fr::RXFE);
        assert_eq!(rd(&mut u, reg::CR), 0x301);
        assert_eq!(rd(&mut u, reg::IFLS), 0x12);
        assert_eq!(rd(&mut u, reg::IMSC), 0);
        assert_eq!(rd(&mut u, reg::RIS), int::TX);
        assert_eq!(rd(&mut u, reg::MIS), 0);
        assert!(!u.irq_level());
    }

    #[test]
    fn probe_and_startup_sequence() {
        let mut u = Vuart::new();
        // Driver setup: mask and clear everything, program the line, enable.
        wr(&mut u, reg::IMSC, 0);
        wr(&mut u, reg::ICR, 0x7ff);
        wr(&mut u, reg::CR, 0);
        assert_eq!(rd(&mut u, reg::RIS) & int::TX, 0, "TX off while disabled");
        wr(&mut u, reg::IBRD, 13);
        wr(&mut u, reg::FBRD, 1);
        wr(&mut u, reg::LCR_H, 0x70); // 8N1, FIFO on
        wr(&mut u, reg::IFLS, 0x12);
        wr(&mut u, reg::DMACR, 0);
        wr(&mut u, reg::CR, cr::UARTEN | cr::TXE | cr::RXE);
        assert_eq!(rd(&mut u, reg::IBRD), 13);
        assert_eq!(rd(&mut u, reg::FBRD), 1);
        assert_eq!(rd(&mut u, reg::LCR_H), 0x70);
        assert_eq!(rd(&mut u, reg::CR), 0x301);
        let fx = wr(&mut u, reg::IMSC, int::RX | int::RT);
        assert!(!fx.irq_changed);
        assert!(!u.irq_level());
        // RSR/ECR: reads 0, write clears.
        assert_eq!(rd(&mut u, reg::RSR_ECR), 0);
        wr(&mut u, reg::RSR_ECR, 0);
    }

    #[test]
    fn tx_path() {
        let mut u = Vuart::new();
        for b in *b"ok\n" {
            let fx = wr(&mut u, reg::DR, u32::from(b) | 0xf00);
            assert_eq!(fx.tx, Some(b));
            assert_eq!(rd(&mut u, reg::FR) & (fr::TXFF | fr::BUSY), 0);
        }
        // Byte store to DR, as earlycon may do.
        assert_eq!(u.write(reg::DR, 1, u32::from(b'x')).tx, Some(b'x'));
        // Transmitter off: nothing goes out.
        wr(&mut u, reg::CR, cr::UARTEN | cr::RXE);
        assert_eq!(wr(&mut u, reg::DR, u32::from(b'y')).tx, None);
    }

    #[test]
    fn tx_interrupt_follows_mask() {
        let mut u = Vuart::new();
        let fx = wr(&mut u, reg::IMSC, int::TX);
        assert!(fx.irq_changed);
        assert!(u.irq_level());
        assert_eq!(rd(&mut u, reg::MIS), int::TX);
        // Level: still asserted after ICR while the FIFO is empty.
        wr(&mut u, reg::ICR, int::TX);
        assert!(u.irq_level());
        // The driver masks TX once it has nothing left.
        let fx = wr(&mut u, reg::IMSC, 0);
        assert!(fx.irq_changed);
        assert!(!u.irq_level());
    }

    #[test]
    fn rx_path_with_interrupts() {
        let mut u = Vuart::new();
        wr(&mut u, reg::LCR_H, 0x70);
        wr(&mut u, reg::IMSC, int::RX | int::RT);
        assert!(u.push_rx(b'a'));
        // One byte is below the 1/2 trigger (16): timeout, not RX.
        assert_eq!(rd(&mut u, reg::MIS), int::RT);
        assert!(u.irq_level());
        assert_eq!(rd(&mut u, reg::FR) & fr::RXFE, 0);
        for b in 1..16u8 {
            assert!(u.push_rx(b));
        }
        assert_eq!(rd(&mut u, reg::MIS), int::RX | int::RT);
        assert_eq!(rd(&mut u, reg::DR), u32::from(b'a'));
        assert_eq!(rd(&mut u, reg::MIS), int::RT);
        // Draining until RXFE drops the line.
        let mut got = 0;
        let mut last = UartEffects::default();
        while rd(&mut u, reg::FR) & fr::RXFE == 0 {
            last = u.read(reg::DR, 4);
            got += 1;
        }
        assert_eq!(got, 15);
        assert_eq!(last.value, 15);
        assert!(last.irq_changed);
        assert!(!u.irq_level());
        assert_eq!(rd(&mut u, reg::DR), 0, "empty FIFO reads 0");
    }

    #[test]
    fn rx_without_fifo_triggers_at_one_byte() {
        let mut u = Vuart::new();
        wr(&mut u, reg::IMSC, int::RX);
        u.push_rx(b'z');
        assert_eq!(rd(&mut u, reg::RIS) & int::RX, int::RX);
        assert!(u.irq_level());
    }

    #[test]
    fn overrun_latches_until_icr() {
        let mut u = Vuart::new();
        for i in 0..RX_FIFO_DEPTH {
            assert!(u.push_rx(i as u8));
        }
        assert_eq!(rd(&mut u, reg::FR) & fr::RXFF, fr::RXFF);
        assert!(!u.push_rx(0xff));
        assert_eq!(u.rx_len(), RX_FIFO_DEPTH);
        wr(&mut u, reg::IMSC, int::OE);
        assert!(u.irq_level());
        assert_eq!(rd(&mut u, reg::RSR_ECR), RSR_OE);
        // ICR clears only the bits written.
        wr(&mut u, reg::ICR, int::RX);
        assert!(u.irq_level());
        let fx = wr(&mut u, reg::ICR, int::OE);
        assert!(fx.irq_changed);
        assert!(!u.irq_level());
        assert_eq!(rd(&mut u, reg::RIS) & int::OE, 0);
        wr(&mut u, reg::RSR_ECR, 0);
        assert_eq!(rd(&mut u, reg::RSR_ECR), 0);
    }

    #[test]
    fn receiver_off_drops_bytes() {
        let mut u = Vuart::new();
        wr(&mut u, reg::CR, cr::UARTEN | cr::TXE);
        assert!(!u.push_rx(b'a'));
        assert_eq!(u.rx_len(), 0);
    }

    #[test]
    fn fifo_off_flushes() {
        let mut u = Vuart::new();
        wr(&mut u, reg::LCR_H, 0x70);
        u.push_rx(1);
        wr(&mut u, reg::LCR_H, 0x60);
        assert_eq!(u.rx_len(), 0);
    }

    #[test]
    fn bad_accesses_are_raz_wi_and_flagged() {
        let mut u = Vuart::new();
        for off in [0x008, 0x04c, 0x100, 0xfdc, 0x1000] {
            let fx = u.read(off, 4);
            assert!(fx.bad && fx.value == 0, "{off:#x}");
            assert!(u.write(off, 4, 0xffff_ffff).bad, "{off:#x}");
        }
        // ICR is write-only; RIS/MIS/FR/ID are read-only.
        assert!(u.read(reg::ICR, 4).bad);
        for off in [reg::FR, reg::RIS, reg::MIS, reg::ID_BASE] {
            assert!(u.write(off, 4, 0).bad, "{off:#x}");
        }
        // Misaligned or odd sizes.
        assert!(u.read(reg::CR + 1, 2).bad);
        assert!(u.read(reg::CR, 8).bad);
        assert!(u.write(reg::CR + 2, 1, 0).bad);
        assert_eq!(rd(&mut u, reg::CR), 0x301, "state untouched");
        // A narrow read of a valid register works.
        assert_eq!(u.read(reg::CR + 1, 1).value, 0x03);
    }
}
