//! The mock's iommufd and device cdev, rule by rule (each rule cites the
//! kernel function in src/backend/mock/iommufd.rs; the iommufd lab profile
//! holds the mock to the 6.12 kernel call by call).

mod common;

use std::sync::Arc;

use common::*;
use vfio_core::backend::mock::devices::edu;
use vfio_core::backend::{IommufdProfile, MockDeviceConfig, MockGroupConfig, VIRTIO_IOMMU, X86_MSI_WINDOW};
use vfio_core::uapi::iommufd as u;
use vfio_core::{Backend, BatchFlags, CdevDevice, Group, HostMemory, IovaRange, Iommufd, MockBackend, MockConfig};

const VA: u64 = 0x7000_0000_0000;
const CAP: u64 = 0x00d2_0080_8020_0462;
const ECAP: u64 = 0xf0_0f5e;

/// An iommufd host: groups 1 and 2, one edu each, the x86 MSI window
/// reserved in both (as `reserved_regions` shows under VT-d).
fn config() -> MockConfig {
    let mut g1 = MockGroupConfig::new(1).with_device(MockDeviceConfig::edu("0000:00:03.0"));
    let mut g2 = MockGroupConfig::new(2).with_device(MockDeviceConfig::edu("0000:00:04.0"));
    g1.reserved = vec![X86_MSI_WINDOW];
    g2.reserved = vec![X86_MSI_WINDOW];
    MockConfig::empty().with_group(g1).with_group(g2).with_iommufd(IommufdProfile::qemu_vtd(CAP, ECAP))
}

fn open() -> (Arc<dyn Backend>, Iommufd) {
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(config()));
    let ictx = Iommufd::open(b.clone()).unwrap();
    (b, ictx)
}

fn r(start: u64, end: u64) -> IovaRange {
    IovaRange { start, end }
}

#[test]
fn a_kernel_without_iommufd_has_no_dev_iommu_nor_device_cdevs() {
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(MockConfig::default()));
    assert_eq!(Iommufd::open(b.clone()).unwrap_err().code(), "ENOENT");
    assert_eq!(CdevDevice::open(b, 0).unwrap_err().code(), "ENOENT");
}

#[test]
fn object_ids_are_handed_out_lowest_free_first_from_one() {
    let (_b, ictx) = open();
    let a = ictx.alloc_ioas().unwrap();
    let b = ictx.alloc_ioas().unwrap();
    assert_eq!((a.id(), b.id()), (1, 2));
    drop(a);
    assert_eq!(ictx.alloc_ioas().unwrap().id(), 1);
}

#[test]
fn a_new_ioas_offers_the_whole_address_space_with_byte_alignment() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let got = ioas.iova_ranges().unwrap();
    assert_eq!((got.ranges, got.alignment), (vec![r(0, u64::MAX)], 1));
}

#[test]
fn an_ioas_without_a_domain_maps_unaligned_byte_ranges() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    assert_eq!(ioas.map(Some(0x1001), VA + 1, 3, RW), Ok(0x1001));
}

#[test]
fn the_top_page_of_the_address_space_maps_and_unmaps_by_its_range() {
    // io_pagetable keeps inclusive last IOVAs, so a mapping ending at
    // 2^64 - 1 is an ordinary one (the lab measured it through the compat
    // container); its end, iova + length, is never computed.
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let top = u64::MAX - 0xfff;
    assert_eq!(ioas.map(Some(top), VA, 0x1000, RW), Ok(top));
    let other = ictx.alloc_ioas().unwrap();
    assert_eq!(other.copy_from(&ioas, top, 0x1000, Some(top), RW), Ok(top));
    assert_eq!(ioas.unmap(top, 0x1000), Ok(0x1000));
}

#[test]
fn overlapping_map_fails_with_eexist() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    ioas.map(Some(0x10_0000), VA, 0x2000, RW).unwrap();
    assert_eq!(ioas.map(Some(0x10_1000), VA, 0x2000, RW).unwrap_err().code(), "EEXIST");
}

#[test]
fn a_map_without_read_or_write_is_einval_and_unknown_flags_eopnotsupp() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut m = u::iommu_ioas_map { size: 40, flags: u::IOMMU_IOAS_MAP_FIXED_IOVA, ioas_id: ioas.id(), user_va: VA, length: 0x1000, iova: 0x1000, ..Default::default() };
    assert_eq!(b.ioas_map(ictx.raw_fd(), &mut m).unwrap_err().0, libc::EINVAL);
    m.flags |= 1 << 3 | u::IOMMU_IOAS_MAP_READABLE;
    assert_eq!(b.ioas_map(ictx.raw_fd(), &mut m).unwrap_err().0, libc::EOPNOTSUPP);
}

#[test]
fn a_command_shorter_than_its_last_mandatory_field_is_einval() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut m = u::iommu_ioas_map { size: 39, flags: u::IOMMU_IOAS_MAP_READABLE, ioas_id: ioas.id(), user_va: VA, length: 0x1000, ..Default::default() };
    assert_eq!(b.ioas_map(ictx.raw_fd(), &mut m).unwrap_err().0, libc::EINVAL);
}

#[test]
fn an_unknown_ioas_id_is_enoent() {
    let (b, ictx) = open();
    let mut m = u::iommu_ioas_map { size: 40, flags: u::IOMMU_IOAS_MAP_READABLE, ioas_id: 7, user_va: VA, length: 0x1000, ..Default::default() };
    assert_eq!(b.ioas_map(ictx.raw_fd(), &mut m).unwrap_err().0, libc::ENOENT);
}

