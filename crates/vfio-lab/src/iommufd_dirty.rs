//! iommufd dirty tracking on the lab kernel and on the mock, compared step
//! by step. QEMU's VT-d has none (the edu's HW_INFO capabilities and a
//! dirty HWPT_ALLOC say so: [`emulated_iommu_cases`], in the iommufd suite), so the
//! positive path runs on IOMMUFD_TEST's selftest mock domain
//! ([`selftest_cases`], the `iommufd-selftest` suite). On 6.12 that needs a
//! guest without an IOMMU: behind VT-d the mock IOMMU never probes its mock
//! devices (6.12 __iommu_probe_device hands a device without a firmware
//! node to the first IOMMU registered without one), and MOCK_DOMAIN is
//! EINVAL, which the VT-d boot checks too (7.2 names the mock IOMMU in the
//! mock device's fwspec, so there it succeeds behind VT-d as well). The selftest mock domain (drivers/iommu/iommufd/selftest.c): IOMMU_TEST_CMD
//! creates a mock device bound to the iommufd and attached to an IOAS or
//! HWPT, and marks mapped pages dirty as a device's write would; the real
//! IOMMU_HWPT_SET_DIRTY_TRACKING and IOMMU_HWPT_GET_DIRTY_BITMAP then read
//! them back through iommufd's own code (io_pagetable.c, iova_bitmap.c).
//!
//! Pages are the mock domain's own (MOCK_IO_PAGE_SIZE, 2 KiB), mapped from
//! the start of its aperture (16 MiB), one CPU page per IOAS mapping
//! ([`map_by_page`]): 7.2's mock domain, on the generic page table, holds a
//! run of physically contiguous pages in entries as large as alignment
//! allows, and reads a contiguous entry's dirty state as one (one item
//! short, see vfio-core's `iommufd_selftest.rs`). iommufd maps each area
//! apart (pages.c batch_to_domain), so one page per area gives every
//! mapping the same entries (one 4 KiB entry of two 2 KiB items per page)
//! whatever the physical layout; the mock, which cannot see that layout,
//! takes no two pages as contiguous.

use std::sync::Arc;

use vfio_core::backend::RawFd;
use vfio_core::backend::SysResult;
use vfio_core::uapi::iommufd::*;
use vfio_core::uapi::iommufd_test::*;
use vfio_core::Iommufd;

use crate::case::{Abort, Case, CaseResult, Ctx};
use crate::iommufd::{destroy, map, need_ioas, open_iommufd, ranges, sz, unmap, Aligned, RWF};

/// MOCK_IO_PAGE_SIZE and the mock domain's first IOVA.
const MP: u64 = 2048;
const AP: u64 = MOCK_APERTURE_START;
/// The guest's PAGE_SIZE (x86).
const CPU_PAGE: u64 = 4096;

/// `len` bytes of `buf` from `off` at `iova`, one IOAS_MAP per CPU page
/// (the module's header says why); the first error ends it.
fn map_by_page(ctx: &mut Ctx, fd: RawFd, ioas: u32, buf: &Aligned, off: u64, iova: u64, len: u64) -> SysResult<()> {
    let mut done = 0;
    while done < len {
        let n = (len - done).min(CPU_PAGE);
        map(ctx, fd, ioas, buf, off + done, iova + done, n, RWF)?;
        done += n;
    }
    Ok(())
}

fn flags_text(flags: u32) -> String {
    match flags {
        0 => "none".into(),
        MOCK_FLAGS_DEVICE_NO_DIRTY => "no-dirty".into(),
        f => format!("{f:#x}"),
    }
}

