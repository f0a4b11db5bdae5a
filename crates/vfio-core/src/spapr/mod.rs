//! The sPAPR TCE IOMMU (POWER): a PE's DMA goes through windows of TCEs, not a
//! flat map. [`TceContainer`] drives one container of one PE and checks in user
//! space, before any ioctl, the rules whose violation the kernel does not
//! report well or at all:
//! - a map's whole range lies inside one window (`tce_iommu_ioctl` checks only
//!   the first TCE, `iommu_tce_put_param_check(.., 1)`, and 6.12 oopses in
//!   `tce_iommu_unuse_page_v2` when a map runs past the table's end);
//! - memory is unmapped before it is unregistered (`tce_iommu_unregister_pages`
//!   returns 0 while mappings exist and leaks the registration);
//! - one PE per container (a second group attaches, then every window or map
//!   fails with EPERM in `spapr_tce_set_window`);
//! - a positive ioctl value from map/unmap is a failure (the driver returns
//!   `iommu_tce_*_param_check`'s boolean as is).

mod container;
mod ops;
mod window;

pub use container::{Mapping, TceContainer, TceVersion};
pub use ops::{DmaDirection, SpaprOps};
pub use window::{initial_levels, max_levels, DdwInfo, TceInfo, Window};

use std::sync::Arc;

use crate::backend::Backend;
use crate::{Container, Group};

/// The sPAPR calls of `container`, on whichever backend it was opened
/// ([`Backend::spapr`]). Call after `VFIO_SET_IOMMU` to an sPAPR type; wrap
/// in a [`TceContainer`] for the safety checks.
pub fn ops_for(container: &Container) -> Box<dyn SpaprOps + '_> {
    container.backend().spapr(container.raw_fd())
}

/// A backend without sPAPR calls (the trait's default): each answers
/// ENOTTY, as an IOMMU driver does for a command it lacks.
pub(crate) struct Unsupported;

impl SpaprOps for Unsupported {
    fn tce_get_info(&mut self, _: u32) -> crate::Result<crate::uapi::spapr::vfio_iommu_spapr_tce_info> {
        Err(unsupported("VFIO_IOMMU_SPAPR_TCE_GET_INFO"))
    }
    fn enable(&mut self) -> crate::Result<()> {
        Err(unsupported("VFIO_IOMMU_ENABLE"))
    }
    fn disable(&mut self) -> crate::Result<()> {
        Err(unsupported("VFIO_IOMMU_DISABLE"))
    }
    fn register_memory(&mut self, _: u64, _: u64, _: u32) -> crate::Result<()> {
        Err(unsupported("VFIO_IOMMU_SPAPR_REGISTER_MEMORY"))
    }
    fn unregister_memory(&mut self, _: u64, _: u64, _: u32) -> crate::Result<()> {
        Err(unsupported("VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY"))
    }
    fn tce_create(&mut self, _: u32, _: u64, _: u32, _: u32) -> crate::Result<u64> {
        Err(unsupported("VFIO_IOMMU_SPAPR_TCE_CREATE"))
    }
    fn tce_remove(&mut self, _: u64, _: u32) -> crate::Result<()> {
        Err(unsupported("VFIO_IOMMU_SPAPR_TCE_REMOVE"))
    }
    fn map_dma(&mut self, _: u64, _: u64, _: u64, _: u32) -> crate::Result<i32> {
        Err(unsupported("VFIO_IOMMU_MAP_DMA"))
    }
    fn unmap_dma(&mut self, _: u64, _: u64, _: u32) -> crate::Result<i32> {
        Err(unsupported("VFIO_IOMMU_UNMAP_DMA"))
    }
    fn eeh_pe_op(&mut self, _: u32) -> crate::Result<i32> {
        Err(unsupported("VFIO_EEH_PE_OP"))
    }
}

fn unsupported(ioctl: &'static str) -> crate::Error {
    crate::Error::new(libc::ENOTTY, ioctl, "a container of a backend without sPAPR calls")
        .on_spapr()
        .with_detail("this backend implements no Backend::spapr")
}

/// The sPAPR type to use on `container`: v2 where the kernel offers it
/// (preregistration, dynamic windows), else v1 (the default window only, as
/// kernels before 4.2 had), else `None` (no sPAPR IOMMU driver: not POWER).
pub fn offered_version(container: &Container) -> crate::Result<Option<TceVersion>> {
    if container.check_extension(crate::uapi::VFIO_SPAPR_TCE_V2_IOMMU)? {
        return Ok(Some(TceVersion::V2));
    }
    if container.check_extension(crate::uapi::VFIO_SPAPR_TCE_IOMMU)? {
        return Ok(Some(TceVersion::V1));
    }
    Ok(None)
}

