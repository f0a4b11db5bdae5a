//! Device models for the mock: what sits behind a mock device fd.
//!
//! A model owns its PCI config space and BAR contents. It reaches memory
//! only through [`Bus`], which the mock implements by translating IOVAs
//! through the container's IOMMU, so a model's DMA lands exactly where the
//! container's mappings say, and nowhere when they say nothing.

use std::fmt;

use super::config::{BarConfig, DeviceModelConfig, EduConfig, GenericDeviceConfig};

/// What a device sees of the outside world during an access.
pub trait Bus {
    /// Device reads memory at `iova` (pci_dma_read). Pages that do not
    /// translate read as zeros, as QEMU's unassigned memory does.
    fn dma_read(&mut self, iova: u64, buf: &mut [u8]);
    /// Device writes memory at `iova` (pci_dma_write). Pages that do not
    /// translate, or are mapped without write permission, are dropped.
    fn dma_write(&mut self, iova: u64, buf: &[u8]);
    /// Asserts the device's interrupt (MSI if enabled, else INTx).
    fn raise_irq(&mut self);
}

/// PCI config space registers a model needs (include/uapi/linux/pci_regs.h).
pub mod pci {
    pub const VENDOR_ID: usize = 0x00;
    pub const DEVICE_ID: usize = 0x02;
    pub const COMMAND: usize = 0x04;
    pub const STATUS: usize = 0x06;
    pub const REVISION_ID: usize = 0x08;
    pub const CLASS_PROG: usize = 0x09;
    pub const HEADER_TYPE: usize = 0x0e;
    pub const BAR0: usize = 0x10;
    pub const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
    pub const SUBSYSTEM_ID: usize = 0x2e;
    pub const CAPABILITY_LIST: usize = 0x34;
    pub const INTERRUPT_PIN: usize = 0x3d;
    pub const COMMAND_IO: u16 = 0x1;
    pub const COMMAND_MEMORY: u16 = 0x2;
    pub const COMMAND_SERR: u16 = 0x100;
    pub const COMMAND_MASTER: u16 = 0x4;
    pub const COMMAND_INTX_DISABLE: u16 = 0x400;
    pub const STATUS_CAP_LIST: u16 = 0x10;
    pub const CAP_ID_MSI: u8 = 0x05;
    pub const CAP_ID_EXP: u8 = 0x10;
    pub const CAP_ID_MSIX: u8 = 0x11;
}

/// 256 or 4096 bytes of config space with a write mask and BAR sizing.
#[derive(Clone)]
pub struct ConfigSpace {
    pub bytes: Vec<u8>,
    wmask: Vec<u8>,
    bar_sizes: [u64; 6],
    saved: Vec<u8>,
    /// The command register vfio_pci_core_enable saved at open
    /// (pci_save_state after pci_enable_device), which the last close
    /// restores (vfio_pci_core_disable: pci_restore_state, then
    /// pci_disable_device clears bus mastering only).
    open_command: u16,
}

impl fmt::Debug for ConfigSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConfigSpace({} bytes)", self.bytes.len())
    }
}

impl ConfigSpace {
    fn new(size: usize, vendor: u16, device: u16, class_code: u32, revision: u8) -> Self {
        let mut c = Self { bytes: vec![0; size], wmask: vec![0; size], bar_sizes: [0; 6], saved: Vec::new(), open_command: 0 };
        c.put16(pci::VENDOR_ID, vendor);
        c.put16(pci::DEVICE_ID, device);
        c.bytes[pci::REVISION_ID] = revision;
        c.bytes[pci::CLASS_PROG] = class_code as u8;
        c.put16(pci::CLASS_PROG + 1, (class_code >> 8) as u16);
        // QEMU's default subsystem ids (hw/pci/pci.c: pci_init_default_config).
        c.put16(pci::SUBSYSTEM_VENDOR_ID, 0x1af4);
        c.put16(pci::SUBSYSTEM_ID, 0x1100);
        let cmd_mask = pci::COMMAND_IO | pci::COMMAND_MEMORY | pci::COMMAND_MASTER | pci::COMMAND_INTX_DISABLE | 0x0140;
        c.wmask[pci::COMMAND..pci::COMMAND + 2].copy_from_slice(&cmd_mask.to_le_bytes());
        c.wmask[0x3c] = 0xff; // interrupt line
        c
    }