/// IOMMU_TEST_OP_MOCK_DOMAIN_FLAGS on `pt`: (selftest object, HWPT, device) ids.
fn mock_domain(ctx: &mut Ctx, fd: RawFd, pt: u32, flags: u32) -> SysResult<(u32, u32, u32)> {
    let mut c = iommu_test_cmd::mock_domain(pt, flags);
    let r = ctx.backend.iommufd_test(fd, &mut c, &[]).map(|_| c.mock_domain_out());
    ctx.call_v(format!("TEST MOCK_DOMAIN pt={pt} flags={}", flags_text(flags)), r, |(s, h, d)| format!("stdev={s} hwpt={h} idev={d}"))
}

/// IOMMU_TEST_OP_DIRTY: marks the pages `bits` sets; records how many were.
fn mark(ctx: &mut Ctx, fd: RawFd, hwpt: u32, iova: u64, len: u64, page: u64, bits: u64) -> SysResult<u64> {
    let mut c = iommu_test_cmd::dirty(hwpt, iova, len, page, 0);
    let words = [bits];
    let r = ctx.backend.iommufd_test(fd, &mut c, &words).map(|_| c.dirty_out());
    ctx.call_v(format!("TEST DIRTY hwpt={hwpt} iova={iova:#x} len={len:#x} page={page:#x} bits={bits:#b}"), r, |n| format!("marked={n}"))
}

fn hwpt_alloc(ctx: &mut Ctx, fd: RawFd, dev: u32, pt: u32, flags: u32, label: &str) -> SysResult<u32> {
    let mut c = iommu_hwpt_alloc { size: sz::<iommu_hwpt_alloc>(), flags, dev_id: dev, pt_id: pt, ..Default::default() };
    let r = ctx.backend.hwpt_alloc(fd, &mut c).map(|_| c.out_hwpt_id);
    ctx.call_v(format!("HWPT_ALLOC {label} dev={dev} pt={pt} flags={flags:#x}"), r, |id| format!("id={id}"))
}

fn need_hwpt(ctx: &mut Ctx, fd: RawFd, dev: u32, pt: u32, flags: u32, label: &str) -> Result<u32, Abort> {
    let r = hwpt_alloc(ctx, fd, dev, pt, flags, label);
    ctx.need(r, "HWPT_ALLOC")
}

fn set_tracking(ctx: &mut Ctx, fd: RawFd, hwpt: u32, flags: u32, reserved: u32) -> SysResult<()> {
    let c = iommu_hwpt_set_dirty_tracking { size: sz::<iommu_hwpt_set_dirty_tracking>(), flags, hwpt_id: hwpt, __reserved: reserved };
    let r = ctx.backend.hwpt_set_dirty_tracking(fd, &c);
    let extra = if reserved != 0 { format!(" __reserved={reserved}") } else { String::new() };
    ctx.call(format!("HWPT_SET_DIRTY_TRACKING hwpt={hwpt} flags={flags:#x}{extra}"), r)
}

/// IOMMU_HWPT_GET_DIRTY_BITMAP into a bitmap that starts as `fill`
/// (the kernel only sets bits); records the words.
#[allow(clippy::too_many_arguments)]
fn read(ctx: &mut Ctx, fd: RawFd, hwpt: u32, iova: u64, len: u64, page: u64, flags: u32, fill: u64) -> SysResult<Vec<u64>> {
    let words = dirty_bitmap_words(len, page).unwrap_or(1).min(64) as usize;
    let mut bitmap = vec![fill; words];
    let mut c = iommu_hwpt_get_dirty_bitmap { size: sz::<iommu_hwpt_get_dirty_bitmap>(), hwpt_id: hwpt, flags, iova, length: len, page_size: page, ..Default::default() };
    let r = ctx.backend.hwpt_get_dirty_bitmap(fd, &mut c, &mut bitmap).map(|_| bitmap);
    let what = if flags == IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR { "no-clear".to_string() } else { format!("flags={flags:#x}") };
    let pre = if fill != 0 { format!(" into={fill:#x}") } else { String::new() };
    ctx.call_v(format!("HWPT_GET_DIRTY_BITMAP hwpt={hwpt} iova={iova:#x} len={len:#x} page={page:#x} {what}{pre}"), r, |w| {
        w.iter().map(|x| format!("{x:#b}")).collect::<Vec<_>>().join(",")
    })
}

