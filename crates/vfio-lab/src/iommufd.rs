//! The iommufd conformance suite: /dev/iommu and the VFIO device cdev,
//! each rule of drivers/iommu/iommufd (6.12: ioas.c, io_pagetable.c,
//! main.c, device.c, hw_pagetable.c) and drivers/vfio/device_cdev.c, on the
//! lab kernel and on vfio-core's mock iommufd profile, compared step by step.
//!
//! Roles are the x86 lab topology's (`solo`, `mf-0`/`mf-1` sharing a group,
//! `blocked` in a group a host driver holds). Host buffers are taken 2 MiB
//! aligned so that the IOVA iopt_alloc_iova chooses (it keeps the buffer's
//! alignment) is the same in both runs.

use std::mem::size_of;
use std::sync::Arc;

use vfio_core::backend::{Errno, RawFd, SysResult};
use vfio_core::uapi::iommufd::*;
use vfio_core::uapi::VFIO_PCI_BAR0_REGION_INDEX;
use vfio_core::{BatchFlags, CdevDevice, Iommufd};

use crate::case::{Abort, Case, CaseResult, Ctx};
use crate::edu::*;
use crate::x86::util::{HostBuf, RW};

pub(crate) const PAGE: u64 = 4096;
const IOVA: u64 = 0x10_0000;
/// The x86 MSI window every device reserves (IOMMU_RESV_MSI under VT-d).
const MSI: u64 = 0xfee0_0000;

pub(crate) fn sz<T>() -> u32 {
    size_of::<T>() as u32
}

/// A host buffer of `len` bytes whose address is 2 MiB aligned.
pub(crate) struct Aligned {
    buf: HostBuf,
    off: u64,
}

impl Aligned {
    pub(crate) fn new(len: u64) -> Self {
        let buf = HostBuf::new((len + (2 << 20)) as usize);
        let off = (2u64 << 20).wrapping_sub(buf.addr()) & ((2 << 20) - 1);
        Self { buf, off }
    }
    pub(crate) fn addr(&self) -> u64 {
        self.buf.addr() + self.off
    }
}

pub(crate) fn open_iommufd(ctx: &mut Ctx) -> Result<RawFd, Abort> {
    let r = ctx.backend.open_iommufd();
    let r = ctx.call("open /dev/iommu", r);
    let fd = ctx.need(r, "open /dev/iommu")?;
    ctx.adopt(fd);
    Ok(fd)
}

pub(crate) fn open_cdev(ctx: &mut Ctx, role: &str) -> Result<RawFd, Abort> {
    let n = ctx.host.cdev_of(role).ok_or_else(|| Abort(format!("{role} has no vfio-dev/vfioN (not bound to vfio-pci?)")))?;
    let r = ctx.backend.open_device_cdev(n);
    let r = ctx.call(format!("open cdev of {role}"), r);
    let fd = ctx.need(r, "open the device cdev")?;
    ctx.adopt(fd);
    Ok(fd)
}

pub(crate) fn ioas_alloc(ctx: &mut Ctx, fd: RawFd) -> SysResult<u32> {
    let mut c = iommu_ioas_alloc { size: sz::<iommu_ioas_alloc>(), ..Default::default() };
    let r = ctx.backend.ioas_alloc(fd, &mut c).map(|_| c.out_ioas_id);
    ctx.call_v("IOAS_ALLOC", r, |id| format!("id={id}"))
}

pub(crate) fn need_ioas(ctx: &mut Ctx, fd: RawFd) -> Result<u32, Abort> {
    let r = ioas_alloc(ctx, fd);
    ctx.need(r, "IOAS_ALLOC")
}

pub(crate) fn destroy(ctx: &mut Ctx, fd: RawFd, id: u32) -> SysResult<()> {
    let r = ctx.backend.iommu_destroy(fd, &iommu_destroy { size: sz::<iommu_destroy>(), id });
    ctx.call(format!("DESTROY {id}"), r)
}

fn prot_text(flags: u32) -> String {
    let mut s = String::new();
    if flags & IOMMU_IOAS_MAP_READABLE != 0 {
        s.push('R');
    }
    if flags & IOMMU_IOAS_MAP_WRITEABLE != 0 {
        s.push('W');
    }
    if flags & IOMMU_IOAS_MAP_FIXED_IOVA != 0 {
        s.push_str("+fixed");
    }
    let rest = flags & !7;
    if rest != 0 {
        s.push_str(&format!("+{rest:#x}"));
    }
    s
}

pub(crate) const RWF: u32 = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
pub(crate) const RWA: u32 = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;

/// IOMMU_IOAS_MAP of `len` bytes at `buf + off`; records the IOVA the kernel answers.
#[allow(clippy::too_many_arguments)]
pub(crate) fn map(ctx: &mut Ctx, fd: RawFd, ioas: u32, buf: &Aligned, off: u64, iova: u64, len: u64, flags: u32) -> SysResult<u64> {
    let mut c = iommu_ioas_map {
        size: sz::<iommu_ioas_map>(),
        flags,
        ioas_id: ioas,
        __reserved: 0,
        user_va: buf.addr().wrapping_add(off),
        length: len,
        iova,
    };
    let r = ctx.backend.ioas_map(fd, &mut c).map(|_| c.iova);
    let label = if flags & IOMMU_IOAS_MAP_FIXED_IOVA != 0 {
        format!("IOAS_MAP iova={iova:#x} len={len:#x} flags={} va=buf+{off:#x}", prot_text(flags))
    } else {
        format!("IOAS_MAP len={len:#x} flags={} va=buf+{off:#x}", prot_text(flags))
    };
    ctx.call_v(label, r, |i| format!("iova={i:#x}"))
}

