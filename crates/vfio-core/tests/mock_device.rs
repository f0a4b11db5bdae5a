//! Devices on the mock: vfio-pci's answers for QEMU's edu, and edu's DMA
//! through the container's mappings.

mod common;

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use common::*;
use vfio_core::backend::mock::devices::edu;
use vfio_core::backend::{BarConfig, DeviceModelConfig, EduConfig, GenericDeviceConfig, MockDeviceConfig, MockGroupConfig};
use vfio_core::uapi::*;
use vfio_core::{Device, IrqAction, IrqData, MockConfig, SparseArea};

fn edu_device() -> (common::Fixture, Device) {
    let f = common::Fixture::new(MockConfig::default());
    let d = f.group.device(EDU).unwrap();
    (f, d)
}

fn errno<T: std::fmt::Debug>(r: vfio_core::Result<T>) -> &'static str {
    r.unwrap_err().code()
}

#[test]
fn edu_is_a_pci_device_with_nine_regions_and_five_irq_indexes() {
    let (_f, d) = edu_device();
    let i = d.info().unwrap();
    assert_eq!((i.flags, i.num_regions, i.num_irqs), (VFIO_DEVICE_FLAGS_PCI, 9, 5));
}

#[test]
fn edu_bar0_is_one_mib_readable_writable_and_mappable() {
    let (_f, d) = edu_device();
    let r = d.region_info(0).unwrap();
    assert_eq!((r.size, r.offset, r.flags), (1 << 20, 0, 0x7));
}

#[test]
fn unused_bars_and_the_rom_have_size_zero_and_no_flags() {
    let (_f, d) = edu_device();
    for i in 1..=6 {
        let r = d.region_info(i).unwrap();
        assert_eq!((r.size, r.flags, r.offset), (0, 0, (i as u64) << 40), "region {i}");
    }
}

#[test]
fn config_space_is_256_bytes_at_index_seven() {
    let (_f, d) = edu_device();
    let r = d.region_info(VFIO_PCI_CONFIG_REGION_INDEX).unwrap();
    assert_eq!((r.size, r.offset, r.flags), (256, 7 << 40, 0x3));
}

#[test]
fn the_vga_region_and_indexes_past_the_last_fail_with_einval() {
    let (_f, d) = edu_device();
    assert_eq!(errno(d.region_info(VFIO_PCI_VGA_REGION_INDEX)), "EINVAL");
    assert_eq!(errno(d.region_info(9)), "EINVAL");
}

#[test]
fn config_space_holds_edu_ids() {
    let (_f, d) = edu_device();
    assert_eq!(u16::from_le_bytes(d.read_config::<2>(0).unwrap()), 0x1234);
    assert_eq!(u16::from_le_bytes(d.read_config::<2>(2).unwrap()), 0x11e8);
}

#[test]
fn an_opened_device_has_memory_decoding_on_and_bus_mastering_off() {
    let (_f, d) = edu_device();
    assert_eq!(u16::from_le_bytes(d.read_config::<2>(4).unwrap()) & 0x7, 0x2);
}

#[test]
fn a_config_access_past_its_end_fails_with_efault() {
    let (_f, d) = edu_device();
    let r = d.region_info(VFIO_PCI_CONFIG_REGION_INDEX).unwrap();
    let mut b = [0u8; 4];
    assert_eq!(errno(d.read_region(&r, 254, &mut b)), "EFAULT");
}

#[test]
fn intx_is_maskable_and_automasked_with_one_vector() {
    let (_f, d) = edu_device();
    let i = d.irq_info(VFIO_PCI_INTX_IRQ_INDEX).unwrap();
    assert_eq!((i.flags, i.count), (0x7, 1));
}

#[test]
fn msi_has_one_vector_and_msix_none() {
    let (_f, d) = edu_device();
    assert_eq!(d.irq_info(VFIO_PCI_MSI_IRQ_INDEX).unwrap().count, 1);
    assert_eq!(d.irq_info(VFIO_PCI_MSI_IRQ_INDEX).unwrap().flags, 0x9);
    assert_eq!(d.irq_info(VFIO_PCI_MSIX_IRQ_INDEX).unwrap().count, 0);
}