    fn put16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }

    pub fn get16(&self, off: usize) -> u16 {
        u16::from_le_bytes([self.bytes[off], self.bytes[off + 1]])
    }

    /// A 32-bit non-prefetchable memory BAR of `size` bytes (a power of two).
    fn set_mem_bar(&mut self, index: usize, size: u64) {
        self.bar_sizes[index] = size;
        let mask = !(size as u32 - 1) & !0xf;
        let off = pci::BAR0 + 4 * index;
        self.wmask[off..off + 4].copy_from_slice(&mask.to_le_bytes());
    }

    /// An MSI capability at `at` (hw/pci/msi.c msi_init): 64-bit, `vectors` (a power of two).
    fn add_msi(&mut self, at: usize, vectors: u32) {
        self.add_cap(at, pci::CAP_ID_MSI);
        let mmc = vectors.max(1).trailing_zeros() as u16;
        self.put16(at + 2, 0x0080 | (mmc << 1));
        // Enable and multiple-message-enable are writable, as are address and data.
        self.wmask[at + 2] = 0x71;
        for b in &mut self.wmask[at + 4..at + 14] {
            *b = 0xff;
        }
    }

    fn add_cap(&mut self, at: usize, id: u8) {
        let status = self.get16(pci::STATUS) | pci::STATUS_CAP_LIST;
        self.put16(pci::STATUS, status);
        // Append to the end of the list.
        let mut p = pci::CAPABILITY_LIST;
        while self.bytes[p] != 0 {
            p = self.bytes[p] as usize + 1;
        }
        self.bytes[p] = at as u8;
        self.bytes[at] = id;
        self.bytes[at + 1] = 0;
    }

    pub fn command(&self) -> u16 {
        self.get16(pci::COMMAND)
    }

    pub fn read(&self, off: usize, buf: &mut [u8]) {
        buf.copy_from_slice(&self.bytes[off..off + buf.len()]);
    }

    pub fn write(&mut self, off: usize, buf: &[u8]) {
        for (i, b) in buf.iter().enumerate() {
            let m = self.wmask[off + i];
            self.bytes[off + i] = (self.bytes[off + i] & !m) | (b & m);
        }
    }

    pub fn bar_size(&self, index: u32) -> u64 {
        self.bar_sizes.get(index as usize).copied().unwrap_or(0)
    }

    /// vfio-pci enables the device when it is opened (pci_enable_device):
    /// memory decoding on, bus mastering off until the user sets it; what
    /// the firmware enabled (I/O decoding, SERR#) stays. The result is the
    /// state saved for the last close to restore.
    pub fn enable(&mut self) {
        let cmd = (self.command() | pci::COMMAND_MEMORY) & !pci::COMMAND_MASTER;
        self.put16(pci::COMMAND, cmd);
        self.open_command = cmd;
    }

    /// The last close (vfio_pci_core_disable): the command register as
    /// saved at open, without bus mastering.
    pub fn disable(&mut self) {
        self.put16(pci::COMMAND, self.open_command & !pci::COMMAND_MASTER);
    }

    /// pci_reset_function saves config space, resets, and restores it.
    pub fn save(&mut self) {
        self.saved = self.bytes.clone();
    }

    pub fn restore(&mut self) {
        if !self.saved.is_empty() {
            self.bytes.clone_from(&self.saved);
        }
    }

    pub fn msi_enabled(&self) -> bool {
        let mut p = self.bytes[pci::CAPABILITY_LIST] as usize;
        while p != 0 {
            if self.bytes[p] == pci::CAP_ID_MSI {
                return self.get16(p + 2) & 1 != 0;
            }
            p = self.bytes[p + 1] as usize;
        }
        false
    }

    pub fn has_cap(&self, id: u8) -> bool {
        let mut p = self.bytes[pci::CAPABILITY_LIST] as usize;
        let mut guard = 0;
        while p != 0 && guard < 48 {
            if self.bytes[p] == id {
                return true;
            }
            p = self.bytes[p + 1] as usize;
            guard += 1;
        }
        false
    }
}