/// A container that owns its one PE: opens the container and the group,
/// attaches the group, sets the sPAPR IOMMU type, and keeps both open.
/// Declared group first, so the group detaches before the container closes.
pub struct PeContainer {
    group: Group,
    container: Container,
}

impl PeContainer {
    pub fn open(backend: Arc<dyn Backend>, group: u32, version: TceVersion) -> crate::Result<Self> {
        let container = Container::open(backend.clone())?;
        let group = Group::open(backend, group)?;
        group.set_container(&container)?;
        container.set_iommu(match version {
            TceVersion::V1 => crate::uapi::VFIO_SPAPR_TCE_IOMMU,
            TceVersion::V2 => crate::uapi::VFIO_SPAPR_TCE_V2_IOMMU,
        })?;
        Ok(Self { group, container })
    }

    pub fn group(&self) -> &Group {
        &self.group
    }

    pub fn container(&self) -> &Container {
        &self.container
    }
}

impl SpaprOps for PeContainer {
    fn tce_get_info(&mut self, argsz: u32) -> crate::Result<crate::uapi::spapr::vfio_iommu_spapr_tce_info> {
        ops_for(&self.container).tce_get_info(argsz)
    }
    fn enable(&mut self) -> crate::Result<()> {
        ops_for(&self.container).enable()
    }
    fn disable(&mut self) -> crate::Result<()> {
        ops_for(&self.container).disable()
    }
    fn register_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> crate::Result<()> {
        ops_for(&self.container).register_memory(vaddr, size, flags)
    }
    fn unregister_memory(&mut self, vaddr: u64, size: u64, flags: u32) -> crate::Result<()> {
        ops_for(&self.container).unregister_memory(vaddr, size, flags)
    }
    fn tce_create(&mut self, page_shift: u32, window_size: u64, levels: u32, flags: u32) -> crate::Result<u64> {
        ops_for(&self.container).tce_create(page_shift, window_size, levels, flags)
    }
    fn tce_remove(&mut self, start_addr: u64, flags: u32) -> crate::Result<()> {
        ops_for(&self.container).tce_remove(start_addr, flags)
    }
    fn map_dma(&mut self, iova: u64, vaddr: u64, size: u64, flags: u32) -> crate::Result<i32> {
        ops_for(&self.container).map_dma(iova, vaddr, size, flags)
    }
    fn unmap_dma(&mut self, iova: u64, size: u64, flags: u32) -> crate::Result<i32> {
        ops_for(&self.container).unmap_dma(iova, size, flags)
    }
    fn eeh_pe_op(&mut self, op: u32) -> crate::Result<i32> {
        ops_for(&self.container).eeh_pe_op(op)
    }
}

