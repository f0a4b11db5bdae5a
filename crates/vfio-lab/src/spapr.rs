//! The sPAPR (pseries) conformance suite and DMA checks.
//!
//! `vfio-lab spapr --backend kernel --phbs N [--out FILE]` runs in the pseries
//! guest against the real `vfio_iommu_spapr_tce`; `--backend mock` runs the
//! same cases on the host against `MockSpapr`. Both write the lab's JSON-lines
//! format (`crate::report`), suite `spapr`; the pseries profile of the lab
//! runner compares the two case by case. Cases whose name starts with
//! `kernel-only:` run only in the guest (DMA through edu, sysfs discovery):
//! the mock has no device to move data.
//!
//! PEs are numbered by PHB: `pe0` is the edu on the first PHB, `pe1` the one
//! on the second. Group numbers are whatever the kernel assigned.

use std::ffi::CString;
use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::Path;

use vfio_core::backend::spapr_kernel::KernelSpapr;
use vfio_core::backend::spapr_mock::{MockSpapr, SpaprProfile};
use vfio_core::error::errno_name;
use vfio_core::spapr::SpaprOps;
use vfio_core::uapi;

use crate::report::{Check, Line, Step, Writer};
use crate::spapr_cases::CASES;
use crate::spapr_dma;

/// One container of a run, on either backend.
pub trait Bench {
    /// `VFIO_GROUP_SET_CONTAINER` of PE `pe`'s group.
    fn attach(&mut self, pe: usize) -> Result<(), i32>;
    /// `VFIO_SET_IOMMU` to sPAPR TCE v2 (`true`) or v1.
    fn set_iommu(&mut self, v2: bool) -> Result<(), i32>;
    /// The sPAPR calls; only after a successful `set_iommu`.
    fn ops(&mut self) -> &mut dyn SpaprOps;
}

/// Where containers come from.
pub trait World {
    fn backend(&self) -> &'static str;
    /// How many PEs (PHBs with an edu) this run has.
    fn pes(&self) -> usize;
    fn container(&mut self) -> Result<Box<dyn Bench + '_>, String>;
}

// ---------------------------------------------------------------------------
// The mock world

pub struct MockWorld {
    pub profile: SpaprProfile,
    pub pes: usize,
}

struct MockBench {
    profile: SpaprProfile,
    pending: Vec<usize>,
    spapr: Option<MockSpapr>,
}

impl Bench for MockBench {
    // vfio_container_attach_group: before SET_IOMMU a group only joins the
    // container; after it the IOMMU driver's attach_group decides.
    fn attach(&mut self, pe: usize) -> Result<(), i32> {
        match &mut self.spapr {
            None => {
                self.pending.push(pe);
                Ok(())
            }
            Some(s) => s.attach_group(pe as u32).map_err(|e| e.errno),
        }
    }

    // vfio_ioctl_set_iommu: opens the driver, attaches every group joined so far.
    fn set_iommu(&mut self, v2: bool) -> Result<(), i32> {
        if self.spapr.is_some() || self.pending.is_empty() {
            return Err(libc::EINVAL);
        }
        let mut s = MockSpapr::new(self.profile.clone(), v2);
        for &pe in &self.pending {
            s.attach_group(pe as u32).map_err(|e| e.errno)?;
        }
        self.spapr = Some(s);
        Ok(())
    }

    fn ops(&mut self) -> &mut dyn SpaprOps {
        self.spapr.as_mut().expect("set_iommu succeeded")
    }
}

impl World for MockWorld {
    fn backend(&self) -> &'static str {
        "mock"
    }
    fn pes(&self) -> usize {
        self.pes
    }
    fn container(&mut self) -> Result<Box<dyn Bench + '_>, String> {
        Ok(Box::new(MockBench { profile: self.profile.clone(), pending: Vec::new(), spapr: None }))
    }
}

// ---------------------------------------------------------------------------
// The kernel world: /dev/vfio in the pseries guest

/// A PE of the guest: the edu device on one PHB and its IOMMU group.
#[derive(Debug, Clone)]
pub struct Pe {
    pub bdf: String,
    pub group: u32,
}

pub struct KernelWorld {
    pub pes: Vec<Pe>,
}

/// Reads `/sys/bus/pci/devices/<bdf>/iommu_group`'s number.
pub fn group_of(bdf: &str) -> Result<u32, String> {
    let link = std::fs::read_link(format!("/sys/bus/pci/devices/{bdf}/iommu_group"))
        .map_err(|e| format!("device {bdf} has no IOMMU group: {e}"))?;
    let name = link.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    name.parse().map_err(|_| format!("device {bdf}: iommu_group link {} is not a number", link.display()))
}

