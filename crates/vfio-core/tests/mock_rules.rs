//! The mock's rules, one behaviour per test, each as the kernel answers.

mod common;

use common::*;
use vfio_core::backend::{IovaSpan, KernelVersion, MockDeviceConfig, MockGroupConfig};
use vfio_core::uapi::*;
use vfio_core::{Container, Group, IovaRange, MockConfig};

fn errno<T: std::fmt::Debug>(r: vfio_core::Result<T>) -> &'static str {
    r.unwrap_err().code()
}

// ---- container ----

#[test]
fn api_version_is_zero() {
    let c = Container::open(host(MockConfig::default())).unwrap();
    assert_eq!(c.api_version().unwrap(), 0);
}

#[test]
fn before_set_iommu_type1_type1v2_nesting_and_unmap_all_are_offered() {
    let c = Container::open(host(MockConfig::default())).unwrap();
    for ext in [VFIO_TYPE1_IOMMU, VFIO_TYPE1V2_IOMMU, VFIO_TYPE1_NESTING_IOMMU, VFIO_UNMAP_ALL] {
        assert!(c.check_extension(ext).unwrap(), "extension {ext}");
    }
}

#[test]
fn spapr_eeh_noiommu_and_dma_cc_are_not_offered_on_an_x86_host() {
    let c = Container::open(host(MockConfig::default())).unwrap();
    for ext in [VFIO_SPAPR_TCE_IOMMU, VFIO_SPAPR_TCE_V2_IOMMU, VFIO_EEH, VFIO_NOIOMMU_IOMMU, VFIO_DMA_CC_IOMMU] {
        assert!(!c.check_extension(ext).unwrap(), "extension {ext}");
    }
}

#[test]
fn update_vaddr_is_offered_only_once_the_container_has_an_iommu() {
    // As the lab's 6.1 kernel answers (vfio_iommu_type1_check_extension).
    let bare = Container::open(host(MockConfig::default())).unwrap();
    assert!(!bare.check_extension(VFIO_UPDATE_VADDR).unwrap());
    let (_, set, _group) = ready();
    assert!(set.check_extension(VFIO_UPDATE_VADDR).unwrap());
}

#[test]
fn set_iommu_without_a_group_fails_with_einval() {
    let c = Container::open(host(MockConfig::default())).unwrap();
    assert_eq!(errno(c.set_iommu(VFIO_TYPE1V2_IOMMU)), "EINVAL");
}

#[test]
fn set_iommu_twice_fails_with_einval() {
    let (_b, c, _g) = ready();
    assert_eq!(errno(c.set_iommu(VFIO_TYPE1V2_IOMMU)), "EINVAL");
}

#[test]
fn set_iommu_with_a_type_no_driver_offers_fails_with_enodev() {
    let b = host(MockConfig::default());
    let c = Container::open(b.clone()).unwrap();
    let g = Group::open(b, 1).unwrap();
    g.set_container(&c).unwrap();
    assert_eq!(errno(c.set_iommu(VFIO_SPAPR_TCE_V2_IOMMU)), "ENODEV");
}

#[test]
fn map_before_set_iommu_fails_with_einval() {
    let c = Container::open(host(MockConfig::default())).unwrap();
    assert_eq!(errno(c.map_dma(0, 0x10000, 0x1000, RW)), "EINVAL");
}

#[test]
fn iommu_info_before_set_iommu_fails_with_einval() {
    let c = Container::open(host(MockConfig::default())).unwrap();
    assert_eq!(errno(c.iommu_info()), "EINVAL");
}

/// `VFIO_IOMMU_GET_INFO` with room for the fixed part only: the argsz the
/// backend asks for.
fn info_argsz_wanted(config: MockConfig) -> u32 {
    let (b, c, _g) = ready_with(config);
    let mut buf = [0u64; 3];
    buf[0] = std::mem::size_of::<vfio_iommu_type1_info>() as u64; // argsz = 24 (little-endian low half)
    b.iommu_get_info(c.raw_fd(), &mut buf).unwrap();
    buf[0] as u32
}

