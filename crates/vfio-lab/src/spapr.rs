//! The sPAPR (pseries) conformance suite and DMA checks, on vfio-core's
//! Container/Group/Device and `spapr::ops_for` for both backends.
//!
//! `vfio-lab spapr --backend kernel --phbs N [--out FILE]` runs in the pseries
//! guest against the real `vfio_iommu_spapr_tce`; `--backend mock` runs the
//! same code on the host against vfio-core's MockBackend configured as that
//! guest (`SpaprDriver`, one group per PHB, an edu in each). Both write the
//! lab's JSON-lines format (`crate::report`), suite `spapr`; the pseries
//! profile of the lab runner compares the two case by case, edu DMA included
//! (the mock's edu walks the mock's TCEs). Only the sysfs discovery case,
//! named `kernel-only: ...`, runs in the guest alone.
//!
//! PEs are numbered by PHB: `pe0` is the edu on the first PHB, `pe1` the one
//! on the second. Group numbers are whatever the kernel assigned.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use vfio_core::backend::mock::config::{DeviceModelConfig, EduConfig, MockDeviceConfig, MockGroupConfig};
use vfio_core::backend::mock::spapr::{SpaprDriver, SpaprProfile};
use vfio_core::backend::{Backend, KernelBackend, MockBackend};
use vfio_core::error::errno_name;
use vfio_core::spapr::{ops_for, SpaprOps};
use vfio_core::uapi;
use vfio_core::{Container, Device, Group, MockConfig};

use crate::report::{Check, Line, Step, Writer};
use crate::spapr_cases::{CASES, FUNCTION_CASES};
use crate::spapr_dma;

/// A PE of the run: the edu on one PHB and its IOMMU group.
#[derive(Debug, Clone)]
pub struct Pe {
    pub bdf: String,
    pub group: u32,
}

/// Where containers come from: the kernel's /dev/vfio in the guest, or the
/// mock configured as that guest. Everything above this is the same code.
pub struct World {
    pub backend: Arc<dyn Backend>,
    pub pes: Vec<Pe>,
    /// Every edu in pe0's group (functions of one slot): one, or two in the
    /// two-function topology.
    pub functions: Vec<String>,
    pub name: &'static str,
}

impl World {
    /// The guest: an edu on each PHB (`functions` of them, functions of
    /// one slot, on the first), groups as the kernel numbered them.
    pub fn kernel(phbs: usize, functions: usize) -> Result<Self, String> {
        let edus = find_edus()?;
        if edus.len() != phbs + functions - 1 {
            return Err(format!("expected {functions} edu(s) on the first PHB and one on each other ({phbs} PHBs), found {}: {edus:?}", edus.len()));
        }
        let functions_of_pe0: Vec<String> = edus.iter().filter(|b| b.starts_with("0000:")).cloned().collect();
        let firsts: Vec<&String> = edus.iter().filter(|b| b.ends_with(".0")).collect();
        let pes = firsts.iter().map(|bdf| Ok(Pe { bdf: (*bdf).clone(), group: group_of(bdf)? })).collect::<Result<_, String>>()?;
        Ok(Self { backend: Arc::new(KernelBackend::new()), pes, functions: functions_of_pe0, name: "kernel" })
    }

    /// The mock as the guest: a pseries host (no type1, the sPAPR driver
    /// with QEMU's PE profile), one group per PHB holding an edu whose DMA
    /// mask reaches the 64-bit window, as the lab's QEMU command line sets;
    /// the first PHB's group holds `functions` of them (functions of slot 2).
    pub fn mock(phbs: usize, functions: usize) -> Self {
        let mut config = MockConfig::empty();
        let mut pes = Vec::new();
        let mut functions_of_pe0 = Vec::new();
        for i in 0..phbs {
            let mut group = MockGroupConfig::new(i as u32);
            for f in 0..if i == 0 { functions } else { 1 } {
                let bdf = format!("{i:04x}:00:02.{f}");
                let mut edu = MockDeviceConfig::edu(&bdf);
                edu.model = DeviceModelConfig::Edu(EduConfig { dma_mask: u64::MAX, ..EduConfig::default() });
                group = group.with_device(edu);
                if i == 0 {
                    functions_of_pe0.push(bdf.clone());
                }
                if f == 0 {
                    pes.push(Pe { bdf, group: i as u32 });
                }
            }
            config = config.with_group(group);
        }
        let config = SpaprDriver::pseries_config(config, SpaprProfile::qemu_pseries());
        Self { backend: Arc::new(MockBackend::new(config)), pes, functions: functions_of_pe0, name: "mock" }
    }