pub(crate) fn unmap(ctx: &mut Ctx, fd: RawFd, ioas: u32, iova: u64, len: u64) -> SysResult<u64> {
    let mut c = iommu_ioas_unmap { size: sz::<iommu_ioas_unmap>(), ioas_id: ioas, iova, length: len };
    let r = ctx.backend.ioas_unmap(fd, &mut c).map(|_| c.length);
    ctx.call_v(format!("IOAS_UNMAP iova={iova:#x} len={len:#x}"), r, |n| format!("unmapped={n:#x}"))
}

pub(crate) fn ranges(ctx: &mut Ctx, fd: RawFd, ioas: u32, room: usize) -> SysResult<()> {
    let mut c = iommu_ioas_iova_ranges { size: sz::<iommu_ioas_iova_ranges>(), ioas_id: ioas, ..Default::default() };
    let mut buf = vec![iommu_iova_range::default(); room];
    let r = ctx.backend.ioas_iova_ranges(fd, &mut c, &mut buf);
    // The count and alignment are written on EMSGSIZE too.
    let shown = buf.iter().take((c.num_iovas as usize).min(room)).map(|r| format!("{:#x}-{:#x}", r.start, r.last)).collect::<Vec<_>>().join(",");
    let value = format!("n={} align={:#x} [{shown}]", c.num_iovas, c.out_iova_alignment);
    let r2 = ctx.call_v(format!("IOAS_IOVA_RANGES room={room}"), r, |_| value.clone());
    if matches!(r2, Err(Errno(libc::EMSGSIZE))) {
        ctx.observe("IOAS_IOVA_RANGES count on EMSGSIZE", value);
    }
    r2
}

fn allow(ctx: &mut Ctx, fd: RawFd, ioas: u32, list: &[(u64, u64)]) -> SysResult<()> {
    let raw: Vec<iommu_iova_range> = list.iter().map(|&(start, last)| iommu_iova_range { start, last }).collect();
    let mut c = iommu_ioas_allow_iovas { size: sz::<iommu_ioas_allow_iovas>(), ioas_id: ioas, ..Default::default() };
    let r = ctx.backend.ioas_allow_iovas(fd, &mut c, &raw);
    let shown = list.iter().map(|(s, l)| format!("{s:#x}-{l:#x}")).collect::<Vec<_>>().join(",");
    ctx.call(format!("IOAS_ALLOW_IOVAS [{shown}]"), r)
}

pub(crate) fn bind(ctx: &mut Ctx, dev: RawFd, ictx: RawFd, label: &str) -> SysResult<u32> {
    let mut c = vfio_device_bind_iommufd { argsz: sz::<vfio_device_bind_iommufd>(), flags: 0, iommufd: ictx, out_devid: 0 };
    let r = ctx.backend.device_bind_iommufd(dev, &mut c).map(|_| c.out_devid);
    ctx.call_v(format!("BIND_IOMMUFD {label}"), r, |id| format!("devid={id}"))
}

pub(crate) fn attach(ctx: &mut Ctx, dev: RawFd, pt: u32, label: &str) -> SysResult<u32> {
    let mut c = vfio_device_attach_iommufd_pt { argsz: sz::<vfio_device_attach_iommufd_pt>(), flags: 0, pt_id: pt };
    let r = ctx.backend.device_attach_iommufd_pt(dev, &mut c).map(|_| c.pt_id);
    ctx.call_v(format!("ATTACH_IOMMUFD_PT {label} pt={pt}"), r, |id| format!("pt={id}"))
}

pub(crate) fn detach(ctx: &mut Ctx, dev: RawFd, label: &str) -> SysResult<()> {
    let r = ctx.backend.device_detach_iommufd_pt(dev, &vfio_device_detach_iommufd_pt { argsz: 8, flags: 0 });
    ctx.call(format!("DETACH_IOMMUFD_PT {label}"), r)
}

fn option(ctx: &mut Ctx, fd: RawFd, id: u32, op: u16, object: u32, val: u64) -> SysResult<u64> {
    let mut c = iommu_option { size: sz::<iommu_option>(), option_id: id, op, __reserved: 0, object_id: object, val64: val };
    let r = ctx.backend.iommu_option(fd, &mut c).map(|_| c.val64);
    let what = if op == IOMMU_OPTION_OP_GET { "get".to_string() } else { format!("set {val}") };
    ctx.call_v(format!("OPTION {id} {what} object={object}"), r, |v| format!("val={v}"))
}

fn objects(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let a = need_ioas(ctx, fd)?;
    let _ = ioas_alloc(ctx, fd);
    let _ = destroy(ctx, fd, a);
    let _ = ioas_alloc(ctx, fd); // takes the freed id
    let _ = destroy(ctx, fd, 99);
    let mut c = iommu_ioas_alloc { size: sz::<iommu_ioas_alloc>(), flags: 1, out_ioas_id: 0 };
    let r = ctx.backend.ioas_alloc(fd, &mut c);
    let _ = ctx.call("IOAS_ALLOC flags=1", r);
    let mut c = iommu_ioas_alloc { size: 8, flags: 0, out_ioas_id: 0 };
    let r = ctx.backend.ioas_alloc(fd, &mut c);
    let _ = ctx.call("IOAS_ALLOC size=8", r);
    Ok(())
}

fn map_rules(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let ioas = need_ioas(ctx, fd)?;
    let buf = Aligned::new(16 * PAGE);
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 1, 3, RWF); // no domain: byte granular
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 4 * PAGE, 4 * PAGE, RWF);
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 6 * PAGE, 4 * PAGE, RWF); // overlaps
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 8 * PAGE, PAGE, RWF); // just after: fine
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 16 * PAGE, PAGE, IOMMU_IOAS_MAP_FIXED_IOVA); // neither R nor W
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 16 * PAGE, PAGE, RWF | 0x8); // unknown flag
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 16 * PAGE, 0, RWF); // zero length
    let _ = map(ctx, fd, ioas, &buf, 0, u64::MAX, PAGE, RWF); // iova U64_MAX
    let _ = map(ctx, fd, ioas, &buf, 0, u64::MAX - PAGE + 1, 2 * PAGE, RWF); // wraps
    let _ = map(ctx, fd, 99, &buf, 0, IOVA, PAGE, RWF); // no such IOAS
    let mut c = iommu_ioas_map { size: 32, flags: RWF, ioas_id: ioas, user_va: buf.addr(), length: PAGE, iova: IOVA + 20 * PAGE, __reserved: 0 };
    let r = ctx.backend.ioas_map(fd, &mut c);
    let _ = ctx.call("IOAS_MAP size=32", r);
    let mut c = iommu_ioas_map { size: 40, flags: RWF, ioas_id: ioas, user_va: buf.addr(), length: PAGE, iova: IOVA + 20 * PAGE, __reserved: 1 };
    let r = ctx.backend.ioas_map(fd, &mut c);
    let _ = ctx.call("IOAS_MAP __reserved=1", r);
    Ok(())
}

