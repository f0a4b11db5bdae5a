use super::*;

const RW: u32 = u::VFIO_DMA_MAP_FLAG_READ | u::VFIO_DMA_MAP_FLAG_WRITE;
fn mem() -> u64 {
    crate::memory::test_va()
}

fn v2() -> MockSpapr {
    let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), true);
    m.attach_group(1).unwrap();
    m
}

fn errno<T: std::fmt::Debug>(r: Result<T>) -> i32 {
    r.unwrap_err().errno
}

#[test]
fn get_info_without_a_group_fails_with_enxio() {
    let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), true);
    assert_eq!(errno(m.tce_get_info(32)), libc::ENXIO);
}

#[test]
fn get_info_with_argsz_below_16_fails_with_einval() {
    assert_eq!(errno(v2().tce_get_info(15)), libc::EINVAL);
}

#[test]
fn get_info_reports_the_one_gib_default_window_at_zero() {
    let i = v2().tce_get_info(32).unwrap();
    assert_eq!((i.dma32_window_start, i.dma32_window_size), (0, 0x4000_0000));
}

#[test]
fn get_info_on_v2_reports_ddw_with_two_windows_and_one_level() {
    let i = v2().tce_get_info(32).unwrap();
    assert_eq!(i.flags, u::VFIO_IOMMU_SPAPR_INFO_DDW);
    assert_eq!(i.ddw, u::vfio_iommu_spapr_tce_ddw_info { pgsizes: 0x1211000, max_dynamic_windows_supported: 2, levels: 1 });
}

#[test]
fn get_info_with_argsz_16_sets_the_ddw_flag_but_leaves_ddw_unwritten() {
    let i = v2().tce_get_info(16).unwrap();
    assert_eq!((i.flags, i.ddw), (u::VFIO_IOMMU_SPAPR_INFO_DDW, Default::default()));
}

#[test]
fn get_info_on_v1_reports_no_ddw() {
    let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
    m.attach_group(1).unwrap();
    assert_eq!(m.tce_get_info(32).unwrap().flags, 0);
}

#[test]
fn map_before_any_registration_on_v2_fails_with_eperm() {
    assert_eq!(errno(v2().map_dma(0, mem(), 0x1000, RW)), libc::EPERM);
}

#[test]
fn register_then_map_into_the_default_window_succeeds_and_translates() {
    let mut m = v2();
    m.register_memory(mem(), 0x10000, 0).unwrap();
    assert_eq!(m.map_dma(0x2000, mem(), 0x1000, RW).unwrap(), 0);
    assert_eq!(m.tce_at(0x2010), Some((mem() + 0x10, RW)));
}

#[test]
fn map_of_memory_not_registered_fails_with_einval_and_maps_nothing() {
    let mut m = v2();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    assert_eq!(errno(m.map_dma(0, mem(), 0x2000, RW)), libc::EINVAL);
    assert_eq!(m.tce_at(0), None);
}

#[test]
fn map_outside_every_window_fails_with_enxio() {
    let mut m = v2();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    assert_eq!(errno(m.map_dma(0x4000_0000, mem(), 0x1000, RW)), libc::ENXIO);
}

#[test]
fn map_with_a_misaligned_iova_returns_1_and_maps_nothing() {
    let mut m = v2();
    m.register_memory(mem(), 0x2000, 0).unwrap();
    assert_eq!(m.map_dma(0x800, mem(), 0x1000, RW).unwrap(), 1);
    assert_eq!(m.tce_at(0x800), None);
}

#[test]
fn map_with_a_misaligned_size_fails_with_einval() {
    let mut m = v2();
    m.register_memory(mem(), 0x2000, 0).unwrap();
    assert_eq!(errno(m.map_dma(0, mem(), 0x800, RW)), libc::EINVAL);
}

#[test]
fn map_without_read_or_write_fails_with_einval() {
    let mut m = v2();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    assert_eq!(errno(m.map_dma(0, mem(), 0x1000, 0)), libc::EINVAL);
}

#[test]
fn map_with_an_unknown_flag_fails_with_einval() {
    let mut m = v2();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    assert_eq!(errno(m.map_dma(0, mem(), 0x1000, RW | 4)), libc::EINVAL);
}

#[test]
fn map_over_a_live_tce_replaces_it() {
    let mut m = v2();
    m.register_memory(mem(), 0x2000, 0).unwrap();
    m.map_dma(0, mem(), 0x1000, RW).unwrap();
    assert_eq!(m.map_dma(0, mem() + 0x1000, 0x1000, u::VFIO_DMA_MAP_FLAG_READ).unwrap(), 0);
    assert_eq!(m.tce_at(0), Some((mem() + 0x1000, u::VFIO_DMA_MAP_FLAG_READ)));
}