/// An iommufd, an IOAS with `pages` mock pages mapped at the aperture's
/// start from a 2 MiB aligned buffer, and a mock device on it: (fd, ioas,
/// automatic HWPT, device id, buffer).
fn setup(ctx: &mut Ctx, pages: u64) -> Result<(RawFd, u32, u32, u32, Aligned), Abort> {
    let fd = open_iommufd(ctx)?;
    let ioas = need_ioas(ctx, fd)?;
    let buf = Aligned::new(64 * MP);
    let r = map_by_page(ctx, fd, ioas, &buf, 0, AP, pages * MP);
    ctx.need(r, "IOAS_MAP")?;
    let r = mock_domain(ctx, fd, ioas, 0);
    let (_, auto, idev) = ctx.need(r, "IOMMU_TEST_OP_MOCK_DOMAIN (needs CONFIG_IOMMUFD_TEST)")?;
    Ok((fd, ioas, auto, idev, buf))
}

/// A user HWPT with dirty tracking on the IOAS, tracking on.
fn tracked(ctx: &mut Ctx, pages: u64) -> Result<(RawFd, u32, u32, Aligned), Abort> {
    let (fd, ioas, _, idev, buf) = setup(ctx, pages)?;
    let hwpt = need_hwpt(ctx, fd, idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, "dirty")?;
    let r = set_tracking(ctx, fd, hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 0);
    ctx.need(r, "HWPT_SET_DIRTY_TRACKING")?;
    Ok((fd, ioas, hwpt, buf))
}

fn sys<T>(r: vfio_core::Result<T>) -> SysResult<T> {
    r.map_err(|e| vfio_core::backend::Errno(e.errno))
}

/// The edu behind QEMU's IOMMU, through the safe types: no dirty
/// capability, and a dirty HWPT is EOPNOTSUPP.
fn vtd_has_none(ctx: &mut Ctx) -> CaseResult {
    let backend = Arc::clone(&ctx.backend);
    let n = ctx.host.cdev_of("solo").ok_or_else(|| Abort("solo has no cdev".into()))?;
    let ictx = ctx.call("Iommufd::open", sys(Iommufd::open(backend.clone())));
    let ictx = ctx.need(ictx, "Iommufd::open")?;
    let ioas = ctx.call("Iommufd::alloc_ioas", sys(ictx.alloc_ioas()));
    let ioas = ctx.need(ioas, "alloc_ioas")?;
    let dev = ctx.call("CdevDevice::open solo", sys(vfio_core::CdevDevice::open(backend, n)));
    let mut dev = ctx.need(dev, "CdevDevice::open")?;
    let devid = ctx.call("CdevDevice::bind", sys(dev.bind(&ictx)));
    let devid = ctx.need(devid, "bind")?;
    let info = ctx.call("Iommufd::hw_info solo", sys(ictx.hw_info(devid)));
    let info = ctx.need(info, "hw_info")?;
    ctx.observe("HwInfo::dirty_tracking solo", info.dirty_tracking().to_string());
    let r = ictx.alloc_hwpt(devid, &ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING).map(|h| h.id());
    ctx.observe("Iommufd::alloc_hwpt solo dirty", r.map_or_else(|e| e.code().to_string(), |id| format!("id={id}")));
    let plain = ctx.call("Iommufd::alloc_hwpt solo plain", sys(ictx.alloc_hwpt(devid, &ioas, 0)));
    let plain = ctx.need(plain, "alloc_hwpt")?;
    ctx.observe("Hwpt::set_dirty_tracking plain", plain.set_dirty_tracking(true).map_or_else(|e| e.code().to_string(), |_| "ok".into()));
    ctx.observe("Hwpt::dirty_bitmap plain", plain.dirty_bitmap(0x10_0000, 0x1000, 0x1000, true).map_or_else(|e| e.code().to_string(), |_| "ok".into()));
    Ok(())
}