fn chosen_iovas(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let ioas = need_ioas(ctx, fd)?;
    let buf = Aligned::new(64 * PAGE);
    let _ = map(ctx, fd, ioas, &buf, 0, 0, 16 * PAGE, RWA);
    let _ = map(ctx, fd, ioas, &buf, 0, 0, PAGE, RWA);
    let _ = map(ctx, fd, ioas, &buf, 0x123, 0, 0x10, RWA); // the page offset is kept
    let _ = allow(ctx, fd, ioas, &[(0x4000_0000, 0x4fff_ffff)]);
    let _ = map(ctx, fd, ioas, &buf, 0, 0, 4 * PAGE, RWA);
    let _ = allow(ctx, fd, ioas, &[(0x10, 0x10)]); // start >= last
    let _ = allow(ctx, fd, ioas, &[(0x1000, 0x1fff), (0x1800, 0x2fff)]); // overlap
    let _ = allow(ctx, fd, ioas, &[]);
    let _ = map(ctx, fd, ioas, &buf, 0, 0, 8 * PAGE, RWA);
    Ok(())
}

fn unmap_rules(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let ioas = need_ioas(ctx, fd)?;
    let buf = Aligned::new(16 * PAGE);
    let _ = unmap(ctx, fd, ioas, IOVA, PAGE); // nothing there
    let _ = unmap(ctx, fd, ioas, 0, u64::MAX); // all of nothing
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA, 2 * PAGE, RWF);
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 2 * PAGE, 2 * PAGE, RWF);
    let _ = unmap(ctx, fd, ioas, IOVA, PAGE); // half of the first
    let _ = unmap(ctx, fd, ioas, IOVA, 3 * PAGE); // first whole, second cut
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA, 2 * PAGE, RWF); // the first is gone
    let _ = unmap(ctx, fd, ioas, IOVA, 4 * PAGE); // both whole
    let _ = unmap(ctx, fd, ioas, IOVA, 0);
    let _ = unmap(ctx, fd, ioas, u64::MAX - PAGE + 1, 2 * PAGE);
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA, PAGE, RWF);
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 8 * PAGE, PAGE, RWF);
    let _ = unmap(ctx, fd, ioas, 0, u64::MAX);
    Ok(())
}

fn copy(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let src = need_ioas(ctx, fd)?;
    let dst = need_ioas(ctx, fd)?;
    let buf = Aligned::new(16 * PAGE);
    let _ = map(ctx, fd, src, &buf, 0, IOVA, PAGE, RWF);
    let _ = map(ctx, fd, src, &buf, 8 * PAGE, IOVA + PAGE, PAGE, RWF);
    for (src_iova, len, dst_iova, flags) in [
        (IOVA, 2 * PAGE, 0x50_0000, RWF),
        (IOVA, 3 * PAGE, 0x60_0000, RWF),     // a hole in the source
        (IOVA, PAGE, 0, RWA),                 // the kernel chooses
        (IOVA, PAGE, 0x70_0000, IOMMU_IOAS_MAP_FIXED_IOVA), // no R/W
        (IOVA, 0, 0x70_0000, RWF),
    ] {
        let mut c = iommu_ioas_copy { size: sz::<iommu_ioas_copy>(), flags, dst_ioas_id: dst, src_ioas_id: src, length: len, dst_iova, src_iova };
        let r = ctx.backend.ioas_copy(fd, &mut c).map(|_| c.dst_iova);
        let _ = ctx.call_v(format!("IOAS_COPY src={src_iova:#x} len={len:#x} dst={dst_iova:#x} flags={}", prot_text(flags)), r, |i| format!("iova={i:#x}"));
    }
    let _ = unmap(ctx, fd, dst, 0x50_0000, PAGE); // one area per source piece
    let _ = unmap(ctx, fd, dst, 0, u64::MAX);
    Ok(())
}

fn attach_and_ranges(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let ioas = need_ioas(ctx, fd)?;
    let _ = ranges(ctx, fd, ioas, 8);
    let dev = open_cdev(ctx, "solo")?;
    let r = bind(ctx, dev, fd, "solo");
    ctx.need(r, "BIND_IOMMUFD")?;
    let r = attach(ctx, dev, ioas, "solo");
    let hwpt = ctx.need(r, "ATTACH_IOMMUFD_PT")?;
    let _ = ranges(ctx, fd, ioas, 8);
    let _ = ranges(ctx, fd, ioas, 1);
    let buf = Aligned::new(4 * PAGE);
    let _ = map(ctx, fd, ioas, &buf, 0, MSI, PAGE, RWF); // the MSI window
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 0x800, PAGE, RWF); // below the page alignment
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA, 0x800, RWF);
    let _ = map(ctx, fd, ioas, &buf, 0, 1 << 39, PAGE, RWF); // past a 39-bit aperture
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA, PAGE, RWF);
    let _ = destroy(ctx, fd, ioas);
    let _ = destroy(ctx, fd, hwpt);
    let _ = attach(ctx, dev, ioas, "solo again"); // the same IOAS: the same HWPT
    let _ = detach(ctx, dev, "solo");
    let _ = ranges(ctx, fd, ioas, 8);
    let _ = detach(ctx, dev, "solo again"); // not attached: fine
    let _ = destroy(ctx, fd, hwpt); // went with its last device
    Ok(())
}

