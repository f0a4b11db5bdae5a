//! The mock never panics, whatever a caller sends: random sequences of every
//! Backend call and every sPAPR call, with random descriptors and arguments
//! (sizes, offsets, flags, argsz, buffers too short), on an x86 host and a
//! pseries host. Each call returns what it returns; the property is that the
//! sequence runs to its end. The kernel answers every such call with a
//! value or an errno; so must the mock.

// Results are dropped on purpose: only that each call returns matters.
#![allow(dropping_copy_types)]

mod common;

use std::ffi::CString;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use common::*;
use proptest::prelude::*;
use vfio_core::backend::{Backend, RawFd};
use vfio_core::uapi::*;
use vfio_core::{HostMemory, MockBackend, MockConfig};

#[derive(Debug, Clone)]
enum Call {
    /// A container with group `g` attached, the IOMMU set (type1v2, or on
    /// pseries sPAPR v2 or v1), the test memory registered (v2) or ENABLE
    /// done (v1): where the deeper rules are.
    Ready(u32, u8),
    OpenContainer,
    OpenGroup(u32),
    Close(usize),
    ApiVersion(usize),
    CheckExtension(usize, u32),
    SetIommu(usize, u32),
    IommuInfo(usize, usize, u32),
    Map(usize, u32, u32, u64, u64, u64),
    MapMany(usize, Vec<(u64, u64, u64)>),
    Unmap(usize, u32, u32, u64, u64),
    DirtyPages(usize, Vec<u64>),
    GroupStatus(usize),
    SetContainer(usize, usize),
    UnsetContainer(usize),
    DeviceFd(usize, u8),
    DeviceInfo(usize, usize, u32),
    RegionInfo(usize, usize, u32, u32),
    IrqInfo(usize, u32, u32),
    SetIrqs(usize, Vec<u64>),
    Reset(usize),
    HotResetInfo(usize, usize, u32),
    HotReset(usize, Vec<u64>),
    Read(usize, u64, usize),
    Write(usize, u64, Vec<u8>),
    Mmap(usize, u64, usize, u64, usize, bool),
    Register(usize, u64, u64, u32),
    Unregister(usize, u64, u64, u32),
    TceCreate(usize, u32, u64, u32, u32),
    TceRemove(usize, u64, u32),
    SpaprMap(usize, u64, u64, u64, u32),
    SpaprUnmap(usize, u64, u64, u32),
    Enable(usize),
    Disable(usize),
    Eeh(usize, u32),
    TceInfo(usize, u32),
}

/// Mostly plausible values, sometimes extreme ones.
fn num() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => (0u64..64).prop_map(|p| p * 0x1000),
        2 => Just(0u64),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 0xfff),
        1 => Just(1u64 << 30),
        1 => Just(0x3fff_f000u64),
        1 => Just(1u64 << 59),
        1 => any::<u64>(),
    ]
}

/// A host address: inside the test region (mapped), at 0, or anywhere.
fn vaddr() -> impl Strategy<Value = u64> {
    prop_oneof![6 => (0u64..64).prop_map(|p| p * 0x1000 + 1), 2 => Just(0u64), 1 => Just(!0xfff_u64), 1 => any::<u64>()]
}

fn small() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 0u32..40, 1 => any::<u32>()]
}

fn words() -> impl Strategy<Value = Vec<u64>> {
    prop::collection::vec(prop_oneof![3 => 0u64..256, 1 => any::<u64>()], 0..12)
}

