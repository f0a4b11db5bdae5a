//! A live hand-over between processes on the real kernel, with edu DMA
//! running through it (vfio-core's `live`). Run in the lab guest by
//! packages/core/src/vfio/live.lab.ts:
//!
//! ```text
//! vfio-lab live-handover --bdf BDF --maps N
//! ```
//!
//! The orchestrator opens no VFIO object itself. It starts the old process
//! (`live-old`), which opens the container, maps N separate pages of a
//! memfd for edu and keeps edu's DMA engine copying into them from a
//! thread, checking each copy landed. Then:
//!
//! 1. a new process (`live-new --die-after K`) takes the hand-over and kills
//!    itself after updating K mappings: the old process must see the socket
//!    close, restore every mapping, and its DMA keep landing;
//! 2. a second new process takes the hand-over whole; the orchestrator reads
//!    both processes' locked memory (VmLck, the kernel's locked_vm that
//!    vfio_change_dma_owner moves), kills the old process with SIGKILL, and
//!    the new one drives edu's DMA through the same mappings, then unmaps
//!    them (it owns them) and sees the next DMA not land.
//!
//! It prints one JSON object; the lab case asserts on it.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::sleep;
use std::time::{Duration, Instant};

use vfio_core::backend::{Backend, KernelBackend};
use vfio_core::fdpass::{recv_with_fds, send_with_fds};
use vfio_core::live::{self, GuestMemory, Handover, Outcome};
use vfio_core::uapi::*;
use vfio_core::device::{IrqAction, IrqData};
use vfio_core::live::Irq;
use vfio_core::{Device, MappedRegion, Type1Container};

use crate::edu::*;

pub(crate) const PAGE: u64 = 4096;
/// Below edu's 28-bit DMA mask.
pub(crate) const IOVA0: u64 = 0x100_0000;
/// QEMU 7.2's edu refuses 4096 bytes into its own buffer; 4095 is safe.
const LEN: usize = 4095;

pub(crate) type Res<T> = Result<T, String>;

pub(crate) fn pattern() -> Vec<u8> {
    (0..LEN).map(|i| (i as u8).wrapping_mul(13).wrapping_add(5)).collect()
}

/// A `Vm*:` line of /proc/PID/status in kB (u64::MAX when unreadable).
pub(crate) fn status_kb(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(u64::MAX)
}

pub(crate) fn vmlck_kb(pid: u32) -> u64 {
    status_kb(pid, "VmLck")
}

/// CLOCK_MONOTONIC in microseconds: one clock for every process, so the
/// old process's start and the new one's last update can be subtracted.
pub(crate) fn now_us() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000 + ts.tv_nsec as u64 / 1000
}

fn group_of(bdf: &str) -> Res<u32> {
    let link = std::fs::read_link(format!("/sys/bus/pci/devices/{bdf}/iommu_group")).map_err(|e| format!("{bdf} has no IOMMU group: {e}"))?;
    link.file_name().and_then(|n| n.to_str()).and_then(|n| n.parse().ok()).ok_or_else(|| format!("{bdf}: odd iommu_group link"))
}

pub(crate) fn socketpair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    let r = unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) };
    assert_eq!(r, 0, "socketpair: {}", io::Error::last_os_error());
    // SAFETY: socketpair just opened both; each is owned once.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

