//! The mock's iommufd dirty tracking, rule by rule: IOMMU_HWPT_ALLOC with
//! IOMMU_HWPT_ALLOC_DIRTY_TRACKING, IOMMU_HWPT_SET_DIRTY_TRACKING and
//! IOMMU_HWPT_GET_DIRTY_BITMAP on IOMMUFD_TEST's selftest mock domain (the
//! one IOMMU with dirty tracking a lab kernel has), and the test command
//! that creates mock devices and marks pages dirty. The iommufd lab
//! profile holds each rule to the 6.12 kernel and to 7.2's (the
//! `selftest_generic_pt` answers, from `seven_two()` on).

use std::sync::Arc;

use vfio_core::backend::{Errno, IommufdProfile, MockDeviceConfig, MockGroupConfig, X86_MSI_WINDOW};
use vfio_core::uapi::iommufd as u;
use vfio_core::uapi::iommufd_test::*;
use vfio_core::{Backend, CdevDevice, Ioas, IovaRange, Iommufd, MockBackend, MockConfig};

/// User memory the mappings come from: real, since the mock pins as the
/// kernel does (lazily, once a domain exists) and answers EFAULT for an
/// address this process has not mapped. 16 MiB of address space,
/// reserved once and never touched, covers every mapping here.
fn va() -> u64 {
    static MEMORY: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    *MEMORY.get_or_init(|| {
        // SAFETY: a fresh private anonymous mapping, owned by no one else.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), 16 << 20, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0) };
        assert_ne!(p, libc::MAP_FAILED, "mmap of the test's user memory");
        p as u64
    })
}
/// The mock domain's page (MOCK_IO_PAGE_SIZE) and aperture start.
const MP: u64 = 2048;
const AP: u64 = MOCK_APERTURE_START;

/// An iommufd kernel with CONFIG_IOMMUFD_TEST on QEMU's VT-d, with one edu.
fn config() -> MockConfig {
    let mut g = MockGroupConfig::new(1).with_device(MockDeviceConfig::edu("0000:00:03.0"));
    g.reserved = vec![X86_MSI_WINDOW];
    let mut profile = IommufdProfile::qemu_vtd(0, 0);
    profile.selftest = true;
    profile.selftest_probes = true;
    // These tests hold the mock to 6.12's selftest answers (no ATS bit,
    // the xarray mock domain); 7.2's are below, on `seven_two()`.
    profile.ats_not_supported_cap = false;
    profile.selftest_generic_pt = false;
    MockConfig::empty().with_group(g).with_iommufd(profile)
}

fn open() -> (Arc<dyn Backend>, Iommufd) {
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(config()));
    let ictx = Iommufd::open(b.clone()).unwrap();
    (b, ictx)
}

/// IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS: (selftest object, HWPT, device) ids.
fn mock_domain(ictx: &Iommufd, pt: u32, flags: u32) -> Result<(u32, u32, u32), i32> {
    let mut c = iommu_test_cmd::mock_domain(pt, flags);
    ictx.backend().iommufd_test(ictx.raw_fd(), &mut c, &[]).map_err(|e| e.0)?;
    Ok(c.mock_domain_out())
}

/// IOMMU_TEST_OP_DIRTY: marks the pages whose bits `bits` sets; how many were.
fn mark(ictx: &Iommufd, hwpt: u32, iova: u64, length: u64, page: u64, bits: &[u64]) -> Result<u64, i32> {
    let mut c = iommu_test_cmd::dirty(hwpt, iova, length, page, 0);
    ictx.backend().iommufd_test(ictx.raw_fd(), &mut c, bits).map_err(|e| e.0)?;
    Ok(c.dirty_out())
}

/// An IOAS with `pages` mock pages mapped from the aperture's start, a
/// mock device on it, and a user HWPT with dirty tracking enabled.
fn tracked(pages: u64) -> (Arc<dyn Backend>, Iommufd, Ioas, vfio_core::Hwpt) {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    ioas.map(Some(AP), va(), pages * MP, vfio_core::dma_flags::READ_WRITE).unwrap();
    let (_, _, idev) = mock_domain(&ictx, ioas.id(), 0).unwrap();
    let hwpt = ictx.alloc_hwpt(idev, &ioas, u::IOMMU_HWPT_ALLOC_DIRTY_TRACKING).unwrap();
    hwpt.set_dirty_tracking(true).unwrap();
    (b, ictx, ioas, hwpt)
}