#[test]
fn the_kernel_chooses_an_iova_from_the_first_page_keeping_the_buffer_alignment() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    // 64 KiB at a 2 MiB-aligned address: aligned to 64 KiB, the first fit above page 0.
    assert_eq!(ioas.map(None, 0x7000_0020_0000, 0x1_0000, RW), Ok(0x1_0000));
    assert_eq!(ioas.map(None, 0x7000_0040_0000, 0x1_0000, RW), Ok(0x2_0000));
}

#[test]
fn allowed_iovas_confine_the_chosen_iova() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    ioas.allow_iovas(&[r(0x4000_0000, 0x4fff_ffff)]).unwrap();
    assert_eq!(ioas.map(None, 0x7000_0020_0000, 0x1000, RW), Ok(0x4000_0000));
}

#[test]
fn unmap_of_a_range_with_nothing_mapped_is_enoent() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    assert_eq!(ioas.unmap(0x1000, 0x1000).unwrap_err().code(), "ENOENT");
}

#[test]
fn unmapping_part_of_a_mapping_is_enoent_and_leaves_it() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    ioas.map(Some(0x10_0000), VA, 0x2000, RW).unwrap();
    assert_eq!(ioas.unmap(0x10_0000, 0x1000).unwrap_err().code(), "ENOENT");
    assert_eq!(ioas.unmap(0x10_0000, 0x2000), Ok(0x2000));
}

#[test]
fn an_unmap_that_cuts_a_later_mapping_still_unmaps_the_whole_ones_before_it() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    ioas.map(Some(0x10_0000), VA, 0x1000, RW).unwrap();
    ioas.map(Some(0x10_1000), VA, 0x2000, RW).unwrap();
    assert_eq!(ioas.unmap(0x10_0000, 0x2000).unwrap_err().code(), "ENOENT");
    // iopt_unmap_iova_range removed the first area before meeting the second.
    assert_eq!(ioas.map(Some(0x10_0000), VA, 0x1000, RW), Ok(0x10_0000));
}

#[test]
fn unmap_all_succeeds_on_an_empty_ioas_and_reports_the_bytes() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    assert_eq!(ioas.unmap_all(), Ok(0));
    ioas.map(Some(0x10_0000), VA, 0x3000, RW).unwrap();
    assert_eq!(ioas.unmap_all(), Ok(0x3000));
}

#[test]
fn copy_maps_the_source_pages_into_another_ioas() {
    let (_b, ictx) = open();
    let src = ictx.alloc_ioas().unwrap();
    let dst = ictx.alloc_ioas().unwrap();
    src.map(Some(0x10_0000), VA, 0x1000, RW).unwrap();
    src.map(Some(0x10_1000), VA + 0x8000, 0x1000, RW).unwrap();
    assert_eq!(dst.copy_from(&src, 0x10_0000, 0x2000, Some(0x50_0000), RW), Ok(0x50_0000));
    // The copy is two areas, one per source area.
    assert_eq!(dst.unmap(0x50_0000, 0x1000), Ok(0x1000));
}

#[test]
fn copy_of_a_range_with_a_hole_is_enoent() {
    let (_b, ictx) = open();
    let src = ictx.alloc_ioas().unwrap();
    let dst = ictx.alloc_ioas().unwrap();
    src.map(Some(0x10_0000), VA, 0x1000, RW).unwrap();
    assert_eq!(dst.copy_from(&src, 0x10_0000, 0x2000, None, RW).unwrap_err().code(), "ENOENT");
}

#[test]
fn iova_ranges_too_many_for_the_buffer_are_emsgsize_with_the_count() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b.clone(), 0).unwrap();
    dev.bind(&ictx).unwrap();
    dev.attach(ioas.id()).unwrap();
    let mut cmd = u::iommu_ioas_iova_ranges { size: 32, ioas_id: ioas.id(), ..Default::default() };
    let mut one = [u::iommu_iova_range::default(); 1];
    assert_eq!(b.ioas_iova_ranges(ictx.raw_fd(), &mut cmd, &mut one).unwrap_err().0, libc::EMSGSIZE);
    assert_eq!((cmd.num_iovas, one[0].last), (2, 0xfed_fffff));
}

#[test]
fn bind_gives_the_device_an_id_and_attach_an_automatic_hwpt() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    assert_eq!(dev.bind(&ictx), Ok(2));
    assert_eq!(dev.attach(ioas.id()), Ok(3));
}

#[test]
fn attaching_a_device_reserves_its_msi_window_and_the_domain_aperture() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    dev.bind(&ictx).unwrap();
    dev.attach(ioas.id()).unwrap();
    let got = ioas.iova_ranges().unwrap();
    assert_eq!(got.ranges, vec![r(0, 0xfedf_ffff), r(0xfef0_0000, 0x7f_ffff_ffff)]);
    assert_eq!(got.alignment, 0x1000);
}

#[test]
fn detaching_the_last_device_frees_the_automatic_hwpt_and_its_reservations() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    dev.bind(&ictx).unwrap();
    let hwpt = dev.attach(ioas.id()).unwrap();
    dev.detach().unwrap();
    assert_eq!(ioas.iova_ranges().unwrap().ranges, vec![r(0, u64::MAX)]);
    assert_eq!(ictx.destroy(hwpt).unwrap_err().code(), "ENOENT");
}

#[test]
fn detaching_a_device_that_is_not_attached_succeeds() {
    let (b, ictx) = open();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    dev.bind(&ictx).unwrap();
    assert_eq!(dev.detach(), Ok(()));
}

