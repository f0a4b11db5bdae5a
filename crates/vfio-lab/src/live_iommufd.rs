//! The iommufd hand-over between processes on the real kernel (Linux 6.13
//! or later), with edu DMA running through it (vfio-core's
//! `live::hand_over_iommufd`). Run in the lab guest by
//! packages/core/src/vfio/live.iommufd-lab.ts:
//!
//! ```text
//! vfio-lab live-iommufd --bdf BDF --maps N --mode mm|user
//! ```
//!
//! The old process (`live-iommufd-old`) opens /dev/iommu, sets
//! IOMMU_OPTION_RLIMIT_MODE (`mm`: the process's locked_vm, VmLck; `user`:
//! the user's), binds the edu's cdev and attaches it to an IOAS, then maps
//! N pages of a memfd with IOMMU_IOAS_MAP_FILE, one mapping each, and
//! keeps edu's DMA engine copying into them from a thread. Both processes
//! run without CAP_IPC_LOCK, so the pins are charged (with it iommufd
//! charges nothing: IOPT_PAGES_ACCOUNT_NONE). Then:
//!
//! 1. a new process (`live-iommufd-new --die before`) adopts the
//!    descriptors and is killed before IOMMU_IOAS_CHANGE_PROCESS: the old
//!    one sees the socket close and carries on, its DMA landing;
//! 2. (`--mode user` only) one killed right after CHANGE_PROCESS, before
//!    it answers: the old one calls CHANGE_PROCESS itself and the charge
//!    comes back to it from the dead process (ioas.c change_mm keeps its
//!    mm referenced). With `--dead-mm` this alone, for RLIMIT_MODE 1, where
//!    the kernel cannot uncharge the dead mm and warns;
//! 3. the old process adds one IOMMU_IOAS_MAP mapping of its own memory:
//!    its hand-over is refused before anything is sent (its own
//!    CHANGE_PROCESS answers EINVAL: only file mappings move), the new
//!    process finds the socket closed; the old one unmaps it again;
//! 4. a new process takes over: VmPin (and with `mm` VmLck) moves from the
//!    old process to it; the old one is killed with SIGKILL; the new one
//!    drives edu's DMA through the same mappings, unmaps them and sees the
//!    next DMA not land.
//!
//! It prints one JSON object; the lab case asserts on it.

use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;

use vfio_core::backend::{Backend, KernelBackend};
use vfio_core::live::{self, GuestMemory, IommufdHandover, Mapping, Outcome};
use vfio_core::{CdevDevice, Iommufd};

use crate::live_handover::{arg, bar0_of, drive, msi_and_bus_master, socketpair, spawn, start_process, status_kb, take_over, with_pump, Ctl, Edu, Res, IOVA0, PAGE};

/// Room for every pin the processes make, well below what the guest has.
const MEMLOCK: u64 = 64 << 20;

fn cdev_of(bdf: &str) -> Res<u32> {
    let dir = format!("/sys/bus/pci/devices/{bdf}/vfio-dev");
    let name = std::fs::read_dir(&dir)
        .map_err(|e| format!("{dir}: {e} (is {bdf} bound to vfio-pci on a kernel with VFIO_DEVICE_CDEV?)"))?
        .filter_map(|e| e.ok())
        .find_map(|e| e.file_name().to_str().and_then(|n| n.strip_prefix("vfio")).and_then(|n| n.parse().ok()));
    name.ok_or_else(|| format!("{dir} holds no vfioN"))
}

/// A caller whose pins are charged: CAP_IPC_LOCK dropped, RLIMIT_MEMLOCK
/// at [`MEMLOCK`] (kept for the process's life).
fn charged_caller() -> crate::memlock::LowMemlock {
    crate::memlock::LowMemlock::new(MEMLOCK)
}

fn pins(pid: u32) -> String {
    format!("vmpin={} vmlck={}", status_kb(pid, "VmPin"), status_kb(pid, "VmLck"))
}

// ---- the old process ----