fn attach_conflicts(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let a = need_ioas(ctx, fd)?;
    let buf = Aligned::new(4 * PAGE);
    let _ = map(ctx, fd, a, &buf, 0, MSI, PAGE, RWF);
    let dev = open_cdev(ctx, "solo")?;
    let r = bind(ctx, dev, fd, "solo");
    let devid = ctx.need(r, "BIND_IOMMUFD")?;
    let _ = attach(ctx, dev, a, "solo over a mapped MSI window");
    let _ = unmap(ctx, fd, a, MSI, PAGE);
    let _ = map(ctx, fd, a, &buf, 0, IOVA, 0x800, RWF);
    let _ = attach(ctx, dev, a, "solo over an unaligned mapping");
    let _ = attach(ctx, dev, 99, "solo to nothing");
    let _ = attach(ctx, dev, devid, "solo to a device id");
    let b = need_ioas(ctx, fd)?;
    let _ = allow(ctx, fd, b, &[(MSI, MSI + PAGE - 1)]);
    let _ = attach(ctx, dev, b, "solo over an allowed MSI window");
    let c = need_ioas(ctx, fd)?;
    let _ = attach(ctx, dev, c, "solo");
    let _ = allow(ctx, fd, c, &[(MSI, MSI + PAGE - 1)]); // now reserved
    let _ = destroy(ctx, fd, devid);
    Ok(())
}

fn one_group_one_hwpt(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let a = need_ioas(ctx, fd)?;
    let b = need_ioas(ctx, fd)?;
    let d0 = open_cdev(ctx, "mf-0")?;
    let d1 = open_cdev(ctx, "mf-1")?;
    let _ = bind(ctx, d0, fd, "mf-0");
    let _ = bind(ctx, d1, fd, "mf-1");
    let _ = attach(ctx, d0, a, "mf-0");
    let _ = attach(ctx, d1, b, "mf-1 to another IOAS");
    let _ = attach(ctx, d1, a, "mf-1");
    let solo = open_cdev(ctx, "solo")?;
    let _ = bind(ctx, solo, fd, "solo");
    let _ = attach(ctx, solo, a, "solo"); // another group shares the IOAS's HWPT
    Ok(())
}

fn bind_rules(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let dev = open_cdev(ctx, "solo")?;
    let mut info = [0u64; 4];
    info[0] = 20; // vfio_device_info argsz
    let r = ctx.backend.device_get_info(dev, &mut info);
    let _ = ctx.call("DEVICE_GET_INFO before bind", r);
    let _ = attach(ctx, dev, 1, "solo before bind");
    let _ = bind(ctx, dev, -1, "solo to fd -1");
    let _ = bind(ctx, dev, 12345, "solo to a closed fd");
    let container = ctx.open_container();
    let container = ctx.need(container, "open /dev/vfio/vfio")?;
    // With IOMMUFD_VFIO_CONTAINER /dev/vfio/vfio is an iommufd and the bind
    // succeeds (the lab kernel); with the legacy container it is EBADFD.
    // A bound file stays bound until closed: start again with a new one.
    let dev = if bind(ctx, dev, container, "solo to /dev/vfio/vfio").is_ok() {
        ctx.close(dev);
        open_cdev(ctx, "solo")?
    } else {
        dev
    };
    let g = ctx.open_group("solo");
    let g = ctx.need(g, "open the group of solo")?;
    let _ = bind(ctx, dev, fd, "solo while its group is open");
    ctx.close(g);
    let _ = bind(ctx, dev, fd, "solo");
    let _ = bind(ctx, dev, fd, "solo twice");
    let _ = ctx.open_group("solo"); // blocked by the cdev
    let r = ctx.backend.device_get_info(dev, &mut info);
    let _ = ctx.call("DEVICE_GET_INFO after bind", r);
    let other = open_cdev(ctx, "solo")?;
    let _ = bind(ctx, other, fd, "solo through a second open");
    let blocked = open_cdev(ctx, "blocked");
    if let Ok(bd) = blocked {
        let _ = bind(ctx, bd, fd, "blocked (a host driver in its group)");
    }
    ctx.close(dev);
    let _ = ctx.open_group("solo"); // free again
    Ok(())
}