#[test]
fn the_6_1_capability_chain_is_packed_so_info_asks_for_116_bytes() {
    // 24 + migration 32 + DMA available 12 + IOVA ranges 48, as the lab's 6.1 kernel answers.
    assert_eq!(info_argsz_wanted(MockConfig::default()), 116);
}

#[test]
fn later_kernels_align_each_capability_so_info_asks_for_120_bytes() {
    assert_eq!(info_argsz_wanted(MockConfig { kernel: KernelVersion::V6_12, ..MockConfig::default() }), 120);
}

#[test]
fn iommu_info_reports_the_vtd_page_sizes_ranges_and_entry_limit() {
    let (_b, c, _g) = ready();
    let info = c.iommu_info().unwrap();
    assert_eq!(info.iova_pgsizes, 0x4020_1000);
    assert_eq!(info.flags, VFIO_IOMMU_INFO_PGSIZES | VFIO_IOMMU_INFO_CAPS);
    assert_eq!(
        info.iova_ranges,
        Some(vec![IovaRange { start: 0, end: 0xfedf_ffff }, IovaRange { start: 0xfef0_0000, end: 0x7f_ffff_ffff }])
    );
    assert_eq!(info.dma_avail, Some(65535));
    let mig = info.migration.unwrap();
    assert_eq!((mig.flags, mig.pgsize_bitmap, mig.max_dirty_bitmap_size), (0, 0x1000, 0x1000_0000));
}

#[test]
fn dma_avail_counts_down_with_each_mapping() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    c.map_dma(0x20_0000, va() + 0x00_1000, 0x1000, RW).unwrap();
    assert_eq!(c.iommu_info().unwrap().dma_avail, Some(65533));
}

#[test]
fn a_group_reserved_region_is_removed_from_the_iova_ranges() {
    let cfg = MockConfig::empty().with_group(MockGroupConfig {
        reserved: vec![IovaSpan::new(0, 0xff_ffff)],
        ..MockGroupConfig::new(1).with_device(MockDeviceConfig::edu(EDU))
    });
    let (_b, c, _g) = ready_with(cfg);
    let r = c.iommu_info().unwrap().iova_ranges.unwrap();
    assert_eq!(r[0], IovaRange { start: 0x100_0000, end: 0xfedf_ffff });
}

// ---- type1v2 map ----

#[test]
fn overlapping_map_fails_with_eexist() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x4000, RW).unwrap();
    assert_eq!(errno(c.map_dma(0x10_2000, va() + 0x10_0000, 0x4000, RW)), "EEXIST");
}

#[test]
fn a_map_ending_where_another_begins_does_not_overlap() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_4000, va(), 0x4000, RW).unwrap();
    c.map_dma(0x10_0000, va() + 0x10_0000, 0x4000, RW).unwrap();
}

#[test]
fn zero_size_map_fails_with_einval() {
    let (_b, c, _g) = ready();
    assert_eq!(errno(c.map_dma(0x10_0000, va(), 0, RW)), "EINVAL");
}

#[test]
fn unaligned_iova_vaddr_or_size_fails_with_einval() {
    let (_b, c, _g) = ready();
    assert_eq!(errno(c.map_dma(0x10_0800, va(), 0x1000, RW)), "EINVAL");
    assert_eq!(errno(c.map_dma(0x10_0000, va() + 0x00_0800, 0x1000, RW)), "EINVAL");
    assert_eq!(errno(c.map_dma(0x10_0000, va(), 0x1800, RW)), "EINVAL");
}

#[test]
fn a_map_without_read_or_write_fails_with_einval() {
    let (_b, c, _g) = ready();
    assert_eq!(errno(c.map_dma(0x10_0000, va(), 0x1000, 0)), "EINVAL");
}

#[test]
fn unknown_map_flags_fail_with_einval() {
    let (_b, c, _g) = ready();
    assert_eq!(errno(c.map_dma(0x10_0000, va(), 0x1000, RW | 0x100)), "EINVAL");
}

#[test]
fn a_map_into_the_msi_window_fails_with_einval() {
    let (_b, c, _g) = ready();
    assert_eq!(errno(c.map_dma(0xfee0_0000, va(), 0x1000, RW)), "EINVAL");
}

