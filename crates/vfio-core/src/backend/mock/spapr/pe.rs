//! The PE itself: v1 enable/disable (tce_iommu_enable, tce_iommu_disable)
//! and EEH operations (vfio_spapr_ioctl_eeh_pe_op).

use super::{err, MockSpapr};
use crate::error::Result;
use crate::uapi::spapr as u;

impl MockSpapr {
    // tce_iommu_enable (v1 only; v2 falls through to ENOTTY).
    pub(super) fn enable_v1(&mut self) -> Result<()> {
        const IOCTL: &str = "VFIO_IOMMU_ENABLE";
        if self.v2 {
            return Err(err(libc::ENOTTY, IOCTL));
        }
        if self.enabled {
            return Err(err(libc::EBUSY, IOCTL));
        }
        if self.groups.is_empty() {
            return Err(err(libc::ENODEV, IOCTL));
        }
        if self.profile.tce32_size == 0 {
            return Err(err(libc::EPERM, IOCTL));
        }
        self.mm_set();
        // The whole 32-bit window is charged to locked_vm up front: v1 pins
        // pages at map time but accounts them here.
        let locked = u64::from(self.profile.tce32_size) >> self.profile.host_page_shift;
        let lock = self.mm.memlock();
        self.mm.charge(&lock, locked).map_err(|e| err(e.0, IOCTL))?;
        self.locked_pages = locked;
        self.enabled = true;
        Ok(())
    }

    // tce_iommu_disable (v1 only).
    pub(super) fn disable_v1(&mut self) -> Result<()> {
        if self.v2 {
            return Err(err(libc::ENOTTY, "VFIO_IOMMU_DISABLE"));
        }
        if self.enabled {
            self.enabled = false;
            self.mm.uncharge(std::mem::take(&mut self.locked_pages));
        }
        Ok(())
    }

    // tce_iommu_ioctl: VFIO_EEH_PE_OP -> vfio_spapr_ioctl_eeh_pe_op per group.
    pub(super) fn pe_op(&mut self, op: u32) -> Result<i32> {
        const IOCTL: &str = "VFIO_EEH_PE_OP";
        if self.groups.is_empty() {
            return Ok(0);
        }
        // eeh_iommu_group_to_pe finds no PE when EEH is off for the device.
        if !self.profile.eeh {
            return Err(err(libc::ENODEV, IOCTL));
        }
        match op {
            u::VFIO_EEH_PE_DISABLE | u::VFIO_EEH_PE_ENABLE | u::VFIO_EEH_PE_UNFREEZE_IO
            | u::VFIO_EEH_PE_UNFREEZE_DMA | u::VFIO_EEH_PE_CONFIGURE => Ok(0),
            u::VFIO_EEH_PE_GET_STATE => Ok(u::VFIO_EEH_PE_STATE_NORMAL as i32),
            u::VFIO_EEH_PE_RESET_DEACTIVATE | u::VFIO_EEH_PE_RESET_HOT | u::VFIO_EEH_PE_RESET_FUNDAMENTAL => Ok(0),
            _ => Err(err(libc::EINVAL, IOCTL)),
        }
    }
}