/// Line messages on a control socket, descriptors riding along.
pub(crate) struct Ctl {
    fd: OwnedFd,
    buf: Vec<u8>,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Ctl {
    pub(crate) fn new(fd: OwnedFd) -> Self {
        Self { fd, buf: Vec::new(), fds: Vec::new() }
    }

    pub(crate) fn send(&self, line: &str, fds: &[RawFd]) -> Res<()> {
        let data = format!("{line}\n");
        if fds.is_empty() {
            live_send_all(self.fd.as_raw_fd(), data.as_bytes())
        } else {
            send_with_fds(self.fd.as_raw_fd(), data.as_bytes(), fds).map(|_| ()).map_err(|e| e.message)
        }
    }

    /// The next line, waiting at most `secs`.
    pub(crate) fn recv(&mut self, secs: u64) -> Res<String> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(p) = self.buf.iter().position(|&b| b == b'\n') {
                let line = String::from_utf8_lossy(&self.buf[..p]).into_owned();
                self.buf.drain(..=p);
                return Ok(line);
            }
            let left = deadline.saturating_duration_since(Instant::now()).as_millis() as i32;
            if left == 0 {
                return Err(format!("no message within {secs} s"));
            }
            let mut p = libc::pollfd { fd: self.fd.as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, count 1.
            if unsafe { libc::poll(&mut p, 1, left) } <= 0 {
                continue;
            }
            let mut b = [0u8; 4096];
            let (n, fds) = recv_with_fds(self.fd.as_raw_fd(), &mut b).map_err(|e| e.message)?;
            // SAFETY: recv_with_fds hands each received descriptor over once.
            self.fds.extend(fds.into_iter().map(|f| unsafe { OwnedFd::from_raw_fd(f) }));
            if n == 0 {
                return Err("the peer closed its control socket".into());
            }
            self.buf.extend_from_slice(&b[..n]);
        }
    }
}

fn live_send_all(fd: RawFd, mut data: &[u8]) -> Res<()> {
    while !data.is_empty() {
        // SAFETY: data is a live slice; MSG_NOSIGNAL turns a closed peer into EPIPE.
        let n = unsafe { libc::send(fd, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
        if n < 0 {
            return Err(format!("send on control socket: {}", io::Error::last_os_error()));
        }
        data = &data[n as usize..];
    }
    Ok(())
}

/// Starts this program again as `args`, giving it `keep` (and nothing else
/// of ours: every descriptor here is close-on-exec).
pub(crate) fn spawn(args: &[String], keep: &[RawFd]) -> Res<Child> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let keep = keep.to_vec();
    let mut cmd = Command::new(exe);
    cmd.args(args);
    // SAFETY: the closure only calls fcntl, which is async-signal-safe.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &keep {
                if libc::fcntl(fd, libc::F_SETFD, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| format!("cannot start {args:?}: {e}"))
}

pub(crate) fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

// ---- edu's DMA engine ----

pub(crate) struct Edu<'a> {
    pub(crate) bar0: MappedRegion,
    pub(crate) memory: &'a GuestMemory,
    pub(crate) pages: u64,
}

impl Edu<'_> {
    fn idle(&self) -> Res<()> {
        let started = Instant::now();
        while self.bar0.read_u64(EDU_DMA_CMD).map_err(|e| e.to_string())? & EDU_DMA_RUN != 0 {
            if started.elapsed() > Duration::from_secs(20) {
                return Err("edu's DMA did not finish within 20 s".into());
            }
            sleep(Duration::from_millis(2));
        }
        Ok(())
    }

    pub(crate) fn run(&self, src: u64, dst: u64, to_ram: bool) -> Res<()> {
        self.idle()?;
        let cmd = EDU_DMA_RUN | if to_ram { EDU_DMA_TO_RAM } else { 0 };
        for (reg, v) in [(EDU_DMA_SRC, src), (EDU_DMA_DST, dst), (EDU_DMA_COUNT, LEN as u64), (EDU_DMA_CMD, cmd)] {
            self.bar0.write_u64(reg, v).map_err(|e| e.to_string())?;
        }
        self.idle()
    }

    /// Copies edu's buffer into page `page` (never page 0, the seed) and
    /// reports whether the pattern landed there.
    pub(crate) fn copy_into(&self, page: u64) -> Res<bool> {
        let p = 1 + page % (self.pages - 1);
        let off = (p * PAGE) as usize;
        self.memory.write(off, &[0u8; LEN]).map_err(|e| e.to_string())?;
        self.run(EDU_BUFFER, IOVA0 + p * PAGE, true)?;
        let mut got = vec![0u8; LEN];
        self.memory.read(off, &mut got).map_err(|e| e.to_string())?;
        Ok(got == pattern())
    }
}