fn old(args: &[String]) -> Res<()> {
    let bdf = arg(args, "--bdf").ok_or("--bdf")?;
    let pages: u64 = arg(args, "--maps").and_then(|v| v.parse().ok()).ok_or("--maps")?;
    let mm = arg(args, "--mode").as_deref() == Some("mm");
    let ctl_fd: RawFd = arg(args, "--ctl").and_then(|v| v.parse().ok()).ok_or("--ctl")?;
    // SAFETY: the orchestrator passed this descriptor to this process alone.
    let mut ctl = Ctl::new(unsafe { OwnedFd::from_raw_fd(ctl_fd) });
    let _charged = charged_caller();
    let backend: Arc<dyn Backend> = Arc::new(KernelBackend::new());
    // A setup failure is told to the orchestrator too (it prints it).
    let e = |e: vfio_core::Error| {
        let m = e.to_string();
        let _ = ctl.send(&format!("failed {m}"), &[]);
        m
    };
    let ictx = Iommufd::open(backend.clone()).map_err(e)?;
    ictx.set_rlimit_per_process(mm).map_err(e)?;
    let ioas = ictx.alloc_ioas().map_err(e)?;
    let mut dev = CdevDevice::open(backend, cdev_of(&bdf)?).map_err(e)?;
    dev.bind(&ictx).map_err(e)?;
    dev.attach(ioas.id()).map_err(e)?;
    let d = dev.device();
    let (_efd, irq) = msi_and_bus_master(d)?;
    let irqs = [irq];
    let memory = GuestMemory::create("vfiokit-lab-guest-ram", (pages * PAGE) as usize).map_err(e)?;
    // One mapping per page, or with --one-map one for all (one iopt_pages).
    let mappings: Vec<Mapping> = if args.iter().any(|a| a == "--one-map") {
        vec![Mapping { iova: IOVA0, size: pages * PAGE, offset: 0 }]
    } else {
        (0..pages).map(|i| Mapping { iova: IOVA0 + i * PAGE, size: PAGE, offset: i * PAGE }).collect()
    };
    for m in &mappings {
        ioas.map_file(Some(m.iova), memory.raw_fd(), m.offset, m.size, vfio_core::dma_flags::READ_WRITE).map_err(e)?;
    }
    let edu = Edu { bar0: bar0_of(d)?, memory: &memory, pages };
    memory.write(0, &crate::live_handover::pattern()).map_err(e)?;
    edu.run(IOVA0, crate::edu::EDU_BUFFER, false)?;
    let me = std::process::id();
    ctl.send(&format!("mapped {}", pins(me)), &[])?;
    let e = |e: vfio_core::Error| e.to_string();

    let stray_page = vfio_core::HostMemory::new(PAGE as usize).map_err(e)?;
    let mut stray = None;
    with_pump(&edu, true, |pumped| loop {
        let line = ctl.recv(600)?;
        match line.as_str() {
            // One mapping made from this process's addresses, which
            // CHANGE_PROCESS cannot move (IOPT_ADDRESS_USER).
            "add-address-map" => {
                let iova = ioas.map(None, stray_page.addr(), PAGE, vfio_core::dma_flags::READ_WRITE).map_err(e)?;
                stray = Some(iova);
                ctl.send(&format!("added iova={iova:#x}"), &[])?;
                continue;
            }
            "drop-address-map" => {
                let n = stray.take().map(|iova| ioas.unmap(iova, PAGE)).transpose().map_err(e)?;
                ctl.send(&format!("dropped bytes={}", n.unwrap_or(0)), &[])?;
                continue;
            }
            "handover" => {}
            _ => return Ok(()),
        }
        let ho = ctl.fds.pop().ok_or("handover without a socket")?;
        let h = IommufdHandover { iommufd: &ictx, ioas_id: ioas.id(), devices: &[d], memory: &memory, mappings: &mappings, irqs: &irqs };
        let before = pumped.now();
        let outcome = match live::hand_over_iommufd(ho.as_raw_fd(), &h) {
            Ok(o) => o,
            // Refused before anything was sent: say why and go on.
            Err(err) => {
                let why = err.detail.clone().unwrap_or_default().replace(' ', "_");
                ctl.send(&format!("refused {} {} {} why={why}", err.code(), pumped.after(before, true), pins(me)), &[])?;
                continue;
            }
        };
        // Some DMA after the outcome, then report.
        let counts = format!("{} {}", pumped.after(before, true), pins(me));
        match outcome {
            Outcome::HandedOver => ctl.send(&format!("handed-over {counts}"), &[])?,
            Outcome::Restored { reason } => ctl.send(&format!("restored {counts} reason={}", reason.replace(' ', "_")), &[])?,
        }
    })
}

// ---- a new process ----