#[test]
fn map_running_past_the_window_end_returns_1_and_maps_nothing_as_the_fixed_6_12_stables_do() {
    let mut m = v2();
    m.register_memory(mem(), 0x2000, 0).unwrap();
    assert_eq!(m.map_dma(0x3fff_f000, mem(), 0x2000, RW).unwrap(), 1);
    assert_eq!(m.map_dma(0x3fff_f000, mem(), !0xfff_u64, RW).unwrap(), 1);
    assert_eq!(m.tce_at(0x3fff_f000), None);
}

#[test]
fn map_of_host_addresses_that_wrap_fails_as_unregistered_and_on_v1_as_unmapped() {
    let mut m = v2();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    assert_eq!(errno(m.map_dma(0, !0xfff_u64, 0x2000, RW)), libc::EINVAL);
    let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
    m.attach_group(1).unwrap();
    m.enable().unwrap();
    assert_eq!(errno(m.map_dma(0, !0xfff_u64, 0x2000, RW)), libc::EFAULT);
}

#[test]
fn unmap_running_past_the_window_end_returns_1_and_clears_nothing() {
    let mut m = v2();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    m.map_dma(0x3fff_f000, mem(), 0x1000, RW).unwrap();
    assert_eq!(m.unmap_dma(0x3fff_f000, 0x2000, 0).unwrap(), 1);
    assert!(m.tce_at(0x3fff_f000).is_some());
}

#[test]
fn unmap_at_a_misaligned_iova_returns_1() {
    let mut m = v2();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    assert_eq!(m.unmap_dma(0x800, 0x1000, 0).unwrap(), 1);
}

#[test]
fn unmap_of_part_of_a_mapping_clears_only_those_tces() {
    let mut m = v2();
    m.register_memory(mem(), 0x2000, 0).unwrap();
    m.map_dma(0, mem(), 0x2000, RW).unwrap();
    assert_eq!(m.unmap_dma(0x1000, 0x1000, 0).unwrap(), 0);
    assert_eq!((m.tce_at(0).is_some(), m.tce_at(0x1000)), (true, None));
}

#[test]
fn unmap_with_a_flag_fails_with_einval() {
    let mut m = v2();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    assert_eq!(errno(m.unmap_dma(0, 0x1000, 1)), libc::EINVAL);
}

#[test]
fn register_of_the_same_region_twice_fails_with_ebusy() {
    let mut m = v2();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    assert_eq!(errno(m.register_memory(mem(), 0x1000, 0)), libc::EBUSY);
}

#[test]
fn register_overlapping_a_region_fails_with_einval() {
    let mut m = v2();
    m.register_memory(mem(), 0x2000, 0).unwrap();
    assert_eq!(errno(m.register_memory(mem() + 0x1000, 0x2000, 0)), libc::EINVAL);
}

#[test]
fn register_of_a_misaligned_address_fails_with_einval() {
    assert_eq!(errno(v2().register_memory(mem() + 0x800, 0x1000, 0)), libc::EINVAL);
}

#[test]
fn register_on_v1_fails_with_enotty() {
    let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
    m.attach_group(1).unwrap();
    assert_eq!(errno(m.register_memory(mem(), 0x1000, 0)), libc::ENOTTY);
}

#[test]
fn unregister_before_the_container_has_an_mm_fails_with_eperm() {
    assert_eq!(errno(v2().unregister_memory(mem(), 0x1000, 0)), libc::EPERM);
}

#[test]
fn unregister_of_a_region_never_registered_fails_with_enoent() {
    let mut m = v2();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    assert_eq!(errno(m.unregister_memory(mem() + 0x1000, 0x1000, 0)), libc::ENOENT);
}

#[test]
fn unregister_while_mapped_returns_0_and_leaks_the_registration() {
    let mut m = v2();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    m.map_dma(0, mem(), 0x1000, RW).unwrap();
    m.unregister_memory(mem(), 0x1000, 0).unwrap();
    assert_eq!(m.leaked_registrations(), 1);
}