fn open_rw(path: &str) -> Result<OwnedFd, i32> {
    let c = CString::new(path).expect("no NUL in a path");
    // SAFETY: `c` is a NUL-terminated path that outlives the call.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(last_errno());
    }
    // SAFETY: `fd` was just returned by open and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub fn last_errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// A container and the groups attached to it. Field order matters: `ops`
/// borrows `container`'s descriptor and is dropped first; groups are closed
/// before the container, which detaches them (`vfio_group_detach_container`).
pub struct KernelBench {
    ops: Option<KernelSpapr<'static>>,
    groups: Vec<OwnedFd>,
    container: OwnedFd,
    pes: Vec<Pe>,
}

impl KernelBench {
    pub fn open(pes: &[Pe]) -> Result<Self, String> {
        let container = open_rw("/dev/vfio/vfio").map_err(|e| format!("open /dev/vfio/vfio: {}", errno_name(e)))?;
        Ok(Self { ops: None, groups: Vec::new(), container, pes: pes.to_vec() })
    }

    pub fn group_fd(&self, i: usize) -> RawFd {
        self.groups[i].as_raw_fd()
    }
}

impl Bench for KernelBench {
    fn attach(&mut self, pe: usize) -> Result<(), i32> {
        let group = open_rw(&format!("/dev/vfio/{}", self.pes[pe].group))?;
        let container = self.container.as_raw_fd();
        // SAFETY: VFIO_GROUP_SET_CONTAINER reads one int (the container fd)
        // from the pointer, which points at a live local.
        let r = unsafe { libc::ioctl(group.as_raw_fd(), uapi::VFIO_GROUP_SET_CONTAINER as _, &container as *const RawFd) };
        if r < 0 {
            return Err(last_errno());
        }
        self.groups.push(group);
        Ok(())
    }

    fn set_iommu(&mut self, v2: bool) -> Result<(), i32> {
        let kind = if v2 { uapi::VFIO_SPAPR_TCE_V2_IOMMU } else { uapi::VFIO_SPAPR_TCE_IOMMU };
        // SAFETY: VFIO_SET_IOMMU takes its argument by value; no memory is passed.
        let r = unsafe { libc::ioctl(self.container.as_raw_fd(), uapi::VFIO_SET_IOMMU as _, kind as libc::c_ulong) };
        if r < 0 {
            return Err(last_errno());
        }
        // SAFETY: the descriptor stays open until `self.container` drops,
        // after `self.ops` (declared first, so dropped first).
        let fd = unsafe { BorrowedFd::borrow_raw(self.container.as_raw_fd()) };
        self.ops = Some(KernelSpapr::new(fd));
        Ok(())
    }

    fn ops(&mut self) -> &mut dyn SpaprOps {
        self.ops.as_mut().expect("set_iommu succeeded")
    }
}

impl World for KernelWorld {
    fn backend(&self) -> &'static str {
        "kernel"
    }
    fn pes(&self) -> usize {
        self.pes.len()
    }
    fn container(&mut self) -> Result<Box<dyn Bench + '_>, String> {
        Ok(Box::new(KernelBench::open(&self.pes)?))
    }
}

// ---------------------------------------------------------------------------
// Recording

/// What one case records: the steps both backends must agree on, and the
/// checks that must hold on each side.
pub struct Rec {
    pub steps: Vec<Step>,
    pub checks: Vec<Check>,
}

/// A case stopped early because a call it needed failed.
pub struct Stop(pub String);

impl Rec {
    pub fn new() -> Self {
        Self { steps: Vec::new(), checks: Vec::new() }
    }

    /// Records `call`'s outcome; `value` renders what a success returned.
    pub fn step<T>(&mut self, call: impl Into<String>, r: Result<T, i32>, value: impl FnOnce(&T) -> String) -> Option<T> {
        self.record(call, r, value).ok()
    }

    fn record<T>(&mut self, call: impl Into<String>, r: Result<T, i32>, value: impl FnOnce(&T) -> String) -> Result<T, i32> {
        let (result, value) = match &r {
            Ok(v) => ("ok".to_string(), value(v)),
            Err(e) => (errno_name(*e).to_string(), String::new()),
        };
        self.steps.push(Step { call: call.into(), result, value });
        r
    }

    /// Like `step`, but a failure stops the case.
    pub fn must<T>(&mut self, call: impl Into<String>, r: Result<T, i32>, value: impl FnOnce(&T) -> String) -> Result<T, Stop> {
        let call = call.into();
        self.record(call.clone(), r, value).map_err(|e| Stop(format!("{call} failed with {}", errno_name(e))))
    }

    pub fn check(&mut self, what: impl Into<String>, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check { what: what.into(), ok, detail: detail.into() });
    }
}