fn hw_info_and_hwpt(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let ioas = need_ioas(ctx, fd)?;
    let dev = open_cdev(ctx, "solo")?;
    let r = bind(ctx, dev, fd, "solo");
    let devid = ctx.need(r, "BIND_IOMMUFD")?;
    let mut data = [0u64; 8];
    let mut c = iommu_hw_info { size: sz::<iommu_hw_info>(), dev_id: devid, ..Default::default() };
    let r = ctx.backend.iommu_get_hw_info(fd, &mut c, &mut data);
    // The VT-d registers depend on QEMU's options: shown, not compared.
    let _ = ctx.call_v("GET_HW_INFO solo", r, |_| format!("type={} len={} caps={:#x} pasid={}", c.out_data_type, c.data_len, c.out_capabilities, c.out_max_pasid_log2));
    // For the lab log (the mock's IommufdProfile::qemu_vtd takes them).
    eprintln!("vfio-lab: iommu_hw_info_vtd flags={:#x} cap_reg={:#x} ecap_reg={:#x}", data[0] & 0xffff_ffff, data[1], data[2]);
    let mut c = iommu_hw_info { size: sz::<iommu_hw_info>(), dev_id: 99, ..Default::default() };
    let r = ctx.backend.iommu_get_hw_info(fd, &mut c, &mut data);
    let _ = ctx.call("GET_HW_INFO no such device", r);
    for (flags, pt, label) in [
        (IOMMU_HWPT_ALLOC_DIRTY_TRACKING, ioas, "dirty tracking"),
        (1 << 5, ioas, "unknown flag"),
        (0, 99, "on nothing"),
        (0, ioas, "plain"),
    ] {
        let mut c = iommu_hwpt_alloc { size: sz::<iommu_hwpt_alloc>(), flags, dev_id: devid, pt_id: pt, ..Default::default() };
        let r = ctx.backend.hwpt_alloc(fd, &mut c).map(|_| c.out_hwpt_id);
        let _ = ctx.call_v(format!("HWPT_ALLOC {label}"), r, |id| format!("id={id}"));
    }
    let _ = ranges(ctx, fd, ioas, 8); // a user HWPT's domain is in the IOAS
    let hwpt = 3;
    let r = ctx.backend.hwpt_set_dirty_tracking(fd, &iommu_hwpt_set_dirty_tracking { size: 16, flags: 1, hwpt_id: hwpt, __reserved: 0 });
    let _ = ctx.call("HWPT_SET_DIRTY_TRACKING enable", r);
    let mut bm = [0u64; 1];
    let mut c = iommu_hwpt_get_dirty_bitmap { size: sz::<iommu_hwpt_get_dirty_bitmap>(), hwpt_id: hwpt, iova: IOVA, length: 64 * PAGE, page_size: PAGE, ..Default::default() };
    let r = ctx.backend.hwpt_get_dirty_bitmap(fd, &mut c, &mut bm);
    let _ = ctx.call("HWPT_GET_DIRTY_BITMAP", r);
    let _ = attach(ctx, dev, hwpt, "solo to the HWPT");
    let _ = destroy(ctx, fd, hwpt);
    let _ = detach(ctx, dev, "solo");
    let _ = destroy(ctx, fd, hwpt);
    let _ = ranges(ctx, fd, ioas, 8);
    Ok(())
}

fn options(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let _ = option(ctx, fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, 0);
    let _ = option(ctx, fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 2);
    let _ = option(ctx, fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 1);
    let _ = option(ctx, fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 0, 0);
    let _ = option(ctx, fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_GET, 1, 0);
    let ioas = need_ioas(ctx, fd)?;
    let _ = option(ctx, fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, 0);
    let _ = option(ctx, fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, 0);
    let _ = option(ctx, fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 2);
    let _ = option(ctx, fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_SET, ioas, 0);
    let _ = option(ctx, fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, ioas, 0);
    let _ = ranges(ctx, fd, ioas, 2);
    let _ = option(ctx, fd, IOMMU_OPTION_HUGE_PAGES, IOMMU_OPTION_OP_GET, 99, 0);
    let _ = option(ctx, fd, 7, IOMMU_OPTION_OP_GET, 0, 0);
    let _ = option(ctx, fd, IOMMU_OPTION_HUGE_PAGES, 5, ioas, 0);
    Ok(())
}

fn sys<T>(r: vfio_core::Result<T>) -> SysResult<T> {
    r.map_err(|e| Errno(e.errno))
}

fn start_dma(map: &vfio_core::MappedRegion, src: u64, dst: u64, count: u64, to_ram: bool) -> SysResult<()> {
    sys(map.write_u64(EDU_DMA_SRC, src))?;
    sys(map.write_u64(EDU_DMA_DST, dst))?;
    sys(map.write_u64(EDU_DMA_COUNT, count))?;
    sys(map.write_u64(EDU_DMA_CMD, EDU_DMA_RUN | if to_ram { EDU_DMA_TO_RAM } else { 0 }))?;
    let t = std::time::Instant::now();
    while sys(map.read_u64(EDU_DMA_CMD))? & EDU_DMA_RUN != 0 {
        if t.elapsed() > std::time::Duration::from_secs(5) {
            return Err(Errno(libc::ETIMEDOUT));
        }
    }
    Ok(())
}

/// Through the safe types: edu's engine copies a pattern through an IOAS
/// mapping, and after unmap its DMA reaches nothing (a DMAR fault in the
/// guest's log, no byte written).
/// Through the safe types: an iommufd with one IOAS, solo's cdev bound and
/// attached to it, bus mastering on and BAR0 mapped, each step recorded.
fn edu_on_an_ioas(ctx: &mut Ctx) -> Result<(Iommufd, vfio_core::Ioas, CdevDevice, vfio_core::MappedRegion), Abort> {
    let backend = Arc::clone(&ctx.backend);
    let n = ctx.host.cdev_of("solo").ok_or_else(|| Abort("solo has no cdev".into()))?;
    let ictx = ctx.call("Iommufd::open", sys(Iommufd::open(backend.clone())));
    let ictx = ctx.need(ictx, "Iommufd::open")?;
    let ioas = ctx.call("Iommufd::alloc_ioas", sys(ictx.alloc_ioas()));
    let ioas = ctx.need(ioas, "alloc_ioas")?;
    let dev = ctx.call("CdevDevice::open solo", sys(CdevDevice::open(backend, n)));
    let mut dev = ctx.need(dev, "CdevDevice::open")?;
    let r = ctx.call("CdevDevice::bind", sys(dev.bind(&ictx)));
    ctx.need(r, "bind")?;
    let r = ctx.call("CdevDevice::attach IOAS", sys(dev.attach(ioas.id())));
    ctx.need(r, "attach")?;
    let d = dev.device();
    let cmd = ctx.need(sys(d.read_config::<2>(4)), "read the command register")?;
    let r = ctx.call("config command |= bus master", sys(d.write_config(4, &(u16::from_le_bytes(cmd) | 0x6).to_le_bytes())));
    ctx.need(r, "enable bus mastering")?;
    let bar0 = ctx.need(sys(d.region_info(VFIO_PCI_BAR0_REGION_INDEX)), "BAR0 info")?;
    let m = ctx.call("Device::map_region BAR0", sys(d.map_region(&bar0, 0, 4096)));
    let m = ctx.need(m, "mmap BAR0")?;
    Ok((ictx, ioas, dev, m))
}