#[test]
fn the_err_irq_of_a_conventional_pci_device_fails_with_einval() {
    let (_f, d) = edu_device();
    assert_eq!(errno(d.irq_info(VFIO_PCI_ERR_IRQ_INDEX)), "EINVAL");
}

#[test]
fn the_req_irq_has_one_vector() {
    let (_f, d) = edu_device();
    assert_eq!(d.irq_info(VFIO_PCI_REQ_IRQ_INDEX).unwrap().count, 1);
}

#[test]
fn reset_without_a_reset_method_fails_with_einval() {
    let (_f, d) = edu_device();
    assert_eq!(errno(d.reset()), "EINVAL");
}

#[test]
fn reset_with_a_method_clears_device_registers_but_keeps_config_space() {
    let cfg = MockConfig::empty().with_group(MockGroupConfig::new(1).with_device(MockDeviceConfig {
        model: DeviceModelConfig::Edu(EduConfig { reset: true, ..EduConfig::default() }),
        ..MockDeviceConfig::edu(EDU)
    }));
    let f = common::Fixture::new(cfg);
    let d = f.group.device(EDU).unwrap();
    assert!(d.info().unwrap().supports_reset());
    d.write_config(4, &0x6u16.to_le_bytes()).unwrap();
    let bar = d.region_info(0).unwrap();
    let m = d.map_region(&bar, 0, 0x1000).unwrap();
    m.write_u32(edu::REG_LIVENESS, 0x1234_5678).unwrap();
    d.reset().unwrap();
    assert_eq!(m.read_u32(edu::REG_LIVENESS).unwrap(), 0);
    assert_eq!(u16::from_le_bytes(d.read_config::<2>(4).unwrap()) & 0x6, 0x6);
}

#[test]
fn bar0_mapping_reads_the_edu_id() {
    let (_f, d) = edu_device();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    assert_eq!(m.read_u32(edu::REG_ID).unwrap(), 0x0100_00ed);
}

#[test]
fn the_liveness_register_returns_the_inverse_of_what_was_written() {
    let (_f, d) = edu_device();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    m.write_u32(edu::REG_LIVENESS, 0x1234_5678).unwrap();
    assert_eq!(m.read_u32(edu::REG_LIVENESS).unwrap(), !0x1234_5678);
}

#[test]
fn pread_of_bar0_reads_the_same_registers_as_the_mapping() {
    let (_f, d) = edu_device();
    let bar = d.region_info(0).unwrap();
    let mut b = [0u8; 4];
    d.read_region(&bar, 0, &mut b).unwrap();
    assert_eq!(u32::from_le_bytes(b), 0x0100_00ed);
}

#[test]
fn bar_access_with_memory_decoding_off_fails_with_eio() {
    let (_f, d) = edu_device();
    d.write_config(4, &0u16.to_le_bytes()).unwrap();
    let bar = d.region_info(0).unwrap();
    let mut b = [0u8; 4];
    assert_eq!(errno(d.read_region(&bar, 0, &mut b)), "EIO");
}

#[test]
fn mmap_past_the_bar_fails_with_einval() {
    let (_f, d) = edu_device();
    let bar = d.region_info(0).unwrap();
    assert_eq!(errno(d.map_region(&bar, 0xff000, 0x2000)), "EINVAL");
}

#[test]
fn mmap_of_config_space_fails_with_einval() {
    let (_f, d) = edu_device();
    let cfg = d.region_info(VFIO_PCI_CONFIG_REGION_INDEX).unwrap();
    assert_eq!(errno(d.map_region(&cfg, 0, 0x1000)), "EINVAL");
}