fn new(args: &[String]) -> Res<()> {
    let ho: RawFd = arg(args, "--ho").and_then(|v| v.parse().ok()).ok_or("--ho")?;
    let ctl_fd: RawFd = arg(args, "--ctl").and_then(|v| v.parse().ok()).ok_or("--ctl")?;
    let die = arg(args, "--die");
    // SAFETY: the orchestrator passed these descriptors to this process alone.
    let (ho, mut ctl) = unsafe { (OwnedFd::from_raw_fd(ho), Ctl::new(OwnedFd::from_raw_fd(ctl_fd))) };
    let _charged = charged_caller();
    let e = |e: vfio_core::Error| e.to_string();
    let backend: Arc<dyn Backend> = Arc::new(KernelBackend::new());
    let taken = live::receive(ho.as_raw_fd()).and_then(|i| i.adopt_iommufd(backend)).map_err(e)?;
    let kill_self = || {
        // Killed mid-way, as by the OOM killer: no reply, no cleanup.
        // SAFETY: kill takes no pointers.
        unsafe { libc::kill(libc::getpid(), libc::SIGKILL) };
    };
    match die.as_deref() {
        Some("before") => kill_self(),
        Some("after") => {
            taken.iommufd.change_process().map_err(e)?;
            kill_self();
        }
        _ => {}
    }
    let me = std::process::id();
    if let Err(err) = taken.complete(ho.as_raw_fd()) {
        ctl.send(&format!("failed {} {}", err.code(), pins(me)), &[])?;
        return Ok(());
    }
    ctl.send(&format!("changed maps={} {}", taken.mappings.len(), pins(me)), &[])?;
    if ctl.recv(600)? != "go" {
        return Ok(());
    }
    let dev = taken.devices.first().ok_or("no device was handed over")?;
    let edu = Edu { bar0: bar0_of(dev)?, memory: &taken.memory, pages: taken.mappings.len() as u64 };
    let (landed, missed, msi) = drive(&edu, 7, &taken.irqs)?;
    let held = pins(me);
    let unmapped = taken.ioas.unmap_all().map_err(e)?;
    let after = edu.copy_into(5)?;
    ctl.send(&format!("pumped landed={landed} missed={missed} {held} unmapped={unmapped:#x} after_unmap={after} msi={msi} then_{}", pins(me)), &[])?;
    Ok(())
}

// ---- the orchestrator ----

fn start_new(die: Option<&str>) -> Res<(std::process::Child, Ctl, OwnedFd)> {
    let extra: Vec<String> = die.map(|d| vec!["--die".into(), d.into()]).unwrap_or_default();
    start_process("live-iommufd-new", &extra)
}

/// The `WARNING:` lines of the kernel log (/dev/kmsg, read from its start
/// without waiting) after the last record containing `note`, joined by ` | `.
fn kernel_warnings_after(note: &str) -> String {
    use std::io::Read;
    let Ok(mut f) = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open("/dev/kmsg") else {
        return "unreadable".into();
    };
    let mut records = Vec::new();
    let mut buf = vec![0u8; 8192];
    // One record per read; EAGAIN at the end, EPIPE when one was overwritten.
    loop {
        match f.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => records.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => continue,
            Err(_) => break,
        }
    }
    let from = records.iter().rposition(|r| r.contains(note)).map_or(records.len(), |i| i + 1);
    let warned: Vec<String> = records[from..]
        .iter()
        .filter_map(|r| r.split_once(';').map(|(_, text)| text.trim().to_string()))
        .filter(|t| t.starts_with("WARNING:"))
        .collect();
    warned.join(" | ")
}

/// What `--dead-mm` writes to the kernel log before its hand-over: the
/// lab's console check takes a warning only after this line.
pub const DEAD_MM_NOTE: &str = "vfiokit-lab: a new process dies right after IOMMU_IOAS_CHANGE_PROCESS; the old one takes the charge back";

