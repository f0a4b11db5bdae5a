//! Device regions (drivers/vfio/pci/vfio_pci_core.c, vfio_pci_rdwr.c):
//! region info with its capabilities, read/write through the device fd,
//! and BAR mmaps.

use super::super::{argsz_of, buf_bytes, buf_bytes_mut, read_pod, write_pod, Errno, Mmap, RawFd, SysResult};
use super::bus::{Dma, HostBus};
use super::caps::CapChain;
use super::config::KernelVersion;
use super::devices::pci;
use super::{einval, Host};
use crate::uapi::*;

/// Splits an access into the aligned 8/4/2/1-byte pieces
/// vfio_pci_core_do_io_rw issues.
fn io_pieces(mut off: u64, len: usize, mut f: impl FnMut(u64, usize, usize)) {
    let mut done = 0;
    while done < len {
        let left = len - done;
        let w = if left >= 8 && off.is_multiple_of(8) {
            8
        } else if left >= 4 && off.is_multiple_of(4) {
            4
        } else if left >= 2 && off.is_multiple_of(2) {
            2
        } else {
            1
        };
        f(off, done, w);
        off += w as u64;
        done += w;
    }
}

pub(super) const REGION_SHIFT: u32 = VFIO_PCI_OFFSET_SHIFT;
pub(super) const REGION_MASK: u64 = (1u64 << REGION_SHIFT) - 1;

impl Host {
    // vfio_pci_rw: dispatch by region index in the top bits of the offset.
    pub(super) fn device_rw(&mut self, dev: usize, pos: u64, buf: &mut [u8], write: bool) -> SysResult<usize> {
        let index = (pos >> REGION_SHIFT) as u32;
        let off = pos & REGION_MASK;
        if index >= VFIO_PCI_NUM_REGIONS {
            return einval();
        }
        match index {
            VFIO_PCI_CONFIG_REGION_INDEX => {
                // vfio_config_do_rw: the whole access must lie in config space.
                let size = self.devices[dev].model.config().bytes.len() as u64;
                if off >= size || off + buf.len() as u64 > size {
                    return Err(Errno(libc::EFAULT));
                }
                let model = &mut self.devices[dev].model;
                if write {
                    model.config_mut().write(off as usize, buf);
                } else {
                    model.config().read(off as usize, buf);
                }
                Ok(buf.len())
            }
            0..=5 => {
                // vfio_pci_bar_rw: past the end is EINVAL, a read that runs
                // over is shortened; memory decoding off is EIO.
                let end = self.devices[dev].model.config().bar_size(index);
                if off >= end {
                    return einval();
                }
                let n = buf.len().min((end - off) as usize);
                self.bar_access(dev, index, off, &mut buf[..n], write)?;
                Ok(n)
            }
            // No ROM (pci_resource_len is 0) and no VGA on the modelled devices.
            _ => einval(),
        }
    }

    pub(super) fn bar_access(&mut self, dev: usize, bar: u32, off: u64, buf: &mut [u8], write: bool) -> SysResult<()> {
        // __vfio_pci_memory_enabled.
        if self.devices[dev].model.config().command() & pci::COMMAND_MEMORY == 0 {
            return Err(Errno(libc::EIO));
        }
        let (c, master) = self.bus_for(dev);
        // The group's container, or the IOAS the device's cdev is attached to.
        let ioas = self.device_ioas(dev);
        let iommu = match c.and_then(|c| self.containers[c].iommu.as_deref()) {
            Some(i) => Some(Dma::Container(i)),
            None => ioas.and_then(|at| super::iommufd::ioas_at(&self.ictxs, at)).map(Dma::Ioas),
        };
        let d = &mut self.devices[dev];
        let intx_disabled = d.model.config().command() & pci::COMMAND_INTX_DISABLE != 0;
        let mut bus = HostBus { iommu, master, irqs: &mut d.irqs, irq_type: d.irq_type, intx_disabled };
        let model = &mut d.model;
        let be = model.big_endian_registers();
        io_pieces(off, buf.len(), |o, at, w| {
            if write {
                let bytes = &buf[at..at + w];
                let v = if be {
                    bytes.iter().fold(0u64, |v, &b| v << 8 | u64::from(b))
                } else {
                    bytes.iter().rev().fold(0u64, |v, &b| v << 8 | u64::from(b))
                };
                model.bar_write(bar, o, w, v, &mut bus);
            } else {
                let v = model.bar_read(bar, o, w);
                let out = &mut buf[at..at + w];
                if be {
                    out.copy_from_slice(&v.to_be_bytes()[8 - w..]);
                } else {
                    out.copy_from_slice(&v.to_le_bytes()[..w]);
                }
            }
        });
        Ok(())
    }

    // vfio_pci_core_ioctl_get_info: minsz is up to num_irqs.
    pub(super) fn device_get_info(&mut self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let d = h.device(device)?;
        let minsz = std::mem::offset_of!(vfio_device_info, cap_offset);
        let argsz = argsz_of(buf);
        if (argsz as usize) < minsz {
            return einval();
        }
        let m = &h.devices[d].model;
        let info = vfio_device_info {
            argsz,
            flags: VFIO_DEVICE_FLAGS_PCI | if m.reset_works() { VFIO_DEVICE_FLAGS_RESET } else { 0 },
            num_regions: VFIO_PCI_NUM_REGIONS,
            num_irqs: VFIO_PCI_NUM_IRQS,
            cap_offset: 0,
        };
        write_pod(buf_bytes_mut(buf), 0, &info, minsz);
        Ok(())
    }