#[test]
fn a_sparse_mmap_capability_lists_the_mappable_areas() {
    let dev = MockDeviceConfig {
        address: "0000:02:00.0".into(),
        driver: Some("vfio-pci".into()),
        model: DeviceModelConfig::Generic(GenericDeviceConfig {
            vendor: 0x8086,
            device: 0x1234,
            class_code: 0x020000,
            bars: vec![BarConfig { index: 2, size: 0x10000, mmap: true, sparse: Some(vec![(0, 0x4000), (0x8000, 0x8000)]) }],
            reset: true,
            msi_vectors: 0,
            msix_vectors: 0,
            pcie: true,
        }),
    };
    let f = common::Fixture::new(MockConfig::empty().with_group(MockGroupConfig::new(1).with_device(dev)));
    let d = f.group.device("0000:02:00.0").unwrap();
    let r = d.region_info(2).unwrap();
    assert_eq!(r.flags, 0xf);
    assert_eq!(
        r.sparse_areas,
        Some(vec![SparseArea { offset: 0, size: 0x4000 }, SparseArea { offset: 0x8000, size: 0x8000 }])
    );
}

// ---- interrupts ----

fn eventfd() -> OwnedFd {
    // SAFETY: eventfd(2) returns a fresh descriptor or -1, checked below.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    assert!(fd >= 0);
    // SAFETY: `fd` is a fresh descriptor owned by nobody else.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn eventfd_count(fd: &OwnedFd) -> u64 {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a live u64 from an eventfd we own.
    let n = unsafe { libc::read(fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    if n == 8 { v } else { 0 }
}

#[test]
fn a_loopback_trigger_signals_the_msi_eventfd() {
    let (_f, d) = edu_device();
    let efd = eventfd();
    d.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[efd.as_raw_fd()])).unwrap();
    d.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::None { count: 1 }).unwrap();
    assert_eq!(eventfd_count(&efd), 1);
}

#[test]
fn enabling_msi_while_intx_is_enabled_fails_with_einval() {
    let (_f, d) = edu_device();
    let a = eventfd();
    let b = eventfd();
    d.set_irqs(VFIO_PCI_INTX_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[a.as_raw_fd()])).unwrap();
    let r = d.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[b.as_raw_fd()]));
    assert_eq!(errno(r), "EINVAL");
}

#[test]
fn set_irqs_past_the_vector_count_fails_with_einval() {
    let (_f, d) = edu_device();
    let a = eventfd();
    let b = eventfd();
    let r = d.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[a.as_raw_fd(), b.as_raw_fd()]));
    assert_eq!(errno(r), "EINVAL");
}

#[test]
fn masking_msi_is_not_supported_and_fails_with_enotty() {
    let (_f, d) = edu_device();
    assert_eq!(errno(d.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Mask, IrqData::None { count: 1 })), "ENOTTY");
}

#[test]
fn an_eventfd_that_is_not_open_fails_with_ebadf() {
    let (_f, d) = edu_device();
    assert_eq!(errno(d.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[9999]))), "EBADF");
}

#[test]
fn edu_raises_msi_when_the_driver_writes_the_irq_raise_register() {
    let (_f, d) = edu_device();
    let efd = eventfd();
    d.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[efd.as_raw_fd()])).unwrap();
    d.write_config(4, &0x6u16.to_le_bytes()).unwrap(); // memory + bus master
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    m.write_u32(edu::REG_IRQ_RAISE, 0x8).unwrap();
    assert_eq!(eventfd_count(&efd), 1);
    assert_eq!(m.read_u32(edu::REG_IRQ_STATUS).unwrap(), 0x8);
}

#[test]
fn an_msi_raised_without_bus_mastering_never_reaches_its_eventfd() {
    // The MSI is a memory write by the device; the lab's kernel shows it lost.
    let (_f, d) = edu_device();
    let efd = eventfd();
    d.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[efd.as_raw_fd()])).unwrap();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    m.write_u32(edu::REG_IRQ_RAISE, 0x8).unwrap();
    assert_eq!(eventfd_count(&efd), 0);
}

#[test]
fn intx_is_automasked_after_it_fires_until_unmasked() {
    let (_f, d) = edu_device();
    let efd = eventfd();
    d.set_irqs(VFIO_PCI_INTX_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[efd.as_raw_fd()])).unwrap();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    m.write_u32(edu::REG_IRQ_RAISE, 1).unwrap();
    m.write_u32(edu::REG_IRQ_RAISE, 1).unwrap();
    assert_eq!(eventfd_count(&efd), 1);
    d.set_irqs(VFIO_PCI_INTX_IRQ_INDEX, 0, IrqAction::Unmask, IrqData::None { count: 1 }).unwrap();
    m.write_u32(edu::REG_IRQ_RAISE, 1).unwrap();
    assert_eq!(eventfd_count(&efd), 1);
}