fn raw_bitmap(ictx: &Iommufd, hwpt: u32, iova: u64, length: u64, page: u64, flags: u32, bitmap: &mut [u64]) -> Result<(), i32> {
    let mut c = u::iommu_hwpt_get_dirty_bitmap {
        size: std::mem::size_of::<u::iommu_hwpt_get_dirty_bitmap>() as u32,
        hwpt_id: hwpt,
        flags,
        iova,
        length,
        page_size: page,
        ..Default::default()
    };
    ictx.backend().hwpt_get_dirty_bitmap(ictx.raw_fd(), &mut c, bitmap).map_err(|e| e.0)
}

#[test]
fn a_kernel_without_iommufd_test_answers_the_test_command_with_enotty() {
    let mut c = config();
    c.iommufd.as_mut().unwrap().selftest = false;
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(c));
    let ictx = Iommufd::open(b).unwrap();
    let ioas = ictx.alloc_ioas().unwrap();
    assert_eq!(mock_domain(&ictx, ioas.id(), 0), Err(libc::ENOTTY));
}

#[test]
fn behind_an_iommu_that_takes_every_device_without_a_firmware_node_mock_domain_is_einval() {
    let mut c = config();
    c.iommufd.as_mut().unwrap().selftest_probes = false;
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(c));
    let ictx = Iommufd::open(b).unwrap();
    let ioas = ictx.alloc_ioas().unwrap();
    assert_eq!(mock_domain(&ictx, ioas.id(), 1 << 7), Err(libc::EINVAL));
    assert_eq!(mock_domain(&ictx, ioas.id(), 0), Err(libc::EINVAL));
    // Nothing was left behind: the next object takes id 2.
    assert_eq!(ictx.alloc_ioas().unwrap().id(), 2);
}

#[test]
fn a_mock_device_reports_the_selftest_hw_info_and_dirty_tracking_unless_made_without() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let (_, _, idev) = mock_domain(&ictx, ioas.id(), 0).unwrap();
    let info = ictx.hw_info(idev).unwrap();
    assert_eq!((info.data_type, info.data.len(), info.capabilities), (IOMMU_HW_INFO_TYPE_SELFTEST, 8, u::IOMMU_HW_CAP_DIRTY_TRACKING));
    assert_eq!(u32::from_le_bytes(info.data[4..8].try_into().unwrap()), IOMMU_HW_INFO_SELFTEST_REGVAL);
    assert!(info.dirty_tracking());
    let (_, _, plain) = mock_domain(&ictx, ioas.id(), MOCK_FLAGS_DEVICE_NO_DIRTY).unwrap();
    assert!(!ictx.hw_info(plain).unwrap().dirty_tracking());
}

#[test]
fn mock_domain_takes_the_ids_of_the_selftest_object_the_device_and_the_hwpt_in_that_order() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    assert_eq!(mock_domain(&ictx, ioas.id(), 0), Ok((2, 4, 3)));
    // A second mock device shares the automatic mock domain.
    assert_eq!(mock_domain(&ictx, ioas.id(), 0), Ok((5, 4, 6)));
}

#[test]
fn a_mock_domain_reserves_all_outside_its_aperture_and_aligns_the_ioas_to_2k() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    mock_domain(&ictx, ioas.id(), 0).unwrap();
    let got = ioas.iova_ranges().unwrap();
    assert_eq!(got.ranges, vec![IovaRange { start: AP, end: MOCK_APERTURE_LAST }]);
    assert_eq!(got.alignment, MP);
}

#[test]
fn unknown_mock_device_flags_are_einval_and_leave_no_object_behind() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    assert_eq!(mock_domain(&ictx, ioas.id(), 1 << 7), Err(libc::EINVAL));
    assert_eq!(mock_domain(&ictx, 99, 0), Err(libc::ENOENT));
    assert_eq!(mock_domain(&ictx, ioas.id(), 0), Ok((2, 4, 3)));
}

#[test]
fn a_dirty_tracking_hwpt_for_a_device_without_dirty_tracking_is_eopnotsupp() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let (_, _, idev) = mock_domain(&ictx, ioas.id(), MOCK_FLAGS_DEVICE_NO_DIRTY).unwrap();
    let e = ictx.alloc_hwpt(idev, &ioas, u::IOMMU_HWPT_ALLOC_DIRTY_TRACKING).unwrap_err();
    assert_eq!(e.code(), "EOPNOTSUPP");
    assert!(e.to_string().contains("IOMMU_HW_CAP_DIRTY_TRACKING"), "{e}");
}

