//! Device interrupts (drivers/vfio/pci/vfio_pci_intrs.c): IRQ info,
//! SET_IRQS with its validation, and the eventfds the kernel signals.

use super::super::{buf_bytes, read_pod, Errno, RawFd, SysResult};
use super::config::KernelVersion;
use super::devices::pci;
use super::{einval, Host};
use crate::uapi::*;

#[derive(Debug, Default)]
pub(super) struct IrqIndexState {
    /// One (dup'ed) eventfd per vector; the kernel holds an eventfd_ctx reference.
    pub(super) triggers: Vec<Option<std::os::fd::OwnedFd>>,
    pub(super) masked: bool,
}

pub(super) fn signal_eventfd(fd: &std::os::fd::OwnedFd) {
    use std::os::fd::AsRawFd;
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a live u64 to an eventfd we hold a dup of.
    unsafe { libc::write(fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
}

impl Host {
    // vfio_pci_set_irqs_ioctl with vfio_set_irqs_validate_and_prepare.
    pub(super) fn set_irqs(&mut self, dev: usize, bytes: &[u8]) -> SysResult<()> {
        let minsz = std::mem::size_of::<vfio_irq_set>();
        let hdr: vfio_irq_set = read_pod(bytes, 0).ok_or(Errno(libc::EINVAL))?;
        let flag_mask = VFIO_IRQ_SET_DATA_TYPE_MASK | VFIO_IRQ_SET_ACTION_TYPE_MASK;
        if (hdr.argsz as usize) < minsz
            || hdr.index >= VFIO_PCI_NUM_IRQS
            || hdr.count >= u32::MAX - hdr.start
            || hdr.flags & !flag_mask != 0
        {
            return einval();
        }
        let max = self.irq_count(dev, hdr.index);
        if hdr.start >= max || hdr.start + hdr.count > max {
            return einval();
        }
        let size = match hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK {
            VFIO_IRQ_SET_DATA_NONE => 0,
            VFIO_IRQ_SET_DATA_BOOL => 1,
            VFIO_IRQ_SET_DATA_EVENTFD => 4,
            _ => return einval(),
        };
        if size > 0 && (hdr.argsz as usize - minsz) < hdr.count as usize * size {
            return einval();
        }
        let data = bytes.get(minsz..minsz + hdr.count as usize * size).ok_or(Errno(libc::EINVAL))?;
        let action = hdr.flags & VFIO_IRQ_SET_ACTION_TYPE_MASK;
        let dtype = hdr.flags & VFIO_IRQ_SET_DATA_TYPE_MASK;
        let d = &mut self.devices[dev];
        let fds: Vec<i32> = data.chunks_exact(4).map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]])).collect();
        match (hdr.index, action) {
            (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_MASK) | (VFIO_PCI_INTX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_UNMASK) => {
                // vfio_pci_set_intx_mask / _unmask: only while INTx is enabled.
                if d.irq_type != Some(VFIO_PCI_INTX_IRQ_INDEX) || hdr.start != 0 || hdr.count != 1 {
                    return if d.irq_type == Some(VFIO_PCI_INTX_IRQ_INDEX) { einval() } else { Ok(()) };
                }
                let st = &mut d.irqs[0];
                let set = dtype == VFIO_IRQ_SET_DATA_NONE || data.first().is_some_and(|&b| b != 0);
                if set {
                    st.masked = action == VFIO_IRQ_SET_ACTION_MASK;
                }
                Ok(())
            }
            (VFIO_PCI_INTX_IRQ_INDEX | VFIO_PCI_MSI_IRQ_INDEX | VFIO_PCI_MSIX_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                let index = hdr.index;
                // Disable: count 0 with DATA_NONE.
                if hdr.count == 0 && dtype == VFIO_IRQ_SET_DATA_NONE {
                    if d.irq_type == Some(index) {
                        d.irq_type = None;
                        d.irqs[index as usize] = IrqIndexState::default();
                    }
                    return Ok(());
                }
                // Only one of INTx / MSI / MSI-X at a time.
                if d.irq_type.is_some() && d.irq_type != Some(index) {
                    return einval();
                }
                if dtype == VFIO_IRQ_SET_DATA_EVENTFD {
                    let total = if index == VFIO_PCI_INTX_IRQ_INDEX { 1 } else { (hdr.start + hdr.count) as usize };
                    let st = &mut d.irqs[index as usize];
                    if d.irq_type != Some(index) {
                        st.triggers = (0..total).map(|_| None).collect();
                        st.masked = false;
                    } else if st.triggers.len() < total {
                        // vfio_msi_set_block on an enabled index cannot grow it.
                        return einval();
                    }
                    let mut new = Vec::with_capacity(fds.len());
                    for &fd in &fds {
                        if fd < 0 {
                            new.push(None);
                        } else {
                            new.push(Some(dup_eventfd(fd)?));
                        }
                    }
                    for (i, t) in new.into_iter().enumerate() {
                        st.triggers[hdr.start as usize + i] = t;
                    }
                    d.irq_type = Some(index);
                    return Ok(());
                }
                // DATA_NONE / DATA_BOOL: fire the selected vectors (loopback).
                let st = &d.irqs[index as usize];
                for i in 0..hdr.count as usize {
                    let fire = dtype == VFIO_IRQ_SET_DATA_NONE || data.get(i).is_some_and(|&b| b != 0);
                    if fire {
                        if let Some(Some(fd)) = st.triggers.get(hdr.start as usize + i) {
                            signal_eventfd(fd);
                        }
                    }
                }
                Ok(())
            }
            (VFIO_PCI_ERR_IRQ_INDEX | VFIO_PCI_REQ_IRQ_INDEX, VFIO_IRQ_SET_ACTION_TRIGGER) => {
                // vfio_pci_set_err_trigger / _req_trigger: one eventfd context.
                let st = &mut d.irqs[hdr.index as usize];
                if dtype == VFIO_IRQ_SET_DATA_EVENTFD {
                    st.triggers = vec![if fds[0] < 0 { None } else { Some(dup_eventfd(fds[0])?) }];
                } else if hdr.count == 0 {
                    st.triggers.clear();
                } else if let Some(Some(fd)) = st.triggers.first() {
                    signal_eventfd(fd);
                }
                Ok(())
            }
            _ => Err(Errno(libc::ENOTTY)),
        }
    }

    // vfio_pci_get_irq_count.
    pub(super) fn irq_count(&self, dev: usize, index: u32) -> u32 {
        let m = &self.devices[dev].model;
        match index {
            VFIO_PCI_INTX_IRQ_INDEX => (m.config().bytes[pci::INTERRUPT_PIN] != 0) as u32,
            VFIO_PCI_MSI_IRQ_INDEX => m.msi_vectors(),
            VFIO_PCI_MSIX_IRQ_INDEX => m.msix_vectors(),
            VFIO_PCI_ERR_IRQ_INDEX => m.is_pcie() as u32,
            VFIO_PCI_REQ_IRQ_INDEX => 1,
            _ => 0,
        }
    }

    // vfio_pci_ioctl_get_irq_info: ERR only on PCIe devices; INTx is
    // maskable and automasked, the others cannot be resized (6.1).
    pub(super) fn device_get_irq_info(&mut self, device: RawFd, info: &mut vfio_irq_info) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let d = h.device(device)?;
        if (info.argsz as usize) < std::mem::size_of::<vfio_irq_info>() || info.index >= VFIO_PCI_NUM_IRQS {
            return einval();
        }
        if info.index == VFIO_PCI_ERR_IRQ_INDEX && !h.devices[d].model.is_pcie() {
            return einval();
        }
        // Since 6.5 MSI-X can grow while enabled where the platform allocates
        // vectors dynamically (vdev->has_dyn_msix, true on x86 with IRQ
        // remapping), so only 6.1 marks an existing MSI-X as NORESIZE.
        let dyn_msix = h.config.kernel == KernelVersion::V6_12 && h.devices[d].model.msix_vectors() > 0;
        info.flags = VFIO_IRQ_INFO_EVENTFD
            | if info.index == VFIO_PCI_INTX_IRQ_INDEX {
                VFIO_IRQ_INFO_MASKABLE | VFIO_IRQ_INFO_AUTOMASKED
            } else if info.index == VFIO_PCI_MSIX_IRQ_INDEX && dyn_msix {
                0
            } else {
                VFIO_IRQ_INFO_NORESIZE
            };
        info.count = h.irq_count(d, info.index);
        Ok(())
    }

    pub(super) fn device_set_irqs(&mut self, device: RawFd, buf: &[u64]) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let d = h.device(device)?;
        h.set_irqs(d, buf_bytes(buf))
    }
}

/// eventfd_ctx_fdget: the kernel takes a reference, so the caller may close
/// its fd; a descriptor that is not open is EBADF.
fn dup_eventfd(fd: i32) -> SysResult<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: F_DUPFD_CLOEXEC on a caller-supplied descriptor only creates a
    // new descriptor (or fails with EBADF); nothing else is touched.
    let n = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 0) };
    if n < 0 {
        return Err(Errno::last());
    }
    // SAFETY: `n` is a fresh descriptor we exclusively own from here on.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(n) })
}
