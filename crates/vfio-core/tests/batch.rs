//! Batched map/unmap on the mock: coalescing, all-or-nothing, entry naming.

mod common;

use common::*;
use vfio_core::{BatchFlags, MockBackend, MockConfig};



fn pages(n: u64, iova: u64, stride: u64) -> Vec<[u64; 3]> {
    (0..n).map(|i| [iova + i * stride, va() + i * stride, 0x1000]).collect()
}

#[test]
fn contiguous_entries_are_mapped_with_one_ioctl() {
    let f = Fixture::new(MockConfig::default());
    let r = f.container.map_batch(&pages(64, 0x10_0000, 0x1000), BatchFlags::All(RW)).unwrap();
    assert_eq!((r.entries, r.ioctls, r.bytes), (64, 1, 64 * 0x1000));
}

#[test]
fn entries_with_gaps_are_mapped_one_ioctl_each() {
    let f = Fixture::new(MockConfig::default());
    let r = f.container.map_batch(&pages(8, 0x10_0000, 0x2000), BatchFlags::All(RW)).unwrap();
    assert_eq!(r.ioctls, 8);
}

#[test]
fn a_coalesced_batch_uses_one_dma_entry() {
    let f = Fixture::new(MockConfig::default());
    f.container.map_batch(&pages(64, 0x10_0000, 0x1000), BatchFlags::All(RW)).unwrap();
    assert_eq!(f.container.iommu_info().unwrap().dma_avail, Some(65534));
}

#[test]
fn a_failing_entry_is_named_with_its_errno_and_ioctl() {
    let f = Fixture::new(MockConfig::default());
    f.container.map_dma(0x10_5000, va(), 0x1000, RW).unwrap();
    let e = f.container.map_batch(&pages(8, 0x10_0000, 0x1000), BatchFlags::All(RW)).unwrap_err();
    assert_eq!((e.entry, e.code(), e.ioctl), (Some(5), "EEXIST", "VFIO_IOMMU_MAP_DMA"));
}

#[test]
fn a_failed_batch_leaves_nothing_mapped() {
    let f = Fixture::new(MockConfig::default());
    f.container.map_dma(0x10_5000, va(), 0x1000, RW).unwrap();
    let mut batch = pages(4, 0x20_0000, 0x2000); // four separate runs
    batch.extend(pages(8, 0x10_0000, 0x1000)); // then a run that hits 0x10_5000
    f.container.map_batch(&batch, BatchFlags::All(RW)).unwrap_err();
    // Only the pre-existing mapping remains: one entry used.
    assert_eq!(f.container.iommu_info().unwrap().dma_avail, Some(65534));
    assert_eq!(f.container.unmap_dma(0, 0x100_0000).unwrap(), 0x1000);
}

#[test]
fn a_failed_batch_names_an_entry_in_a_later_run() {
    let f = Fixture::new(MockConfig::default());
    let mut batch = pages(4, 0x20_0000, 0x2000);
    batch.push([0xfee0_0000, va(), 0x1000]);
    let e = f.container.map_batch(&batch, BatchFlags::All(RW)).unwrap_err();
    assert_eq!((e.entry, e.code()), (Some(4), "EINVAL"));
}

#[test]
fn rollback_unmaps_coalesced_runs_with_their_own_extent() {
    // type1v2 refuses an unmap that splits a mapping: the rollback must
    // unmap each run exactly as mapped, so the container ends up empty.
    let f = Fixture::new(MockConfig::default());
    let mut batch = pages(16, 0x10_0000, 0x1000);
    batch.push([0x10_0000, va(), 0x1000]); // overlaps the run just mapped
    let e = f.container.map_batch(&batch, BatchFlags::All(RW)).unwrap_err();
    assert_eq!((e.entry, e.code()), (Some(16), "EEXIST"));
    assert_eq!(f.container.iommu_info().unwrap().dma_avail, Some(65535));
}

#[test]
fn entry_limit_in_a_batch_is_reported_with_enospc() {
    let f = Fixture::new(MockConfig { dma_entry_limit: 3, ..MockConfig::default() });
    let e = f.container.map_batch(&pages(5, 0x10_0000, 0x2000), BatchFlags::All(RW)).unwrap_err();
    assert_eq!((e.entry, e.code()), (Some(3), "ENOSPC"));
    assert_eq!(f.container.iommu_info().unwrap().dma_avail, Some(3));
}