#[test]
fn a_map_straddling_the_end_of_a_range_fails_with_einval() {
    let (_b, c, _g) = ready();
    assert_eq!(errno(c.map_dma(0xfedf_f000, va(), 0x2000, RW)), "EINVAL");
}

#[test]
fn a_map_past_the_aperture_fails_with_einval() {
    let (_b, c, _g) = ready();
    assert_eq!(errno(c.map_dma(0x80_0000_0000, va(), 0x1000, RW)), "EINVAL");
}

#[test]
fn a_map_whose_iova_wraps_fails_with_einval() {
    let (_b, c, _g) = ready();
    assert_eq!(errno(c.map_dma(u64::MAX - 0xfff, va(), 0x2000, RW)), "EINVAL");
}

#[test]
fn maps_past_dma_entry_limit_fail_with_enospc() {
    let (_b, c, _g) = ready_with(MockConfig { dma_entry_limit: 2, ..MockConfig::default() });
    c.map_dma(0x1000, va(), 0x1000, RW).unwrap();
    c.map_dma(0x3000, va(), 0x1000, RW).unwrap();
    assert_eq!(errno(c.map_dma(0x5000, va(), 0x1000, RW)), "ENOSPC");
}

#[test]
fn overlap_is_reported_before_the_entry_limit() {
    let (_b, c, _g) = ready_with(MockConfig { dma_entry_limit: 1, ..MockConfig::default() });
    c.map_dma(0x1000, va(), 0x1000, RW).unwrap();
    assert_eq!(errno(c.map_dma(0x1000, va(), 0x1000, RW)), "EEXIST");
}

#[test]
fn an_unmap_frees_an_entry_for_the_next_map() {
    let (_b, c, _g) = ready_with(MockConfig { dma_entry_limit: 1, ..MockConfig::default() });
    c.map_dma(0x1000, va(), 0x1000, RW).unwrap();
    c.unmap_dma(0x1000, 0x1000).unwrap();
    c.map_dma(0x5000, va(), 0x1000, RW).unwrap();
}

#[test]
fn page_size_follows_the_fixture() {
    let (_b, c, _g) = ready_with(MockConfig { iova_pgsizes: 0x1_0000, ..MockConfig::default() });
    assert_eq!(errno(c.map_dma(0x1000, va(), 0x1000, RW)), "EINVAL");
    c.map_dma(0x1_0000, va(), 0x1_0000, RW).unwrap();
}

// ---- type1v2 unmap ----

#[test]
fn unmap_returns_the_size_it_removed() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x4000, RW).unwrap();
    assert_eq!(c.unmap_dma(0x10_0000, 0x4000).unwrap(), 0x4000);
}

#[test]
fn unmapping_part_of_a_mapping_fails_with_einval() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x4000, RW).unwrap();
    assert_eq!(errno(c.unmap_dma(0x10_0000, 0x2000)), "EINVAL");
    assert_eq!(errno(c.unmap_dma(0x10_2000, 0x2000)), "EINVAL");
}

#[test]
fn a_failed_partial_unmap_leaves_the_mapping_in_place() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x4000, RW).unwrap();
    let _ = c.unmap_dma(0x10_0000, 0x2000);
    assert_eq!(c.unmap_dma(0x10_0000, 0x4000).unwrap(), 0x4000);
}

#[test]
fn one_unmap_may_cover_several_whole_mappings() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    c.map_dma(0x10_3000, va(), 0x2000, RW).unwrap();
    assert_eq!(c.unmap_dma(0x10_0000, 0x10_0000).unwrap(), 0x3000);
}

#[test]
fn unmapping_a_range_with_no_mappings_returns_zero() {
    let (_b, c, _g) = ready();
    assert_eq!(c.unmap_dma(0x10_0000, 0x1000).unwrap(), 0);
}

#[test]
fn unaligned_or_zero_sized_unmap_fails_with_einval() {
    let (_b, c, _g) = ready();
    assert_eq!(errno(c.unmap_dma(0x10_0800, 0x1000)), "EINVAL");
    assert_eq!(errno(c.unmap_dma(0x10_0000, 0)), "EINVAL");
    assert_eq!(errno(c.unmap_dma(0x10_0000, 0x800)), "EINVAL");
}