fn edu_dma_through_an_ioas(ctx: &mut Ctx) -> CaseResult {
    let (_ictx, ioas, dev, m) = edu_on_an_ioas(ctx)?;
    let mut src = HostBuf::new(PAGE as usize);
    let dst = HostBuf::new(PAGE as usize);
    src.bytes_mut()[..16].copy_from_slice(b"vfiokit-iommufd!");
    // Two pages in one batch, contiguous in IOVA but not in host memory.
    let entries = [[0x20_0000, src.addr(), PAGE], [0x20_1000, dst.addr(), PAGE]];
    let rep = ctx.call_v("Ioas::map_batch src,dst", sys(ioas.map_batch(&entries, BatchFlags::All(RW))), |r| format!("ioctls={} bytes={:#x}", r.ioctls, r.bytes));
    ctx.need(rep, "map_batch")?;
    let _ = ctx.call("edu DMA src -> buffer", start_dma(&m, 0x20_0000, EDU_BUFFER, 16, false));
    let _ = ctx.call("edu DMA buffer -> dst", start_dma(&m, EDU_BUFFER, 0x20_1000, 16, true));
    let copied = &dst.bytes()[..16] == b"vfiokit-iommufd!";
    ctx.observe("dst holds the pattern", copied.to_string());
    ctx.check("edu copied the pattern through the IOAS", copied, "dst does not hold it");
    let _ = ctx.call_v("Ioas::unmap dst", sys(ioas.unmap(0x20_1000, PAGE)), |n| format!("{n:#x}"));
    src.bytes_mut()[..16].copy_from_slice(b"must-not-arrive!");
    let _ = ctx.call("edu DMA src -> buffer", start_dma(&m, 0x20_0000, EDU_BUFFER, 16, false));
    let _ = ctx.call("edu DMA buffer -> unmapped dst", start_dma(&m, EDU_BUFFER, 0x20_1000, 16, true));
    let untouched = &dst.bytes()[..16] == b"vfiokit-iommufd!";
    ctx.observe("dst unchanged after unmap", untouched.to_string());
    ctx.check("no DMA reaches memory after unmap", untouched, "dst was written after unmap");
    let _ = ctx.call("CdevDevice::detach", sys(dev.detach()));
    Ok(())
}

/// A batch into an IOAS is all or nothing, as into a type1 container.
fn batch_rollback(ctx: &mut Ctx) -> CaseResult {
    let backend = Arc::clone(&ctx.backend);
    let ictx = ctx.call("Iommufd::open", sys(Iommufd::open(backend)));
    let ictx = ctx.need(ictx, "Iommufd::open")?;
    let ioas = ctx.call("Iommufd::alloc_ioas", sys(ictx.alloc_ioas()));
    let ioas = ctx.need(ioas, "alloc_ioas")?;
    let buf = HostBuf::new(16 * PAGE as usize);
    let _ = ctx.call("Ioas::map blocker at +5 pages", sys(ioas.map(Some(IOVA + 5 * PAGE), buf.addr(), PAGE, RW)));
    let entries: Vec<[u64; 3]> = (0..8).map(|i| [IOVA + i * PAGE, buf.addr() + i * PAGE, PAGE]).collect();
    let r = ioas.map_batch(&entries, BatchFlags::All(RW));
    let shown = match &r {
        Ok(rep) => format!("ok ioctls={}", rep.ioctls),
        Err(e) => format!("entry={:?} {}", e.entry, e.code()),
    };
    ctx.observe("Ioas::map_batch over the blocker", shown);
    // Nothing of the batch stayed: its first five pages map again.
    let _ = ctx.call("Ioas::map first five pages", sys(ioas.map(Some(IOVA), buf.addr(), 5 * PAGE, RW)));
    let _ = ctx.call_v("Ioas::unmap_all", sys(ioas.unmap_all()), |n| format!("{n:#x}"));
    Ok(())
}

/// `VmPin` now less `base`, as the backend reports it (the kernel's
/// /proc/self/status, the mock's model), recorded as a step.
fn vmpin(ctx: &mut Ctx, base: u64, when: &str) {
    let r = ctx.backend.pinned_pages().map(|p| p.saturating_sub(base));
    let _ = ctx.call_v(format!("VmPin {when}"), r, |p| format!("{p} pages"));
}

fn pins_base(ctx: &Ctx) -> u64 {
    ctx.backend.pinned_pages().unwrap_or(0)
}

/// IOMMU_IOAS_MAP_FILE of `len` bytes of `file` from `start`.
#[allow(clippy::too_many_arguments)]
fn map_file(ctx: &mut Ctx, fd: RawFd, ioas: u32, file: RawFd, label: &str, start: u64, iova: u64, len: u64, flags: u32) -> SysResult<u64> {
    let mut c = iommu_ioas_map_file { size: sz::<iommu_ioas_map_file>(), flags, ioas_id: ioas, fd: file, start, length: len, iova };
    let r = ctx.backend.ioas_map_file(fd, &mut c).map(|_| c.iova);
    let at = if flags & IOMMU_IOAS_MAP_FIXED_IOVA != 0 { format!(" iova={iova:#x}") } else { String::new() };
    ctx.call_v(format!("IOAS_MAP_FILE {label}+{start:#x}{at} len={len:#x} flags={}", prot_text(flags)), r, |i| format!("iova={i:#x}"))
}

fn change_process(ctx: &mut Ctx, fd: RawFd, reserved: u32, when: &str) -> SysResult<()> {
    let r = ctx.backend.ioas_change_process(fd, &iommu_ioas_change_process { size: sz::<iommu_ioas_change_process>(), __reserved: reserved });
    ctx.call(format!("IOAS_CHANGE_PROCESS {when}"), r)
}