/// Turns a vfio-core result into the errno a step records.
pub fn errno<T>(r: vfio_core::Result<T>) -> Result<T, i32> {
    r.map_err(|e| e.errno)
}

/// Anonymous, populated, `align`-aligned memory for DMA; unmapped on drop.
pub struct Buffer {
    base: *mut libc::c_void,
    len: usize,
    pub addr: u64,
    pub size: u64,
}

impl Buffer {
    pub fn new(size: usize, align: usize) -> Self {
        let len = size + align;
        // SAFETY: an anonymous private mapping; no pointer is passed in.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        assert_ne!(base, libc::MAP_FAILED, "mmap of {len} bytes for a DMA buffer failed");
        let addr = (base as u64).next_multiple_of(align as u64);
        Self { base, len, addr, size: size as u64 }
    }

    pub fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: [addr, addr + size) lies inside the live mapping [base, base + len).
        unsafe { std::slice::from_raw_parts_mut(self.addr as *mut u8, self.size as usize) }
    }
}

impl Drop for Buffer {
    fn drop(&mut self) {
        // SAFETY: exactly the mapping `new` made.
        unsafe { libc::munmap(self.base, self.len) };
    }
}

// ---------------------------------------------------------------------------
// Entry point

fn usage() -> String {
    "usage: vfio-lab spapr --backend kernel|mock [--phbs N] [--out FILE]\n\
     kernel: in the pseries guest, with one edu per PHB bound to vfio-pci (BDFs from sysfs)\n\
     mock:   on the host, against vfio-core's MockSpapr"
        .into()
}

/// The edu devices of the guest, one per PHB, in domain order.
pub fn find_edus() -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    let dir = std::fs::read_dir("/sys/bus/pci/devices").map_err(|e| format!("cannot list PCI devices: {e}"))?;
    for entry in dir.flatten() {
        let path = entry.path();
        let read = |f: &str| std::fs::read_to_string(path.join(f)).unwrap_or_default().trim().to_string();
        if read("vendor") == "0x1234" && read("device") == "0x11e8" {
            found.push(entry.file_name().to_string_lossy().into_owned());
        }
    }
    found.sort();
    Ok(found)
}

pub fn main(args: &[String]) -> i32 {
    let mut backend = None;
    let mut phbs = 1usize;
    let mut out: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => backend = it.next().cloned(),
            "--phbs" => phbs = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--out" => out = it.next().cloned(),
            _ => {
                eprintln!("vfio-lab spapr: unknown argument '{a}'\n{}", usage());
                return 2;
            }
        }
    }
    let sink: Box<dyn Write> = match &out {
        Some(p) => match File::create(Path::new(p)) {
            Ok(f) => Box::new(f),
            Err(e) => {
                eprintln!("vfio-lab spapr: cannot write {p}: {e}");
                return 2;
            }
        },
        None => Box::new(std::io::stdout()),
    };
    let result = match backend.as_deref() {
        Some("mock") => run(&mut MockWorld { profile: SpaprProfile::qemu_pseries(), pes: phbs }, sink),
        Some("kernel") => match kernel_world(phbs) {
            Ok(mut w) => run(&mut w, sink),
            Err(e) => Err(e),
        },
        _ => Err(usage()),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vfio-lab spapr: {e}");
            1
        }
    }
}

fn kernel_world(phbs: usize) -> Result<KernelWorld, String> {
    let edus = find_edus()?;
    if edus.len() != phbs {
        return Err(format!("expected one edu per PHB ({phbs}), found {}: {edus:?}", edus.len()));
    }
    let pes = edus.iter().map(|bdf| Ok(Pe { bdf: bdf.clone(), group: group_of(bdf)? })).collect::<Result<_, String>>()?;
    Ok(KernelWorld { pes })
}

fn run(world: &mut dyn World, sink: Box<dyn Write>) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot write results: {e}");
    let mut w = Writer::new(sink, "spapr", world.backend()).map_err(io)?;
    let pes = world.pes();
    for case in CASES.iter().filter(|c| c.pes <= pes) {
        let mut rec = Rec::new();
        let aborted = match world.container() {
            Ok(mut bench) => (case.run)(bench.as_mut(), &mut rec).err().map(|s| s.0),
            Err(e) => Some(e),
        };
        w.line(&Line::Case { name: case.name.to_string(), steps: rec.steps, checks: rec.checks, aborted }).map_err(io)?;
    }
    if world.backend() == "kernel" {
        for (name, rec, aborted) in spapr_dma::run_all(world.pes()) {
            w.line(&Line::Case { name, steps: rec.steps, checks: rec.checks, aborted }).map_err(io)?;
        }
    }
    w.finish().map_err(io)
}