#[test]
fn unmap_all_removes_every_mapping_and_reports_their_size() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    c.map_dma(0x1_0000_0000, va(), 0x2000, RW).unwrap();
    assert_eq!(c.unmap_all().unwrap(), 0x3000);
    assert_eq!(c.iommu_info().unwrap().dma_avail, Some(65535));
}

#[test]
fn type1_v1_unmap_inside_a_mapping_succeeds_with_zero() {
    let b = host(MockConfig::default());
    let c = Container::open(b.clone()).unwrap();
    let g = Group::open(b, 1).unwrap();
    g.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1_IOMMU).unwrap();
    c.map_dma(0x10_0000, va(), 0x4000, RW).unwrap();
    assert_eq!(c.unmap_dma(0x10_1000, 0x1000).unwrap(), 0);
}

#[test]
fn type1_v1_unmap_covering_the_start_removes_the_whole_mapping() {
    let b = host(MockConfig::default());
    let c = Container::open(b.clone()).unwrap();
    let g = Group::open(b, 1).unwrap();
    g.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1_IOMMU).unwrap();
    c.map_dma(0x10_0000, va(), 0x4000, RW).unwrap();
    assert_eq!(c.unmap_dma(0x10_0000, 0x1000).unwrap(), 0x4000);
}

// ---- groups ----

#[test]
fn a_group_with_no_vfio_bound_device_does_not_exist() {
    let cfg = MockConfig::empty()
        .with_group(MockGroupConfig::new(2).with_device(MockDeviceConfig::edu("0000:00:05.0").bound_to(Some("e1000e"))));
    assert_eq!(errno(Group::open(host(cfg), 2)), "ENOENT");
}

#[test]
fn an_unknown_group_does_not_exist() {
    assert_eq!(errno(Group::open(host(MockConfig::default()), 42)), "ENOENT");
}

#[test]
fn a_group_can_be_open_once() {
    let b = host(MockConfig::default());
    let _g = Group::open(b.clone(), 1).unwrap();
    assert_eq!(errno(Group::open(b, 1)), "EBUSY");
}

#[test]
fn closing_a_group_lets_it_be_opened_again() {
    let b = host(MockConfig::default());
    drop(Group::open(b.clone(), 1).unwrap());
    Group::open(b, 1).unwrap();
}

#[test]
fn a_fresh_group_is_viable_and_has_no_container() {
    let b = host(MockConfig::default());
    let s = Group::open(b, 1).unwrap().status().unwrap();
    assert_eq!(s.flags, VFIO_GROUP_FLAGS_VIABLE);
}

#[test]
fn an_unbound_device_keeps_its_group_viable() {
    let b = host(two_device_group(None));
    assert!(Group::open(b, 1).unwrap().status().unwrap().viable);
}

#[test]
fn a_device_bound_to_a_host_driver_makes_its_group_not_viable() {
    let b = host(two_device_group(Some("e1000e")));
    assert_eq!(Group::open(b, 1).unwrap().status().unwrap().flags, 0);
}

#[test]
fn set_container_on_a_group_that_is_not_viable_fails_with_eperm() {
    let b = host(two_device_group(Some("e1000e")));
    let c = Container::open(b.clone()).unwrap();
    let g = Group::open(b, 1).unwrap();
    assert_eq!(errno(g.set_container(&c)), "EPERM");
}

#[test]
fn an_attached_group_reports_container_set_and_viable() {
    let (_b, _c, g) = ready();
    assert_eq!(g.status().unwrap().flags, VFIO_GROUP_FLAGS_VIABLE | VFIO_GROUP_FLAGS_CONTAINER_SET);
}

#[test]
fn set_container_twice_fails_with_einval() {
    let (b, c, g) = ready();
    let _ = b;
    assert_eq!(errno(g.set_container(&c)), "EINVAL");
}

#[test]
fn unset_container_without_one_fails_with_einval() {
    let b = host(MockConfig::default());
    assert_eq!(errno(Group::open(b, 1).unwrap().unset_container()), "EINVAL");
}