    pub fn container(&self) -> Result<Bench<'_>, String> {
        let container = Container::open(self.backend.clone()).map_err(|e| e.to_string())?;
        Ok(Bench { groups: Vec::new(), container, world: self })
    }
}

/// One container of a run and the groups attached to it, through vfio-core.
/// Groups are declared first so they close (and detach) before the container.
pub struct Bench<'w> {
    groups: Vec<Group>,
    container: Container,
    world: &'w World,
}

impl Bench<'_> {
    /// `VFIO_GROUP_SET_CONTAINER` of PE `pe`'s group.
    pub fn attach(&mut self, pe: usize) -> Result<(), i32> {
        let group = Group::open(self.world.backend.clone(), self.world.pes[pe].group).map_err(|e| e.errno)?;
        group.set_container(&self.container).map_err(|e| e.errno)?;
        self.groups.push(group);
        Ok(())
    }

    /// `VFIO_SET_IOMMU` to sPAPR TCE v2 (`true`) or v1.
    pub fn set_iommu(&mut self, v2: bool) -> Result<(), i32> {
        let kind = if v2 { uapi::VFIO_SPAPR_TCE_V2_IOMMU } else { uapi::VFIO_SPAPR_TCE_IOMMU };
        self.container.set_iommu(kind).map_err(|e| e.errno)
    }

    /// `VFIO_CHECK_EXTENSION` on the container.
    pub fn check_extension(&self, extension: u32) -> Result<bool, i32> {
        self.container.check_extension(extension).map_err(|e| e.errno)
    }

    /// The sPAPR calls of this container, on its backend.
    pub fn ops(&self) -> Box<dyn SpaprOps + '_> {
        ops_for(&self.container)
    }

    /// The run's world, for a case that needs a second container.
    pub fn world(&self) -> &World {
        self.world
    }

    /// The backend itself, for cases that make raw calls on their own descriptors.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.world.backend
    }

    /// PE `pe` of the run (its edu's address and group).
    pub fn pe(&self, pe: usize) -> &Pe {
        &self.world.pes[pe]
    }

    /// The device `bdf` in the `i`-th attached group.
    pub fn device_at(&self, i: usize, bdf: &str) -> Result<Device, i32> {
        self.groups[i].device(bdf).map_err(|e| e.errno)
    }

    /// The edu of the `i`-th attached group.
    pub fn device(&self, i: usize, pe: usize) -> Result<Device, i32> {
        self.groups[i].device(&self.world.pes[pe].bdf).map_err(|e| e.errno)
    }
}