    // vfio_pci_ioctl_get_region_info.
    pub(super) fn device_get_region_info(&mut self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let d = h.device(device)?;
        let minsz = std::mem::size_of::<vfio_region_info>();
        let argsz = argsz_of(buf) as usize;
        let mut info: vfio_region_info = read_pod(buf_bytes(buf), 0).ok_or(Errno(libc::EINVAL))?;
        if argsz < minsz {
            return einval();
        }
        let m = &h.devices[d].model;
        let index = info.index;
        info.offset = (index as u64) << REGION_SHIFT;
        info.cap_offset = 0;
        let mut caps = CapChain::new(h.config.kernel == KernelVersion::V6_1);
        match index {
            0..=5 => {
                info.size = m.config().bar_size(index);
                info.flags = 0;
                if info.size != 0 {
                    info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
                    if m.bar_mmap(index) {
                        info.flags |= VFIO_REGION_INFO_FLAG_MMAP;
                        if let Some(areas) = m.bar_sparse(index) {
                            let tail: Vec<u8> = areas
                                .iter()
                                .flat_map(|(o, s)| o.to_ne_bytes().into_iter().chain(s.to_ne_bytes()))
                                .collect();
                            caps.add(
                                VFIO_REGION_INFO_CAP_SPARSE_MMAP,
                                1,
                                &vfio_region_info_cap_sparse_mmap {
                                    header: Default::default(),
                                    nr_areas: areas.len() as u32,
                                    reserved: 0,
                                    areas: [],
                                },
                                &tail,
                            );
                        }
                    }
                }
            }
            VFIO_PCI_ROM_REGION_INDEX => {
                info.size = 0;
                info.flags = 0;
            }
            VFIO_PCI_CONFIG_REGION_INDEX => {
                info.size = m.config().bytes.len() as u64;
                info.flags = VFIO_REGION_INFO_FLAG_READ | VFIO_REGION_INFO_FLAG_WRITE;
            }
            // VGA without vdev->has_vga, and any index past the regions.
            _ => return einval(),
        }
        if !caps.bytes.is_empty() {
            info.flags |= VFIO_REGION_INFO_FLAG_CAPS;
            if argsz < minsz + caps.bytes.len() {
                info.argsz = (minsz + caps.bytes.len()) as u32;
            } else {
                if !caps.shift_into(buf_bytes_mut(buf), minsz) {
                    return Err(Errno(libc::EFAULT));
                }
                info.cap_offset = minsz as u32;
            }
        }
        write_pod(buf_bytes_mut(buf), 0, &info, minsz);
        Ok(())
    }

    pub(super) fn device_read(&mut self, device: RawFd, offset: u64, buf: &mut [u8]) -> SysResult<usize> {
        let h = self;
        let d = h.device(device)?;
        h.device_rw(d, offset, buf, false)
    }

    pub(super) fn device_write(&mut self, device: RawFd, offset: u64, buf: &[u8]) -> SysResult<usize> {
        let h = self;
        let d = h.device(device)?;
        let mut tmp = buf.to_vec();
        h.device_rw(d, offset, &mut tmp, true)
    }

    // mmap(2) (offset page-aligned, length non-zero) and vfio_pci_core_mmap:
    // BARs only, mmap-capable ones only, and within the page-aligned BAR.
    pub(super) fn mmap(&mut self, device: RawFd, offset: u64, len: usize) -> SysResult<Mmap> {
        let h = self;
        let d = h.device(device)?;
        if len == 0 || !offset.is_multiple_of(4096) {
            return einval();
        }
        let index = (offset >> REGION_SHIFT) as u32;
        if index >= VFIO_PCI_ROM_REGION_INDEX {
            return einval();
        }
        let m = &h.devices[d].model;
        if !m.bar_mmap(index) {
            return einval();
        }
        let phys_len = m.config().bar_size(index).div_ceil(4096) * 4096;
        let start = offset & REGION_MASK;
        if start + len as u64 > phys_len {
            return einval();
        }
        Ok(Mmap::Emulated { device, fd_offset: offset, len })
    }

    // An access through the mapping: vfio_pci_mmap_fault gives SIGBUS when
    // memory decoding is off; the emulated mapping answers EIO instead.
    pub(super) fn mmio_read(&mut self, map: &Mmap, offset: u64, buf: &mut [u8]) -> SysResult<()> {
        let Mmap::Emulated { device, fd_offset, len } = map else { return Err(Errno(libc::ENOTTY)) };
        let h = self;
        let d = h.device(*device)?;
        let pos = mmio_pos(*fd_offset, *len, offset, buf.len())?;
        h.bar_access(d, (pos >> REGION_SHIFT) as u32, pos & REGION_MASK, buf, false)
    }

    pub(super) fn mmio_write(&mut self, map: &Mmap, offset: u64, buf: &[u8]) -> SysResult<()> {
        let Mmap::Emulated { device, fd_offset, len } = map else { return Err(Errno(libc::ENOTTY)) };
        let h = self;
        let d = h.device(*device)?;
        let pos = mmio_pos(*fd_offset, *len, offset, buf.len())?;
        let mut tmp = buf.to_vec();
        h.bar_access(d, (pos >> REGION_SHIFT) as u32, pos & REGION_MASK, &mut tmp, true)
    }
}

/// The region offset an access at `offset` of an emulated mapping reaches.
/// An access outside the mapping is a fault in a process that touches real
/// MMIO pages (SIGSEGV/SIGBUS): the mock answers EFAULT instead.
fn mmio_pos(fd_offset: u64, len: usize, offset: u64, access: usize) -> SysResult<u64> {
    match offset.checked_add(access as u64) {
        Some(end) if end <= len as u64 => Ok(fd_offset + offset),
        _ => Err(Errno(libc::EFAULT)),
    }
}