fn call() -> impl Strategy<Value = Call> {
    let i = || 0usize..16;
    prop_oneof![
        3 => (0u32..3, 0u8..3).prop_map(|(g, k)| Call::Ready(g, k)),
        2 => Just(Call::OpenContainer),
        2 => (0u32..4).prop_map(Call::OpenGroup),
        1 => i().prop_map(Call::Close),
        1 => i().prop_map(Call::ApiVersion),
        1 => (i(), small()).prop_map(|(f, e)| Call::CheckExtension(f, e)),
        2 => (i(), small()).prop_map(|(f, e)| Call::SetIommu(f, e)),
        1 => (i(), 0usize..64, any::<u32>()).prop_map(|(f, n, a)| Call::IommuInfo(f, n, a)),
        4 => (i(), prop_oneof![Just(32u32), small()], small(), num(), vaddr(), num())
            .prop_map(|(f, a, fl, iova, va, size)| Call::Map(f, a, fl, iova, va, size)),
        2 => (i(), prop::collection::vec((num(), vaddr(), num()), 0..6)).prop_map(|(f, v)| Call::MapMany(f, v)),
        3 => (i(), prop_oneof![Just(24u32), small()], small(), num(), num())
            .prop_map(|(f, a, fl, iova, size)| Call::Unmap(f, a, fl, iova, size)),
        1 => (i(), words()).prop_map(|(f, w)| Call::DirtyPages(f, w)),
        1 => i().prop_map(Call::GroupStatus),
        2 => (i(), i()).prop_map(|(g, c)| Call::SetContainer(g, c)),
        1 => i().prop_map(Call::UnsetContainer),
        2 => (i(), any::<u8>()).prop_map(|(g, n)| Call::DeviceFd(g, n)),
        1 => (i(), 0usize..16, any::<u32>()).prop_map(|(f, n, a)| Call::DeviceInfo(f, n, a)),
        1 => (i(), 0usize..16, any::<u32>(), small()).prop_map(|(f, n, a, ix)| Call::RegionInfo(f, n, a, ix)),
        1 => (i(), small(), any::<u32>()).prop_map(|(f, ix, a)| Call::IrqInfo(f, ix, a)),
        1 => (i(), words()).prop_map(|(f, w)| Call::SetIrqs(f, w)),
        1 => i().prop_map(Call::Reset),
        1 => (i(), 0usize..16, any::<u32>()).prop_map(|(f, n, a)| Call::HotResetInfo(f, n, a)),
        1 => (i(), words()).prop_map(|(f, w)| Call::HotReset(f, w)),
        2 => (i(), num(), 0usize..9).prop_map(|(f, o, n)| Call::Read(f, o, n)),
        2 => (i(), num(), prop::collection::vec(any::<u8>(), 0..9)).prop_map(|(f, o, d)| Call::Write(f, o, d)),
        1 => (i(), num(), 0usize..0x3000, num(), 0usize..9, any::<bool>()).prop_map(|(f, o, l, at, n, w)| Call::Mmap(f, o, l, at, n, w)),
        2 => (i(), vaddr(), num(), small()).prop_map(|(f, v, s, fl)| Call::Register(f, v, s, fl)),
        1 => (i(), vaddr(), num(), small()).prop_map(|(f, v, s, fl)| Call::Unregister(f, v, s, fl)),
        2 => (i(), small(), num(), small(), small()).prop_map(|(f, sh, s, l, fl)| Call::TceCreate(f, sh, s, l, fl)),
        1 => (i(), num(), small()).prop_map(|(f, a, fl)| Call::TceRemove(f, a, fl)),
        3 => (i(), num(), vaddr(), num(), small()).prop_map(|(f, io, v, s, fl)| Call::SpaprMap(f, io, v, s, fl)),
        2 => (i(), num(), num(), small()).prop_map(|(f, io, s, fl)| Call::SpaprUnmap(f, io, s, fl)),
        1 => i().prop_map(Call::Enable),
        1 => i().prop_map(Call::Disable),
        1 => (i(), small()).prop_map(|(f, op)| Call::Eeh(f, op)),
        1 => (i(), any::<u32>()).prop_map(|(f, a)| Call::TceInfo(f, a)),
    ]
}

fn with_argsz(n: usize, argsz: u32) -> Vec<u64> {
    let mut b = vec![0u64; n.max(1)];
    b[0] = if cfg!(target_endian = "little") { argsz as u64 } else { (argsz as u64) << 32 };
    b.truncate(n);
    b
}