/// Two v2 containers of one process (one mm), each with its own PE.
fn two_in_one_mm() -> (MockSpapr, MockSpapr, Arc<MockMm>) {
    let mm = Arc::new(MockMm::default());
    let mut a = MockSpapr::new_in(SpaprProfile::qemu_pseries(), true, Arc::clone(&mm));
    let mut b = MockSpapr::new_in(SpaprProfile::qemu_pseries(), true, Arc::clone(&mm));
    a.attach_group(1).unwrap();
    b.attach_group(2).unwrap();
    (a, b, mm)
}

#[test]
fn a_region_unregistered_while_mapped_stays_in_the_mm_after_its_tce_is_gone_and_it_is_registered_and_unregistered_again() {
    let mut m = v2();
    m.register_memory(mem(), 0x2000, 0).unwrap();
    m.map_dma(0, mem(), 0x1000, RW).unwrap();
    // The region's two pages and the default window's table (charged on
    // first use, kept on pseries).
    let charged = m.locked_pages();
    m.unregister_memory(mem(), 0x2000, 0).unwrap();
    // The mm still finds it: a map through it works, a second unregister
    // finds it on no list, registering it again takes it back.
    m.map_dma(0x1000, mem() + 0x1000, 0x1000, RW).unwrap();
    m.unmap_dma(0, 0x2000, 0).unwrap();
    assert_eq!(errno(m.unregister_memory(mem(), 0x2000, 0)), libc::ENOENT);
    m.register_memory(mem(), 0x2000, 0).unwrap();
    m.unregister_memory(mem(), 0x2000, 0).unwrap();
    // mm_iommu_put's lost EBUSY left one user behind for good: the region
    // still refuses an overlapping one and stays charged.
    assert_eq!(errno(m.register_memory(mem(), 0x1000, 0)), libc::EINVAL);
    assert_eq!((m.leaked_registrations(), m.locked_pages()), (1, charged));
}

#[test]
fn a_second_container_of_the_process_shares_a_registered_region_and_is_refused_an_overlapping_one() {
    let (mut a, mut b, mm) = two_in_one_mm();
    a.register_memory(mem(), 0x2000, 0).unwrap();
    assert_eq!(errno(b.register_memory(mem(), 0x1000, 0)), libc::EINVAL);
    b.register_memory(mem(), 0x2000, 0).unwrap();
    assert_eq!(mm.locked_pages(), 2, "one pin, one charge for both");
    b.map_dma(0, mem(), 0x1000, RW).unwrap();
    // b's default window came with its table, charged and kept on pseries.
    let table = mm.locked_pages() - 2;
    a.unregister_memory(mem(), 0x2000, 0).unwrap();
    b.map_dma(0x1000, mem() + 0x1000, 0x1000, RW).unwrap();
    drop(b);
    drop(a);
    assert_eq!((mm.locked_pages(), mm.iommu_mem.lock().unwrap().len()), (table, 0));
}

#[test]
fn closing_a_container_gives_back_what_it_registered_but_not_a_region_it_leaked() {
    let mm = Arc::new(MockMm::default());
    let mut m = MockSpapr::new_in(SpaprProfile::qemu_pseries(), true, Arc::clone(&mm));
    m.attach_group(1).unwrap();
    m.register_memory(mem(), 0x1000, 0).unwrap();
    m.register_memory(mem() + 0x1000, 0x1000, 0).unwrap();
    m.map_dma(0, mem(), 0x1000, RW).unwrap();
    m.unregister_memory(mem(), 0x1000, 0).unwrap();
    drop(m);
    // The default window's table is charged on first use and never given
    // back on pseries; of the two regions only the leaked one stays.
    let table = mm.locked_pages() - 1;
    let mut again = MockSpapr::new_in(SpaprProfile::qemu_pseries(), true, Arc::clone(&mm));
    again.attach_group(1).unwrap();
    again.register_memory(mem(), 0x1000, 0).unwrap();
    assert_eq!(mm.locked_pages(), table + 1, "the leaked region is shared, not pinned again");
}

#[test]
fn create_of_a_64k_window_places_it_at_the_firmware_ddw_address() {
    let mut m = v2();
    assert_eq!(m.tce_create(16, 1 << 30, 1, 0).unwrap(), 1 << 59);
}

#[test]
fn create_with_an_unoffered_page_size_fails_with_einval() {
    assert_eq!(errno(v2().tce_create(20, 1 << 30, 1, 0)), libc::EINVAL);
}

#[test]
fn create_of_a_window_not_a_power_of_two_fails_with_einval() {
    assert_eq!(errno(v2().tce_create(16, 3 << 28, 1, 0)), libc::EINVAL);
}