#[test]
fn a_second_device_on_the_same_ioas_shares_its_automatic_hwpt() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut d0 = CdevDevice::open(b.clone(), 0).unwrap();
    let mut d1 = CdevDevice::open(b, 1).unwrap();
    d0.bind(&ictx).unwrap();
    d1.bind(&ictx).unwrap();
    let h0 = d0.attach(ioas.id()).unwrap();
    assert_eq!(d1.attach(ioas.id()), Ok(h0));
}

#[test]
fn attach_over_a_mapping_of_the_msi_window_is_eaddrinuse() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    ioas.map(Some(0xfee0_0000), VA, 0x1000, RW).unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    dev.bind(&ictx).unwrap();
    assert_eq!(dev.attach(ioas.id()).unwrap_err().code(), "EADDRINUSE");
}

#[test]
fn attach_to_an_ioas_with_an_unaligned_mapping_is_eaddrinuse() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    ioas.map(Some(0x1000), VA, 0x800, RW).unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    dev.bind(&ictx).unwrap();
    assert_eq!(dev.attach(ioas.id()).unwrap_err().code(), "EADDRINUSE");
}

#[test]
fn once_attached_a_map_into_the_msi_window_is_einval() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    dev.bind(&ictx).unwrap();
    dev.attach(ioas.id()).unwrap();
    assert_eq!(ioas.map(Some(0xfee0_0000), VA, 0x1000, RW).unwrap_err().code(), "EINVAL");
    assert_eq!(ioas.map(Some(0x1000), VA, 0x800, RW).unwrap_err().code(), "EINVAL");
}

#[test]
fn an_ioas_in_use_by_a_device_cannot_be_destroyed() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    let dev_id = dev.bind(&ictx).unwrap();
    let hwpt = dev.attach(ioas.id()).unwrap();
    assert_eq!(ictx.destroy(ioas.id()).unwrap_err().code(), "EBUSY");
    assert_eq!(ictx.destroy(hwpt).unwrap_err().code(), "EBUSY");
    assert_eq!(ictx.destroy(dev_id).unwrap_err().code(), "EBUSY");
}

#[test]
fn an_unbound_cdev_answers_device_ioctls_with_einval() {
    let (b, _ictx) = open();
    let dev = CdevDevice::open(b, 0).unwrap();
    assert_eq!(dev.device().info().unwrap_err().code(), "EINVAL");
    assert_eq!(dev.attach(1).unwrap_err().code(), "EINVAL");
}

#[test]
fn a_device_binds_once_and_not_to_something_that_is_not_an_iommufd() {
    let (b, ictx) = open();
    let mut dev = CdevDevice::open(b.clone(), 0).unwrap();
    dev.bind(&ictx).unwrap();
    assert_eq!(dev.bind(&ictx).unwrap_err().code(), "EINVAL");
    let mut other = CdevDevice::open(b.clone(), 0).unwrap();
    // The device is open through the first cdev: vfio_df_open refuses a second.
    assert_eq!(other.bind(&ictx).unwrap_err().code(), "EINVAL");
    let mut cmd = u::vfio_device_bind_iommufd { argsz: 16, flags: 0, iommufd: dev.device().raw_fd(), out_devid: 0 };
    let third = CdevDevice::open(b.clone(), 1).unwrap();
    assert_eq!(b.device_bind_iommufd(third.device().raw_fd(), &mut cmd).unwrap_err().0, libc::EBADFD);
}

#[test]
fn a_bound_cdev_blocks_its_group_and_an_open_group_blocks_bind() {
    let (b, ictx) = open();
    let mut dev = CdevDevice::open(b.clone(), 0).unwrap();
    dev.bind(&ictx).unwrap();
    assert_eq!(Group::open(b.clone(), 1).unwrap_err().code(), "EBUSY");
    let g2 = Group::open(b.clone(), 2).unwrap();
    let mut dev1 = CdevDevice::open(b, 1).unwrap();
    assert_eq!(dev1.bind(&ictx).unwrap_err().code(), "EBUSY");
    drop(g2);
    assert!(dev1.bind(&ictx).is_ok());
}

#[test]
fn closing_a_bound_cdev_unbinds_the_device_and_unblocks_its_group() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b.clone(), 0).unwrap();
    dev.bind(&ictx).unwrap();
    dev.attach(ioas.id()).unwrap();
    drop(dev);
    assert!(Group::open(b, 1).is_ok());
    assert_eq!(ioas.iova_ranges().unwrap().ranges, vec![r(0, u64::MAX)]);
}

#[test]
fn hw_info_reports_the_vtd_registers_no_dirty_tracking_and_no_ats_for_edu() {
    let (b, ictx) = open();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    let id = dev.bind(&ictx).unwrap();
    let info = ictx.hw_info(id).unwrap();
    assert_eq!((info.data_type, info.data.len(), info.capabilities), (u::IOMMU_HW_INFO_TYPE_INTEL_VTD, 24, u::IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED));
    assert_eq!(u64::from_le_bytes(info.data[8..16].try_into().unwrap()), CAP);
    assert_eq!(u64::from_le_bytes(info.data[16..24].try_into().unwrap()), ECAP);
}

#[test]
fn a_kernel_before_the_ats_bit_reports_no_capability_for_edu() {
    let mut profile = IommufdProfile::qemu_vtd(CAP, ECAP);
    profile.ats_not_supported_cap = false;
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(MockConfig { iommufd: Some(profile), ..config() }));
    let ictx = Iommufd::open(b.clone()).unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    let id = dev.bind(&ictx).unwrap();
    assert_eq!(ictx.hw_info(id).unwrap().capabilities, 0);
}