/// iommufd pins lazily (io_pagetable.c iopt_map_user_pages: without a
/// domain only a lazy reference): a map into an IOAS with no domain pins
/// and charges nothing, the first attach pins everything the IOAS maps, a
/// map into an attached IOAS pins at once, and the last detach unpins. The
/// charge goes to the user's locked_vm (RLIMIT_MODE 0) against
/// RLIMIT_MEMLOCK: past it the pinning call fails with ENOMEM.
fn lazy_pins(ctx: &mut Ctx) -> CaseResult {
    let fd = open_iommufd(ctx)?;
    let ioas = need_ioas(ctx, fd)?;
    let buf = Aligned::new(32 * PAGE);
    let base = pins_base(ctx);
    let low = crate::memlock::LowMemlock::new(8 * PAGE);
    ctx.observe("CAP_IPC_LOCK dropped, RLIMIT_MEMLOCK 8 pages", format!("{}", low.caps.is_some()));
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA, 16 * PAGE, RWF); // past the limit, but no domain
    vmpin(ctx, base, "after a map with no domain");
    let dev = open_cdev(ctx, "solo")?;
    let r = bind(ctx, dev, fd, "solo");
    ctx.need(r, "BIND_IOMMUFD")?;
    let _ = attach(ctx, dev, ioas, "solo: pins 16 pages past the limit");
    vmpin(ctx, base, "after the refused attach");
    let _ = unmap(ctx, fd, ioas, IOVA, 16 * PAGE);
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA, 8 * PAGE, RWF);
    let _ = attach(ctx, dev, ioas, "solo: pins 8 pages, the limit");
    vmpin(ctx, base, "after the attach");
    let _ = map(ctx, fd, ioas, &buf, 8 * PAGE, IOVA + 8 * PAGE, PAGE, RWF); // one page past it
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 16 * PAGE, PAGE, RWF); // a page already pinned, in another area
    let _ = unmap(ctx, fd, ioas, IOVA, 8 * PAGE);
    vmpin(ctx, base, "after unmap");
    let _ = map(ctx, fd, ioas, &buf, 8 * PAGE, IOVA + 8 * PAGE, PAGE, RWF); // room again
    vmpin(ctx, base, "after a map into the attached IOAS");
    let _ = detach(ctx, dev, "solo");
    vmpin(ctx, base, "after detach");
    let _ = map(ctx, fd, ioas, &buf, 16 * PAGE, IOVA + 32 * PAGE, 16 * PAGE, RWF); // no domain again
    drop(low);
    Ok(())
}

/// With IOMMU_OPTION_RLIMIT_MODE 1 the pins are charged to the process's
/// own locked_vm (IOPT_PAGES_ACCOUNT_MM, __account_locked_vm), where its
/// mlock()ed pages count too; with mode 0 (the user's locked_vm) they do not.
fn pins_charged_per_process(ctx: &mut Ctx) -> CaseResult {
    let buf = Aligned::new(16 * PAGE);
    let locked = HostBuf::new(4 * PAGE as usize);
    let base = pins_base(ctx);
    for mode in [1u64, 0] {
        let fd = open_iommufd(ctx)?;
        let _ = option(ctx, fd, IOMMU_OPTION_RLIMIT_MODE, IOMMU_OPTION_OP_SET, 0, mode);
        let ioas = need_ioas(ctx, fd)?;
        let low = crate::memlock::LowMemlock::new(8 * PAGE);
        ctx.observe("CAP_IPC_LOCK dropped, RLIMIT_MEMLOCK 8 pages", format!("{}", low.caps.is_some()));
        // SAFETY: mlock of a mapping this case owns; munlock below.
        let r = unsafe { libc::mlock(locked.addr() as *const libc::c_void, 4 * PAGE as usize) };
        ctx.observe("mlock 4 pages", format!("{}", r == 0));
        let _ = map(ctx, fd, ioas, &buf, 0, IOVA, 6 * PAGE, RWF);
        let dev = open_cdev(ctx, "solo")?;
        let r = bind(ctx, dev, fd, "solo");
        ctx.need(r, "BIND_IOMMUFD")?;
        let _ = attach(ctx, dev, ioas, &format!("solo: 6 pages pinned beside 4 mlocked (mode {mode})"));
        vmpin(ctx, base, "after the attach");
        // SAFETY: undoes the mlock above.
        unsafe { libc::munlock(locked.addr() as *const libc::c_void, 4 * PAGE as usize) };
        let _ = attach(ctx, dev, ioas, "solo again, nothing mlocked");
        vmpin(ctx, base, "after the second attach");
        ctx.close(dev);
        ctx.close(fd);
        vmpin(ctx, base, "after close");
        drop(low);
    }
    Ok(())
}

