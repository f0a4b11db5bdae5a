//! Groups (/dev/vfio/N, drivers/vfio/group.c): viability, attaching to a
//! container, and handing out device fds.

use std::ffi::CStr;

use super::super::{Errno, RawFd, SysResult};
use super::config::{IovaSpan, KernelVersion, VFIO_PCI};
use super::fds::FdObj;
use super::iommu::AttachGroup;
use super::{einval, Host};
use crate::uapi::*;

#[derive(Debug)]
pub(super) struct GroupState {
    pub(super) devices: Vec<usize>,
    pub(super) reserved: Vec<IovaSpan>,
    /// group->opened_file (a group can be open once).
    pub(super) file_open: bool,
    pub(super) container: Option<usize>,
    pub(super) open_devices: usize,
}

/// Drivers that leave a group viable: vfio-pci and pci-stub do no DMA of
/// their own, and pcieport sets driver_managed_dma (so
/// iommu_device_use_default_domain never claims the group).
pub(super) fn driver_keeps_group_viable(driver: Option<&str>) -> bool {
    matches!(driver, None | Some(VFIO_PCI) | Some("pci-stub") | Some("pcieport"))
}

impl Host {
    pub(super) fn viable(&self, gid: u32) -> bool {
        self.groups[&gid].devices.iter().all(|&d| driver_keeps_group_viable(self.devices[d].driver.as_deref()))
    }

    // vfio_group_detach_container: the IOMMU forgets the group; the last
    // group out releases the IOMMU and every mapping with it.
    pub(super) fn detach(&mut self, gid: u32) {
        let Some(c) = self.groups.get_mut(&gid).and_then(|g| g.container.take()) else { return };
        let cs = &mut self.containers[c];
        cs.groups.retain(|&g| g != gid);
        if let Some(iommu) = cs.iommu.as_mut() {
            iommu.detach_group(gid);
        }
        if cs.groups.is_empty() {
            cs.iommu = None;
        }
    }

    // vfio_group_fops_release: runs once the group file and every device
    // fd (which hold a reference on it) are closed.
    pub(super) fn maybe_release_group(&mut self, gid: u32) {
        let g = &self.groups[&gid];
        if !g.file_open && g.open_devices == 0 {
            self.detach(gid);
        }
    }

    // /dev/vfio/N exists while a device of group N is bound to a vfio
    // driver (vfio_device_set_group); vfio_group_fops_open refuses a second
    // open with EBUSY.
    pub(super) fn open_group(&mut self, id: u32) -> SysResult<RawFd> {
        let h = self;
        let h = &mut *h;
        let Some(g) = h.groups.get(&id) else { return Err(Errno(libc::ENOENT)) };
        if !g.devices.iter().any(|&d| h.devices[d].driver.as_deref() == Some(VFIO_PCI)) {
            return Err(Errno(libc::ENOENT));
        }
        // vfio_group_fops_open: busy while open, or while a device of the
        // group is bound through its cdev (cdev_device_open_cnt).
        if g.file_open || h.group_blocked_by_cdev(id) {
            return Err(Errno(libc::EBUSY));
        }
        h.groups.get_mut(&id).expect("checked").file_open = true;
        Ok(h.new_fd(FdObj::Group(id)))
    }

    // vfio_group_ioctl_get_status: VIABLE unless a device's driver claimed
    // DMA ownership; CONTAINER_SET (and VIABLE) once attached.
    pub(super) fn group_get_status(&mut self, group: RawFd, status: &mut vfio_group_status) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let gid = h.group(group)?;
        if (status.argsz as usize) < std::mem::size_of::<vfio_group_status>() {
            return einval();
        }
        status.flags = if h.groups[&gid].container.is_some() {
            VFIO_GROUP_FLAGS_CONTAINER_SET | VFIO_GROUP_FLAGS_VIABLE
        } else if h.viable(gid) {
            VFIO_GROUP_FLAGS_VIABLE
        } else {
            0
        };
        Ok(())
    }

    // vfio_group_ioctl_set_container + vfio_container_attach_group.
    pub(super) fn group_set_container(&mut self, group: RawFd, container: RawFd) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let h = &mut *h;
        let gid = h.group(group)?;
        let c = match h.fds.get(&container) {
            None => return Err(Errno(libc::EBADF)),
            Some(FdObj::Container(c)) => Some(*c),
            Some(_) => None,
        };
        if h.groups[&gid].container.is_some() {
            return einval();
        }
        let Some(c) = c else {
            // Not a container: 6.1 answers EINVAL, 6.2+ (with iommufd) EBADFD.
            return Err(Errno(match h.config.kernel {
                KernelVersion::V6_1 => libc::EINVAL,
                KernelVersion::V6_12 => libc::EBADFD,
            }));
        };
        // iommu_group_claim_dma_owner: EPERM while a host driver owns DMA.
        if !h.viable(gid) {
            return Err(Errno(libc::EPERM));
        }
        if let Some(iommu) = h.containers[c].iommu.as_mut() {
            iommu.attach_group(&AttachGroup { id: gid, reserved: h.groups[&gid].reserved.clone() })?;
        }
        h.containers[c].groups.push(gid);
        h.groups.get_mut(&gid).expect("group").container = Some(c);
        Ok(())
    }

    // vfio_group_ioctl_unset_container: EINVAL without a container, EBUSY
    // while devices are open (container_users != 1).
    pub(super) fn group_unset_container(&mut self, group: RawFd) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let gid = h.group(group)?;
        let g = &h.groups[&gid];
        if g.container.is_none() {
            return einval();
        }
        if g.open_devices > 0 {
            return Err(Errno(libc::EBUSY));
        }
        h.detach(gid);
        Ok(())
    }

    // vfio_group_ioctl_get_device_fd: the name must match a vfio-bound
    // device of the group (ENODEV), then the group needs a container with
    // an IOMMU (vfio_df_group_open / vfio_group_use_container: EINVAL).
    pub(super) fn group_get_device_fd(&mut self, group: RawFd, name: &CStr) -> SysResult<RawFd> {
        let h = self;
        h.ioctls += 1;
        let h = &mut *h;
        let gid = h.group(group)?;
        let name = name.to_str().map_err(|_| Errno(libc::ENODEV))?;
        let dev = h.groups[&gid]
            .devices
            .iter()
            .copied()
            .find(|&d| h.devices[d].address == name && h.devices[d].driver.as_deref() == Some(VFIO_PCI))
            .ok_or(Errno(libc::ENODEV))?;
        let c = h.groups[&gid].container.ok_or(Errno(libc::EINVAL))?;
        if h.containers[c].iommu.is_none() {
            return einval();
        }
        let d = &mut h.devices[dev];
        if d.open_count == 0 {
            // vfio_pci_core_enable: pci_enable_device, state saved for reset.
            d.model.config_mut().enable();
            d.model.config_mut().save();
        }
        d.open_count += 1;
        h.groups.get_mut(&gid).expect("group").open_devices += 1;
        Ok(h.new_fd(FdObj::Device(dev)))
    }
}