#[test]
fn a_device_without_dirty_tracking_cannot_attach_to_a_dirty_tracking_hwpt() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let (_, _, idev) = mock_domain(&ictx, ioas.id(), 0).unwrap();
    let hwpt = ictx.alloc_hwpt(idev, &ioas, u::IOMMU_HWPT_ALLOC_DIRTY_TRACKING).unwrap();
    assert_eq!(mock_domain(&ictx, hwpt.id(), MOCK_FLAGS_DEVICE_NO_DIRTY), Err(libc::EINVAL));
    let (stdev, on, _) = mock_domain(&ictx, hwpt.id(), 0).unwrap();
    // The failed attempt freed its ids again.
    assert_eq!((stdev, on), (6, hwpt.id()));
}

#[test]
fn a_host_device_cannot_attach_to_a_mock_domain() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let (_, mock_hwpt, _) = mock_domain(&ictx, ioas.id(), 0).unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    dev.bind(&ictx).unwrap();
    assert_eq!(dev.attach(mock_hwpt).unwrap_err().code(), "EINVAL");
    // On the IOAS it gets its own automatic HWPT beside the mock one.
    let own = dev.attach(ioas.id()).unwrap();
    assert_ne!(own, mock_hwpt);
}

#[test]
fn destroying_the_selftest_object_unbinds_its_device_and_frees_the_automatic_hwpt() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let (stdev, hwpt, idev) = mock_domain(&ictx, ioas.id(), 0).unwrap();
    assert_eq!(ictx.destroy(idev).unwrap_err().code(), "EBUSY");
    assert_eq!(ictx.destroy(hwpt).unwrap_err().code(), "EBUSY");
    ictx.destroy(stdev).unwrap();
    assert_eq!(ictx.destroy(hwpt).unwrap_err().code(), "ENOENT");
    assert_eq!(ictx.hw_info(idev).unwrap_err().code(), "ENOENT");
    assert_eq!(ioas.iova_ranges().unwrap().ranges, vec![IovaRange { start: 0, end: u64::MAX }]);
}

#[test]
fn set_dirty_tracking_needs_a_hwpt_allocated_with_the_flag_and_known_flags() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let (_, auto, idev) = mock_domain(&ictx, ioas.id(), 0).unwrap();
    let plain = ictx.alloc_hwpt(idev, &ioas, 0).unwrap();
    assert_eq!(plain.set_dirty_tracking(true).unwrap_err().code(), "EOPNOTSUPP");
    let mut c = u::iommu_hwpt_set_dirty_tracking { size: 16, flags: 1, hwpt_id: auto, __reserved: 0 };
    assert_eq!(ictx.backend().hwpt_set_dirty_tracking(ictx.raw_fd(), &c), Err(Errno(libc::EOPNOTSUPP)));
    c.hwpt_id = ioas.id();
    assert_eq!(ictx.backend().hwpt_set_dirty_tracking(ictx.raw_fd(), &c), Err(Errno(libc::ENOENT)));
    let dirty = ictx.alloc_hwpt(idev, &ioas, u::IOMMU_HWPT_ALLOC_DIRTY_TRACKING).unwrap();
    c.hwpt_id = dirty.id();
    c.flags = 2;
    assert_eq!(ictx.backend().hwpt_set_dirty_tracking(ictx.raw_fd(), &c), Err(Errno(libc::EOPNOTSUPP)));
    // __reserved is not checked.
    c.flags = 1;
    c.__reserved = 7;
    assert_eq!(ictx.backend().hwpt_set_dirty_tracking(ictx.raw_fd(), &c), Ok(()));
}

#[test]
fn pages_are_marked_only_while_tracking_is_on_and_only_where_mapped() {
    let (_b, ictx, _ioas, hwpt) = tracked(4);
    // Bits 0, 2 and 5: the third lies past the four mapped pages.
    assert_eq!(mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[0b10_0101]), Ok(2));
    hwpt.set_dirty_tracking(false).unwrap();
    assert_eq!(mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[1]), Err(libc::EINVAL));
}

#[test]
fn a_read_reports_each_dirty_page_once_and_clears_it() {
    let (_b, ictx, _ioas, hwpt) = tracked(8);
    mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[0b1001_0010]).unwrap();
    let got = hwpt.dirty_bitmap(AP, 8 * MP, MP, true).unwrap();
    assert_eq!(got.words, vec![0b1001_0010]);
    assert_eq!(got.dirty_pages().collect::<Vec<_>>(), vec![AP + MP, AP + 4 * MP, AP + 7 * MP]);
    assert_eq!(hwpt.dirty_bitmap(AP, 8 * MP, MP, true).unwrap().words, vec![0]);
}