/// Reads `/sys/bus/pci/devices/<bdf>/iommu_group`'s number.
pub fn group_of(bdf: &str) -> Result<u32, String> {
    let link = std::fs::read_link(format!("/sys/bus/pci/devices/{bdf}/iommu_group"))
        .map_err(|e| format!("device {bdf} has no IOMMU group: {e}"))?;
    let name = link.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    name.parse().map_err(|_| format!("device {bdf}: iommu_group link {} is not a number", link.display()))
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

/// Runs `body` with raw calls on the bench's backend, closing every
/// descriptor it pushes onto the list (newest first) however it ends.
pub fn with_raw_fds(b: &Bench, body: impl FnOnce(&Arc<dyn Backend>, &mut Vec<vfio_core::backend::RawFd>) -> Result<(), Stop>) -> Result<(), Stop> {
    let be = b.backend().clone();
    let mut fds = Vec::new();
    let outcome = body(&be, &mut fds);
    for fd in fds.into_iter().rev() {
        be.close(fd);
    }
    outcome
}

/// Records `VFIO_GROUP_GET_STATUS` of group fd `g` as a step named `label`.
pub fn group_status(be: &Arc<dyn Backend>, g: vfio_core::backend::RawFd, r: &mut Rec, label: &str) {
    let mut st = uapi::vfio_group_status { argsz: 8, flags: 0 };
    let res = be.group_get_status(g, &mut st).map(|_| st.flags).map_err(|e| e.0);
    r.step(label.to_string(), res, |f| format!("flags={f:#x}"));
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

/// An anonymous, populated, read-write mapping of `len` bytes with the
/// extra `flags` (MAP_PRIVATE or MAP_SHARED, MAP_HUGETLB), or the errno.
fn mmap_anonymous(len: usize, flags: i32) -> Result<*mut libc::c_void, i32> {
    // SAFETY: an anonymous mapping; no pointer is passed in.
    let base = unsafe {
        libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_ANONYMOUS | libc::MAP_POPULATE | flags, -1, 0)
    };
    if base == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::ENOMEM));
    }
    Ok(base)
}

impl Buffer {
    pub fn new(size: usize, align: usize) -> Self {
        let len = size + align;
        let base = mmap_anonymous(len, libc::MAP_PRIVATE).unwrap_or_else(|e| panic!("mmap of {len} bytes for a DMA buffer failed: errno {e}"));
        let addr = (base as u64).next_multiple_of(align as u64);
        Self { base, len, addr, size: size as u64 }
    }

    /// `size` bytes of shared anonymous memory (MAP_SHARED: shmem pages,
    /// as QEMU's guest RAM with `share=on`), populated.
    pub fn shared(size: usize) -> Self {
        let base = mmap_anonymous(size, libc::MAP_SHARED).unwrap_or_else(|e| panic!("mmap of {size} shared bytes for a DMA buffer failed: errno {e}"));
        Self { base, len: size, addr: base as u64, size: size as u64 }
    }

    /// `size` bytes of 2 MiB huge pages (MAP_HUGETLB), which let TCEs larger
    /// than the base page map (`tce_page_is_contained`). ENOMEM when the
    /// kernel has no free huge pages.
    pub fn huge(size: usize) -> Result<Self, i32> {
        let base = mmap_anonymous(size, libc::MAP_PRIVATE | libc::MAP_HUGETLB)?;
        Ok(Self { base, len: size, addr: base as u64, size: size as u64 })
    }

