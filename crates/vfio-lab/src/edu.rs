//! QEMU's edu device (hw/misc/edu.c), the DMA engine both suites drive: its
//! BAR0 register map, in one place for the x86 and the sPAPR cases.
//!
//! 0x00 id, 0x04 liveness (reads back the bitwise NOT), 0x24/0x60/0x64
//! interrupt status/raise/acknowledge, 0x80 DMA source, 0x88 DMA
//! destination, 0x90 count, 0x98 command (bit 0 start and busy, bit 1
//! direction: 1 = device to RAM). Its own buffer is at device address
//! 0x40000.

pub const EDU_ID: u64 = 0x00;
/// What the id register reads: version 1.0, 0xed (`edu_mmio_read`).
pub const EDU_ID_VALUE: u32 = 0x0100_00ed;
pub const EDU_LIVENESS: u64 = 0x04;
pub const EDU_IRQ_STATUS: u64 = 0x24;
pub const EDU_IRQ_RAISE: u64 = 0x60;
pub const EDU_IRQ_ACK: u64 = 0x64;
pub const EDU_DMA_SRC: u64 = 0x80;
pub const EDU_DMA_DST: u64 = 0x88;
pub const EDU_DMA_COUNT: u64 = 0x90;
pub const EDU_DMA_CMD: u64 = 0x98;
pub const EDU_DMA_RUN: u64 = 1;
pub const EDU_DMA_TO_RAM: u64 = 2;
pub const EDU_BUFFER: u64 = 0x40000;