#[test]
fn a_read_with_no_clear_leaves_the_pages_dirty_for_the_next_read() {
    let (_b, ictx, _ioas, hwpt) = tracked(8);
    mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[0b11]).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP, 8 * MP, MP, false).unwrap().words, vec![0b11]);
    assert_eq!(hwpt.dirty_bitmap(AP, 8 * MP, MP, true).unwrap().words, vec![0b11]);
    assert_eq!(hwpt.dirty_bitmap(AP, 8 * MP, MP, false).unwrap().words, vec![0]);
}

#[test]
fn a_dirty_2k_page_sets_every_bit_its_bytes_touch_at_the_asked_page_size() {
    let (_b, ictx, _ioas, hwpt) = tracked(8);
    mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[0b0100_0100]).unwrap();
    // At 4 KiB: mock pages 2 and 6 lie in 4 KiB pages 1 and 3.
    assert_eq!(hwpt.dirty_bitmap(AP, 8 * MP, 4096, false).unwrap().words, vec![0b1010]);
    // At 1 KiB: two bits each.
    assert_eq!(hwpt.dirty_bitmap(AP, 8 * MP, 1024, false).unwrap().words, vec![0b0011_0000_0011_0000]);
}

#[test]
fn a_read_from_the_middle_counts_bits_from_its_own_iova() {
    let (_b, ictx, _ioas, hwpt) = tracked(8);
    mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[0b1010_0000]).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP + 4 * MP, 4 * MP, MP, true).unwrap().words, vec![0b1010]);
}

#[test]
fn the_bitmap_is_only_ored_into() {
    let (_b, ictx, _ioas, hwpt) = tracked(8);
    mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[0b1]).unwrap();
    let mut bitmap = [0xf0u64];
    raw_bitmap(&ictx, hwpt.id(), AP, 8 * MP, MP, 0, &mut bitmap).unwrap();
    assert_eq!(bitmap, [0xf1]);
}

#[test]
fn a_read_while_tracking_is_off_answers_0_and_reports_nothing() {
    let (_b, ictx, _ioas, hwpt) = tracked(4);
    mark(&ictx, hwpt.id(), AP, 4 * MP, MP, &[0b1111]).unwrap();
    hwpt.set_dirty_tracking(false).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP, 4 * MP, MP, true).unwrap().words, vec![0]);
}

#[test]
fn enabling_tracking_again_starts_from_a_clean_snapshot() {
    let (_b, ictx, _ioas, hwpt) = tracked(4);
    mark(&ictx, hwpt.id(), AP, 4 * MP, MP, &[0b1111]).unwrap();
    hwpt.set_dirty_tracking(true).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP, 4 * MP, MP, true).unwrap().dirty_count(), 0);
}

#[test]
fn a_read_running_into_a_hole_reports_and_clears_the_pages_before_it_and_answers_0() {
    let (_b, ictx, ioas, hwpt) = tracked(4);
    ioas.map(Some(AP + 6 * MP), va() + 0x10_0000, 2 * MP, vfio_core::dma_flags::READ_WRITE).unwrap();
    mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[0b1100_0011]).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP, 8 * MP, MP, true).unwrap().words, vec![0b11]);
    assert_eq!(hwpt.dirty_bitmap(AP + 6 * MP, 2 * MP, MP, true).unwrap().words, vec![0b11]);
    assert_eq!(hwpt.dirty_bitmap(AP, 4 * MP, MP, true).unwrap().words, vec![0]);
    // A range starting in the hole reports nothing.
    mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[0b1100_0000]).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP + 4 * MP, 4 * MP, MP, true).unwrap().words, vec![0]);
}

#[test]
fn an_unmapped_and_remapped_page_is_clean() {
    let (_b, ictx, ioas, hwpt) = tracked(4);
    mark(&ictx, hwpt.id(), AP, 4 * MP, MP, &[0b1111]).unwrap();
    ioas.unmap(AP, 4 * MP).unwrap();
    ioas.map(Some(AP), va(), 4 * MP, vfio_core::dma_flags::READ_WRITE).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP, 4 * MP, MP, true).unwrap().words, vec![0]);
}

#[test]
fn a_hwpt_without_dirty_tracking_answers_a_read_with_eopnotsupp_after_the_range_checks() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let (_, _, idev) = mock_domain(&ictx, ioas.id(), 0).unwrap();
    let plain = ictx.alloc_hwpt(idev, &ioas, 0).unwrap();
    assert_eq!(plain.dirty_bitmap(AP, 4 * MP, MP, true).unwrap_err().code(), "EOPNOTSUPP");
    assert_eq!(plain.dirty_bitmap(AP + 1024, 4 * MP, 1024, true).unwrap_err().code(), "EINVAL");
}