/// A PCI function model.
pub trait DeviceModel: Send + fmt::Debug {
    /// For tests and fixtures that inspect a concrete model.
    fn as_any(&self) -> &dyn std::any::Any;
    fn config(&self) -> &ConfigSpace;
    fn config_mut(&mut self) -> &mut ConfigSpace;
    /// Whether the kernel would find a reset method (vdev->reset_works).
    fn reset_works(&self) -> bool;
    /// Whether a memory BAR may be mmap'd (vdev->bar_mmap_supported).
    fn bar_mmap(&self, bar: u32) -> bool;
    /// Sparse mmap areas of a BAR, if it reports VFIO_REGION_INFO_CAP_SPARSE_MMAP.
    fn bar_sparse(&self, _bar: u32) -> Option<Vec<(u64, u64)>> {
        None
    }
    /// vfio_pci_get_irq_count.
    fn msi_vectors(&self) -> u32;
    fn msix_vectors(&self) -> u32 {
        0
    }
    fn is_pcie(&self) -> bool {
        self.config().has_cap(pci::CAP_ID_EXP)
    }
    /// Whether a BAR access's bytes are the register value big-endian: QEMU
    /// devices declared DEVICE_NATIVE_ENDIAN are, on a big-endian target
    /// such as ppc64 (memory_region_dispatch_read's adjust_endianness).
    fn big_endian_registers(&self) -> bool {
        false
    }
    /// A BAR access of `width` bytes (1, 2, 4 or 8) at an aligned offset.
    fn bar_read(&mut self, bar: u32, offset: u64, width: usize) -> u64;
    fn bar_write(&mut self, bar: u32, offset: u64, width: usize, value: u64, bus: &mut dyn Bus);
    /// The device's own reset (its registers), not config space.
    fn reset(&mut self);
}

/// Builds the model a config asks for.
pub fn build(config: &DeviceModelConfig) -> Box<dyn DeviceModel> {
    match config {
        DeviceModelConfig::Edu(c) => Box::new(Edu::new(c.clone())),
        DeviceModelConfig::Generic(c) => Box::new(Generic::new(c.clone())),
    }
}

// ---------------------------------------------------------------------------
// QEMU's edu (hw/misc/edu.c)

pub mod edu {
    pub const VENDOR: u16 = 0x1234;
    pub const DEVICE: u16 = 0x11e8;
    pub const ID: u32 = 0x0100_00ed;
    pub const REG_ID: u64 = 0x00;
    pub const REG_LIVENESS: u64 = 0x04;
    pub const REG_FACTORIAL: u64 = 0x08;
    pub const REG_STATUS: u64 = 0x20;
    pub const REG_IRQ_STATUS: u64 = 0x24;
    pub const REG_IRQ_RAISE: u64 = 0x60;
    pub const REG_IRQ_ACK: u64 = 0x64;
    pub const REG_DMA_SRC: u64 = 0x80;
    pub const REG_DMA_DST: u64 = 0x88;
    pub const REG_DMA_COUNT: u64 = 0x90;
    pub const REG_DMA_CMD: u64 = 0x98;
    pub const STATUS_COMPUTING: u32 = 0x01;
    pub const STATUS_IRQFACT: u32 = 0x80;
    pub const DMA_RUN: u64 = 0x1;
    /// Direction bit set: from the device's buffer to RAM.
    pub const DMA_FROM_DEVICE: u64 = 0x2;
    pub const DMA_IRQ: u64 = 0x4;
    pub const IRQ_FACT: u32 = 0x1;
    pub const IRQ_DMA: u32 = 0x100;
    pub const BUFFER: u64 = 0x40000;
    pub const BUFFER_SIZE: u64 = 4096;
    pub const BAR0_SIZE: u64 = 1 << 20;
}

#[derive(Debug)]
pub struct Edu {
    cfg: ConfigSpace,
    conf: EduConfig,
    addr4: u32,
    fact: u32,
    status: u32,
    irq_status: u32,
    dma_src: u64,
    dma_dst: u64,
    dma_cnt: u64,
    dma_cmd: u64,
    buf: Vec<u8>,
    /// Transfers QEMU would have refused with hw_error (out of the buffer).
    pub range_errors: u64,
}

impl Edu {
    pub fn new(conf: EduConfig) -> Self {
        // edu_class_init: PCI_CLASS_OTHERS, revision 0x10; pci_edu_realize:
        // interrupt pin 1, MSI with one vector, BAR0 1 MiB of MMIO.
        let mut cfg = ConfigSpace::new(256, edu::VENDOR, edu::DEVICE, 0x00ff00, 0x10);
        cfg.bytes[pci::INTERRUPT_PIN] = 1;
        cfg.set_mem_bar(0, edu::BAR0_SIZE);
        cfg.add_msi(0x40, 1);
        cfg.put16(pci::COMMAND, conf.command_at_boot);
        Self {
            cfg,
            conf,
            addr4: 0,
            fact: 0,
            status: 0,
            irq_status: 0,
            dma_src: 0,
            dma_dst: 0,
            dma_cnt: 0,
            dma_cmd: 0,
            buf: vec![0; edu::BUFFER_SIZE as usize],
            range_errors: 0,
        }
    }