#[test]
fn per_entry_flags_split_runs() {
    let f = Fixture::new(MockConfig::default());
    let r = f.container.map_batch(&pages(4, 0x10_0000, 0x1000), BatchFlags::Each(&[RW, RW, 1, 1])).unwrap();
    assert_eq!(r.ioctls, 2);
}

#[test]
fn a_flags_array_of_the_wrong_length_is_refused_before_any_ioctl() {
    let f = Fixture::new(MockConfig::default());
    let e = f.container.map_batch(&pages(4, 0x10_0000, 0x1000), BatchFlags::Each(&[RW])).unwrap_err();
    assert_eq!(e.code(), "EINVAL");
    assert_eq!(f.container.iommu_info().unwrap().dma_avail, Some(65535));
}

#[test]
fn the_mock_counts_one_ioctl_per_coalesced_run() {
    let b = std::sync::Arc::new(MockBackend::new(MockConfig::default()));
    let dynb: std::sync::Arc<dyn vfio_core::Backend> = b.clone();
    let c = vfio_core::Container::open(dynb.clone()).unwrap();
    let g = vfio_core::Group::open(dynb, 1).unwrap();
    g.set_container(&c).unwrap();
    c.set_iommu(vfio_core::uapi::VFIO_TYPE1V2_IOMMU).unwrap();
    let before = b.ioctl_count();
    c.map_batch(&pages(100, 0x10_0000, 0x1000), BatchFlags::All(RW)).unwrap();
    assert_eq!(b.ioctl_count() - before, 1);
}

#[test]
fn unmap_batch_coalesces_and_reports_the_bytes_unmapped() {
    let f = Fixture::new(MockConfig::default());
    f.container.map_batch(&pages(8, 0x10_0000, 0x1000), BatchFlags::Each(&[RW, 1, RW, 1, RW, 1, RW, 1])).unwrap();
    let pairs: Vec<[u64; 2]> = (0..8).map(|i| [0x10_0000 + i * 0x1000, 0x1000]).collect();
    let r = f.container.unmap_batch(&pairs).unwrap();
    assert_eq!((r.ioctls, r.bytes), (1, 0x8000));
}

#[test]
fn unmap_batch_names_the_entry_that_splits_a_mapping() {
    let f = Fixture::new(MockConfig::default());
    f.container.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    f.container.map_dma(0x20_0000, va(), 0x4000, RW).unwrap();
    let e = f.container.unmap_batch(&[[0x10_0000, 0x1000], [0x20_0000, 0x1000]]).unwrap_err();
    assert_eq!((e.entry, e.code()), (Some(1), "EINVAL"));
}

#[test]
fn unmap_batch_refuses_a_zero_sized_entry_before_unmapping_anything() {
    let f = Fixture::new(MockConfig::default());
    f.container.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    let e = f.container.unmap_batch(&[[0x10_0000, 0x1000], [0x20_0000, 0]]).unwrap_err();
    assert_eq!((e.entry, e.code()), (Some(1), "EINVAL"));
    assert_eq!(f.container.unmap_dma(0x10_0000, 0x1000).unwrap(), 0x1000);
}

#[test]
fn the_error_message_names_the_entry_and_the_fix() {
    let f = Fixture::new(MockConfig::default());
    f.container.map_dma(0x10_0000, va(), 0x1000, RW).unwrap();
    let e = f.container.map_batch(&[[0x10_0000, va(), 0x1000]], BatchFlags::All(RW)).unwrap_err();
    let s = e.to_string();
    assert!(s.starts_with("VFIO_IOMMU_MAP_DMA on mock container fd"), "{s}");
    assert!(s.contains("(batch entry 0)") && s.contains("failed with EEXIST: the IOVA range overlaps"), "{s}");
}

#[test]
fn a_failure_past_the_first_thousand_runs_is_named_and_rolled_back() {
    let f = Fixture::new(MockConfig::default());
    f.container.map_dma(0x10_0000 + 1500 * 0x2000, va(), 0x1000, RW).unwrap();
    let e = f.container.map_batch(&pages(2000, 0x10_0000, 0x2000), BatchFlags::All(RW)).unwrap_err();
    assert_eq!((e.entry, e.code()), (Some(1500), "EEXIST"));
    assert_eq!(f.container.iommu_info().unwrap().dma_avail, Some(65534));
}