#[test]
fn read_ranges_off_the_ioas_alignment_or_the_page_size_are_einval_and_wrapping_ones_eoverflow() {
    let (_b, ictx, _ioas, hwpt) = tracked(4);
    let mut bm = [0u64; 2];
    let id = hwpt.id();
    assert_eq!(raw_bitmap(&ictx, id, AP + 1024, 2 * MP, 1024, 0, &mut bm), Err(libc::EINVAL));
    assert_eq!(raw_bitmap(&ictx, id, AP, 3 * MP, 4096, 0, &mut bm), Err(libc::EINVAL));
    assert_eq!(raw_bitmap(&ictx, id, AP, 4 * MP, 0, 0, &mut bm), Err(libc::EINVAL));
    assert_eq!(raw_bitmap(&ictx, id, AP, 0, MP, 0, &mut bm), Err(libc::EINVAL));
    assert_eq!(raw_bitmap(&ictx, id, u64::MAX - MP + 1, 2 * MP, MP, 0, &mut bm), Err(libc::EOVERFLOW));
    assert_eq!(raw_bitmap(&ictx, id, AP, 4 * MP, MP, 2, &mut bm), Err(libc::EOPNOTSUPP));
    assert_eq!(raw_bitmap(&ictx, 99, AP, 4 * MP, MP, 0, &mut bm), Err(libc::ENOENT));
}

#[test]
fn a_page_size_that_is_no_power_of_two_counts_as_its_lowest_bit_in_the_kernel_and_is_refused_by_hwpt() {
    let (_b, ictx, _ioas, hwpt) = tracked(16);
    mark(&ictx, hwpt.id(), AP, 16 * MP, MP, &[0b100]).unwrap();
    // 0x1800: mask 0x17ff passes for AP and AP + 0x6000; one bit per 2 KiB.
    let mut bm = [0u64; 1];
    raw_bitmap(&ictx, hwpt.id(), AP, 0x6000, 0x1800, u::IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, &mut bm).unwrap();
    assert_eq!(bm, [0b100]);
    let e = hwpt.dirty_bitmap(AP, 0x6000, 0x1800, true).unwrap_err();
    assert_eq!(e.code(), "EINVAL");
    assert!(e.to_string().contains("power of two"), "{e}");
    assert_eq!(hwpt.dirty_bitmap(AP, 0, MP, true).unwrap_err().code(), "EINVAL");
}

#[test]
fn marking_counts_entries_by_iova_over_page_size_as_the_selftest_does() {
    // With page_size 4096 the entry index is iova / 4096 in 2 KiB units:
    // IOVA AP marks the mock page at AP / 2, outside every mapping.
    let (_b, ictx, _ioas, hwpt) = tracked(8);
    assert_eq!(mark(&ictx, hwpt.id(), AP, 4 * 4096, 4096, &[0b1111]), Ok(0));
}

#[test]
fn marking_checks_its_range_before_the_hwpt_and_the_hwpt_before_tracking() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let (_, auto, _) = mock_domain(&ictx, ioas.id(), 0).unwrap();
    assert_eq!(mark(&ictx, 99, AP, MP, 0, &[1]), Err(libc::EINVAL));
    assert_eq!(mark(&ictx, 99, AP + 1, MP, MP, &[1]), Err(libc::EINVAL));
    assert_eq!(mark(&ictx, 99, AP, MP, MP, &[1]), Err(libc::ENOENT));
    assert_eq!(mark(&ictx, ioas.id(), AP, MP, MP, &[1]), Err(libc::ENOENT));
    assert_eq!(mark(&ictx, auto, AP, MP, MP, &[1]), Err(libc::EINVAL));
}

#[test]
fn device_flags_6_12_knows_huge_iova_not_modelled_and_not_pasid() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    assert_eq!(mock_domain(&ictx, ioas.id(), MOCK_FLAGS_DEVICE_HUGE_IOVA), Err(libc::EOPNOTSUPP));
    assert_eq!(mock_domain(&ictx, ioas.id(), MOCK_FLAGS_DEVICE_PASID), Err(libc::EINVAL));
}

// 7.2: the mock domain on the generic page table (AMDv1 format, 2 KiB
// items; selftest.c, generic_pt/iommu_pt.h and fmt/amdv1.h).

/// The same kernel as 7.2 answers it.
fn seven_two() -> Iommufd {
    let mut c = config();
    let p = c.iommufd.as_mut().unwrap();
    p.selftest_generic_pt = true;
    p.ats_not_supported_cap = true;
    Iommufd::open(Arc::new(MockBackend::new(c))).unwrap()
}

