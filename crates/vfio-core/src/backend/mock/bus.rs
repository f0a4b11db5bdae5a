//! A device model's view of the bus: its DMA goes through the container's
//! IOMMU into this process's memory, its interrupts to the eventfds user
//! space set.

use super::devices::{pci, Bus};
use super::iommu::IommuOps;
use super::irq::{signal_eventfd, IrqIndexState};
use super::Host;
use crate::uapi::*;

impl Host {
    /// The device's DMA view and interrupt line, for a model access.
    pub(super) fn bus_for(&mut self, dev: usize) -> (Option<usize>, bool) {
        let gid = self.devices[dev].group;
        let c = self.groups[&gid].container;
        let master = self.devices[dev].model.config().command() & pci::COMMAND_MASTER != 0;
        (c, master)
    }
}

/// What translates a device's DMA: its group's container IOMMU, or the
/// IOAS its cdev is attached to.
pub(super) enum Dma<'a> {
    Container(&'a dyn IommuOps),
    Ioas(&'a super::iommufd::IoasState),
}

impl Dma<'_> {
    fn translate(&self, iova: u64, write: bool) -> Option<(u64, u64)> {
        match self {
            Dma::Container(i) => i.translate(iova, write),
            Dma::Ioas(i) => i.translate(iova, write),
        }
    }
}

/// A device's view of the bus during one access.
pub(super) struct HostBus<'a> {
    pub(super) iommu: Option<Dma<'a>>,
    pub(super) master: bool,
    pub(super) irqs: &'a mut [IrqIndexState; VFIO_PCI_NUM_IRQS as usize],
    pub(super) irq_type: Option<u32>,
    pub(super) intx_disabled: bool,
}

impl HostBus<'_> {
    /// Walks `len` bytes at `iova` page by page (as QEMU's address space
    /// dispatch does), calling `f(host_addr, offset_in_buf, len)` for each
    /// piece the IOMMU allows; pieces it refuses are skipped.
    fn walk(&self, iova: u64, len: usize, write: bool, mut f: impl FnMut(u64, usize, usize)) {
        if !self.master {
            return; // bus mastering off: the device's DMA goes nowhere
        }
        let Some(iommu) = &self.iommu else { return };
        let mut done = 0usize;
        while done < len {
            let a = iova.wrapping_add(done as u64);
            let page_left = (4096 - (a & 0xfff)) as usize;
            let mut chunk = page_left.min(len - done);
            if let Some((host, avail)) = iommu.translate(a, write) {
                chunk = chunk.min(avail as usize);
                f(host, done, chunk);
            }
            done += chunk;
        }
    }
}

/// process_vm_writev on ourselves: copies into this process's memory at
/// `addr`, failing (EFAULT) instead of crashing when it is not mapped.
pub(super) fn write_self(addr: u64, data: &[u8]) -> bool {
    let local = libc::iovec { iov_base: data.as_ptr() as *mut libc::c_void, iov_len: data.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: data.len() };
    // SAFETY: `local` describes a live slice for its exact length; `remote`
    // is only dereferenced by the kernel, which checks it and fails with
    // EFAULT for unmapped addresses.
    let n = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == data.len() as isize
}

/// process_vm_readv on ourselves; a failed read leaves `out` as it was.
pub(super) fn read_self(addr: u64, out: &mut [u8]) -> bool {
    let local = libc::iovec { iov_base: out.as_mut_ptr().cast(), iov_len: out.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: out.len() };
    // SAFETY: as write_self; `local` is a live, writable slice of its length.
    let n = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, &remote, 1, 0) };
    n == out.len() as isize
}

impl Bus for HostBus<'_> {
    fn dma_read(&mut self, iova: u64, buf: &mut [u8]) {
        buf.fill(0);
        let len = buf.len();
        let mut pieces = Vec::new();
        self.walk(iova, len, false, |host, off, n| pieces.push((host, off, n)));
        for (host, off, n) in pieces {
            read_self(host, &mut buf[off..off + n]);
        }
    }

    fn dma_write(&mut self, iova: u64, buf: &[u8]) {
        self.walk(iova, buf.len(), true, |host, off, n| {
            write_self(host, &buf[off..off + n]);
        });
    }

    // vfio_msihandler / vfio_intx_handler: MSI signals its trigger; INTx
    // signals and masks itself until unmasked (VFIO_IRQ_INFO_AUTOMASKED).
    // An MSI is a memory write by the device (QEMU's msi_send_message goes
    // through the bus-master address space), so without bus mastering it is
    // lost, as the lab's kernel shows; INTx is a wire and needs no master.
    fn raise_irq(&mut self) {
        match self.irq_type {
            Some(VFIO_PCI_MSI_IRQ_INDEX) if self.master => {
                if let Some(Some(fd)) = self.irqs[VFIO_PCI_MSI_IRQ_INDEX as usize].triggers.first() {
                    signal_eventfd(fd);
                }
            }
            Some(VFIO_PCI_INTX_IRQ_INDEX) if !self.intx_disabled => {
                let st = &mut self.irqs[VFIO_PCI_INTX_IRQ_INDEX as usize];
                if !st.masked {
                    if let Some(Some(fd)) = st.triggers.first() {
                        signal_eventfd(fd);
                    }
                    st.masked = true;
                }
            }
            _ => {}
        }
    }
}