#[test]
fn unset_container_with_an_open_device_fails_with_ebusy() {
    let (_b, _c, g) = ready();
    let _d = g.device(EDU).unwrap();
    assert_eq!(errno(g.unset_container()), "EBUSY");
}

#[test]
fn unsetting_the_last_group_releases_the_iommu_and_its_mappings() {
    let (_b, c, g) = ready();
    c.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    g.unset_container().unwrap();
    assert_eq!(errno(c.map_dma(0x10_0000, va(), 0x1000, RW)), "EINVAL");
    g.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    c.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
}

#[test]
fn a_container_outlives_its_fd_while_a_group_holds_it() {
    let b = host(MockConfig::default());
    let g = Group::open(b.clone(), 1).unwrap();
    {
        let c = Container::open(b.clone()).unwrap();
        g.set_container(&c).unwrap();
        c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    }
    assert!(g.status().unwrap().container_set);
    g.device(EDU).unwrap();
}

// ---- order rules for devices ----

#[test]
fn get_device_fd_before_set_container_fails_with_einval() {
    let b = host(MockConfig::default());
    let g = Group::open(b, 1).unwrap();
    assert_eq!(errno(g.device(EDU)), "EINVAL");
}

#[test]
fn get_device_fd_before_set_iommu_fails_with_einval() {
    let b = host(MockConfig::default());
    let c = Container::open(b.clone()).unwrap();
    let g = Group::open(b, 1).unwrap();
    g.set_container(&c).unwrap();
    assert_eq!(errno(g.device(EDU)), "EINVAL");
}

#[test]
fn get_device_fd_for_an_unknown_name_fails_with_enodev() {
    let (_b, _c, g) = ready();
    assert_eq!(errno(g.device("0000:00:09.0")), "ENODEV");
}

#[test]
fn get_device_fd_for_a_device_not_bound_to_vfio_fails_with_enodev() {
    let (_b, _c, g) = ready_with(two_device_group(None));
    assert_eq!(errno(g.device("0000:01:02.0")), "ENODEV");
}

#[test]
fn name_lookup_comes_before_the_container_check() {
    let b = host(MockConfig::default());
    let g = Group::open(b, 1).unwrap();
    assert_eq!(errno(g.device("0000:00:09.0")), "ENODEV");
}

#[test]
fn two_groups_share_one_container() {
    let cfg = MockConfig::default().with_group(MockGroupConfig::new(2).with_device(MockDeviceConfig::edu("0000:00:04.0")));
    let b = host(cfg);
    let c = Container::open(b.clone()).unwrap();
    let g1 = Group::open(b.clone(), 1).unwrap();
    let g2 = Group::open(b, 2).unwrap();
    g1.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    g2.set_container(&c).unwrap();
    g2.device("0000:00:04.0").unwrap();
}

// ---- live update of host addresses (VFIO_UPDATE_VADDR) ----

#[test]
fn invalidating_vaddrs_keeps_the_mappings_and_reports_their_size() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x2000, RW).unwrap();
    assert_eq!(c.invalidate_vaddr(0x10_0000, 0x2000).unwrap(), 0x2000);
    assert_eq!(c.iommu_info().unwrap().dma_avail, Some(65534));
}

#[test]
fn invalidating_an_already_invalid_vaddr_fails_with_einval() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x2000, RW).unwrap();
    c.invalidate_vaddr(0x10_0000, 0x2000).unwrap();
    assert_eq!(errno(c.invalidate_vaddr(0x10_0000, 0x2000)), "EINVAL");
}

#[test]
fn a_new_vaddr_is_accepted_only_for_an_invalidated_mapping_of_the_same_extent() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x2000, RW).unwrap();
    assert_eq!(errno(c.update_vaddr(0x10_0000, 0x7100_0000_0000, 0x2000)), "EINVAL");
    c.invalidate_vaddr(0x10_0000, 0x2000).unwrap();
    assert_eq!(errno(c.update_vaddr(0x10_0000, 0x7100_0000_0000, 0x1000)), "EINVAL");
    c.update_vaddr(0x10_0000, 0x7100_0000_0000, 0x2000).unwrap();
    assert_eq!(c.invalidate_vaddr(0x10_0000, 0x2000).unwrap(), 0x2000);
}