/// On 7.2: `len` bytes from `va() + off` at `iova`, one mapping per CPU
/// page as the lab maps them, then a mock device, a dirty HWPT, tracking on.
fn tracked_72(ictx: &Iommufd, mappings: &[(u64, u64, u64)]) -> (Ioas, vfio_core::Hwpt) {
    let ioas = ictx.alloc_ioas().unwrap();
    for &(iova, off, len) in mappings {
        ioas.map(Some(iova), va() + off, len, vfio_core::dma_flags::READ_WRITE).unwrap();
    }
    let (_, _, idev) = mock_domain(ictx, ioas.id(), 0).unwrap();
    let hwpt = ictx.alloc_hwpt(idev, &ioas, u::IOMMU_HWPT_ALLOC_DIRTY_TRACKING).unwrap();
    hwpt.set_dirty_tracking(true).unwrap();
    (ioas, hwpt)
}

/// `pages` CPU pages from the aperture's start, one mapping each.
fn by_page(pages: u64) -> Vec<(u64, u64, u64)> {
    (0..pages).map(|p| (AP + p * 4096, p * 4096, 4096)).collect()
}

#[test]
fn on_7_2_a_mock_device_reports_dirty_tracking_and_ats_not_supported() {
    let ictx = seven_two();
    let ioas = ictx.alloc_ioas().unwrap();
    let (_, _, idev) = mock_domain(&ictx, ioas.id(), 0).unwrap();
    assert_eq!(ictx.hw_info(idev).unwrap().capabilities, u::IOMMU_HW_CAP_DIRTY_TRACKING | u::IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
    let (_, _, plain) = mock_domain(&ictx, ioas.id(), MOCK_FLAGS_DEVICE_NO_DIRTY).unwrap();
    assert_eq!(ictx.hw_info(plain).unwrap().capabilities, u::IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED);
}

#[test]
fn device_flags_on_7_2_huge_iova_is_unknown_and_pasid_known_but_not_modelled() {
    let ictx = seven_two();
    let ioas = ictx.alloc_ioas().unwrap();
    assert_eq!(mock_domain(&ictx, ioas.id(), MOCK_FLAGS_DEVICE_HUGE_IOVA), Err(libc::EINVAL));
    assert_eq!(mock_domain(&ictx, ioas.id(), MOCK_FLAGS_DEVICE_PASID), Err(libc::EOPNOTSUPP));
    assert_eq!(mock_domain(&ictx, ioas.id(), 1 << 7), Err(libc::EINVAL));
    // Nothing was left behind by the refusals.
    assert_eq!(mock_domain(&ictx, ioas.id(), 0), Ok((2, 4, 3)));
}

#[test]
fn on_7_2_marking_counts_every_set_bit_and_marks_only_mapped_entries() {
    let ictx = seven_two();
    let (_ioas, hwpt) = tracked_72(&ictx, &by_page(2));
    // Bits 0, 2 and 5: the third lies past the four mapped 2 KiB items,
    // and counts all the same.
    assert_eq!(mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[0b10_0101]), Ok(3));
    let got = hwpt.dirty_bitmap(AP, 4 * MP, MP, true).unwrap();
    // Items 0 and 2 each start a 4 KiB entry: read back as themselves.
    assert_eq!(got.words, vec![0b101]);
    hwpt.set_dirty_tracking(false).unwrap();
    assert_eq!(mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[1]), Err(libc::EINVAL));
}

#[test]
fn on_7_2_marking_at_4k_marks_the_item_at_each_iova() {
    let ictx = seven_two();
    let (_ioas, hwpt) = tracked_72(&ictx, &by_page(4));
    assert_eq!(mark(&ictx, hwpt.id(), AP, 4 * 4096, 4096, &[0b1010]), Ok(2));
    // The items at AP + 4 KiB and AP + 12 KiB: 2 and 6.
    assert_eq!(hwpt.dirty_bitmap(AP, 8 * MP, MP, true).unwrap().words, vec![0b0100_0100]);
}

#[test]
fn on_7_2_a_dirty_4k_entry_reads_back_as_its_first_2k_and_clears_whole() {
    let ictx = seven_two();
    let (_ioas, hwpt) = tracked_72(&ictx, &by_page(8));
    // Items 1, 2, 5, 12 and 15: each 4 KiB page is one entry of two items,
    // recorded one item short (record_dirty's end_index - index).
    mark(&ictx, hwpt.id(), AP, 16 * MP, MP, &[0b1001_0000_0010_0110]).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP, 16 * MP, MP, false).unwrap().words, vec![0b0101_0000_0001_0101]);
    // At 4 KiB one bit per entry; at 1 KiB two per recorded item.
    assert_eq!(hwpt.dirty_bitmap(AP, 16 * MP, 4096, false).unwrap().words, vec![0b1100_0111]);
    assert_eq!(hwpt.dirty_bitmap(AP, 4 * MP, 1024, false).unwrap().words, vec![0b11_0011]);
    // Reading clears the whole entry, the item never reported included.
    mark(&ictx, hwpt.id(), AP, 2 * MP, MP, &[0b10]).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP, 16 * MP, MP, true).unwrap().dirty_count(), 5);
    assert_eq!(hwpt.dirty_bitmap(AP, 16 * MP, MP, true).unwrap().words, vec![0]);
}