/// Runs one call on `b`; descriptors are picked from those opened so far
/// (and some that never were).
fn run(b: &dyn Backend, fds: &mut Vec<RawFd>, base: u64, c: &Call) {
    let fd = |i: &usize| fds.get(*i).copied().unwrap_or(1000 + *i as RawFd * 7);
    let va = |v: u64| if v & 1 == 1 { base + (v & !1) } else { v };
    match c {
        Call::Ready(g, kind) => {
            let (Ok(c), Ok(gf)) = (b.open_container(), b.open_group(*g)) else { return };
            fds.push(c);
            fds.push(gf);
            let _ = b.group_set_container(gf, c);
            let ext = match kind {
                0 => VFIO_TYPE1V2_IOMMU,
                1 => VFIO_SPAPR_TCE_V2_IOMMU,
                _ => VFIO_SPAPR_TCE_IOMMU,
            };
            if b.set_iommu(c, ext).is_err() {
                let _ = b.set_iommu(c, VFIO_TYPE1V2_IOMMU);
            }
            let _ = b.spapr(c).register_memory(base, 64 * 4096, 0);
            let _ = b.spapr(c).enable();
            fds.extend(b.group_get_device_fd(gf, &CString::new(EDU).unwrap()));
        }
        Call::OpenContainer => fds.extend(b.open_container()),
        Call::OpenGroup(g) => fds.extend(b.open_group(*g)),
        Call::Close(i) => b.close(fd(i)),
        Call::ApiVersion(i) => drop(b.get_api_version(fd(i))),
        Call::CheckExtension(i, e) => drop(b.check_extension(fd(i), *e)),
        Call::SetIommu(i, e) => drop(b.set_iommu(fd(i), if *e < 12 { *e } else { VFIO_TYPE1V2_IOMMU })),
        Call::IommuInfo(i, n, a) => drop(b.iommu_get_info(fd(i), &mut with_argsz(*n, *a))),
        Call::Map(i, argsz, flags, iova, v, size) => {
            let m = vfio_iommu_type1_dma_map { argsz: *argsz, flags: *flags, vaddr: va(*v), iova: *iova, size: *size };
            drop(b.map_dma(fd(i), &m));
        }
        Call::MapMany(i, v) => {
            let maps: Vec<_> = v
                .iter()
                .map(|&(iova, v, size)| vfio_iommu_type1_dma_map { argsz: 32, flags: 3, vaddr: va(v), iova, size })
                .collect();
            drop(b.map_dma_many(fd(i), &maps));
        }
        Call::Unmap(i, argsz, flags, iova, size) => {
            let mut u = vfio_iommu_type1_dma_unmap { argsz: *argsz, flags: *flags, iova: *iova, size: *size, data: [] };
            drop(b.unmap_dma(fd(i), &mut u));
        }
        Call::DirtyPages(i, w) => drop(b.iommu_dirty_pages(fd(i), w)),
        Call::GroupStatus(i) => drop(b.group_get_status(fd(i), &mut vfio_group_status { argsz: 8, flags: 0 })),
        Call::SetContainer(g, c) => drop(b.group_set_container(fd(g), fd(c))),
        Call::UnsetContainer(g) => drop(b.group_unset_container(fd(g))),
        Call::DeviceFd(g, n) => {
            let name = match n % 4 {
                0 => EDU.to_string(),
                1 => "0000:00:04.0".to_string(),
                2 => "0000:00:02.0".to_string(),
                _ => format!("junk{n}"),
            };
            fds.extend(b.group_get_device_fd(fd(g), &CString::new(name).unwrap()));
        }
        Call::DeviceInfo(i, n, a) => drop(b.device_get_info(fd(i), &mut with_argsz(*n, *a))),
        Call::RegionInfo(i, n, a, ix) => {
            let mut buf = with_argsz(*n, *a);
            if buf.len() > 1 {
                buf[1] = *ix as u64 | ((*ix as u64) << 32);
            }
            drop(b.device_get_region_info(fd(i), &mut buf));
        }
        Call::IrqInfo(i, ix, a) => {
            let mut info = vfio_irq_info { argsz: *a, flags: 0, index: *ix, count: 0 };
            drop(b.device_get_irq_info(fd(i), &mut info));
        }
        Call::SetIrqs(i, w) => drop(b.device_set_irqs(fd(i), w)),
        Call::Reset(i) => drop(b.device_reset(fd(i))),
        Call::HotResetInfo(i, n, a) => drop(b.device_get_pci_hot_reset_info(fd(i), &mut with_argsz(*n, *a))),
        Call::HotReset(i, w) => drop(b.device_pci_hot_reset(fd(i), w)),
        Call::Read(i, o, n) => drop(b.device_read(fd(i), *o, &mut vec![0u8; *n])),
        Call::Write(i, o, d) => drop(b.device_write(fd(i), *o, d)),
        Call::Mmap(i, o, l, at, n, w) => {
            if let Ok(m) = b.mmap(fd(i), *o, *l) {
                if *w {
                    drop(b.mmio_write(&m, *at, &vec![0xa5; *n]));
                } else {
                    drop(b.mmio_read(&m, *at, &mut vec![0; *n]));
                }
                b.munmap(&m);
            }
        }
        Call::Register(i, v, s, fl) => drop(b.spapr(fd(i)).register_memory(va(*v), *s, *fl)),
        Call::Unregister(i, v, s, fl) => drop(b.spapr(fd(i)).unregister_memory(va(*v), *s, *fl)),
        Call::TceCreate(i, sh, s, l, fl) => drop(b.spapr(fd(i)).tce_create(*sh, *s, *l, *fl)),
        Call::TceRemove(i, a, fl) => drop(b.spapr(fd(i)).tce_remove(*a, *fl)),
        Call::SpaprMap(i, io, v, s, fl) => drop(b.spapr(fd(i)).map_dma(*io, va(*v), *s, *fl)),
        Call::SpaprUnmap(i, io, s, fl) => drop(b.spapr(fd(i)).unmap_dma(*io, *s, *fl)),
        Call::Enable(i) => drop(b.spapr(fd(i)).enable()),
        Call::Disable(i) => drop(b.spapr(fd(i)).disable()),
        Call::Eeh(i, op) => drop(b.spapr(fd(i)).eeh_pe_op(*op)),
        Call::TceInfo(i, a) => drop(b.spapr(fd(i)).tce_get_info(*a)),
    }
}

fn hosts() -> [MockConfig; 2] {
    [MockConfig::default(), MockConfig::default().on_qemu_pseries()]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn random_call_sequences_through_the_rust_api_never_panic(pseries in any::<bool>(), calls in prop::collection::vec(call(), 1..60)) {
        let mem = HostMemory::new(64 * 4096).unwrap();
        let config = hosts()[pseries as usize].clone();
        let b: Arc<dyn Backend> = Arc::new(MockBackend::new(config));
        let mut fds = Vec::new();
        for (n, c) in calls.iter().enumerate() {
            let r = catch_unwind(AssertUnwindSafe(|| run(&*b, &mut fds, mem.addr(), c)));
            prop_assert!(r.is_ok(), "call {n} {c:?} panicked, after {:?}", &calls[..n]);
        }
        for fd in fds.into_iter().rev() {
            b.close(fd);
        }
    }
}
