//! The mock pins what it maps, as the kernel does: type1's
//! vfio_pin_pages_remote + vfio_lock_acct, sPAPR's mm_iommu_do_alloc
//! (register), tce_iommu_use_page (v1 map) and account_locked_vm.

mod common;

use std::sync::Arc;

use common::*;
use vfio_core::backend::MemlockPolicy;
use vfio_core::spapr::{ops_for, SpaprOps};
use vfio_core::uapi::*;
use vfio_core::{Backend, Container, Group, HostMemory, MockBackend, MockConfig};

const PAGE: u64 = 4096;

fn limited(pages: u64) -> MockConfig {
    MockConfig { memlock: MemlockPolicy::Fixed(Some(pages * PAGE)), ..MockConfig::default() }
}

/// A mock host (as itself, for `locked_pages`) with group 1 in a type1v2 container.
fn type1(config: MockConfig) -> (Arc<MockBackend>, Container, Group) {
    let m = Arc::new(MockBackend::new(config));
    let b: Arc<dyn Backend> = m.clone();
    let c = Container::open(b.clone()).unwrap();
    let g = Group::open(b, 1).unwrap();
    g.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    (m, c, g)
}

/// `n` pages with page `hole` unmapped.
fn with_hole(n: u64, hole: u64) -> HostMemory {
    let m = HostMemory::new((n * PAGE) as usize).unwrap();
    // SAFETY: unmaps one page of a mapping this test owns; HostMemory's own
    // munmap of the whole range later ignores the hole.
    unsafe { libc::munmap((m.addr() + hole * PAGE) as *mut libc::c_void, PAGE as usize) };
    m
}

#[test]
fn a_map_of_host_address_zero_fails_with_efault_and_takes_no_entry() {
    let (_m, c, _g) = type1(MockConfig::default());
    assert_eq!(c.map_dma(0x10_0000, 0, PAGE, RW).unwrap_err().code(), "EFAULT");
    assert_eq!(c.iommu_info().unwrap().dma_avail, Some(65535));
}

#[test]
fn a_map_of_a_range_only_partly_mapped_fails_with_efault_and_maps_nothing() {
    let (m, c, _g) = type1(MockConfig::default());
    let mem = with_hole(4, 3);
    assert_eq!(c.map_dma(0x10_0000, mem.addr(), 4 * PAGE, RW).unwrap_err().code(), "EFAULT");
    c.map_dma(0x10_0000, mem.addr(), 3 * PAGE, RW).unwrap();
    assert_eq!(m.locked_pages(), 3);
}

#[test]
fn every_mapped_page_is_charged_once_per_mapping_and_unmap_gives_it_back() {
    let (m, c, _g) = type1(MockConfig::default());
    let mem = HostMemory::new(8 * PAGE as usize).unwrap();
    c.map_dma(0x10_0000, mem.addr(), 8 * PAGE, RW).unwrap();
    // The same pages at a second IOVA are charged again (vfio_dma has its own count).
    c.map_dma(0x20_0000, mem.addr(), 2 * PAGE, RW).unwrap();
    assert_eq!(m.locked_pages(), 10);
    c.unmap_dma(0x10_0000, 8 * PAGE).unwrap();
    assert_eq!(m.locked_pages(), 2);
}

#[test]
fn a_map_past_rlimit_memlock_fails_with_enomem_and_charges_nothing() {
    let (m, c, _g) = type1(limited(4));
    let mem = HostMemory::new(8 * PAGE as usize).unwrap();
    c.map_dma(0x10_0000, mem.addr(), 3 * PAGE, RW).unwrap();
    assert_eq!(c.map_dma(0x20_0000, mem.addr(), 2 * PAGE, RW).unwrap_err().code(), "ENOMEM");
    assert_eq!(m.locked_pages(), 3);
    c.map_dma(0x20_0000, mem.addr(), PAGE, RW).unwrap();
}