#[test]
fn a_dirty_tracking_hwpt_on_an_iommu_without_it_is_eopnotsupp() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    let id = dev.bind(&ictx).unwrap();
    assert_eq!(ictx.alloc_hwpt(id, &ioas, u::IOMMU_HWPT_ALLOC_DIRTY_TRACKING).unwrap_err().code(), "EOPNOTSUPP");
    let hwpt = ictx.alloc_hwpt(id, &ioas, 0).unwrap();
    assert_eq!(hwpt.set_dirty_tracking(true).unwrap_err().code(), "EOPNOTSUPP");
}

#[test]
fn a_user_hwpt_takes_its_domain_out_of_the_ioas_when_destroyed() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    let id = dev.bind(&ictx).unwrap();
    let hwpt = ictx.alloc_hwpt(id, &ioas, 0).unwrap();
    assert_eq!(ioas.iova_ranges().unwrap().alignment, 0x1000);
    dev.attach(hwpt.id()).unwrap();
    assert_eq!(ictx.destroy(hwpt.id()).unwrap_err().code(), "EBUSY");
    dev.detach().unwrap();
    drop(hwpt);
    assert_eq!(ioas.iova_ranges().unwrap(), vfio_core::IoasRanges { ranges: vec![r(0, u64::MAX)], alignment: 1 });
}

#[test]
fn rlimit_mode_can_change_only_while_the_context_is_empty() {
    let (_b, ictx) = open();
    assert_eq!(ictx.rlimit_per_process(), Ok(false));
    ictx.set_rlimit_per_process(true).unwrap();
    assert_eq!(ictx.rlimit_per_process(), Ok(true));
    let _ioas = ictx.alloc_ioas().unwrap();
    assert_eq!(ictx.set_rlimit_per_process(false).unwrap_err().code(), "EBUSY");
}

#[test]
fn huge_pages_are_on_by_default_and_off_forces_page_alignment() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    assert_eq!(ioas.huge_pages(), Ok(true));
    ioas.set_huge_pages(false).unwrap();
    assert_eq!(ioas.iova_ranges().unwrap().alignment, 0x1000);
}

#[test]
fn a_batch_into_an_ioas_is_all_or_nothing_and_names_the_failing_entry() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    ioas.map(Some(0x10_5000), VA, 0x1000, RW).unwrap();
    let entries: Vec<[u64; 3]> = (0..8).map(|i| [0x10_0000 + i * 0x1000, VA + i * 0x1000, 0x1000]).collect();
    let e = ioas.map_batch(&entries, BatchFlags::All(RW)).unwrap_err();
    assert_eq!((e.entry, e.code(), e.ioctl), (Some(5), "EEXIST", "IOMMU_IOAS_MAP"));
    // Nothing of the batch is left: the first five pages map again.
    assert_eq!(ioas.map(Some(0x10_0000), VA, 0x5000, RW), Ok(0x10_0000));
}

#[test]
fn a_contiguous_batch_into_an_ioas_is_one_ioctl() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let entries: Vec<[u64; 3]> = (0..64).map(|i| [0x10_0000 + i * 0x1000, VA + i * 0x1000, 0x1000]).collect();
    let rep = ioas.map_batch(&entries, BatchFlags::All(RW)).unwrap();
    assert_eq!((rep.ioctls, rep.bytes), (1, 64 * 0x1000));
    assert_eq!(ioas.unmap_batch(&[[0x10_0000, 0x40000]]).unwrap().bytes, 0x40000);
}

fn start_dma(m: &vfio_core::MappedRegion, src: u64, dst: u64, count: u64, to_ram: bool) {
    m.write_u64(edu::REG_DMA_SRC, src).unwrap();
    m.write_u64(edu::REG_DMA_DST, dst).unwrap();
    m.write_u64(edu::REG_DMA_COUNT, count).unwrap();
    m.write_u64(edu::REG_DMA_CMD, edu::DMA_RUN | if to_ram { edu::DMA_FROM_DEVICE } else { 0 }).unwrap();
    while m.read_u64(edu::REG_DMA_CMD).unwrap() & edu::DMA_RUN != 0 {}
}

#[test]
fn edu_dma_goes_through_the_ioas_mapping_and_nowhere_after_unmap() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    dev.bind(&ictx).unwrap();
    dev.attach(ioas.id()).unwrap();
    let d = dev.device();
    d.write_config(4, &0x6u16.to_le_bytes()).unwrap();
    let src = HostMemory::new(0x1000).unwrap();
    let dst = HostMemory::new(0x1000).unwrap();
    src.write(0, b"vfiokit-iommufd!").unwrap();
    ioas.map(Some(0x10_0000), src.addr(), 0x1000, RW).unwrap();
    ioas.map(Some(0x20_0000), dst.addr(), 0x1000, RW).unwrap();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    start_dma(&m, 0x10_0000, edu::BUFFER, 16, false);
    start_dma(&m, edu::BUFFER, 0x20_0000, 16, true);
    let mut got = [0u8; 16];
    dst.read(0, &mut got).unwrap();
    assert_eq!(&got, b"vfiokit-iommufd!");
    ioas.unmap(0x20_0000, 0x1000).unwrap();
    dst.write(0, &[0u8; 16]).unwrap();
    start_dma(&m, edu::BUFFER, 0x20_0000, 16, true);
    dst.read(0, &mut got).unwrap();
    assert_eq!(got, [0u8; 16]);
}