pub(crate) fn bar0_of(d: &Device) -> Res<MappedRegion> {
    let r = d.region_info(VFIO_PCI_BAR0_REGION_INDEX).map_err(|e| e.to_string())?;
    d.map_region(&r, 0, 4096).map_err(|e| e.to_string())
}

/// edu's MSI on an eventfd, which goes along with the hand-over (the new
/// process must see the device's interrupts without setting them again),
/// and bus mastering on. The eventfd stays open as long as the result.
pub(crate) fn msi_and_bus_master(d: &Device) -> Res<(OwnedFd, Irq)> {
    // SAFETY: eventfd takes no pointers; the result is checked and owned once.
    let efd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if efd < 0 {
        return Err(format!("eventfd: {}", io::Error::last_os_error()));
    }
    // SAFETY: efd was just opened here and nothing else owns it.
    let efd = unsafe { OwnedFd::from_raw_fd(efd) };
    d.set_irqs(VFIO_PCI_MSI_IRQ_INDEX, 0, IrqAction::Trigger, IrqData::Eventfds(&[efd.as_raw_fd()])).map_err(|e| e.to_string())?;
    let irq = Irq { device: d.name().to_string(), index: VFIO_PCI_MSI_IRQ_INDEX, eventfds: vec![efd.as_raw_fd()] };
    let cmd = u16::from_le_bytes(d.read_config::<2>(4).map_err(|e| e.to_string())?) | 0x4;
    d.write_config(4, &cmd.to_le_bytes()).map_err(|e| e.to_string())?;
    Ok((efd, irq))
}

/// The copies edu's engine made from the pump thread so far.
#[derive(Default)]
pub(crate) struct Pumped {
    landed: AtomicU64,
    missed: AtomicU64,
}

impl Pumped {
    pub(crate) fn now(&self) -> (u64, u64) {
        (self.landed.load(Ordering::Relaxed), self.missed.load(Ordering::Relaxed))
    }

    /// Waits (at most 60 s) for three more copies when the pump runs, and
    /// describes the counts now and at `before`.
    pub(crate) fn after(&self, before: (u64, u64), running: bool) -> String {
        let target = if running { self.now().0 + 3 } else { 0 };
        let t = Instant::now();
        while self.now().0 + self.now().1 < target && t.elapsed() < Duration::from_secs(60) {
            sleep(Duration::from_millis(20));
        }
        let (landed, missed) = self.now();
        format!("landed={landed} missed={missed} before_landed={} before_missed={}", before.0, before.1)
    }
}

/// Runs `control` while a thread keeps edu copying into the guest memory
/// (when `running`), checking each copy; stops the thread after.
pub(crate) fn with_pump(edu: &Edu, running: bool, control: impl FnOnce(&Pumped) -> Res<()>) -> Res<()> {
    let stop = AtomicBool::new(false);
    let counts = Pumped::default();
    std::thread::scope(|s| -> Res<()> {
        let pump = s.spawn(|| -> Res<()> {
            let mut k = 0;
            while running && !stop.load(Ordering::Relaxed) {
                if edu.copy_into(k)? { &counts.landed } else { &counts.missed }.fetch_add(1, Ordering::Relaxed);
                k += 1;
            }
            Ok(())
        });
        let result = control(&counts);
        stop.store(true, Ordering::Relaxed);
        let pumped = pump.join().map_err(|_| "the DMA thread panicked".to_string())?;
        result.and(pumped)
    })
}