#[test]
fn over_the_limit_a_hole_before_the_refused_page_answers_efault() {
    let (_m, c, _g) = type1(limited(4));
    let mem = with_hole(8, 2);
    assert_eq!(c.map_dma(0x10_0000, mem.addr(), 8 * PAGE, RW).unwrap_err().code(), "EFAULT");
    let mem = with_hole(8, 6);
    assert_eq!(c.map_dma(0x10_0000, mem.addr(), 8 * PAGE, RW).unwrap_err().code(), "ENOMEM");
}

#[test]
fn unmapping_frees_room_under_the_limit() {
    let (_m, c, _g) = type1(limited(4));
    let mem = HostMemory::new(4 * PAGE as usize).unwrap();
    c.map_dma(0x10_0000, mem.addr(), 4 * PAGE, RW).unwrap();
    assert_eq!(c.map_dma(0x20_0000, mem.addr(), PAGE, RW).unwrap_err().code(), "ENOMEM");
    c.unmap_all().unwrap();
    c.map_dma(0x20_0000, mem.addr(), 4 * PAGE, RW).unwrap();
}

#[test]
fn closing_the_container_gives_back_every_pinned_page() {
    let (m, c, g) = type1(MockConfig::default());
    let mem = HostMemory::new(4 * PAGE as usize).unwrap();
    c.map_dma(0x10_0000, mem.addr(), 4 * PAGE, RW).unwrap();
    drop(g);
    drop(c);
    assert_eq!(m.locked_pages(), 0);
}

#[test]
fn a_batch_past_the_limit_rolls_back_and_leaves_nothing_charged() {
    let (m, c, _g) = type1(limited(4));
    let mem = HostMemory::new(8 * PAGE as usize).unwrap();
    let entries: Vec<[u64; 3]> = (0..4).map(|i| [0x10_0000 + 2 * i * PAGE, mem.addr() + 2 * i * PAGE, 2 * PAGE]).collect();
    let e = c.map_batch(&entries, vfio_core::BatchFlags::All(RW)).unwrap_err();
    assert_eq!((e.code(), e.entry), ("ENOMEM", Some(2)));
    assert_eq!(m.locked_pages(), 0);
}

// ---- sPAPR ----

fn pseries(config: MockConfig, v2: bool) -> (Arc<MockBackend>, Container, Group) {
    let cfg = config.on_qemu_pseries();
    let m = Arc::new(MockBackend::new(cfg));
    let b: Arc<dyn Backend> = m.clone();
    let c = Container::open(b.clone()).unwrap();
    let g = Group::open(b, 1).unwrap();
    g.set_container(&c).unwrap();
    c.set_iommu(if v2 { VFIO_SPAPR_TCE_V2_IOMMU } else { VFIO_SPAPR_TCE_IOMMU }).unwrap();
    (m, c, g)
}

#[test]
fn spapr_register_of_unmapped_memory_fails_with_efault_and_charges_nothing() {
    let (m, c, _g) = pseries(MockConfig::default(), true);
    let mem = with_hole(4, 3);
    assert_eq!(ops_for(&c).register_memory(mem.addr(), 4 * PAGE, 0).unwrap_err().code(), "EFAULT");
    assert_eq!(ops_for(&c).register_memory(0, PAGE, 0).unwrap_err().code(), "EFAULT");
    assert_eq!(m.locked_pages(), 0);
}

#[test]
fn spapr_register_charges_its_pages_and_unregister_gives_them_back() {
    let (m, c, _g) = pseries(MockConfig::default(), true);
    let mem = HostMemory::new(4 * PAGE as usize).unwrap();
    ops_for(&c).register_memory(mem.addr(), 4 * PAGE, 0).unwrap();
    assert_eq!(m.locked_pages(), 4);
    ops_for(&c).unregister_memory(mem.addr(), 4 * PAGE, 0).unwrap();
    assert_eq!(m.locked_pages(), 0);
}

#[test]
fn spapr_register_past_the_limit_fails_with_enomem() {
    let (_m, c, _g) = pseries(limited(2), true);
    let mem = HostMemory::new(4 * PAGE as usize).unwrap();
    assert_eq!(ops_for(&c).register_memory(mem.addr(), 4 * PAGE, 0).unwrap_err().code(), "ENOMEM");
}