#[test]
fn on_7_2_a_walk_ending_inside_an_entry_records_up_to_its_end() {
    let ictx = seven_two();
    let (_ioas, hwpt) = tracked_72(&ictx, &by_page(2));
    mark(&ictx, hwpt.id(), AP, 4 * MP, MP, &[0b1000]).unwrap();
    // The walk ends on item 2, inside the entry of items 2 and 3.
    assert_eq!(hwpt.dirty_bitmap(AP, 3 * MP, MP, false).unwrap().words, vec![0b100]);
}

#[test]
fn on_7_2_a_mapping_whose_iova_and_address_disagree_within_a_page_is_held_in_single_items() {
    // IOVA 2 KiB into a page, the address at a page start: no entry can be
    // larger than an item, so every marked item reads back as itself.
    let ictx = seven_two();
    let (_ioas, hwpt) = tracked_72(&ictx, &[(AP + MP, 0, 8 * MP)]);
    mark(&ictx, hwpt.id(), AP + MP, 8 * MP, MP, &[0b1010_0110]).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP + MP, 8 * MP, MP, true).unwrap().words, vec![0b1010_0110]);
}

#[test]
fn on_7_2_the_mock_takes_no_two_cpu_pages_of_one_mapping_as_contiguous() {
    // One mapping of four pages: entries of one page each all the same.
    let ictx = seven_two();
    let (_ioas, hwpt) = tracked_72(&ictx, &[(AP, 0, 4 * 4096)]);
    mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[0b1010_0000]).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP, 8 * MP, MP, true).unwrap().words, vec![0b0101_0000]);
}

#[test]
fn on_7_2_a_read_while_tracking_is_off_still_reports_and_clears_what_is_marked() {
    let ictx = seven_two();
    let (_ioas, hwpt) = tracked_72(&ictx, &by_page(4));
    mark(&ictx, hwpt.id(), AP, 4 * 4096, 4096, &[0b1111]).unwrap();
    hwpt.set_dirty_tracking(false).unwrap();
    assert_eq!(mark(&ictx, hwpt.id(), AP, 8 * MP, MP, &[1]), Err(libc::EINVAL));
    assert_eq!(hwpt.dirty_bitmap(AP, 8 * MP, MP, true).unwrap().words, vec![0b0101_0101]);
    assert_eq!(hwpt.dirty_bitmap(AP, 8 * MP, MP, true).unwrap().words, vec![0]);
}

#[test]
fn on_7_2_an_unmapped_and_remapped_page_is_clean() {
    let ictx = seven_two();
    let (ioas, hwpt) = tracked_72(&ictx, &by_page(2));
    mark(&ictx, hwpt.id(), AP, 4 * MP, MP, &[0b1111]).unwrap();
    ioas.unmap(AP, 4096).unwrap();
    ioas.map(Some(AP), va(), 4096, vfio_core::dma_flags::READ_WRITE).unwrap();
    assert_eq!(hwpt.dirty_bitmap(AP, 4 * MP, MP, true).unwrap().words, vec![0b100]);
}

// Results are dropped on purpose: only that each call returns matters.
#[allow(dropping_copy_types)]
mod sequences {
    use super::*;
    use proptest::prelude::*;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    #[derive(Debug, Clone)]
    enum Op {
        Map(u64, u64),
        Unmap(u64, u64),
        MockDomain(u32, u32),
        AllocHwpt(u32, u32, u32),
        Track(u32, u32),
        Mark(u32, u64, u64, u64, Vec<u64>),
        Read(u32, u64, u64, u64, u32, usize),
        Destroy(u32),
    }

