//! Containers (/dev/vfio/vfio, drivers/vfio/container.c): the IOMMU driver
//! chosen by SET_IOMMU and the ioctls forwarded to it.

use super::super::{Errno, RawFd, SysResult};
use super::fds::FdObj;
use super::iommu::{AttachGroup, IommuOps};
use super::type1::Type1Iommu;
use super::{einval, Host};
use crate::uapi::*;

#[derive(Debug, Default)]
pub(super) struct ContainerState {
    /// The /dev/vfio/vfio file is still open.
    pub(super) file_open: bool,
    /// Attached groups in attach order (container->group_list).
    pub(super) groups: Vec<u32>,
    /// The chosen IOMMU driver and its data (container->iommu_driver/iommu_data).
    pub(super) iommu: Option<Box<dyn IommuOps>>,
}


impl Host {
    // vfio_fops_open: a new, empty container; with IOMMUFD_VFIO_CONTAINER
    // the misc device is iommufd's and iommufd_fops_open answers.
    pub(super) fn open_container(&mut self) -> SysResult<RawFd> {
        if self.vfio_is_iommufd() {
            return self.open_iommufd();
        }
        let h = self;
        h.containers.push(ContainerState { file_open: true, ..Default::default() });
        let c = h.containers.len() - 1;
        Ok(h.new_fd(FdObj::Container(c)))
    }

    // vfio_fops_unl_ioctl: VFIO_GET_API_VERSION.
    pub(super) fn get_api_version(&mut self, container: RawFd) -> SysResult<i32> {
        let h = self;
        h.ioctls += 1;
        h.container(container)?;
        Ok(VFIO_API_VERSION)
    }

    // vfio_container_ioctl_check_extension: without an IOMMU ask every
    // driver (skipping those not allowed, e.g. no noiommu mixing) and return
    // the first positive answer; with one, ask only it.
    pub(super) fn check_extension(&mut self, container: RawFd, ext: u32) -> SysResult<i32> {
        let h = self;
        h.ioctls += 1;
        let c = h.container(container)?;
        if let Some(iommu) = &h.containers[c].iommu {
            return Ok(iommu.check_extension(ext));
        }
        let mut ret = 0;
        for d in &h.drivers {
            ret = d.check_extension(&h.config, ext);
            if ret > 0 {
                break;
            }
        }
        Ok(ret)
    }

    // vfio_ioctl_set_iommu: needs an attached group and no IOMMU yet
    // (EINVAL); tries each driver that offers the extension, opening it and
    // attaching every group; ENODEV when none does.
    pub(super) fn set_iommu(&mut self, container: RawFd, ext: u32) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let h = &mut *h;
        let c = h.container(container)?;
        if h.containers[c].groups.is_empty() || h.containers[c].iommu.is_some() {
            return einval();
        }
        let mut ret = Err(Errno(libc::ENODEV));
        for d in &h.drivers {
            if d.check_extension(&h.config, ext) <= 0 {
                continue;
            }
            let mut iommu = match d.open(&h.config, &h.mm, ext) {
                Ok(i) => i,
                Err(e) => {
                    ret = Err(e);
                    continue;
                }
            };
            // __vfio_container_attach_groups.
            let mut attach = Ok(());
            for gid in &h.containers[c].groups {
                let g = AttachGroup { id: *gid, reserved: h.groups[gid].reserved.clone() };
                if let Err(e) = iommu.attach_group(&g) {
                    attach = Err(e);
                    break;
                }
            }
            if let Err(e) = attach {
                ret = Err(e);
                continue;
            }
            h.containers[c].iommu = Some(iommu);
            ret = Ok(());
            break;
        }
        ret
    }

    // vfio_fops_unl_ioctl default branch: EINVAL without an IOMMU driver.
    pub(super) fn iommu_get_info(&mut self, container: RawFd, buf: &mut [u64]) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let c = h.container(container)?;
        h.containers[c].iommu.as_mut().ok_or(Errno(libc::EINVAL))?.get_info(buf)
    }

    pub(super) fn map_dma(&mut self, container: RawFd, map: &vfio_iommu_type1_dma_map) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let c = h.container(container)?;
        h.containers[c].iommu.as_mut().ok_or(Errno(libc::EINVAL))?.map_dma(map)
    }

    // vfio_fops_unl_ioctl default branch: EINVAL without an IOMMU driver.
    pub(super) fn iommu_dirty_pages(&mut self, container: RawFd, buf: &[u64]) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let c = h.container(container)?;
        h.containers[c].iommu.as_mut().ok_or(Errno(libc::EINVAL))?.dirty_pages(buf)
    }

    // One lock for the whole slice; each element is still one modelled ioctl.
    pub(super) fn map_dma_many(&mut self, container: RawFd, maps: &[vfio_iommu_type1_dma_map]) -> (usize, SysResult<()>) {
        let h = self;
        let c = match h.container(container) {
            Ok(c) => c,
            Err(e) => return (0, Err(e)),
        };
        let h = &mut *h;
        let Some(iommu) = h.containers[c].iommu.as_mut() else { return (0, einval()) };
        // Fast path for the built-in driver: no virtual call per entry.
        if let Some(t1) = iommu.as_any_mut().downcast_mut::<Type1Iommu>() {
            let lock = t1.memlock();
            for (i, m) in maps.iter().enumerate() {
                h.ioctls += 1;
                if let Err(e) = t1.do_map_locked(m, &lock) {
                    return (i, Err(e));
                }
            }
            return (maps.len(), Ok(()));
        }
        for (i, m) in maps.iter().enumerate() {
            h.ioctls += 1;
            if let Err(e) = iommu.map_dma(m) {
                return (i, Err(e));
            }
        }
        (maps.len(), Ok(()))
    }

    pub(super) fn unmap_dma(&mut self, container: RawFd, unmap: &mut vfio_iommu_type1_dma_unmap) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let c = h.container(container)?;
        h.containers[c].iommu.as_mut().ok_or(Errno(libc::EINVAL))?.unmap_dma(unmap)
    }
}