impl TceContainer<PeContainer> {
    /// One PE's sPAPR container on `backend`, ready for windows and maps,
    /// with this process's page size for the registration rules.
    pub fn open(backend: Arc<dyn Backend>, group: u32, version: TceVersion) -> crate::Result<Self> {
        // SAFETY: sysconf reads a constant of the running kernel.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(4096) as u64;
        TceContainer::new(PeContainer::open(backend, group, version)?, version, group, page.trailing_zeros())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::backend::mock::config::{MockDeviceConfig, MockGroupConfig};
    use crate::backend::mock::spapr::{SpaprDriver, SpaprProfile};
    use crate::backend::MockBackend;
    use crate::uapi::{VFIO_SPAPR_TCE_V2_IOMMU, VFIO_TYPE1V2_IOMMU};
    use crate::{Group, MockConfig};

    /// A pseries host: one PE per PHB, one edu in each.
    fn pseries(pes: u32) -> Arc<MockBackend> {
        let mut config = MockConfig::empty();
        for pe in 0..pes {
            config = config.with_group(MockGroupConfig::new(pe).with_device(MockDeviceConfig::edu(&format!("{pe:04x}:00:02.0"))));
        }
        Arc::new(MockBackend::new(SpaprDriver::pseries_config(config, SpaprProfile::qemu_pseries())))
    }

    fn v2_container(backend: &Arc<MockBackend>, group: &Group) -> Container {
        let c = Container::open(backend.clone()).unwrap();
        group.set_container(&c).unwrap();
        c.set_iommu(VFIO_SPAPR_TCE_V2_IOMMU).unwrap();
        c
    }

    #[test]
    fn a_pseries_mock_host_offers_spapr_v2_and_not_type1() {
        let backend = pseries(1);
        let c = Container::open(backend.clone()).unwrap();
        assert_eq!(
            (c.check_extension(VFIO_SPAPR_TCE_V2_IOMMU).unwrap(), c.check_extension(VFIO_TYPE1V2_IOMMU).unwrap()),
            (true, false)
        );
    }

    #[test]
    fn v2_is_the_offered_version_on_a_pseries_host() {
        let backend = pseries(1);
        let c = Container::open(backend.clone()).unwrap();
        assert_eq!(offered_version(&c).unwrap(), Some(TceVersion::V2));
    }

    #[test]
    fn no_spapr_version_is_offered_on_an_x86_host() {
        let c = Container::open(Arc::new(MockBackend::new(MockConfig::default()))).unwrap();
        assert_eq!(offered_version(&c).unwrap(), None);
    }

    #[test]
    fn ops_for_a_mock_container_reaches_its_spapr_model() {
        let backend = pseries(1);
        let group = Group::open(backend.clone(), 0).unwrap();
        let c = v2_container(&backend, &group);
        let info = ops_for(&c).tce_get_info(32).unwrap();
        assert_eq!((info.dma32_window_size, info.ddw.max_dynamic_windows_supported), (1 << 30, 2));
    }

    #[test]
    fn a_tce_container_map_on_the_mock_backend_is_what_the_device_sees() {
        let backend = pseries(1);
        let group = Group::open(backend.clone(), 0).unwrap();
        let c = v2_container(&backend, &group);
        let mut ops = ops_for(&c);
        let mut tce = TceContainer::new(&mut *ops, TceVersion::V2, 0, 12).unwrap();
        tce.register(crate::memory::test_va(), 0x1000).unwrap();
        tce.map(0x2000, crate::memory::test_va(), 0x1000, DmaDirection::ToDevice).unwrap();
        let seen = backend.with_iommu(c.raw_fd(), |i| (i.translate(0x2010, false), i.translate(0x2010, true))).unwrap();
        assert_eq!(seen, (Some((crate::memory::test_va() + 0x10, 0xff0)), None));
    }

    #[test]
    fn a_second_pe_into_a_mock_v2_container_with_a_window_fails_with_eperm() {
        let backend = pseries(2);
        let (g0, g1) = (Group::open(backend.clone(), 0).unwrap(), Group::open(backend.clone(), 1).unwrap());
        let c = v2_container(&backend, &g0);
        ops_for(&c).tce_create(16, 1 << 30, 1, 0).unwrap();
        assert_eq!(g1.set_container(&c).unwrap_err().errno, libc::EPERM);
    }

    #[test]
    fn a_pe_container_owns_its_group_and_maps_through_the_safety_checks() {
        let backend = pseries(1);
        let mut tce = TceContainer::open(backend.clone(), 0, TceVersion::V2).unwrap();
        tce.register(crate::memory::test_va(), 0x2000).unwrap();
        let e = tce.map(0x3fff_f000, crate::memory::test_va(), 0x2000, DmaDirection::Bidirectional).unwrap_err();
        assert_eq!((e.errno, tce.ops_mut().group().id()), (libc::ERANGE, 0));
    }

    #[test]
    fn spapr_calls_on_a_container_without_an_iommu_fail_with_einval() {
        let backend = pseries(1);
        let c = Container::open(backend.clone()).unwrap();
        assert_eq!(ops_for(&c).tce_get_info(32).unwrap_err().errno, libc::EINVAL);
    }

    #[test]
    fn the_generic_iommu_info_call_returns_the_spapr_info_bytes() {
        let backend = pseries(1);
        let group = Group::open(backend.clone(), 0).unwrap();
        let c = v2_container(&backend, &group);
        let mut buf = [0u64; 4];
        buf[0] = 32;
        backend.iommu_get_info(c.raw_fd(), &mut buf).unwrap();
        // argsz 32 | flags DDW, dma32 start 0 | size 1 GiB, pgsizes, windows 2 | levels 1.
        assert_eq!(buf, [32 | (1 << 32), 0x4000_0000 << 32, 0x121_1000, 2 | (1 << 32)]);
    }
}