fn orchestrate(args: &[String], out: &mut serde_json::Map<String, serde_json::Value>) -> Res<()> {
    let mut put = |k: &str, v: serde_json::Value| {
        out.insert(k.into(), v);
    };
    let bdf = arg(args, "--bdf").ok_or("--bdf")?;
    let maps = arg(args, "--maps").unwrap_or_else(|| "64".into());
    let mode = arg(args, "--mode").unwrap_or_else(|| "mm".into());
    let (ctl_here, ctl_there) = socketpair();
    let dead_mm = args.iter().any(|a| a == "--dead-mm");
    let mut a: Vec<String> = ["live-iommufd-old", "--bdf", &bdf, "--maps", &maps, "--mode", &mode, "--ctl", &ctl_there.as_raw_fd().to_string()].map(String::from).to_vec();
    if dead_mm {
        // One iopt_pages: the kernel warns once per iopt_pages it cannot uncharge.
        a.push("--one-map".into());
    }
    let mut old_child = spawn(&a, &[ctl_there.as_raw_fd()])?;
    drop(ctl_there);
    let mut old_ctl = Ctl::new(ctl_here);
    let result = (|| -> Res<()> {
        let mapped = old_ctl.recv(600)?;
        if mapped.starts_with("failed ") {
            return Err(format!("the old process could not set up: {mapped}"));
        }
        put("old_mapped", mapped.into());

        // With --dead-mm alone: the path the other runs leave out (below),
        // announced on the console first, since the kernel may warn.
        if dead_mm {
            let note = format!("{DEAD_MM_NOTE} (RLIMIT_MODE {mode})\n");
            std::fs::write("/dev/kmsg", note.as_bytes()).map_err(|e| format!("/dev/kmsg: {e}"))?;
            let (mut dying, _ctl, ho) = start_new(Some("after"))?;
            old_ctl.send("handover", &[ho.as_raw_fd()])?;
            drop(ho);
            put("dying_after_status", format!("{}", dying.wait().map_err(|e| e.to_string())?).into());
            put("after_dying_after", old_ctl.recv(600)?.into());
            put("old_pins_dead_mm", pins(old_child.id()).into());
            // The lab console shows only messages below KERN_WARNING
            // (loglevel=4): the kernel's own log says what it warned.
            put("kernel_warnings_after_note", kernel_warnings_after(DEAD_MM_NOTE).into());
            return Ok(());
        }

        // 1 and 2. New processes killed before and right after
        // CHANGE_PROCESS. The second only with the user's accounting here:
        // with RLIMIT_MODE 1 the kernel warns (the --dead-mm run above).
        let dies: &[&str] = if mode == "user" { &["before", "after"] } else { &["before"] };
        for &die in dies {
            let (mut dying, _ctl, ho) = start_new(Some(die))?;
            old_ctl.send("handover", &[ho.as_raw_fd()])?;
            drop(ho);
            let status = dying.wait().map_err(|e| e.to_string())?;
            put(&format!("dying_{die}_status"), format!("{status}").into());
            put(&format!("after_dying_{die}"), old_ctl.recv(600)?.into());
        }

        // 3. A mapping made from an address: the old process's own
        // CHANGE_PROCESS refuses (EINVAL) before anything is sent, and the
        // new process finds the socket closed without a hand-over.
        old_ctl.send("add-address-map", &[])?;
        put("address_map", old_ctl.recv(600)?.into());
        let (mut refused, mut refused_ctl, ho) = start_new(None)?;
        old_ctl.send("handover", &[ho.as_raw_fd()])?;
        drop(ho);
        put("after_refused", old_ctl.recv(600)?.into());
        put("refused_new", refused_ctl.recv(60).unwrap_or_else(|e| format!("said nothing: {e}")).into());
        put("refused_status", format!("{}", refused.wait().map_err(|e| e.to_string())?).into());
        old_ctl.send("drop-address-map", &[])?;
        put("address_unmapped", old_ctl.recv(600)?.into());

        // 4. A new process that takes everything.
        let acct = |pid: u32| serde_json::Value::from(pins(pid));
        take_over(&mut old_ctl, &mut old_child, start_new(None)?, ("new_changed", "pins"), acct, &mut put)
    })();
    let _ = old_child.kill();
    let _ = old_child.wait();
    result
}

pub fn main(args: &[String]) -> i32 {
    let r = match args.first().map(String::as_str) {
        Some("live-iommufd-old") => old(args),
        Some("live-iommufd-new") => new(args),
        Some("live-iommufd") => {
            let mut out = serde_json::Map::new();
            let r = orchestrate(args, &mut out);
            if let Err(e) = &r {
                out.insert("error".into(), e.clone().into());
            }
            let _ = writeln!(io::stdout().lock(), "{}", serde_json::Value::Object(out));
            r
        }
        _ => Err("usage: vfio-lab live-iommufd --bdf BDF [--maps N] [--mode mm|user]".into()),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("vfio-lab {}: {e}", args.first().map(String::as_str).unwrap_or(""));
            1
        }
    }
}