    /// edu_check_range as fixed in QEMU 8+ (a transfer may end exactly at
    /// the buffer's end; 7.2 refused that by one byte).
    fn in_buffer(addr: u64, len: u64) -> bool {
        let end = addr.wrapping_add(len);
        addr >= edu::BUFFER && end > addr && end <= edu::BUFFER + edu::BUFFER_SIZE
    }

    /// edu_mmio_read/write: registers below 0x80 take 4-byte accesses only,
    /// the DMA registers 4- or 8-byte ones.
    fn access_ok(addr: u64, width: usize) -> bool {
        width == 4 || (width == 8 && addr >= 0x80)
    }

    fn clamp(&self, addr: u64) -> u64 {
        addr & self.conf.dma_mask
    }

    fn raise(&mut self, val: u32, bus: &mut dyn Bus) {
        self.irq_status |= val;
        if self.irq_status != 0 {
            bus.raise_irq();
        }
    }

    /// edu_dma_timer, run at once instead of 100 ms later; the guest-side
    /// protocol (start, then poll DMA_CMD until RUN clears) is the same.
    fn run_dma(&mut self, bus: &mut dyn Bus) {
        let cnt = self.dma_cnt;
        if self.dma_cmd & edu::DMA_FROM_DEVICE != 0 {
            if Self::in_buffer(self.dma_src, cnt) {
                let start = (self.dma_src - edu::BUFFER) as usize;
                let data = self.buf[start..start + cnt as usize].to_vec();
                bus.dma_write(self.clamp(self.dma_dst), &data);
            } else {
                self.range_errors += 1;
            }
        } else if Self::in_buffer(self.dma_dst, cnt) {
            let start = (self.dma_dst - edu::BUFFER) as usize;
            let mut data = vec![0u8; cnt as usize];
            bus.dma_read(self.clamp(self.dma_src), &mut data);
            self.buf[start..start + cnt as usize].copy_from_slice(&data);
        } else {
            self.range_errors += 1;
        }
        self.dma_cmd &= !edu::DMA_RUN;
        if self.dma_cmd & edu::DMA_IRQ != 0 {
            self.raise(edu::IRQ_DMA, bus);
        }
    }
}

impl DeviceModel for Edu {
    // edu_mmio_ops is DEVICE_NATIVE_ENDIAN.
    fn big_endian_registers(&self) -> bool {
        self.conf.big_endian
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.cfg
    }
    fn reset_works(&self) -> bool {
        self.conf.reset
    }
    fn bar_mmap(&self, bar: u32) -> bool {
        bar == 0
    }
    fn msi_vectors(&self) -> u32 {
        1
    }

    // edu_mmio_read: registers below 0x80 answer 4-byte reads only, the DMA
    // registers 4- or 8-byte reads; anything else reads as all ones.
    fn bar_read(&mut self, bar: u32, addr: u64, width: usize) -> u64 {
        let invalid = if width == 8 { u64::MAX } else { (1u64 << (8 * width)) - 1 };
        if bar != 0 || !Self::access_ok(addr, width) {
            return invalid;
        }
        let v = match addr {
            edu::REG_ID => edu::ID as u64,
            edu::REG_LIVENESS => self.addr4 as u64,
            edu::REG_FACTORIAL => self.fact as u64,
            edu::REG_STATUS => self.status as u64,
            edu::REG_IRQ_STATUS => self.irq_status as u64,
            edu::REG_DMA_SRC => self.dma_src,
            edu::REG_DMA_DST => self.dma_dst,
            edu::REG_DMA_COUNT => self.dma_cnt,
            edu::REG_DMA_CMD => self.dma_cmd,
            _ => return invalid,
        };
        if width == 4 {
            v & 0xffff_ffff
        } else {
            v
        }
    }

