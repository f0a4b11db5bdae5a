//! The host IOMMU profiles and MSI isolation, each as the lab's kernel
//! answered (packages/testkit/src/lab: x86-amd, x86-noir, x86-noir-unsafe, arm64).

mod common;

use common::*;
use vfio_core::backend::{HostIommuProfile, MockGroupConfig, AMD_VI, SMMUV3, VTD};
use vfio_core::uapi::*;
use vfio_core::{Container, Group, MockConfig};

fn on(profile: &HostIommuProfile) -> MockConfig {
    let mut g = MockGroupConfig::new(1).with_device(vfio_core::backend::MockDeviceConfig::edu(EDU));
    g.reserved.extend_from_slice(profile.group_reserved);
    MockConfig::empty().with_iommu_profile(profile).with_group(g)
}

fn ranges(profile: &HostIommuProfile) -> Vec<(u64, u64)> {
    let (_b, c, _g) = ready_with(on(profile));
    c.iommu_info().unwrap().iova_ranges.unwrap().iter().map(|r| (r.start, r.end)).collect()
}

#[test]
fn on_amd_vi_the_iova_ranges_skip_the_msi_window_and_the_hypertransport_hole_up_to_2_pow_64() {
    assert_eq!(ranges(&AMD_VI), vec![(0, 0xfedf_ffff), (0xfef0_0000, 0xfc_ffff_ffff), (0x100_0000_0000, u64::MAX)]);
}

#[test]
fn on_vt_d_the_iova_ranges_are_39_bits_without_the_msi_window() {
    assert_eq!(ranges(&VTD), vec![(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)]);
}

#[test]
fn on_smmuv3_the_msi_doorbell_at_128_mib_is_cut_out_of_a_48_bit_space() {
    assert_eq!(ranges(&SMMUV3), vec![(0, 0x07ff_ffff), (0x0810_0000, 0xffff_ffff_ffff)]);
}

#[test]
fn on_amd_vi_the_highest_page_of_the_iova_space_maps_raw_but_an_unmap_of_its_range_does_not_find_it() {
    // 6.1's type1 computes the mapping's end as iova + size, 0 here: a
    // ranged unmap answers success with size 0 and the mapping stays (the
    // x86-amd lab shows it), until an unmap-all or the release takes it.
    let (b, c, _g) = ready_with(on(&AMD_VI));
    let buf = vec![0u8; 8192];
    let vaddr = (buf.as_ptr() as u64 + 4095) & !4095;
    let top = u64::MAX - 4095;
    let map = vfio_iommu_type1_dma_map { argsz: 32, flags: RW, vaddr, iova: top, size: 4096 };
    b.map_dma(c.raw_fd(), &map).expect("AMD-Vi's aperture ends at 2^64 - 1");
    assert_eq!(c.unmap_dma(top, 4096).unwrap(), 0);
    assert_eq!(c.map_dma(0x1000, vaddr, 4096, RW).map(|_| c.unmap_all().unwrap()).unwrap(), 8192);
}

#[test]
fn vfio_core_refuses_a_map_or_batch_entry_that_ends_at_2_pow_64_before_the_ioctl() {
    let (_b, c, _g) = ready_with(on(&AMD_VI));
    let buf = vec![0u8; 8192];
    let vaddr = (buf.as_ptr() as u64 + 4095) & !4095;
    let e = c.map_dma(u64::MAX - 4095, vaddr, 4096, RW).unwrap_err();
    assert_eq!((e.code(), e.detail.as_deref().is_some_and(|d| d.contains("refused by vfio-core before the ioctl"))), ("ERANGE", true), "{e}");
    let e = c.map_batch(&[[0x1000, vaddr, 4096], [u64::MAX - 4095, vaddr, 4096]], vfio_core::BatchFlags::All(RW)).unwrap_err();
    assert_eq!((e.code(), e.entry), ("ERANGE", Some(1)), "{e}");
    // Nothing was mapped: the first entry's range is free.
    c.map_dma(0x1000, vaddr, 4096, RW).unwrap();
    // The page below the last maps.
    c.map_dma(u64::MAX - 8191, vaddr, 4096, RW).unwrap();
}

fn set_iommu_with(msi_isolated: bool, allow_unsafe_interrupts: bool) -> Result<(), &'static str> {
    let mut config = on(&VTD);
    config.msi_isolated = msi_isolated;
    config.allow_unsafe_interrupts = allow_unsafe_interrupts;
    let b = host(config);
    let c = Container::open(b.clone()).unwrap();
    let g = Group::open(b, 1).unwrap();
    g.set_container(&c).expect("GROUP_SET_CONTAINER asks nothing of MSI isolation");
    c.set_iommu(VFIO_TYPE1V2_IOMMU).map_err(|e| e.code())
}

#[test]
fn without_msi_isolation_set_iommu_fails_with_eperm_after_set_container_succeeds() {
    assert_eq!(set_iommu_with(false, false), Err("EPERM"));
}

#[test]
fn allow_unsafe_interrupts_lets_a_host_without_msi_isolation_set_its_iommu() {
    assert_eq!(set_iommu_with(false, true), Ok(()));
    assert_eq!(set_iommu_with(true, false), Ok(()));
}

#[test]
fn amd_vi_enforces_cache_coherency_and_qemu_s_vt_d_and_smmuv3_do_not() {
    for (p, cc) in [(&AMD_VI, true), (&SMMUV3, false), (&VTD, false)] {
        let (_b, c, _g) = ready_with(on(p));
        assert_eq!(c.check_extension(VFIO_DMA_CC_IOMMU).unwrap(), cc, "{}", p.name);
    }
}