#[test]
fn a_new_vaddr_for_an_iova_with_no_mapping_fails_with_enoent() {
    let (_b, c, _g) = ready();
    assert_eq!(errno(c.update_vaddr(0x10_0000, 0x7100_0000_0000, 0x1000)), "ENOENT");
}

fn two_groups() -> MockConfig {
    MockConfig::empty()
        .with_group(MockGroupConfig::new(1).with_device(MockDeviceConfig::edu("0000:00:03.0")))
        .with_group(MockGroupConfig::new(2).with_device(MockDeviceConfig::edu("0000:00:04.0")))
}

#[test]
fn invalidating_every_mapping_in_one_call_reports_their_total_size() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x2000, RW).unwrap();
    c.map_dma(0x4000_0000, va() + 0x10_0000, 0x1000, RW).unwrap();
    assert_eq!(c.invalidate_all_vaddrs().unwrap(), 0x3000);
    assert_eq!(errno(c.update_vaddr(0x10_0000, 0x7100_0000_0000, 0x1000)), "EINVAL");
    c.update_vaddr(0x10_0000, 0x7100_0000_0000, 0x2000).unwrap();
    c.update_vaddr(0x4000_0000, 0x7100_0010_0000, 0x1000).unwrap();
}

#[test]
fn invalidating_all_when_one_is_already_invalid_fails_with_einval_and_leaves_the_others_valid() {
    // vfio_dma_do_unmap walks in IOVA order and, at an already invalid
    // mapping, gives back the ones it marked in this call.
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    c.map_dma(0x20_0000, va() + 0x1000, 0x1000, RW).unwrap();
    c.invalidate_vaddr(0x20_0000, 0x1000).unwrap();
    assert_eq!(errno(c.invalidate_all_vaddrs()), "EINVAL");
    assert_eq!(errno(c.update_vaddr(0x10_0000, 0x7100_0000_0000, 0x1000)), "EINVAL");
    c.update_vaddr(0x20_0000, 0x7100_0000_1000, 0x1000).unwrap();
}

#[test]
fn a_normal_map_over_an_invalidated_mapping_fails_with_eexist() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x2000, RW).unwrap();
    c.invalidate_vaddr(0x10_0000, 0x2000).unwrap();
    assert_eq!(errno(c.map_dma(0x10_0000, 0x7100_0000_0000, 0x2000, RW)), "EEXIST");
}

#[test]
fn a_group_cannot_join_while_a_vaddr_is_invalid_and_can_once_it_is_restored() {
    let b = host(two_groups());
    let c = Container::open(b.clone()).unwrap();
    let g1 = Group::open(b.clone(), 1).unwrap();
    let g2 = Group::open(b, 2).unwrap();
    g1.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    c.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    c.invalidate_vaddr(0x10_0000, 0x1000).unwrap();
    assert_eq!(errno(g2.set_container(&c)), "EBUSY");
    c.update_vaddr(0x10_0000, 0x7100_0000_0000, 0x1000).unwrap();
    g2.set_container(&c).unwrap();
}

#[test]
fn unmapping_an_invalidated_mapping_lets_groups_join_again() {
    // vfio_remove_dma drops an invalid mapping from vaddr_invalid_count.
    let b = host(two_groups());
    let c = Container::open(b.clone()).unwrap();
    let g1 = Group::open(b.clone(), 1).unwrap();
    let g2 = Group::open(b, 2).unwrap();
    g1.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    c.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    c.invalidate_vaddr(0x10_0000, 0x1000).unwrap();
    assert_eq!(c.unmap_dma(0x10_0000, 0x1000).unwrap(), 0x1000);
    g2.set_container(&c).unwrap();
}

#[test]
fn a_host_driver_cannot_bind_into_a_group_user_space_owns() {
    let b = std::sync::Arc::new(vfio_core::MockBackend::new(two_device_group(None)));
    let dynb: std::sync::Arc<dyn vfio_core::Backend> = b.clone();
    let c = Container::open(dynb.clone()).unwrap();
    let g = Group::open(dynb, 1).unwrap();
    g.set_container(&c).unwrap();
    assert_eq!(b.bind("0000:01:02.0", Some("e1000e")), Err(vfio_core::backend::Errno(libc::EBUSY)));
    assert!(g.status().unwrap().viable);
}