#[test]
fn two_devices_of_one_group_cannot_attach_to_different_ioases() {
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(
        MockConfig::empty()
            .with_group(MockGroupConfig::new(1).with_device(MockDeviceConfig::edu("0000:02:00.0")).with_device(MockDeviceConfig::edu("0000:02:00.1")))
            .with_iommufd(IommufdProfile::qemu_vtd(CAP, ECAP)),
    ));
    let ictx = Iommufd::open(b.clone()).unwrap();
    let (a, other) = (ictx.alloc_ioas().unwrap(), ictx.alloc_ioas().unwrap());
    let mut d0 = CdevDevice::open(b.clone(), 0).unwrap();
    let mut d1 = CdevDevice::open(b, 1).unwrap();
    d0.bind(&ictx).unwrap();
    d1.bind(&ictx).unwrap();
    let h = d0.attach(a.id()).unwrap();
    assert_eq!(d1.attach(other.id()).unwrap_err().code(), "EINVAL");
    assert_eq!(d1.attach(a.id()), Ok(h));
}

#[test]
fn a_space_binds_and_attaches_every_device_to_one_ioas_and_closing_it_frees_the_groups() {
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(config()));
    let space = vfio_core::IommufdSpace::open(b.clone(), &[0, 1]).unwrap();
    assert_eq!(space.hwpts(), &[3, 3]);
    assert_eq!(Group::open(b.clone(), 1).unwrap_err().code(), "EBUSY");
    drop(space);
    assert!(Group::open(b.clone(), 1).is_ok());
    assert!(Group::open(b, 2).is_ok());
}

#[test]
fn a_space_that_cannot_attach_a_device_leaves_nothing_bound() {
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(config()));
    let _g2 = Group::open(b.clone(), 2).unwrap();
    assert_eq!(vfio_core::IommufdSpace::open(b.clone(), &[0, 1]).unwrap_err().code(), "EBUSY");
    assert!(Group::open(b, 1).is_ok());
}

#[test]
fn with_iommufd_serving_dev_vfio_vfio_a_device_binds_to_the_container_fd() {
    // CONFIG_IOMMUFD_VFIO_CONTAINER (the lab kernel): /dev/vfio/vfio is an
    // iommufd; the lab kernel answered the bind with a device id.
    let mut profile = IommufdProfile::qemu_vtd(CAP, ECAP);
    profile.vfio_compat_container = true;
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(MockConfig { iommufd: Some(profile), ..config() }));
    let container = b.open_container().unwrap();
    let dev = CdevDevice::open(b.clone(), 0).unwrap();
    let mut cmd = u::vfio_device_bind_iommufd { argsz: 16, flags: 0, iommufd: container, out_devid: 0 };
    b.device_bind_iommufd(dev.device().raw_fd(), &mut cmd).unwrap();
    assert_eq!(cmd.out_devid, 1);
    b.close(container);
}

#[test]
fn a_device_whose_group_a_host_driver_holds_does_not_bind_eperm() {
    // iommu_device_claim_dma_owner: another owner holds the group (EPERM
    // on the lab kernel, as the group path's claim answers).
    let mut g = MockGroupConfig::new(1).with_device(MockDeviceConfig::edu("0000:00:03.0"));
    g.devices.push(MockDeviceConfig::edu("0000:00:04.0").bound_to(Some("virtio-pci")));
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(MockConfig::empty().with_group(g).with_iommufd(IommufdProfile::qemu_vtd(CAP, ECAP))));
    let ictx = Iommufd::open(b.clone()).unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    assert_eq!(dev.bind(&ictx).unwrap_err().code(), "EPERM");
}

// ---- QEMU's virtio-iommu (the iommufd lab profile's second boot) ----

/// The lab's virtio-iommu guest: no interrupt remapping, so MSIs are not
/// isolated; one edu in group 1 with the x86 MSI window reserved.
fn on_virtio_iommu(allow_unsafe_interrupts: bool) -> (Arc<dyn Backend>, Iommufd) {
    let mut g = MockGroupConfig::new(1).with_device(MockDeviceConfig::edu("0000:00:03.0"));
    g.reserved.extend_from_slice(VIRTIO_IOMMU.group_reserved);
    let mut profile = IommufdProfile::for_host(&VIRTIO_IOMMU);
    profile.allow_unsafe_interrupts = allow_unsafe_interrupts;
    let mut config = MockConfig::empty().with_iommu_profile(&VIRTIO_IOMMU).with_group(g).with_iommufd(profile);
    config.msi_isolated = false;
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(config));
    let ictx = Iommufd::open(b.clone()).unwrap();
    (b, ictx)
}

#[test]
fn without_msi_isolation_a_cdev_bind_is_eperm_until_iommufd_allows_unsafe_interrupts() {
    let (b, ictx) = on_virtio_iommu(false);
    let mut dev = CdevDevice::open(b, 0).unwrap();
    assert_eq!(dev.bind(&ictx).unwrap_err().code(), "EPERM");
    let (b, ictx) = on_virtio_iommu(true);
    let mut dev = CdevDevice::open(b, 0).unwrap();
    assert_eq!(dev.bind(&ictx), Ok(1));
}

#[test]
fn on_virtio_iommu_an_attached_ioas_spans_2_pow_64_but_the_msi_window_in_4_kib_pages() {
    let (b, ictx) = on_virtio_iommu(true);
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    dev.bind(&ictx).unwrap();
    dev.attach(ioas.id()).unwrap();
    let got = ioas.iova_ranges().unwrap();
    assert_eq!(got.ranges, vec![r(0, 0xfedf_ffff), r(0xfef0_0000, u64::MAX)]);
    assert_eq!(got.alignment, 0x1000);
}