// ---- edu DMA through the IOMMU ----

/// A page-aligned host buffer the device may DMA to.
struct Page(Vec<u8>, usize);

impl Page {
    fn new(pages: usize) -> Self {
        let v = vec![0u8; (pages + 1) * 4096];
        let off = (4096 - (v.as_ptr() as usize % 4096)) % 4096;
        Page(v, off)
    }
    fn addr(&self) -> u64 {
        self.0.as_ptr() as u64 + self.1 as u64
    }
    fn bytes(&self) -> &[u8] {
        &self.0[self.1..self.1 + 4096]
    }
    fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.0[self.1..self.1 + 4096]
    }
}

fn start_dma(m: &vfio_core::MappedRegion, src: u64, dst: u64, count: u64, to_ram: bool) {
    m.write_u64(edu::REG_DMA_SRC, src).unwrap();
    m.write_u64(edu::REG_DMA_DST, dst).unwrap();
    m.write_u64(edu::REG_DMA_COUNT, count).unwrap();
    m.write_u64(edu::REG_DMA_CMD, edu::DMA_RUN | if to_ram { edu::DMA_FROM_DEVICE } else { 0 }).unwrap();
    while m.read_u64(edu::REG_DMA_CMD).unwrap() & edu::DMA_RUN != 0 {}
}

#[test]
fn edu_dma_round_trips_through_a_mapping() {
    let f = common::Fixture::new(MockConfig::default());
    let d = f.group.device(EDU).unwrap();
    d.write_config(4, &0x6u16.to_le_bytes()).unwrap();
    let mut src = Page::new(1);
    let dst = Page::new(1);
    src.bytes_mut()[..16].copy_from_slice(b"vfiokit-edu-dma!");
    f.container.map_dma(0x10_0000, src.addr(), 0x1000, RW).unwrap();
    f.container.map_dma(0x20_0000, dst.addr(), 0x1000, RW).unwrap();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    start_dma(&m, 0x10_0000, edu::BUFFER, 4095, false);
    start_dma(&m, edu::BUFFER, 0x20_0000, 4095, true);
    assert_eq!(&dst.bytes()[..16], b"vfiokit-edu-dma!");
}

#[test]
fn edu_dma_to_an_unmapped_iova_writes_nothing() {
    let f = common::Fixture::new(MockConfig::default());
    let d = f.group.device(EDU).unwrap();
    d.write_config(4, &0x6u16.to_le_bytes()).unwrap();
    let dst = Page::new(1);
    f.container.map_dma(0x20_0000, dst.addr(), 0x1000, RW).unwrap();
    f.container.unmap_dma(0x20_0000, 0x1000).unwrap();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    m.write_u32(edu::REG_IRQ_RAISE, 0).unwrap();
    start_dma(&m, edu::BUFFER, 0x20_0000, 64, true);
    assert!(dst.bytes().iter().all(|&b| b == 0));
}

#[test]
fn edu_dma_into_a_read_only_mapping_writes_nothing() {
    let f = common::Fixture::new(MockConfig::default());
    let d = f.group.device(EDU).unwrap();
    d.write_config(4, &0x6u16.to_le_bytes()).unwrap();
    let mut src = Page::new(1);
    let dst = Page::new(1);
    src.bytes_mut()[..4].copy_from_slice(b"abcd");
    f.container.map_dma(0x10_0000, src.addr(), 0x1000, RW).unwrap();
    f.container.map_dma(0x20_0000, dst.addr(), 0x1000, vfio_core::dma_flags::READ).unwrap();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    start_dma(&m, 0x10_0000, edu::BUFFER, 4, false);
    start_dma(&m, edu::BUFFER, 0x20_0000, 4, true);
    assert_eq!(&dst.bytes()[..4], &[0, 0, 0, 0]);
}

