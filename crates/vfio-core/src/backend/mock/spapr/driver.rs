//! The mock backend's IOMMU driver seam for sPAPR.

use std::any::Any;
use std::sync::Arc;

use super::{MockSpapr, SpaprProfile, MAX_TABLES};
use crate::backend::mock::config::{DeviceModelConfig, KernelVersion, MockConfig};
use crate::backend::mock::devices::pci;
// IommuOps is named by path, not imported: its map_dma/unmap_dma would make
// MockSpapr's SpaprOps calls ambiguous wherever both traits are in scope.
use crate::backend::mock::{AttachGroup, IommuDriverOps, MockMm};
use crate::backend::{argsz_of, buf_bytes_mut, Errno, SysResult};
use crate::spapr::SpaprOps;
use crate::uapi::spapr as u;
use crate::uapi::{vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, VFIO_EEH, VFIO_SPAPR_TCE_IOMMU, VFIO_SPAPR_TCE_V2_IOMMU};

// ---------------------------------------------------------------------------
// The mock backend's IOMMU driver seam (struct vfio_iommu_driver_ops)

/// `tce_iommu_driver_ops` for [`crate::backend::MockBackend`]: registered in a
/// [`MockConfig`] (see [`SpaprDriver::pseries_config`]), it answers
/// `VFIO_SET_IOMMU` with sPAPR TCE v1 or v2 and backs the container with a
/// [`MockSpapr`].
#[derive(Debug, Clone)]
pub struct SpaprDriver {
    pub profile: SpaprProfile,
}

impl SpaprDriver {
    /// A pseries guest's host as the lab's kernel answered: 6.12, no
    /// vfio_iommu_type1 (POWER has none), this driver with `profile`.
    pub fn pseries_config(mut config: MockConfig, profile: SpaprProfile) -> MockConfig {
        config.kernel = KernelVersion::V6_12;
        config.type1 = false;
        // QEMU's edu is DEVICE_NATIVE_ENDIAN: big-endian on a ppc64 target;
        // and the platform has set SERR# in its command register before the
        // guest kernel binds it (the pseries lab reads 0x0102 after open).
        for d in config.groups.iter_mut().flat_map(|g| g.devices.iter_mut()) {
            if let DeviceModelConfig::Edu(e) = &mut d.model {
                e.big_endian = true;
                e.command_at_boot = pci::COMMAND_SERR;
            }
        }
        config.iommu_drivers.push(Arc::new(SpaprDriver { profile }));
        config
    }
}

// tce_iommu_ioctl(NULL, VFIO_CHECK_EXTENSION): both TCE types; EEH when eeh_enabled().
fn spapr_extension(profile: &SpaprProfile, ext: u32) -> i32 {
    match ext {
        VFIO_SPAPR_TCE_IOMMU | VFIO_SPAPR_TCE_V2_IOMMU => 1,
        VFIO_EEH => profile.eeh as i32,
        _ => 0,
    }
}

impl IommuDriverOps for SpaprDriver {
    fn name(&self) -> &'static str {
        "iommu-vfio-powerpc"
    }

    fn check_extension(&self, _config: &MockConfig, extension: u32) -> i32 {
        spapr_extension(&self.profile, extension)
    }

    // tce_iommu_open: only the two TCE types, else EINVAL.
    fn open(&self, _config: &MockConfig, mm: &Arc<MockMm>, extension: u32) -> SysResult<Box<dyn crate::backend::mock::IommuOps>> {
        match extension {
            VFIO_SPAPR_TCE_IOMMU => Ok(Box::new(MockSpapr::new_in(self.profile.clone(), false, Arc::clone(mm)))),
            VFIO_SPAPR_TCE_V2_IOMMU => Ok(Box::new(MockSpapr::new_in(self.profile.clone(), true, Arc::clone(mm)))),
            _ => Err(Errno(libc::EINVAL)),
        }
    }
}

impl crate::backend::mock::IommuOps for MockSpapr {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }

    fn check_extension(&self, extension: u32) -> i32 {
        spapr_extension(&self.profile, extension)
    }

    fn attach_group(&mut self, group: &AttachGroup) -> SysResult<()> {
        MockSpapr::attach_group(self, group.id).map_err(|e| Errno(e.errno))
    }

    // tce_iommu_detach_group -> tce_iommu_release_ownership: the windows are
    // cleared and unset on the PE that leaves; with the last PE gone the
    // container holds no table.
    fn detach_group(&mut self, group: u32) {
        self.groups.retain(|&g| g != group);
        if self.groups.is_empty() {
            for num in 0..MAX_TABLES {
                self.free_table(num);
            }
        }
    }

    // VFIO_IOMMU_GET_INFO and VFIO_IOMMU_SPAPR_TCE_GET_INFO share a number:
    // the buffer gets what the sPAPR driver copies back (16 or 32 bytes).
    fn get_info(&mut self, buf: &mut [u64]) -> SysResult<()> {
        let argsz = argsz_of(buf);
        let info = self.tce_get_info(argsz).map_err(|e| Errno(e.errno))?;
        let len = if argsz as usize >= std::mem::size_of::<u::vfio_iommu_spapr_tce_info>() {
            std::mem::size_of::<u::vfio_iommu_spapr_tce_info>()
        } else {
            u::SPAPR_TCE_INFO_MINSZ as usize
        };
        let bytes = buf_bytes_mut(buf);
        if bytes.len() < len {
            return Err(Errno(libc::EFAULT));
        }
        // SAFETY: `info` is a plain #[repr(C)] struct of `size_of` bytes; only
        // its first `len` <= size_of bytes are read.
        let src = unsafe { std::slice::from_raw_parts((&info as *const u::vfio_iommu_spapr_tce_info).cast::<u8>(), len) };
        bytes[..len].copy_from_slice(src);
        Ok(())
    }

    // The generic map path cannot carry the driver's positive "nothing
    // mapped" answer; it reports it as EINVAL. TceContainer uses SpaprOps.
    fn map_dma(&mut self, map: &vfio_iommu_type1_dma_map) -> SysResult<()> {
        match SpaprOps::map_dma(self, map.iova, map.vaddr, map.size, map.flags) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Errno(libc::EINVAL)),
            Err(e) => Err(Errno(e.errno)),
        }
    }

    fn unmap_dma(&mut self, unmap: &mut vfio_iommu_type1_dma_unmap) -> SysResult<()> {
        match SpaprOps::unmap_dma(self, unmap.iova, unmap.size, unmap.flags) {
            Ok(0) => Ok(()),
            Ok(_) => Err(Errno(libc::EINVAL)),
            Err(e) => Err(Errno(e.errno)),
        }
    }

    // What the PHB does with a device access: the TCE's page, if its
    // permission bits allow the direction.
    fn translate(&self, iova: u64, write: bool) -> Option<(u64, u64)> {
        let t = self.tables.iter().flatten().find(|t| t.holds(iova))?;
        let entry = (iova - t.start) >> t.page_shift;
        let (ua, flags) = *t.tces.get(&entry)?;
        let need = if write { u::VFIO_DMA_MAP_FLAG_WRITE } else { u::VFIO_DMA_MAP_FLAG_READ };
        if flags & need == 0 {
            return None;
        }
        let offset = iova & ((1u64 << t.page_shift) - 1);
        Some((ua + offset, (1u64 << t.page_shift) - offset))
    }
}