    /// Mostly plausible values, sometimes extreme ones.
    fn n() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => (0u64..64).prop_map(|p| AP + p * MP),
            2 => (0u64..64).prop_map(|p| p * MP),
            1 => Just(0u64),
            1 => Just(u64::MAX),
            1 => Just(u64::MAX - MP + 1),
            1 => any::<u64>(),
        ]
    }

    fn page() -> impl Strategy<Value = u64> {
        prop_oneof![Just(MP), Just(1024), Just(4096), Just(0x1800), Just(0), Just(1), Just(1 << 63), any::<u64>()]
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (n(), n()).prop_map(|(i, l)| Op::Map(i, l)),
            (n(), n()).prop_map(|(i, l)| Op::Unmap(i, l)),
            (0u32..12, 0u32..4).prop_map(|(p, f)| Op::MockDomain(p, f)),
            (0u32..12, 0u32..12, 0u32..4).prop_map(|(d, p, f)| Op::AllocHwpt(d, p, f)),
            (0u32..12, 0u32..3).prop_map(|(h, f)| Op::Track(h, f)),
            (0u32..12, n(), n(), page(), prop::collection::vec(any::<u64>(), 0..3)).prop_map(|(h, i, l, p, b)| Op::Mark(h, i, l, p, b)),
            (0u32..12, n(), n(), page(), 0u32..3, 0usize..4).prop_map(|(h, i, l, p, f, w)| Op::Read(h, i, l, p, f, w)),
            (0u32..12).prop_map(Op::Destroy),
        ]
    }

    fn run(ictx: &Iommufd, ioas: u32, op: &Op) {
        let (b, fd) = (ictx.backend(), ictx.raw_fd());
        match op {
            Op::Map(iova, len) => {
                let mut c = u::iommu_ioas_map {
                    size: 40,
                    flags: u::IOMMU_IOAS_MAP_FIXED_IOVA | u::IOMMU_IOAS_MAP_READABLE | u::IOMMU_IOAS_MAP_WRITEABLE,
                    ioas_id: ioas,
                    __reserved: 0,
                    user_va: va(),
                    length: *len,
                    iova: *iova,
                };
                drop(b.ioas_map(fd, &mut c));
            }
            Op::Unmap(iova, len) => drop(b.ioas_unmap(fd, &mut u::iommu_ioas_unmap { size: 24, ioas_id: ioas, iova: *iova, length: *len })),
            Op::MockDomain(pt, flags) => drop(mock_domain(ictx, *pt, *flags)),
            Op::AllocHwpt(dev, pt, flags) => {
                let mut c = u::iommu_hwpt_alloc { size: 48, flags: *flags, dev_id: *dev, pt_id: *pt, ..Default::default() };
                drop(b.hwpt_alloc(fd, &mut c));
            }
            Op::Track(hwpt, flags) => drop(b.hwpt_set_dirty_tracking(fd, &u::iommu_hwpt_set_dirty_tracking { size: 16, flags: *flags, hwpt_id: *hwpt, __reserved: 0 })),
            Op::Mark(hwpt, iova, len, page, bits) => drop(mark(ictx, *hwpt, *iova, *len, *page, bits)),
            Op::Read(hwpt, iova, len, page, flags, words) => {
                let mut bm = vec![0u64; *words];
                drop(raw_bitmap(ictx, *hwpt, *iova, *len, *page, *flags, &mut bm));
            }
            Op::Destroy(id) => drop(ictx.destroy(*id)),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

        #[test]
        fn random_dirty_tracking_sequences_never_panic_and_a_clearing_read_leaves_nothing_to_read(ops in prop::collection::vec(op(), 1..80)) {
            let (_b, ictx) = open();
            check(&ictx, &ops)?;
        }

        #[test]
        fn on_7_2_random_dirty_tracking_sequences_never_panic_and_a_clearing_read_leaves_nothing_to_read(ops in prop::collection::vec(op(), 1..80)) {
            check(&seven_two(), &ops)?;
        }
    }

    fn check(ictx: &Iommufd, ops: &[Op]) -> Result<(), TestCaseError> {
        let ioas = ictx.alloc_ioas().unwrap();
        for (i, op) in ops.iter().enumerate() {
            let r = catch_unwind(AssertUnwindSafe(|| run(ictx, ioas.id(), op)));
            prop_assert!(r.is_ok(), "op {i} {op:?} panicked, after {:?}", &ops[..i]);
        }
        // Whatever happened, every HWPT reads clean after one clearing
        // read of the whole aperture.
        for hwpt in 1..12 {
            let mut bm = vec![0u64; ((MOCK_APERTURE_LAST + 1 - AP) / MP / 64) as usize];
            if raw_bitmap(ictx, hwpt, AP, MOCK_APERTURE_LAST + 1 - AP, MP, 0, &mut bm).is_ok() {
                bm.fill(0);
                raw_bitmap(ictx, hwpt, AP, MOCK_APERTURE_LAST + 1 - AP, MP, 0, &mut bm).unwrap();
                prop_assert!(bm.iter().all(|&w| w == 0), "HWPT {hwpt} still dirty after a clearing read");
            }
        }
        Ok(())
    }
}