fn mock_devices(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let ioas = need_ioas(ctx, fd)?;
    let _ = mock_domain(ctx, fd, ioas, 1 << 7); // unknown device flag
    let _ = mock_domain(ctx, fd, 99, 0); // no such object
    let r = mock_domain(ctx, fd, ioas, 0);
    let (stdev, auto, idev) = ctx.need(r, "MOCK_DOMAIN")?;
    let _ = ranges(ctx, fd, ioas, 4); // the mock aperture and its 2 KiB alignment
    for (id, label) in [(idev, "mock"), (99, "nothing")] {
        let mut data = [0u64; 4];
        let mut c = iommu_hw_info { size: sz::<iommu_hw_info>(), dev_id: id, ..Default::default() };
        let r = ctx.backend.iommu_get_hw_info(fd, &mut c, &mut data);
        let _ = ctx.call_v(format!("GET_HW_INFO {label}"), r, |_| {
            format!("type={:#x} len={} caps={:#x} data={:#x}", c.out_data_type, c.data_len, c.out_capabilities, data[0])
        });
    }
    let r = mock_domain(ctx, fd, ioas, MOCK_FLAGS_DEVICE_NO_DIRTY); // shares the automatic HWPT
    if let Ok((_, _, plain)) = r {
        let mut data = [0u64; 4];
        let mut c = iommu_hw_info { size: sz::<iommu_hw_info>(), dev_id: plain, ..Default::default() };
        let r = ctx.backend.iommu_get_hw_info(fd, &mut c, &mut data);
        let _ = ctx.call_v("GET_HW_INFO no-dirty mock", r, |_| format!("caps={:#x}", c.out_capabilities));
    }
    let _ = destroy(ctx, fd, idev); // held by its selftest object
    let _ = destroy(ctx, fd, auto); // in use
    let _ = destroy(ctx, fd, stdev);
    let _ = mock_domain(ctx, fd, ioas, 0); // takes the freed ids
    Ok(())
}

fn alloc_and_attach(ctx: &mut Ctx) -> CaseResult {
    let (fd, ioas, auto, idev, _buf) = setup(ctx, 4)?;
    let r = mock_domain(ctx, fd, ioas, MOCK_FLAGS_DEVICE_NO_DIRTY);
    let (_, _, plain_dev) = ctx.need(r, "MOCK_DOMAIN no-dirty")?;
    let _ = hwpt_alloc(ctx, fd, plain_dev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, "dirty for a no-dirty device");
    let dirty = need_hwpt(ctx, fd, idev, ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING, "dirty")?;
    let _ = mock_domain(ctx, fd, dirty, MOCK_FLAGS_DEVICE_NO_DIRTY); // cannot attach
    let _ = mock_domain(ctx, fd, dirty, 0);
    let plain = need_hwpt(ctx, fd, idev, ioas, 0, "plain")?;
    let _ = set_tracking(ctx, fd, plain, IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 0);
    let _ = set_tracking(ctx, fd, auto, IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 0);
    let _ = set_tracking(ctx, fd, ioas, IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 0);
    let _ = set_tracking(ctx, fd, dirty, 2, 0);
    let _ = set_tracking(ctx, fd, dirty, IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 7); // __reserved unchecked
    let _ = set_tracking(ctx, fd, dirty, 0, 0);
    let _ = set_tracking(ctx, fd, dirty, 0, 0); // off twice
    Ok(())
}