/// IOMMU_IOAS_MAP_FILE maps a memfd by offset (Linux 6.13; ENOTTY
/// before); a file that cannot be pinned (not shmem, or past its end) is
/// refused only once a domain pins it. IOMMU_IOAS_CHANGE_PROCESS moves
/// only file mappings: any address mapping in the context is EINVAL, and
/// called by the process that holds the charge it changes nothing. edu's
/// DMA goes through a file mapping into the memfd's pages.
fn file_mappings(ctx: &mut Ctx) -> CaseResult {
    use vfio_core::live::GuestMemory;
    let fd = open_iommufd(ctx)?;
    let ioas = need_ioas(ctx, fd)?;
    let mem = GuestMemory::create("vfiokit-lab-file", 16 * PAGE as usize).map_err(|e| Abort(format!("memfd: {e}")))?;
    let exe = std::fs::File::open("/proc/self/exe").map_err(|e| Abort(format!("/proc/self/exe: {e}")))?;
    let exe = std::os::fd::AsRawFd::as_raw_fd(&exe);
    let base = pins_base(ctx);
    let _ = change_process(ctx, fd, 0, "with nothing mapped");
    let _ = map_file(ctx, fd, ioas, mem.raw_fd(), "memfd", 0, IOVA, 4 * PAGE, RWF);
    let _ = map_file(ctx, fd, ioas, mem.raw_fd(), "memfd", 4 * PAGE, 0, 4 * PAGE, RWA);
    let _ = map_file(ctx, fd, ioas, exe, "exe", 0, IOVA + 0x10_0000, PAGE, RWF); // no domain: not read yet
    let _ = map_file(ctx, fd, ioas, mem.raw_fd(), "memfd", 0, IOVA + 0x20_0000, 0, RWF);
    let _ = map_file(ctx, fd, ioas, mem.raw_fd(), "memfd", 0, IOVA + 0x20_0000, PAGE, RWF | 0x80);
    let _ = map_file(ctx, fd, ioas, -1, "fd -1", 0, IOVA + 0x20_0000, PAGE, RWF);
    let _ = change_process(ctx, fd, 0, "with file mappings only");
    let _ = change_process(ctx, fd, 1, "__reserved=1");
    let buf = Aligned::new(PAGE);
    let _ = map(ctx, fd, ioas, &buf, 0, IOVA + 0x30_0000, PAGE, RWF);
    let _ = change_process(ctx, fd, 0, "with an address mapping");
    let _ = unmap(ctx, fd, ioas, IOVA + 0x30_0000, PAGE);
    let _ = unmap(ctx, fd, ioas, IOVA + 0x10_0000, PAGE);
    let dev = open_cdev(ctx, "solo")?;
    let r = bind(ctx, dev, fd, "solo");
    ctx.need(r, "BIND_IOMMUFD")?;
    let _ = attach(ctx, dev, ioas, "solo: pins the memfd's pages");
    vmpin(ctx, base, "after the attach");
    let _ = map_file(ctx, fd, ioas, exe, "exe", 0, IOVA + 0x10_0000, PAGE, RWF); // pinned now: not a memfd
    let _ = map_file(ctx, fd, ioas, mem.raw_fd(), "memfd", 14 * PAGE, IOVA + 0x20_0000, 4 * PAGE, RWF); // past its end
    let _ = change_process(ctx, fd, 0, "by the process holding the charge");
    vmpin(ctx, base, "after CHANGE_PROCESS");
    Ok(())
}

/// Through the safe types: edu's engine copies through IOMMU_IOAS_MAP_FILE
/// mappings from one memfd page into another, where this process reads
/// the memfd; the device reaches the file's pages, no address of ours.
fn edu_dma_through_a_file_mapping(ctx: &mut Ctx) -> CaseResult {
    use vfio_core::live::GuestMemory;
    let mem = GuestMemory::create("vfiokit-lab-dma", 4 * PAGE as usize).map_err(|e| Abort(format!("memfd: {e}")))?;
    let (_ictx, ioas, dev, m) = edu_on_an_ioas(ctx)?;
    // Into the attached IOAS: the memfd's pages are pinned now.
    let r = ctx.call_v("Ioas::map_file memfd+0 len=0x2000", sys(ioas.map_file(Some(0x20_0000), mem.raw_fd(), 0, 2 * PAGE, RW)), |i| format!("iova={i:#x}"));
    if r == Err(Errno(libc::ENOTTY)) {
        // A kernel before 6.13 has no file mappings: that answer, compared
        // with the mock's, is all this case can show there.
        return Ok(());
    }
    ctx.need(r, "map_file")?;
    let _ = mem.write(0, b"vfiokit-memfd-io");
    let _ = ctx.call("edu DMA file page 0 -> buffer", start_dma(&m, 0x20_0000, EDU_BUFFER, 16, false));
    let _ = ctx.call("edu DMA buffer -> file page 1", start_dma(&m, EDU_BUFFER, 0x20_1000, 16, true));
    let mut got = [0u8; 16];
    let _ = mem.read(PAGE as usize, &mut got);
    let copied = &got == b"vfiokit-memfd-io";
    ctx.observe("the memfd's page 1 holds the pattern", copied.to_string());
    ctx.check("edu copied through the file mapping", copied, "page 1 of the memfd does not hold it");
    let _ = ctx.call("CdevDevice::detach", sys(dev.detach()));
    Ok(())
}

pub fn cases() -> Vec<Case> {
    vec![
        Case { name: "iommufd objects get the lowest free id and destroy frees it", run: objects },
        Case { name: "iommufd IOAS_MAP rules before any domain", run: map_rules },
        Case { name: "iommufd chooses IOVAs keeping the buffer's alignment inside the allowed ranges", run: chosen_iovas },
        Case { name: "iommufd IOAS_UNMAP takes whole areas only", run: unmap_rules },
        Case { name: "iommufd IOAS_COPY maps the source's pages piece by piece", run: copy },
        Case { name: "iommufd attach reserves the MSI window and the aperture, detach frees them", run: attach_and_ranges },
        Case { name: "iommufd attach refuses what the IOAS already holds", run: attach_conflicts },
        Case { name: "iommufd devices of one group share one HWPT", run: one_group_one_hwpt },
        Case { name: "VFIO cdev BIND_IOMMUFD rules and the group it blocks", run: bind_rules },
        Case { name: "iommufd GET_HW_INFO, HWPT_ALLOC and dirty tracking", run: hw_info_and_hwpt },
        Case { name: "iommufd RLIMIT and huge page options", run: options },
        Case { name: "edu DMA goes through an IOAS mapping and nowhere after unmap", run: edu_dma_through_an_ioas },
        Case { name: "a batch into an IOAS is all or nothing", run: batch_rollback },
        Case { name: "iommufd pins nothing until a domain is attached, then charges the user's locked_vm up to RLIMIT_MEMLOCK", run: lazy_pins },
        Case { name: "with RLIMIT_MODE 1 iommufd charges the process's locked_vm, where its mlocked pages count too", run: pins_charged_per_process },
        Case { name: "IOAS_MAP_FILE maps a memfd by offset and CHANGE_PROCESS takes only file mappings", run: file_mappings },
        Case { name: "edu DMA goes through a file mapping into the memfd's pages", run: edu_dma_through_a_file_mapping },
    ]
    .into_iter()
    .chain(crate::iommufd_dirty::emulated_iommu_cases())
    .collect()
}