#[test]
fn create_with_two_levels_fails_with_einval() {
    assert_eq!(errno(v2().tce_create(16, 1 << 30, 2, 0)), libc::EINVAL);
}

#[test]
fn create_of_more_tces_than_the_largest_block_fails_with_einval() {
    let mut m = MockSpapr::new(SpaprProfile { ddw_largest_block: 1 << 18, ..SpaprProfile::qemu_pseries() }, true);
    m.attach_group(1).unwrap();
    assert_eq!(errno(m.tce_create(12, 1 << 31, 1, 0)), libc::EINVAL);
}

#[test]
fn create_of_a_window_twice_the_guest_ram_is_within_qemus_largest_block() {
    assert_eq!(v2().tce_create(12, 1 << 31, 1, 0).unwrap(), 1 << 59);
}

#[test]
fn create_of_a_third_window_fails_with_enospc() {
    let mut m = v2();
    m.tce_create(16, 1 << 30, 1, 0).unwrap();
    assert_eq!(errno(m.tce_create(16, 1 << 30, 1, 0)), libc::ENOSPC);
}

#[test]
fn create_on_v1_fails_with_enotty() {
    let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
    m.attach_group(1).unwrap();
    assert_eq!(errno(m.tce_create(16, 1 << 30, 1, 0)), libc::ENOTTY);
}

#[test]
fn remove_of_the_pending_default_window_then_create_of_a_small_4k_window_recreates_it_at_zero() {
    let mut m = v2();
    m.tce_remove(0, 0).unwrap();
    assert_eq!(m.tce_create(12, 1 << 28, 1, 0).unwrap(), 0);
}

#[test]
fn remove_of_an_address_in_no_window_fails_with_einval() {
    let mut m = v2();
    m.tce_create(16, 1 << 30, 1, 0).unwrap();
    assert_eq!(errno(m.tce_remove(0x4000_0000, 0)), libc::EINVAL);
}

#[test]
fn remove_of_a_window_clears_its_tces_and_their_registration_counts() {
    let mut m = v2();
    m.register_memory(mem(), 0x10000, 0).unwrap();
    let start = m.tce_create(16, 1 << 30, 1, 0).unwrap();
    m.map_dma(0, mem(), 0x1000, RW).unwrap();
    m.tce_remove(0, 0).unwrap();
    m.unregister_memory(mem(), 0x10000, 0).unwrap();
    assert_eq!((m.tce_at(0), m.leaked_registrations(), start), (None, 0, 1 << 59));
}

#[test]
fn map_of_64k_tces_over_4k_pages_fails_with_einval() {
    let mut m = v2();
    m.register_memory(mem(), 0x20000, 0).unwrap();
    let start = m.tce_create(16, 1 << 30, 1, 0).unwrap();
    assert_eq!(errno(m.map_dma(start, mem(), 0x10000, RW)), libc::EINVAL);
}

#[test]
fn a_second_group_attaches_but_then_window_creation_fails_with_eperm() {
    let mut m = v2();
    m.attach_group(2).unwrap();
    assert_eq!(errno(m.tce_create(16, 1 << 30, 1, 0)), libc::EPERM);
}

#[test]
fn a_second_group_into_a_container_with_a_window_fails_with_eperm() {
    let mut m = v2();
    m.tce_create(16, 1 << 30, 1, 0).unwrap();
    assert_eq!(errno(m.attach_group(2)), libc::EPERM);
}

#[test]
fn a_second_group_into_a_v1_container_fails_with_ebusy() {
    let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
    m.attach_group(1).unwrap();
    assert_eq!(errno(m.attach_group(2)), libc::EBUSY);
}

#[test]
fn v1_maps_after_enable_without_registration() {
    let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
    m.attach_group(1).unwrap();
    m.enable().unwrap();
    assert_eq!(m.map_dma(0, mem(), 0x1000, RW).unwrap(), 0);
}

#[test]
fn enable_twice_on_v1_fails_with_ebusy() {
    let mut m = MockSpapr::new(SpaprProfile::qemu_pseries(), false);
    m.attach_group(1).unwrap();
    m.enable().unwrap();
    assert_eq!(errno(m.enable()), libc::EBUSY);
}

#[test]
fn enable_on_v2_fails_with_enotty() {
    assert_eq!(errno(v2().enable()), libc::ENOTTY);
}

#[test]
fn eeh_pe_op_on_a_pe_without_eeh_fails_with_enodev() {
    assert_eq!(errno(v2().eeh_pe_op(u::VFIO_EEH_PE_GET_STATE)), libc::ENODEV);
}