fn read_and_clear(ctx: &mut Ctx) -> CaseResult {
    let (fd, _ioas, hwpt, _buf) = tracked(ctx, 16)?;
    let _ = mark(ctx, fd, hwpt, AP, 16 * MP, MP, 0b1001_0000_0010_0110);
    let _ = read(ctx, fd, hwpt, AP, 16 * MP, MP, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 0);
    let _ = read(ctx, fd, hwpt, AP, 16 * MP, 4096, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 0);
    let _ = read(ctx, fd, hwpt, AP, 16 * MP, 1024, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 0);
    let _ = read(ctx, fd, hwpt, AP + 4 * MP, 8 * MP, MP, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 0);
    let _ = read(ctx, fd, hwpt, AP, 16 * MP, MP, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 0xf_0000); // OR-ed in
    let _ = read(ctx, fd, hwpt, AP, 8 * MP, MP, 0, 0); // clears the first half
    let _ = read(ctx, fd, hwpt, AP, 16 * MP, MP, 0, 0);
    let _ = read(ctx, fd, hwpt, AP, 16 * MP, MP, 0, 0); // nothing left
    let _ = read(ctx, fd, hwpt, AP, 16 * MP, 1 << 20, 0, 0); // page larger than the range: EINVAL
    let _ = mark(ctx, fd, hwpt, AP, 4 * MP, MP, 0b1111);
    let _ = read(ctx, fd, hwpt, AP, 0x6000, 0x1800, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 0); // counts as 2 KiB pages
    let _ = read(ctx, fd, hwpt, AP, 4 * MP, 0x3000, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 0); // mask fails
    Ok(())
}

fn ranges_and_errors(ctx: &mut Ctx) -> CaseResult {
    let (fd, ioas, hwpt, _buf) = tracked(ctx, 4)?;
    let _ = read(ctx, fd, hwpt, AP + 1024, 2 * MP, 1024, 0, 0); // off the IOAS's 2 KiB alignment
    let _ = read(ctx, fd, hwpt, AP, 3 * MP, 4096, 0, 0); // end off page_size
    let _ = read(ctx, fd, hwpt, AP, 4 * MP, 0, 0, 0);
    let _ = read(ctx, fd, hwpt, u64::MAX - MP + 1, 2 * MP, MP, 0, 0); // wraps
    let _ = read(ctx, fd, hwpt, AP, 4 * MP, MP, 2, 0); // unknown flag
    let _ = read(ctx, fd, 99, AP, 4 * MP, MP, 0, 0);
    let _ = read(ctx, fd, ioas, AP, 4 * MP, MP, 0, 0); // an IOAS is no HWPT
    let mut c = iommu_hwpt_get_dirty_bitmap { size: sz::<iommu_hwpt_get_dirty_bitmap>(), hwpt_id: hwpt, __reserved: 1, iova: AP, length: 4 * MP, page_size: MP, ..Default::default() };
    let mut bm = [0u64; 1];
    let r = ctx.backend.hwpt_get_dirty_bitmap(fd, &mut c, &mut bm);
    let _ = ctx.call("HWPT_GET_DIRTY_BITMAP __reserved=1", r);
    let mut c = iommu_hwpt_get_dirty_bitmap { size: 40, hwpt_id: hwpt, iova: AP, length: 4 * MP, page_size: MP, ..Default::default() };
    let r = ctx.backend.hwpt_get_dirty_bitmap(fd, &mut c, &mut bm);
    let _ = ctx.call("HWPT_GET_DIRTY_BITMAP size=40", r);
    // A HWPT without dirty tracking: the range is checked first.
    let r = mock_domain(ctx, fd, ioas, 0);
    let (_, auto, _) = ctx.need(r, "MOCK_DOMAIN")?;
    let _ = read(ctx, fd, auto, AP + 1024, 2 * MP, 1024, 0, 0);
    let _ = read(ctx, fd, auto, AP, 4 * MP, MP, 0, 0);
    // Marking: its own range rules, then the HWPT, then tracking.
    let _ = mark(ctx, fd, hwpt, AP, MP, 0, 1);
    let _ = mark(ctx, fd, hwpt, AP + 1, MP, MP, 1);
    let _ = mark(ctx, fd, 99, AP, MP, MP, 1);
    let _ = mark(ctx, fd, ioas, AP, MP, MP, 1);
    let _ = mark(ctx, fd, auto, AP, MP, MP, 1); // the automatic domain has no dirty ops
    Ok(())
}