    /// Unmaps `pages` pages from page `from` of the buffer, leaving a hole
    /// (the buffer's own munmap at drop ignores it).
    pub fn punch(&self, from: u64, pages: u64) {
        // SAFETY: the range lies inside this buffer's own mapping.
        unsafe { libc::munmap((self.addr + from * 4096) as *mut libc::c_void, (pages * 4096) as usize) };
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
// A case in a process of its own

/// Runs `body` on a fresh container in a child process (fork) and records
/// its steps in `r`: for a case whose calls leave the process's mm in a
/// state only its exit ends (a registration leaked by an unregister while
/// mapped, which the kernel keeps pinned until the mm dies and then warns
/// about in destroy_context). The child's exit ends it on either backend:
/// the mock's state is the child's copy. The child says on stderr (the
/// guest's console) what its exit will make the kernel print, so the
/// console check can expect exactly that.
pub fn in_child(world: &World, r: &mut Rec, announce: &str, body: fn(&mut Bench, &mut Rec) -> Result<(), Stop>) -> Result<(), Stop> {
    let mut fds = [0i32; 2];
    // SAFETY: pipe writes two descriptors into `fds`.
    if unsafe { libc::pipe(fds.as_mut_ptr()) } != 0 {
        return Err(Stop(format!("pipe failed: {}", std::io::Error::last_os_error())));
    }
    // SAFETY: vfio-lab is single-threaded, so the child may run Rust code
    // (no lock can be held by a thread that does not exist there).
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(Stop(format!("fork failed: {}", std::io::Error::last_os_error())));
    }
    if pid == 0 {
        // SAFETY: the child's copy of the read end.
        unsafe { libc::close(fds[0]) };
        let mut rec = Rec::new();
        let aborted = match world.container() {
            Ok(mut bench) => body(&mut bench, &mut rec).err().map(|s| s.0),
            Err(e) => Some(e),
        };
        let line = Line::Case { name: String::new(), steps: rec.steps, checks: rec.checks, aborted };
        let text = serde_json::to_string(&line).unwrap_or_default();
        // SAFETY: the write end is this process's; `text` is live for the call.
        unsafe { libc::write(fds[1], text.as_ptr().cast(), text.len()) };
        eprintln!("{announce}");
        // SAFETY: ends the child without running the parent's exit handlers
        // twice; its descriptors (the container among them) close here.
        unsafe { libc::_exit(0) };
    }
    // SAFETY: the parent's copy of the write end.
    unsafe { libc::close(fds[1]) };
    // SAFETY: the read end is ours alone from here; File closes it.
    let mut from_child = unsafe { <File as std::os::fd::FromRawFd>::from_raw_fd(fds[0]) };
    let mut text = String::new();
    let read = std::io::Read::read_to_string(&mut from_child, &mut text);
    let mut status = 0;
    // SAFETY: waits for the child forked above.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    read.map_err(|e| Stop(format!("reading the child's steps failed: {e}")))?;
    match serde_json::from_str::<Line>(&text) {
        Ok(Line::Case { steps, checks, aborted, .. }) => {
            r.steps.extend(steps);
            r.checks.extend(checks);
            aborted.map_or(Ok(()), |a| Err(Stop(a)))
        }
        _ => Err(Stop(format!("the child process left no steps (wait status {status:#x})"))),
    }
}

// ---------------------------------------------------------------------------
// Entry point

fn usage() -> String {
    "usage: vfio-lab spapr --backend kernel|mock [--phbs N] [--functions N] [--out FILE]\n\
     kernel: in the pseries guest, with one edu per PHB bound to vfio-pci (BDFs from sysfs)\n\
     mock:   on the host, against vfio-core's MockSpapr"
        .into()
}

/// The edu devices of the guest, one per PHB, in domain order (sysfs).
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
    let mut functions = 1usize;
    let mut out: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--backend" => backend = it.next().cloned(),
            "--phbs" => phbs = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--functions" => functions = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
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
    let world = match backend.as_deref() {
        Some("mock") => Ok(World::mock(phbs, functions.max(1))),
        Some("kernel") => World::kernel(phbs, functions.max(1)),
        _ => Err(usage()),
    };
    match world.and_then(|w| run(&w, sink)) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vfio-lab spapr: {e}");
            1
        }
    }
}

pub(crate) fn run(world: &World, sink: Box<dyn Write>) -> Result<(), String> {
    let io = |e: std::io::Error| format!("cannot write results: {e}");
    let mut w = Writer::new(sink, "spapr", world.name).map_err(io)?;
    let pes = world.pes.len();
    // The two-function guest is booted for what two devices in one group
    // do; the rest of the suite runs in the other guests.
    let cases = if world.functions.len() > 1 { FUNCTION_CASES } else { CASES };
    for case in cases.iter().filter(|c| c.pes <= pes) {
        let mut rec = Rec::new();
        let aborted = match world.container() {
            Ok(mut bench) => (case.run)(&mut bench, &mut rec).err().map(|s| s.0),
            Err(e) => Some(e),
        };
        w.line(&Line::Case { name: case.name.to_string(), steps: rec.steps, checks: rec.checks, aborted }).map_err(io)?;
    }
    if world.functions.len() == 1 {
        for (name, rec, aborted) in spapr_dma::run_all(world) {
            w.line(&Line::Case { name, steps: rec.steps, checks: rec.checks, aborted }).map_err(io)?;
        }
    }
    w.finish().map_err(io)
}
