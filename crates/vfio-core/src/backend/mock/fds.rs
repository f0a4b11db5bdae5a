//! The mock's descriptor table: what each fd it handed out refers to, and
//! what closing one releases (vfio_fops_release, vfio_group_fops_release,
//! vfio_device_fops_release).

use super::super::{Errno, RawFd, SysResult};
use super::Host;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FdObj {
    Container(usize),
    Group(u32),
    Device(usize),
    /// An open of /dev/iommu (an iommufd context).
    Iommufd(usize),
    /// An open of /dev/vfio/devices/vfioN.
    Cdev(usize),
}

impl Host {
    pub(super) fn new_fd(&mut self, obj: FdObj) -> RawFd {
        let fd = self.next_fd;
        self.next_fd += 1;
        self.fds.insert(fd, obj);
        fd
    }

    pub(super) fn container(&self, fd: RawFd) -> SysResult<usize> {
        match self.fds.get(&fd) {
            Some(FdObj::Container(c)) => Ok(*c),
            Some(_) => Err(Errno(libc::ENOTTY)),
            None => Err(Errno(libc::EBADF)),
        }
    }

    pub(super) fn group(&self, fd: RawFd) -> SysResult<u32> {
        match self.fds.get(&fd) {
            Some(FdObj::Group(g)) => Ok(*g),
            Some(_) => Err(Errno(libc::ENOTTY)),
            None => Err(Errno(libc::EBADF)),
        }
    }

    pub(super) fn device(&self, fd: RawFd) -> SysResult<usize> {
        match self.fds.get(&fd) {
            Some(FdObj::Device(d)) => Ok(*d),
            Some(FdObj::Cdev(c)) => self.bound_cdev_device(*c),
            Some(_) => Err(Errno(libc::ENOTTY)),
            None => Err(Errno(libc::EBADF)),
        }
    }

    pub(super) fn close(&mut self, fd: RawFd) {
        let h = self;
        match h.fds.remove(&fd) {
            // vfio_fops_release: the container lives on while groups hold it.
            Some(FdObj::Container(c)) => h.containers[c].file_open = false,
            Some(FdObj::Group(g)) => {
                h.groups.get_mut(&g).expect("group").file_open = false;
                h.maybe_release_group(g);
            }
            // vfio_device_fops_release: the device's last close disables it
            // (vfio_pci_core_disable) and drops its use of the container.
            Some(FdObj::Device(d)) => {
                let gid = h.devices[d].group;
                h.release_device(d);
                h.groups.get_mut(&gid).expect("group").open_devices -= 1;
                h.maybe_release_group(gid);
            }
            Some(FdObj::Cdev(c)) => h.close_cdev(c),
            Some(FdObj::Iommufd(c)) => h.close_iommufd(c),
            // Below the mock's numbers: one of the process's own, which a
            // live hand-over delivered and an object adopted (from_raw:
            // closed on drop). The mock never made it, so it answers every
            // ioctl on it with EBADF, but closing it is the process's close.
            None if (0..super::FIRST_FD).contains(&fd) => {
                // SAFETY: the object that held this descriptor owned it and is being dropped.
                unsafe { libc::close(fd) };
            }
            None => {}
        }
    }
}

impl Host {
    /// One close of an open device (group fd or bound cdev): the last one
    /// disables it (vfio_pci_core_disable: interrupts torn down, the config
    /// state saved at open restored, bus mastering off).
    pub(super) fn release_device(&mut self, d: usize) {
        let dev = &mut self.devices[d];
        dev.open_count -= 1;
        if dev.open_count == 0 {
            dev.irq_type = None;
            dev.irqs = Default::default();
            dev.model.config_mut().disable();
        }
    }
}