fn tracking_over_time(ctx: &mut Ctx) -> CaseResult {
    let (fd, ioas, hwpt, buf) = tracked(ctx, 8)?;
    let _ = mark(ctx, fd, hwpt, AP, 16 * MP, MP, 0b1_0000_0000_0101); // the third is past the mapping
    let _ = mark(ctx, fd, hwpt, AP, 4 * 4096, 4096, 0b1111); // entry index iova / 4096
    let _ = set_tracking(ctx, fd, hwpt, 0, 0);
    let _ = mark(ctx, fd, hwpt, AP, 8 * MP, MP, 0b1); // tracking off
    let _ = read(ctx, fd, hwpt, AP, 8 * MP, MP, 0, 0); // 6.12: answers 0, reports nothing; 7.2 reports and clears
    let _ = set_tracking(ctx, fd, hwpt, IOMMU_HWPT_DIRTY_TRACKING_ENABLE, 0); // a clean snapshot
    let _ = read(ctx, fd, hwpt, AP, 8 * MP, MP, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 0);
    // A hole: pages 4 and 5 unmapped.
    let _ = unmap(ctx, fd, ioas, AP, 8 * MP);
    let _ = map_by_page(ctx, fd, ioas, &buf, 0, AP, 4 * MP);
    let _ = map_by_page(ctx, fd, ioas, &buf, 6 * MP, AP + 6 * MP, 2 * MP);
    let _ = mark(ctx, fd, hwpt, AP, 8 * MP, MP, 0b1100_0011);
    let _ = read(ctx, fd, hwpt, AP, 8 * MP, MP, 0, 0); // stops at the hole, answers 0
    let _ = read(ctx, fd, hwpt, AP + 4 * MP, 4 * MP, MP, 0, 0); // starts in it
    let _ = read(ctx, fd, hwpt, AP + 6 * MP, 2 * MP, MP, IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR, 0);
    let _ = read(ctx, fd, hwpt, AP, 4 * MP, MP, 0, 0); // cleared by the first read
    // Unmapped and mapped again: clean.
    let _ = unmap(ctx, fd, ioas, AP + 6 * MP, 2 * MP);
    let _ = map_by_page(ctx, fd, ioas, &buf, 6 * MP, AP + 6 * MP, 2 * MP);
    let _ = read(ctx, fd, hwpt, AP + 6 * MP, 2 * MP, MP, 0, 0);
    let _ = destroy(ctx, fd, hwpt);
    Ok(())
}