/// The new owner's check: 20 copies through the mappings it took over
/// (page `k * stride` for k in 0..20), then edu's MSI, which must signal
/// the eventfd it received. Returns (landed, missed, what the MSI did).
pub(crate) fn drive(edu: &Edu, stride: u64, irqs: &live::AdoptedIrqs) -> Res<(u32, u32, &'static str)> {
    let (mut landed, mut missed) = (0, 0);
    for k in 0..20 {
        if edu.copy_into(k * stride)? {
            landed += 1;
        } else {
            missed += 1;
        }
    }
    let msi = match irqs.first() {
        Some((_, index, fds)) if *index == VFIO_PCI_MSI_IRQ_INDEX && fds.len() == 1 => {
            edu.bar0.write_u32(EDU_IRQ_RAISE, 1).map_err(|e| e.to_string())?;
            let mut p = libc::pollfd { fd: fds[0].as_raw_fd(), events: libc::POLLIN, revents: 0 };
            // SAFETY: one valid pollfd, count 1.
            let fired = unsafe { libc::poll(&mut p, 1, 2000) } > 0;
            edu.bar0.write_u32(EDU_IRQ_ACK, 1).map_err(|e| e.to_string())?;
            if fired { "signalled" } else { "silent" }
        }
        _ => "not-handed-over",
    };
    Ok((landed, missed, msi))
}

// ---- the old process ----

fn old(args: &[String]) -> Res<()> {
    let bdf = arg(args, "--bdf").ok_or("--bdf")?;
    let pages: u64 = arg(args, "--maps").and_then(|v| v.parse().ok()).ok_or("--maps")?;
    let ctl_fd: RawFd = arg(args, "--ctl").and_then(|v| v.parse().ok()).ok_or("--ctl")?;
    // SAFETY: the orchestrator passed this descriptor to this process alone.
    let mut ctl = Ctl::new(unsafe { OwnedFd::from_raw_fd(ctl_fd) });
    let backend: Arc<dyn Backend> = Arc::new(KernelBackend::new());
    let c = Type1Container::open(backend, &[group_of(&bdf)?], VFIO_TYPE1V2_IOMMU).map_err(|e| e.to_string())?;
    let dev = c.device(&bdf).map_err(|e| e.to_string())?;
    let (_efd, irq) = msi_and_bus_master(&dev)?;
    let irqs = [irq];
    let memory = GuestMemory::create("vfiokit-lab-guest-ram", (pages * PAGE) as usize).map_err(|e| e.to_string())?;
    let raw: Vec<[u64; 3]> = (0..pages).map(|i| [IOVA0 + i * PAGE, memory.addr() + i * PAGE, PAGE]).collect();
    for m in &raw {
        c.map_dma(m[0], m[1], m[2], vfio_core::dma_flags::READ_WRITE).map_err(|e| e.to_string())?;
    }
    let dma = !args.iter().any(|a| a == "--no-dma");
    let edu = Edu { bar0: bar0_of(&dev)?, memory: &memory, pages };
    if dma {
        memory.write(0, &pattern()).map_err(|e| e.to_string())?;
        edu.run(IOVA0, EDU_BUFFER, false)?;
    }
    ctl.send(&format!("mapped vmlck={}", vmlck_kb(std::process::id())), &[])?;

    with_pump(&edu, dma, |pumped| loop {
        let line = ctl.recv(600)?;
        if line != "handover" {
            return Ok(());
        }
        let ho = ctl.fds.pop().ok_or("handover without a socket")?;
        let h = Handover { container: &c, devices: &[&dev], memory: &memory, mappings: &raw, irqs: &irqs };
        let before = pumped.now();
        let started = now_us();
        let outcome = live::hand_over(ho.as_raw_fd(), &h).map_err(|e| e.to_string())?;
        let ended = now_us();
        // Some DMA after the outcome, then report.
        let counts = format!("started_us={started} ended_us={ended} {}", pumped.after(before, dma));
        match outcome {
            Outcome::HandedOver => ctl.send(&format!("handed-over {counts}"), &[])?,
            Outcome::Restored { reason } => {
                ctl.send(&format!("restored {counts} vmlck={} reason={}", vmlck_kb(std::process::id()), reason.replace(' ', "_")), &[])?
            }
        }
    })
}