    fn bar_write(&mut self, bar: u32, addr: u64, width: usize, val: u64, bus: &mut dyn Bus) {
        if bar != 0 || !Self::access_ok(addr, width) {
            return;
        }
        let dma_idle = self.dma_cmd & edu::DMA_RUN == 0;
        match addr {
            edu::REG_LIVENESS => self.addr4 = !(val as u32),
            // The factorial thread, run at once; u32 arithmetic wraps.
            edu::REG_FACTORIAL if self.status & edu::STATUS_COMPUTING == 0 => {
                let n = val as u32;
                self.fact = (1..=n).fold(1u32, |acc, i| acc.wrapping_mul(i));
                if self.status & edu::STATUS_IRQFACT != 0 {
                    self.raise(edu::IRQ_FACT, bus);
                }
            }
            edu::REG_STATUS => {
                if val as u32 & edu::STATUS_IRQFACT != 0 {
                    self.status |= edu::STATUS_IRQFACT;
                } else {
                    self.status &= !edu::STATUS_IRQFACT;
                }
            }
            edu::REG_IRQ_RAISE => self.raise(val as u32, bus),
            edu::REG_IRQ_ACK => self.irq_status &= !(val as u32),
            edu::REG_DMA_SRC if dma_idle => self.dma_src = val,
            edu::REG_DMA_DST if dma_idle => self.dma_dst = val,
            edu::REG_DMA_COUNT if dma_idle => self.dma_cnt = val,
            edu::REG_DMA_CMD if dma_idle => {
                self.dma_cmd = val;
                if val & edu::DMA_RUN != 0 {
                    self.run_dma(bus);
                }
            }
            _ => {}
        }
    }

    fn reset(&mut self) {
        let conf = self.conf.clone();
        let cfg = self.cfg.clone();
        *self = Edu::new(conf);
        self.cfg = cfg;
    }
}

// ---------------------------------------------------------------------------
// A generic memory-BAR device

#[derive(Debug)]
pub struct Generic {
    cfg: ConfigSpace,
    conf: GenericDeviceConfig,
    bars: Vec<Vec<u8>>,
}

impl Generic {
    pub fn new(conf: GenericDeviceConfig) -> Self {
        let size = if conf.pcie { 4096 } else { 256 };
        let mut cfg = ConfigSpace::new(size, conf.vendor, conf.device, conf.class_code, 0);
        cfg.bytes[pci::INTERRUPT_PIN] = 1;
        let mut bars = vec![Vec::new(); 6];
        for BarConfig { index, size, .. } in &conf.bars {
            if (*index as usize) < 6 && size.is_power_of_two() {
                cfg.set_mem_bar(*index as usize, *size);
                bars[*index as usize] = vec![0; *size as usize];
            }
        }
        let mut next = 0x40;
        if conf.msi_vectors > 0 {
            cfg.add_msi(next, conf.msi_vectors);
            next += 0x18;
        }
        if conf.pcie {
            cfg.add_cap(next, pci::CAP_ID_EXP);
        }
        Self { cfg, conf, bars }
    }
}

impl DeviceModel for Generic {
    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
    fn config(&self) -> &ConfigSpace {
        &self.cfg
    }
    fn config_mut(&mut self) -> &mut ConfigSpace {
        &mut self.cfg
    }
    fn reset_works(&self) -> bool {
        self.conf.reset
    }
    fn bar_mmap(&self, bar: u32) -> bool {
        self.conf.bars.iter().any(|b| b.index == bar && b.mmap)
    }
    fn bar_sparse(&self, bar: u32) -> Option<Vec<(u64, u64)>> {
        self.conf.bars.iter().find(|b| b.index == bar).and_then(|b| b.sparse.clone())
    }
    fn msi_vectors(&self) -> u32 {
        self.conf.msi_vectors
    }
    fn msix_vectors(&self) -> u32 {
        self.conf.msix_vectors
    }
    fn is_pcie(&self) -> bool {
        self.conf.pcie
    }
    fn bar_read(&mut self, bar: u32, offset: u64, width: usize) -> u64 {
        let mem = &self.bars[bar as usize];
        let o = offset as usize;
        let mut b = [0u8; 8];
        b[..width].copy_from_slice(&mem[o..o + width]);
        u64::from_le_bytes(b)
    }
    fn bar_write(&mut self, bar: u32, offset: u64, width: usize, value: u64, _bus: &mut dyn Bus) {
        let o = offset as usize;
        self.bars[bar as usize][o..o + width].copy_from_slice(&value.to_le_bytes()[..width]);
    }
    fn reset(&mut self) {
        for b in &mut self.bars {
            b.fill(0);
        }
    }
}