/// Through the safe types: a dirty HWPT read back as a DirtyBitmap.
fn safe_types(ctx: &mut Ctx) -> CaseResult {
    // The buffer outlives the iommufd that maps it.
    let buf = Aligned::new(16 * MP);
    let backend = Arc::clone(&ctx.backend);
    let ictx = Iommufd::open(backend).map_err(|e| Abort(e.to_string()))?;
    let ioas = ictx.alloc_ioas().map_err(|e| Abort(e.to_string()))?;
    for page in (0..16 * MP).step_by(CPU_PAGE as usize) {
        ioas.map(Some(AP + page), buf.addr() + page, CPU_PAGE, vfio_core::dma_flags::READ_WRITE).map_err(|e| Abort(e.to_string()))?;
    }
    let r = mock_domain(ctx, ictx.raw_fd(), ioas.id(), 0);
    let (_, _, idev) = ctx.need(r, "MOCK_DOMAIN")?;
    let info = ictx.hw_info(idev).map_err(|e| Abort(e.to_string()))?;
    ctx.observe("HwInfo::dirty_tracking mock", info.dirty_tracking().to_string());
    let hwpt = ictx.alloc_hwpt(idev, &ioas, IOMMU_HWPT_ALLOC_DIRTY_TRACKING).map_err(|e| Abort(e.to_string()))?;
    let show = |r: vfio_core::Result<vfio_core::DirtyBitmap>| match r {
        Ok(b) => format!("{} dirty: {}", b.dirty_count(), b.dirty_pages().map(|i| format!("{i:#x}")).collect::<Vec<_>>().join(",")),
        Err(e) => e.code().to_string(),
    };
    ctx.observe("Hwpt::dirty_bitmap before tracking", show(hwpt.dirty_bitmap(AP, 16 * MP, MP, true)));
    ctx.observe("Hwpt::set_dirty_tracking on", hwpt.set_dirty_tracking(true).map_or_else(|e| e.code().to_string(), |_| "ok".into()));
    let _ = mark(ctx, ictx.raw_fd(), hwpt.id(), AP, 16 * MP, MP, 0b1000_0000_0001_0001);
    ctx.observe("Hwpt::dirty_bitmap 2K no-clear", show(hwpt.dirty_bitmap(AP, 16 * MP, MP, false)));
    ctx.observe("Hwpt::dirty_bitmap 4K", show(hwpt.dirty_bitmap(AP, 16 * MP, 4096, true)));
    ctx.observe("Hwpt::dirty_bitmap again", show(hwpt.dirty_bitmap(AP, 16 * MP, 4096, true)));
    ctx.observe("Hwpt::dirty_bitmap unaligned", show(hwpt.dirty_bitmap(AP + 1024, 4 * MP, 1024, true)));
    Ok(())
}

/// On 6.12, behind VT-d a mock device gets no IOMMU, whatever it is
/// attached to (MOCK_DOMAIN is EINVAL); behind virtio-iommu, which has a
/// firmware node, the selftest IOMMU gets it. On 7.2 it gets it behind
/// both (iommu_mock_device_add names the mock IOMMU in its fwspec).
fn mock_devices_beside_the_host_iommu(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let ioas = need_ioas(ctx, fd)?;
    let _ = mock_domain(ctx, fd, ioas, 1 << 7); // mock_dev_create checks its flags first
    let _ = mock_domain(ctx, fd, ioas, 0);
    let _ = mock_domain(ctx, fd, ioas, MOCK_FLAGS_DEVICE_NO_DIRTY);
    let _ = need_ioas(ctx, fd)?; // the lowest free id: what the failed ones left
    Ok(())
}

/// The cases for the guests behind QEMU's IOMMUs (the iommufd suite).
pub fn emulated_iommu_cases() -> Vec<Case> {
    vec![
        Case { name: "iommufd dirty: the edu's emulated IOMMU has no dirty tracking", run: vtd_has_none },
        Case { name: "iommufd dirty: a selftest mock device gets the selftest IOMMU behind virtio-iommu, and behind VT-d from 7.2 on", run: mock_devices_beside_the_host_iommu },
    ]
}

/// The cases for a guest without an IOMMU, where IOMMUFD_TEST's mock IOMMU
/// probes its mock devices (the iommufd-selftest suite).
pub fn selftest_cases() -> Vec<Case> {
    vec![
        Case { name: "iommufd dirty: selftest mock devices, their ids, HW_INFO and aperture", run: mock_devices },
        Case { name: "iommufd dirty: who may allocate, attach to and switch a dirty HWPT", run: alloc_and_attach },
        Case { name: "iommufd dirty: marked pages read back at any page size, cleared unless NO_CLEAR", run: read_and_clear },
        Case { name: "iommufd dirty: bitmap and marking ranges, flags and objects refused", run: ranges_and_errors },
        Case { name: "iommufd dirty: tracking off and on, holes and remaps", run: tracking_over_time },
        Case { name: "iommufd dirty: a DirtyBitmap through the safe types", run: safe_types },
    ]
}