// ---- a new process ----

fn new(args: &[String]) -> Res<()> {
    let ho: RawFd = arg(args, "--ho").and_then(|v| v.parse().ok()).ok_or("--ho")?;
    let ctl_fd: RawFd = arg(args, "--ctl").and_then(|v| v.parse().ok()).ok_or("--ctl")?;
    let die_after: Option<usize> = arg(args, "--die-after").and_then(|v| v.parse().ok());
    // SAFETY: the orchestrator passed these descriptors to this process alone.
    let (ho, mut ctl) = unsafe { (OwnedFd::from_raw_fd(ho), Ctl::new(OwnedFd::from_raw_fd(ctl_fd))) };
    let backend: Arc<dyn Backend> = Arc::new(KernelBackend::new());
    // Started and waiting: a hand-over timed from here on does not count
    // this process's own start (exec, the dynamic loader), tens of ms under TCG.
    ctl.send("ready", &[])?;
    let taken = live::receive(ho.as_raw_fd()).and_then(|i| i.adopt(backend)).map_err(|e| e.to_string())?;
    if let Some(k) = die_after {
        live::update_all(&taken.container, &taken.memory, &taken.mappings[..k]).map_err(|e| e.to_string())?;
        // Killed mid-update, as by the OOM killer: no reply, no cleanup.
        // SAFETY: kill takes no pointers.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    }
    taken.complete(ho.as_raw_fd()).map_err(|e| e.to_string())?;
    let updated = now_us();
    ctl.send(&format!("updated maps={} vmlck={} updated_us={updated}", taken.mappings.len(), vmlck_kb(std::process::id())), &[])?;
    if ctl.recv(600)? != "go" {
        return Ok(());
    }
    let dev = taken.devices.first().ok_or("no device was handed over")?;
    let pages = taken.mappings.len() as u64;
    let edu = Edu { bar0: bar0_of(dev)?, memory: &taken.memory, pages };
    let (landed, missed, msi) = drive(&edu, 97, &taken.irqs)?;
    let vmlck = vmlck_kb(std::process::id());
    let unmapped = taken.container.unmap_all().map_err(|e| e.to_string())?;
    let after = edu.copy_into(5)?;
    ctl.send(&format!("pumped landed={landed} missed={missed} vmlck={vmlck} unmapped={unmapped:#x} after_unmap={after} msi={msi}"), &[])?;
    Ok(())
}

// ---- the orchestrator ----

struct Run {
    out: serde_json::Map<String, serde_json::Value>,
}

impl Run {
    fn put(&mut self, k: &str, v: impl Into<serde_json::Value>) {
        self.out.insert(k.into(), v.into());
    }
}

/// Starts `vfio-lab SUBCOMMAND --ho FD --ctl FD EXTRA...`, the new process
/// of a hand-over, with a socketpair for the hand-over itself and one for
/// the lab's control messages. Only the child holds its ends when this
/// returns, so a read on either of ours ends when it dies.
pub(crate) fn start_process(subcommand: &str, extra: &[String]) -> Res<(Child, Ctl, OwnedFd)> {
    let (ho_old, ho_new) = socketpair();
    let (ctl_here, ctl_there) = socketpair();
    let mut a = vec![subcommand.to_string(), "--ho".into(), ho_new.as_raw_fd().to_string(), "--ctl".into(), ctl_there.as_raw_fd().to_string()];
    a.extend_from_slice(extra);
    let child = spawn(&a, &[ho_new.as_raw_fd(), ctl_there.as_raw_fd()])?;
    drop((ho_new, ctl_there));
    Ok((child, Ctl::new(ctl_here), ho_old))
}

/// Starts a new process and waits until it is ready to receive a hand-over,
/// so that a timing from the invalidate holds no process start-up.
fn start_new(die_after: Option<usize>) -> Res<(Child, Ctl, OwnedFd)> {
    let extra: Vec<String> = die_after.map(|k| vec!["--die-after".into(), k.to_string()]).unwrap_or_default();
    let (child, mut ctl, ho) = start_process("live-new", &extra)?;
    let ready = ctl.recv(600)?;
    if ready != "ready" {
        return Err(format!("the new process said {ready:?} instead of ready"));
    }
    Ok((child, ctl, ho))
}

pub(crate) fn num_field(line: &str, key: &str) -> Option<u64> {
    line.split(' ').find_map(|w| w.strip_prefix(&format!("{key}="))).and_then(|v| v.parse().ok())
}

/// Hand-overs of 1, 64 and 4096 mappings without DMA, in microseconds from
/// the old process starting the hand-over (checks of the description, then
/// the one invalidating call), the new process already started and waiting:
/// to the new one having updated every mapping and answered (`_new_us`), and
/// to the old one having read that answer (`_old_us`). One clock
/// (CLOCK_MONOTONIC) for both processes. The best of `TIMING_RUNS` hand-overs
/// of each count (each between a new pair of processes): under TCG on a
/// loaded machine one run alone drifts by tens of milliseconds.
fn timings(bdf: &str, run: &mut Run) -> Res<()> {
    let limit: u64 = std::fs::read_to_string("/sys/module/vfio_iommu_type1/parameters/dma_entry_limit")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(65535);
    for n in [1u64, 64, 4096.min(limit)] {
        let mut best: Option<(u64, u64)> = None;
        for _ in 0..TIMING_RUNS {
            let t = timed_handover(bdf, n)?;
            best = Some(best.map_or(t, |b| if t.0 < b.0 { t } else { b }));
        }
        let (to_last_update, to_done) = best.expect("TIMING_RUNS > 0");
        run.put(&format!("timing_{n}_new_us"), to_last_update);
        run.put(&format!("timing_{n}_old_us"), to_done);
    }
    Ok(())
}

const TIMING_RUNS: usize = 3;

/// One hand-over of `n` mappings without DMA: (start .. last update, start .. the old process's return), in microseconds.
fn timed_handover(bdf: &str, n: u64) -> Res<(u64, u64)> {
    let (ctl_here, ctl_there) = socketpair();
    let args = ["live-old", "--bdf", bdf, "--maps", &n.to_string(), "--no-dma", "--ctl", &ctl_there.as_raw_fd().to_string()];
    let mut old_child = spawn(&args.map(String::from), &[ctl_there.as_raw_fd()])?;
    drop(ctl_there);
    let mut old_ctl = Ctl::new(ctl_here);
    let r = (|| -> Res<(u64, u64)> {
        old_ctl.recv(600)?;
        let (mut taker, mut taker_ctl, ho) = start_new(None)?;
        old_ctl.send("handover", &[ho.as_raw_fd()])?;
        drop(ho);
        let updated = taker_ctl.recv(600)?;
        let outcome = old_ctl.recv(600)?;
        taker_ctl.send("stop", &[])?;
        let _ = taker.wait();
        let started = num_field(&outcome, "started_us").ok_or("no start time")?;
        let last = num_field(&updated, "updated_us").ok_or("no update time")?;
        let done = num_field(&outcome, "ended_us").ok_or("no end time")?;
        Ok((last.saturating_sub(started), done.saturating_sub(started)))
    })();
    let _ = old_child.kill();
    let _ = old_child.wait();
    r
}

fn orchestrate(args: &[String], run: &mut Run) -> Res<()> {
    let bdf = arg(args, "--bdf").ok_or("--bdf")?;
    let maps = arg(args, "--maps").unwrap_or_else(|| "64".into());
    let (ctl_here, ctl_there) = socketpair();
    let mut old_child =
        spawn(&["live-old".into(), "--bdf".into(), bdf, "--maps".into(), maps, "--ctl".into(), ctl_there.as_raw_fd().to_string()], &[ctl_there.as_raw_fd()])?;
    drop(ctl_there);
    let mut old_ctl = Ctl::new(ctl_here);
    let result = (|| -> Res<()> {
        let line = old_ctl.recv(600)?;
        run.put("old_mapped", line);

        // 1. A new process that dies after updating half the mappings.
        let half: usize = arg(args, "--maps").and_then(|v| v.parse::<usize>().ok()).unwrap_or(64) / 2;
        let (mut dying, _dying_ctl, ho) = start_new(Some(half))?;
        old_ctl.send("handover", &[ho.as_raw_fd()])?;
        drop(ho);
        let status = dying.wait().map_err(|e| e.to_string())?;
        run.put("dying_new_status", format!("{status}"));
        run.put("after_dying_new", old_ctl.recv(600)?);

        // 2. A new process that takes everything.
        let acct = |pid: u32| serde_json::Value::from(vmlck_kb(pid));
        take_over(&mut old_ctl, &mut old_child, start_new(None)?, ("new_updated", "vmlck"), acct, &mut |k, v| run.put(k, v))
    })();
    let _ = old_child.kill();
    let _ = old_child.wait();
    result
}

/// The last step of both orchestrators: the old process hands over to
/// `new` (its child, control socket and hand-over socket), both report,
/// `acct` reads each process's accounting; the old one is killed with
/// SIGKILL, and the new one, told `go`, drives edu through what it took.
/// Puts `keys.0` (the new process's first line), `old_outcome`,
/// `old_{keys.1}_after`, `new_{keys.1}_after`, `old_status`,
/// `new_{keys.1}_old_dead`, `new_pumped` and `new_status`.
pub(crate) fn take_over(
    old_ctl: &mut Ctl,
    old_child: &mut Child,
    new: (Child, Ctl, OwnedFd),
    keys: (&str, &str),
    acct: impl Fn(u32) -> serde_json::Value,
    put: &mut dyn FnMut(&str, serde_json::Value),
) -> Res<()> {
    let (mut taker, mut taker_ctl, ho) = new;
    old_ctl.send("handover", &[ho.as_raw_fd()])?;
    drop(ho);
    put(keys.0, taker_ctl.recv(600)?.into());
    put("old_outcome", old_ctl.recv(600)?.into());
    put(&format!("old_{}_after", keys.1), acct(old_child.id()));
    put(&format!("new_{}_after", keys.1), acct(taker.id()));
    old_child.kill().map_err(|e| e.to_string())?;
    put("old_status", format!("{}", old_child.wait().map_err(|e| e.to_string())?).into());
    put(&format!("new_{}_old_dead", keys.1), acct(taker.id()));
    taker_ctl.send("go", &[])?;
    put("new_pumped", taker_ctl.recv(600)?.into());
    put("new_status", format!("{}", taker.wait().map_err(|e| e.to_string())?).into());
    Ok(())
}

pub fn main(args: &[String]) -> i32 {
    let r = match args.first().map(String::as_str) {
        Some("live-old") => old(args),
        Some("live-new") => new(args),
        Some("live-handover") => {
            let mut run = Run { out: serde_json::Map::new() };
            let r = orchestrate(args, &mut run).and_then(|_| {
                let bdf = arg(args, "--bdf").unwrap_or_default();
                if args.iter().any(|a| a == "--timings") { timings(&bdf, &mut run) } else { Ok(()) }
            });
            if let Err(e) = &r {
                run.put("error", e.clone());
            }
            let mut o = io::stdout().lock();
            let _ = writeln!(o, "{}", serde_json::Value::Object(run.out));
            r
        }
        _ => Err("usage: vfio-lab live-handover --bdf BDF [--maps N]".into()),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vfio-lab {}: {e}", args.first().map(String::as_str).unwrap_or(""));
            1
        }
    }
}