#[test]
fn edu_dma_without_bus_mastering_writes_nothing() {
    let f = common::Fixture::new(MockConfig::default());
    let d = f.group.device(EDU).unwrap();
    let dst = Page::new(1);
    f.container.map_dma(0x20_0000, dst.addr(), 0x1000, RW).unwrap();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    m.write_u32(edu::REG_FACTORIAL, 5).unwrap();
    start_dma(&m, edu::BUFFER, 0x20_0000, 4, true);
    assert!(dst.bytes().iter().all(|&b| b == 0));
}

#[test]
fn edu_clamps_dma_addresses_to_its_28_bit_mask() {
    let f = common::Fixture::new(MockConfig::default());
    let d = f.group.device(EDU).unwrap();
    d.write_config(4, &0x6u16.to_le_bytes()).unwrap();
    let mut src = Page::new(1);
    let dst = Page::new(1);
    src.bytes_mut()[..4].copy_from_slice(b"mask");
    f.container.map_dma(0x10_0000, src.addr(), 0x1000, RW).unwrap();
    f.container.map_dma(0x20_0000, dst.addr(), 0x1000, RW).unwrap();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    start_dma(&m, 0x10_0000, edu::BUFFER, 4, false);
    start_dma(&m, edu::BUFFER, 0x1000_0000 | 0x20_0000, 4, true);
    assert_eq!(&dst.bytes()[..4], b"mask");
}

#[test]
fn edu_computes_factorials() {
    let (_f, d) = edu_device();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    m.write_u32(edu::REG_FACTORIAL, 10).unwrap();
    assert_eq!(m.read_u32(edu::REG_FACTORIAL).unwrap(), 3_628_800);
}

#[test]
fn an_edu_transfer_past_its_buffer_is_counted_and_moves_nothing() {
    let b = std::sync::Arc::new(vfio_core::MockBackend::new(MockConfig::default()));
    let dynb: std::sync::Arc<dyn vfio_core::Backend> = b.clone();
    let c = vfio_core::Container::open(dynb.clone()).unwrap();
    let g = vfio_core::Group::open(dynb, 1).unwrap();
    g.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    let d = g.device(EDU).unwrap();
    d.write_config(4, &0x6u16.to_le_bytes()).unwrap();
    let dst = Page::new(1);
    c.map_dma(0x20_0000, dst.addr(), 0x1000, RW).unwrap();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    start_dma(&m, edu::BUFFER + 0x800, 0x20_0000, 0x1000, true);
    assert_eq!(b.edu_range_errors(EDU), Some(1));
    assert!(dst.bytes().iter().all(|&b| b == 0));
}

// ---- PCI hot reset info ----

#[test]
fn a_device_on_the_root_bus_has_no_hot_reset_and_fails_with_enodev() {
    let (_f, d) = edu_device();
    assert_eq!(errno(d.pci_hot_reset_info()), "ENODEV");
}

#[test]
fn a_hot_reset_affects_every_function_on_the_bus_whatever_its_driver() {
    let cfg = MockConfig::empty()
        .with_group(MockGroupConfig::new(2).with_device(MockDeviceConfig::edu("0000:01:01.0")))
        .with_group(MockGroupConfig::new(3).with_device(MockDeviceConfig::edu("0000:01:02.0").bound_to(None)));
    let f = common::Fixture::new_group(cfg, 2);
    let d = f.group.device("0000:01:01.0").unwrap();
    let deps = d.pci_hot_reset_info().unwrap();
    let got: Vec<(u32, String)> = deps.iter().map(|x| (x.group_id, x.address())).collect();
    assert_eq!(got, vec![(2, "0000:01:01.0".to_string()), (3, "0000:01:02.0".to_string())]);
}