#[test]
fn on_virtio_iommu_hw_info_is_type_none_with_no_data() {
    let (b, ictx) = on_virtio_iommu(true);
    let mut dev = CdevDevice::open(b, 0).unwrap();
    let id = dev.bind(&ictx).unwrap();
    let info = ictx.hw_info(id).unwrap();
    // Capabilities: no dirty tracking; the ATS bit follows the kernel
    // version the profile models (`ats_not_supported_cap`), not the IOMMU.
    assert_eq!((info.data_type, info.data.len()), (u::IOMMU_HW_INFO_TYPE_NONE, 0));
    assert_eq!(info.capabilities & u::IOMMU_HW_CAP_DIRTY_TRACKING, 0);
}

#[test]
fn on_virtio_iommu_a_hwpt_allocated_before_any_attach_leaves_only_iova_0_in_its_ioas_until_destroyed() {
    // 6.12's virtio-iommu sets a domain's geometry at its first attach:
    // iopt_table_add_domain saw an aperture of 0-0 (the lab read [0x0-0x0]).
    let (b, ictx) = on_virtio_iommu(true);
    let ioas = ictx.alloc_ioas().unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    let id = dev.bind(&ictx).unwrap();
    let hwpt = ictx.alloc_hwpt(id, &ioas, 0).unwrap();
    let got = ioas.iova_ranges().unwrap();
    assert_eq!((got.ranges, got.alignment), (vec![r(0, 0)], 0x1000));
    dev.attach(hwpt.id()).unwrap();
    dev.detach().unwrap();
    drop(hwpt);
    let got = ioas.iova_ranges().unwrap();
    assert_eq!((got.ranges, got.alignment), (vec![r(0, u64::MAX)], 1));
}

// ---- file mappings and moving them to another process (Linux 6.13) ----


fn memfd(len: u64) -> vfio_core::live::GuestMemory {
    vfio_core::live::GuestMemory::create("vfiokit-test", len as usize).unwrap()
}