#[test]
fn spapr_v1_enable_charges_the_whole_32_bit_window_and_a_low_limit_refuses_it_with_enomem() {
    let (m, c, g) = pseries(MockConfig::default(), false);
    ops_for(&c).enable().unwrap();
    assert_eq!(m.locked_pages(), (1 << 30) / PAGE);
    drop(g);
    drop(c);
    assert_eq!(m.locked_pages(), 0);
    let (_m, c, _g) = pseries(limited(16), false);
    assert_eq!(ops_for(&c).enable().unwrap_err().code(), "ENOMEM");
}

#[test]
fn spapr_v1_map_of_unmapped_memory_fails_with_efault_and_maps_nothing() {
    let (_m, c, _g) = pseries(MockConfig::default(), false);
    ops_for(&c).enable().unwrap();
    let mem = with_hole(4, 2);
    assert_eq!(ops_for(&c).map_dma(0, mem.addr(), 4 * PAGE, RW).unwrap_err().code(), "EFAULT");
    assert_eq!(ops_for(&c).map_dma(0, 0, PAGE, RW).unwrap_err().code(), "EFAULT");
    assert_eq!(ops_for(&c).map_dma(0, mem.addr(), 2 * PAGE, RW).unwrap(), 0);
}

#[test]
fn spapr_tce_tables_are_charged_at_creation_and_never_given_back_as_on_pseries() {
    let (m, c, _g) = pseries(MockConfig::default(), true);
    // The first create makes the pending default window (1 GiB of 4 KiB
    // TCEs: 2 MiB of table, 512 pages), then 1 GiB of 64 KiB TCEs: 32 pages.
    let start = ops_for(&c).tce_create(16, 1 << 30, 1, 0).unwrap();
    assert_eq!(m.locked_pages(), 512 + 32);
    ops_for(&c).tce_remove(start, 0).unwrap();
    ops_for(&c).tce_remove(0, 0).unwrap();
    // tce_iommu_free_table gives back it_allocated_size, 0 on pseries.
    assert_eq!(m.locked_pages(), 512 + 32);
}

#[test]
fn a_batch_whose_third_entry_runs_into_a_hole_fails_there_with_efault() {
    let (m, c, _g) = type1(MockConfig::default());
    let mem = with_hole(8, 5);
    let entries: Vec<[u64; 3]> = (0..4).map(|i| [0x10_0000 + 4 * i * PAGE, mem.addr() + 2 * i * PAGE, 2 * PAGE]).collect();
    let e = c.map_batch(&entries, vfio_core::BatchFlags::All(RW)).unwrap_err();
    assert_eq!((e.code(), e.entry), ("EFAULT", Some(2)));
    assert_eq!(m.locked_pages(), 0);
}

#[test]
fn a_mapping_that_ends_at_2_pow_64_stays_charged_after_unmap_all_and_release_as_on_6_1() {
    // vfio_unmap_unpin's `while (iova < end)` never runs when iova + size
    // wraps to 0: the pages are never unpinned (the x86-amd lab shows it).
    let (m, c, g) = type1(MockConfig::empty().with_iommu_profile(&vfio_core::backend::AMD_VI).with_group(
        vfio_core::backend::MockGroupConfig::new(1).with_device(vfio_core::backend::MockDeviceConfig::edu("0000:00:03.0")),
    ));
    let mem = HostMemory::new(2 * PAGE as usize).unwrap();
    // The raw call, as the lab's case makes it.
    let top = |vaddr| vfio_iommu_type1_dma_map { argsz: 32, flags: RW, vaddr, iova: u64::MAX - (PAGE - 1), size: PAGE };
    m.map_dma(c.raw_fd(), &top(mem.addr())).unwrap();
    c.map_dma(0x10_0000, mem.addr(), PAGE, RW).unwrap();
    assert_eq!(c.unmap_all().unwrap(), 2 * PAGE);
    assert_eq!(m.locked_pages(), 1);
    m.map_dma(c.raw_fd(), &top(mem.addr() + PAGE)).unwrap();
    drop(g);
    drop(c);
    assert_eq!(m.locked_pages(), 2);
}