#[test]
fn config_accesses_read_the_region_layout_once() {
    let b = std::sync::Arc::new(vfio_core::MockBackend::new(MockConfig::default()));
    let dynb: std::sync::Arc<dyn vfio_core::Backend> = b.clone();
    let c = vfio_core::Container::open(dynb.clone()).unwrap();
    let g = vfio_core::Group::open(dynb, 1).unwrap();
    g.set_container(&c).unwrap();
    c.set_iommu(VFIO_TYPE1V2_IOMMU).unwrap();
    let d = g.device(EDU).unwrap();
    d.read_config::<2>(0).unwrap();
    let before = b.ioctl_count();
    d.read_config::<2>(2).unwrap();
    d.write_config(4, &0x6u16.to_le_bytes()).unwrap();
    assert_eq!(b.ioctl_count(), before);
}

fn bridge_host(second_driver: Option<&str>) -> (std::sync::Arc<dyn vfio_core::Backend>, vfio_core::Container, vfio_core::Group) {
    let cfg = MockConfig::empty().with_group(
        MockGroupConfig::new(2)
            .with_device(MockDeviceConfig::edu("0000:01:01.0"))
            .with_device(MockDeviceConfig::edu("0000:01:02.0").bound_to(second_driver)),
    );
    let f = common::Fixture::new_group(cfg, 2);
    (f.backend, f.container, f.group)
}

#[test]
fn a_hot_reset_with_the_group_of_every_affected_device_clears_their_registers() {
    let (_b, _c, g) = bridge_host(Some("vfio-pci"));
    let d = g.device("0000:01:01.0").unwrap();
    let peer = g.device("0000:01:02.0").unwrap();
    let m = peer.map_region(&peer.region_info(0).unwrap(), 0, 0x1000).unwrap();
    m.write_u32(edu::REG_LIVENESS, 5).unwrap();
    d.pci_hot_reset(&[&g]).unwrap();
    assert_eq!(m.read_u32(edu::REG_LIVENESS).unwrap(), 0);
}

#[test]
fn a_hot_reset_while_a_device_on_the_bus_is_not_on_vfio_pci_fails_with_einval() {
    let (_b, _c, g) = bridge_host(None);
    let d = g.device("0000:01:01.0").unwrap();
    assert_eq!(errno(d.pci_hot_reset(&[&g])), "EINVAL");
}

#[test]
fn a_hot_reset_without_group_fds_fails_with_einval() {
    let (_b, _c, g) = bridge_host(Some("vfio-pci"));
    let d = g.device("0000:01:01.0").unwrap();
    assert_eq!(errno(d.pci_hot_reset(&[])), "EINVAL");
}

#[test]
fn edu_dma_keeps_landing_in_the_pages_mapped_first_through_an_invalidation_and_an_update() {
    // The IOMMU translates to the pages pinned at map time; neither
    // VFIO_DMA_UNMAP_FLAG_VADDR nor VFIO_DMA_MAP_FLAG_VADDR touches it
    // (vfio_dma_do_unmap, vfio_dma_do_map): a live update changes who owns
    // the mapping, never where the device's writes land.
    let f = common::Fixture::new(MockConfig::default());
    let d = f.group.device(EDU).unwrap();
    d.write_config(4, &0x6u16.to_le_bytes()).unwrap();
    let mut src = Page::new(1);
    let first = Page::new(1);
    let other = Page::new(1);
    src.bytes_mut()[..16].copy_from_slice(b"lands-while-live");
    f.container.map_dma(0x10_0000, src.addr(), 0x1000, RW).unwrap();
    f.container.map_dma(0x20_0000, first.addr(), 0x1000, RW).unwrap();
    let m = d.map_region(&d.region_info(0).unwrap(), 0, 0x1000).unwrap();
    start_dma(&m, 0x10_0000, edu::BUFFER, 4095, false);
    f.container.invalidate_all_vaddrs().unwrap();
    start_dma(&m, edu::BUFFER, 0x20_0000, 16, true);
    assert_eq!(&first.bytes()[..16], b"lands-while-live");
    f.container.update_vaddr(0x20_0000, other.addr(), 0x1000).unwrap();
    f.container.update_vaddr(0x10_0000, src.addr(), 0x1000).unwrap();
    start_dma(&m, edu::BUFFER, 0x20_0000 + 0x100, 16, true);
    assert_eq!(&first.bytes()[0x100..0x110], b"lands-while-live");
    assert!(other.bytes().iter().all(|&b| b == 0));
}