#[test]
fn map_file_maps_a_memfd_by_offset_and_the_kernel_chooses_the_iova_when_asked() {
    let (_b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let m = memfd(0x10000);
    assert_eq!(ioas.map_file(Some(0x10_0000), m.raw_fd(), 0x4000, 0x4000, RW), Ok(0x10_0000));
    let chosen = ioas.map_file(None, m.raw_fd(), 0, 0x4000, RW).unwrap();
    assert_ne!(chosen, 0x10_0000);
    assert_eq!(ioas.unmap(0x10_0000, 0x4000), Ok(0x4000));
}

#[test]
fn map_file_refuses_as_iommufd_ioas_map_file_does() {
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let m = memfd(0x4000);
    let code = |e: vfio_core::Error| e.code();
    // No READ or WRITE: EINVAL; an empty range: EINVAL; a range that wraps: EOVERFLOW.
    assert_eq!(ioas.map_file(Some(0x10_0000), m.raw_fd(), 0, 0x1000, 0).map_err(code), Err("EINVAL"));
    assert_eq!(ioas.map_file(Some(0x10_0000), m.raw_fd(), 0, 0, RW).map_err(code), Err("EINVAL"));
    assert_eq!(ioas.map_file(Some(0x10_0000), m.raw_fd(), u64::MAX - 0xfff, 0x2000, RW).map_err(code), Err("EOVERFLOW"));
    // A descriptor that is not open: fget fails, EBADF.
    assert_eq!(ioas.map_file(Some(0x10_0000), -1, 0, 0x1000, RW).map_err(code), Err("EBADF"));
    // Over an existing mapping: EEXIST, as IOMMU_IOAS_MAP.
    ioas.map_file(Some(0x10_0000), m.raw_fd(), 0, 0x2000, RW).unwrap();
    assert_eq!(ioas.map_file(Some(0x10_1000), m.raw_fd(), 0, 0x1000, RW).map_err(code), Err("EEXIST"));
    // An unknown flag: EOPNOTSUPP; an IOAS that does not exist: ENOENT.
    let mut cmd = u::iommu_ioas_map_file {
        size: std::mem::size_of::<u::iommu_ioas_map_file>() as u32,
        flags: u::IOMMU_IOAS_MAP_READABLE | 1 << 7,
        ioas_id: ioas.id(),
        fd: m.raw_fd(),
        start: 0,
        length: 0x1000,
        iova: 0x20_0000,
    };
    assert_eq!(b.ioas_map_file(ictx.raw_fd(), &mut cmd).map_err(|e| e.0), Err(libc::EOPNOTSUPP));
    cmd.flags = u::IOMMU_IOAS_MAP_READABLE | u::IOMMU_IOAS_MAP_FIXED_IOVA;
    cmd.ioas_id = 999;
    assert_eq!(b.ioas_map_file(ictx.raw_fd(), &mut cmd).map_err(|e| e.0), Err(libc::ENOENT));
}

#[test]
fn with_a_device_attached_a_file_that_is_no_memfd_or_too_short_is_refused_when_its_pages_are_pinned() {
    // memfd_pin_folios: neither shmem nor hugetlbfs, or a range past the
    // file's end, is EINVAL; without a domain nothing is pinned at map time.
    let (b, ictx) = open();
    let ioas = ictx.alloc_ioas().unwrap();
    let exe = std::fs::File::open("/proc/self/exe").unwrap();
    let m = memfd(0x4000);
    use std::os::fd::AsRawFd;
    assert_eq!(ioas.map_file(Some(0x10_0000), exe.as_raw_fd(), 0, 0x1000, RW), Ok(0x10_0000));
    ioas.unmap_all().unwrap();
    let mut dev = CdevDevice::open(b, 0).unwrap();
    dev.bind(&ictx).unwrap();
    dev.attach(ioas.id()).unwrap();
    let e = ioas.map_file(Some(0x10_0000), exe.as_raw_fd(), 0, 0x1000, RW).unwrap_err();
    assert_eq!(e.code(), "EINVAL");
    assert!(e.detail.as_deref().unwrap().contains("must be a memfd"), "{e}");
    assert_eq!(ioas.map_file(Some(0x10_0000), m.raw_fd(), 0x2000, 0x4000, RW).unwrap_err().code(), "EINVAL");
    assert_eq!(ioas.map_file(Some(0x10_0000), m.raw_fd(), 0, 0x4000, RW), Ok(0x10_0000));
}

#[test]
fn change_process_moves_file_mappings_and_refuses_with_einval_while_any_ioas_holds_an_address_mapping() {
    let (b, ictx) = open();
    let a = ictx.alloc_ioas().unwrap();
    let other = ictx.alloc_ioas().unwrap();
    let m = memfd(0x4000);
    // Nothing mapped: nothing to move, no error.
    assert_eq!(ictx.change_process(), Ok(()));
    a.map_file(Some(0x10_0000), m.raw_fd(), 0, 0x4000, RW).unwrap();
    assert_eq!(ictx.change_process(), Ok(()));
    // An address mapping in another IOAS of the same iommufd blocks it.
    let mem = HostMemory::new(0x1000).unwrap();
    other.map(Some(0x10_0000), mem.addr(), 0x1000, RW).unwrap();
    let e = ictx.change_process().unwrap_err();
    assert_eq!((e.code(), e.ioctl), ("EINVAL", "IOMMU_IOAS_CHANGE_PROCESS"));
    assert!(e.detail.as_deref().unwrap().contains("only IOMMU_IOAS_MAP_FILE mappings can move"), "{e}");
    other.unmap_all().unwrap();
    assert_eq!(ictx.change_process(), Ok(()));
    // A copy of a file mapping shares its file pages (iopt_get_pages): it moves too.
    other.copy_from(&a, 0x10_0000, 0x4000, Some(0x40_0000), RW).unwrap();
    assert_eq!(ictx.change_process(), Ok(()));
    // __reserved must be 0: EOPNOTSUPP.
    let cmd = u::iommu_ioas_change_process { size: 8, __reserved: 1 };
    assert_eq!(b.ioas_change_process(ictx.raw_fd(), &cmd).map_err(|e| e.0), Err(libc::EOPNOTSUPP));
}

#[test]
fn a_kernel_before_6_13_answers_map_file_and_change_process_with_enotty() {
    let mut profile = IommufdProfile::qemu_vtd(CAP, ECAP);
    profile.file_mappings = false;
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(MockConfig { iommufd: Some(profile), ..config() }));
    let ictx = Iommufd::open(b).unwrap();
    let ioas = ictx.alloc_ioas().unwrap();
    let m = memfd(0x4000);
    assert_eq!(ioas.map_file(Some(0x10_0000), m.raw_fd(), 0, 0x1000, RW).unwrap_err().code(), "ENOTTY");
    let e = ictx.change_process().unwrap_err();
    assert_eq!(e.code(), "ENOTTY");
    assert!(e.detail.as_deref().unwrap().contains("Linux 6.13"), "{e}");
}

// ---- pinning and its accounting (io_pagetable.c, pages.c) ----

/// The iommufd host with a RLIMIT_MEMLOCK of `pages` pages and no
/// CAP_IPC_LOCK (`None`: exempt, as with CAP_IPC_LOCK).
fn limited(pages: Option<u64>) -> (Arc<MockBackend>, Iommufd) {
    let mut c = config();
    c.memlock = vfio_core::backend::MemlockPolicy::Fixed(pages.map(|p| p * 4096));
    let b = Arc::new(MockBackend::new(c));
    let ictx = Iommufd::open(b.clone()).unwrap();
    (b, ictx)
}

fn attached(b: &Arc<MockBackend>, ictx: &Iommufd, ioas: &vfio_core::Ioas) -> vfio_core::Result<CdevDevice> {
    let mut dev = CdevDevice::open(b.clone(), 0).unwrap();
    dev.bind(ictx).unwrap();
    dev.attach(ioas.id()).map(|_| dev)
}

#[test]
fn nothing_is_pinned_until_a_domain_is_attached_then_everything_the_ioas_maps_is() {
    let (b, ictx) = limited(Some(64));
    let ioas = ictx.alloc_ioas().unwrap();
    let mem = HostMemory::new(16 * 4096).unwrap();
    ioas.map(Some(0x10_0000), mem.addr(), 16 * 4096, RW).unwrap();
    assert_eq!(b.iommufd_pinned_pages(), (0, 0), "no domain: a lazy reference only");
    let dev = attached(&b, &ictx, &ioas).unwrap();
    assert_eq!(b.iommufd_pinned_pages(), (16, 16), "pinned and charged to the user (RLIMIT_MODE 0)");
    ioas.unmap(0x10_0000, 16 * 4096).unwrap();
    assert_eq!(b.iommufd_pinned_pages(), (0, 0));
    ioas.map(Some(0x10_0000), mem.addr(), 4 * 4096, RW).unwrap();
    assert_eq!(b.iommufd_pinned_pages(), (4, 4), "a map into an IOAS with a domain pins at once");
    dev.detach().unwrap();
    assert_eq!(b.iommufd_pinned_pages(), (0, 0), "the last domain's removal unpins");
}