#[test]
fn binding_a_host_driver_to_a_free_group_makes_it_not_viable() {
    let b = std::sync::Arc::new(vfio_core::MockBackend::new(two_device_group(None)));
    b.bind("0000:01:02.0", Some("e1000e")).unwrap();
    let g = Group::open(b, 1).unwrap();
    assert!(!g.status().unwrap().viable);
}

#[test]
fn set_container_with_a_descriptor_that_is_not_a_container_fails_with_einval_on_6_1() {
    let b = host(MockConfig::default());
    let g = Group::open(b.clone(), 1).unwrap();
    assert_eq!(b.group_set_container(g.raw_fd(), g.raw_fd()), Err(vfio_core::backend::Errno(libc::EINVAL)));
}

#[test]
fn set_container_with_a_descriptor_that_is_not_a_container_fails_with_ebadfd_on_6_12() {
    let b = host(MockConfig { kernel: KernelVersion::V6_12, ..MockConfig::default() });
    let g = Group::open(b.clone(), 1).unwrap();
    assert_eq!(b.group_set_container(g.raw_fd(), g.raw_fd()), Err(vfio_core::backend::Errno(libc::EBADFD)));
}

#[test]
fn a_group_whose_reserved_region_holds_a_mapping_cannot_join_with_einval() {
    let cfg = MockConfig::default().with_group(MockGroupConfig {
        reserved: vec![IovaSpan::new(0x10_0000, 0x1f_ffff)],
        ..MockGroupConfig::new(2).with_device(MockDeviceConfig::edu("0000:00:04.0"))
    });
    let (b, c, _g) = ready_with(cfg);
    c.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    let g2 = Group::open(b, 2).unwrap();
    assert_eq!(errno(g2.set_container(&c)), "EINVAL");
}

// ---- dirty page tracking (VFIO_IOMMU_DIRTY_PAGES) ----

#[test]
fn a_dirty_bitmap_before_tracking_starts_fails_with_einval() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x4000, RW).unwrap();
    assert_eq!(errno(c.dirty_bitmap(0x10_0000, 0x4000, 0x1000)), "EINVAL");
}

#[test]
fn every_mapped_page_is_dirty_while_tracking() {
    // A device without page pinning may have written any mapped page
    // (update_user_bitmap with num_non_pinned_groups).
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x3000, RW).unwrap();
    c.map_dma(0x10_5000, va() + 0x01_0000, 0x1000, RW).unwrap();
    c.start_dirty_tracking().unwrap();
    assert_eq!(c.dirty_bitmap(0x10_0000, 0x8000, 0x1000).unwrap(), vec![0b10_0111]);
}

#[test]
fn a_dirty_bitmap_that_cuts_a_mapping_fails_with_einval() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x4000, RW).unwrap();
    c.start_dirty_tracking().unwrap();
    assert_eq!(errno(c.dirty_bitmap(0x10_0000, 0x2000, 0x1000)), "EINVAL");
}

#[test]
fn a_dirty_bitmap_in_another_page_size_fails_with_einval() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x20_0000, RW).unwrap();
    c.start_dirty_tracking().unwrap();
    assert_eq!(errno(c.dirty_bitmap(0x10_0000, 0x20_0000, 0x20_0000)), "EINVAL");
}

#[test]
fn stopping_tracking_refuses_further_bitmaps() {
    let (_b, c, _g) = ready();
    c.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    c.start_dirty_tracking().unwrap();
    c.stop_dirty_tracking().unwrap();
    assert_eq!(errno(c.dirty_bitmap(0x10_0000, 0x1000, 0x1000)), "EINVAL");
}

#[test]
fn dirty_tracking_on_a_type1_v1_container_fails_with_eacces() {
    let b = host(MockConfig::default());
    let c = Container::open(b.clone()).unwrap();
    let g = Group::open(b, 1).unwrap();
    g.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1_IOMMU).unwrap();
    assert_eq!(errno(c.start_dirty_tracking()), "EACCES");
}