#[test]
fn past_rlimit_memlock_the_attach_that_would_pin_fails_with_enomem_and_so_does_a_map_into_a_filled_ioas() {
    let (b, ictx) = limited(Some(8));
    let ioas = ictx.alloc_ioas().unwrap();
    let mem = HostMemory::new(16 * 4096).unwrap();
    ioas.map(Some(0x10_0000), mem.addr(), 16 * 4096, RW).unwrap();
    assert_eq!(attached(&b, &ictx, &ioas).unwrap_err().code(), "ENOMEM");
    assert_eq!(b.iommufd_pinned_pages(), (0, 0));
    assert_eq!(ioas.iova_ranges().unwrap().ranges, vec![r(0, u64::MAX)], "the failed attach left no domain");
    ioas.unmap_all().unwrap();
    ioas.map(Some(0x10_0000), mem.addr(), 8 * 4096, RW).unwrap();
    let _dev = attached(&b, &ictx, &ioas).unwrap();
    let e = ioas.map(Some(0x20_0000), mem.addr() + 8 * 4096, 4096, RW).unwrap_err();
    assert_eq!(e.code(), "ENOMEM");
    assert_eq!(b.iommufd_pinned_pages(), (8, 8));
    // The refused map left nothing: its IOVA maps once there is room.
    ioas.unmap(0x10_0000, 8 * 4096).unwrap();
    ioas.map(Some(0x20_0000), mem.addr() + 8 * 4096, 4096, RW).unwrap();
}

#[test]
fn with_rlimit_mode_1_the_pins_are_charged_to_the_mm_locked_vm_not_the_user() {
    let (b, ictx) = limited(Some(64));
    ictx.set_rlimit_per_process(true).unwrap();
    let ioas = ictx.alloc_ioas().unwrap();
    let mem = HostMemory::new(4 * 4096).unwrap();
    ioas.map(Some(0x10_0000), mem.addr(), 4 * 4096, RW).unwrap();
    let _dev = attached(&b, &ictx, &ioas).unwrap();
    assert_eq!((b.iommufd_pinned_pages(), b.locked_pages()), ((4, 0), 4));
}

#[test]
fn a_caller_exempt_from_the_limit_pins_without_any_charge_but_vmpin_counts() {
    let (b, ictx) = limited(None);
    let ioas = ictx.alloc_ioas().unwrap();
    let mem = HostMemory::new(4 * 4096).unwrap();
    ioas.map(Some(0x10_0000), mem.addr(), 4 * 4096, RW).unwrap();
    let _dev = attached(&b, &ictx, &ioas).unwrap();
    assert_eq!((b.iommufd_pinned_pages(), b.locked_pages()), ((4, 0), 0));
}

#[test]
fn pages_shared_by_a_copy_are_pinned_and_charged_once() {
    let (b, ictx) = limited(Some(64));
    let src = ictx.alloc_ioas().unwrap();
    let mem = HostMemory::new(4 * 4096).unwrap();
    src.map(Some(0x10_0000), mem.addr(), 4 * 4096, RW).unwrap();
    let _dev = attached(&b, &ictx, &src).unwrap();
    let dst = ictx.alloc_ioas().unwrap();
    dst.copy_from(&src, 0x10_0000, 4 * 4096, Some(0x40_0000), RW).unwrap();
    let _d2 = {
        let mut d = CdevDevice::open(b.clone(), 1).unwrap();
        d.bind(&ictx).unwrap();
        d.attach(dst.id()).unwrap();
        d
    };
    assert_eq!(b.iommufd_pinned_pages(), (4, 4));
    src.unmap_all().unwrap();
    assert_eq!(b.iommufd_pinned_pages(), (4, 4), "the copy still holds them");
    dst.unmap_all().unwrap();
    assert_eq!(b.iommufd_pinned_pages(), (0, 0));
}

#[test]
fn host_memory_not_mapped_is_refused_with_efault_only_when_it_is_pinned() {
    let (b, ictx) = limited(Some(64));
    let ioas = ictx.alloc_ioas().unwrap();
    ioas.map(Some(0x10_0000), 0x1000, 4096, RW).unwrap();
    assert_eq!(attached(&b, &ictx, &ioas).unwrap_err().code(), "EFAULT");
    ioas.unmap_all().unwrap();
    let _dev = attached(&b, &ictx, &ioas).unwrap();
    assert_eq!(ioas.map(Some(0x10_0000), 0x1000, 4096, RW).unwrap_err().code(), "EFAULT");
}

#[test]
fn closing_the_iommufd_and_the_device_gives_every_pin_back() {
    let (b, ictx) = limited(Some(64));
    let ioas = ictx.alloc_ioas().unwrap();
    let mem = HostMemory::new(4 * 4096).unwrap();
    ioas.map(Some(0x10_0000), mem.addr(), 4 * 4096, RW).unwrap();
    let dev = attached(&b, &ictx, &ioas).unwrap();
    assert_eq!(b.iommufd_pinned_pages(), (4, 4));
    drop(ioas);
    drop(ictx);
    assert_eq!(b.iommufd_pinned_pages(), (4, 4), "the bound device holds the context");
    drop(dev);
    assert_eq!(b.iommufd_pinned_pages(), (0, 0));
}
