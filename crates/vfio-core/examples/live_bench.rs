//! Live hand-over benchmark on the mock backend (`pnpm bench`, through
//! crates/vfio-core/bench/main.mjs): the window during which a container's
//! mappings have no valid host address, from the one call that invalidates
//! them all to the last update, for 1, 64 and 4096 mappings, printed side by
//! side in one run.
//!
//! The window holds what a hand-over does between those two calls, in the
//! order `live::hand_over` and `TakenOver::complete` do it, in one process:
//! invalidate every mapping (`VFIO_DMA_UNMAP_FLAG_ALL | _VADDR`), write the
//! description, parse it, map the memfd again (the new process's view), update
//! every mapping (`VFIO_DMA_MAP_FLAG_VADDR`). What it leaves out is the
//! socket and the scheduling of a second process; the lab measures the whole
//! thing between two processes on the kernel (vfio-lab live-handover
//! --timings).
//!
//! Beside each window: what the hand-over saves, the same mappings unmapped
//! and mapped again from the new view (the way without VFIO_UPDATE_VADDR,
//! during which DMA must stop), which on the mock as on the kernel pins every
//! page again (vfio_pin_pages_remote; the mock's mincore walk).
//!
//! Rows with a target go to the file named in VFIOKIT_BENCH_ROWS (see
//! scripts/bench.mjs). Timings are evidence, never a test.

use std::os::fd::{FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Instant;

use vfio_core::backend::{Backend, MockDeviceConfig, MockGroupConfig};
use vfio_core::live::{self, Description, GuestMemory, Mapping};
use vfio_core::uapi::VFIO_TYPE1V2_IOMMU;
use vfio_core::{dma_flags, MockConfig, Type1Container};

const PAGE: u64 = 4096;
/// Above 4 GiB, clear of the MSI window.
const IOVA0: u64 = 0x1_0000_0000;
const RUNS: usize = 7;

/// This thread's CPU time in nanoseconds: on a shared machine the wall clock
/// also counts waiting for a core.
fn cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec into `ts`.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

#[derive(Clone, Copy)]
struct Time {
    wall: u64,
    cpu: u64,
}

/// Times `f`; what it returns is dropped after the clock stops.
fn timed<T>(f: impl FnOnce() -> T) -> Time {
    let (c0, t0) = (cpu_ns(), Instant::now());
    let out = f();
    let t = Time { wall: t0.elapsed().as_nanos() as u64, cpu: cpu_ns() - c0 };
    drop(out);
    t
}

fn best(ts: &[Time]) -> Time {
    Time { wall: ts.iter().map(|t| t.wall).min().unwrap(), cpu: ts.iter().map(|t| t.cpu).min().unwrap() }
}

/// A mock container with `n` one-page mappings of a memfd, each its own
/// VFIO_IOMMU_MAP_DMA (a gap between IOVAs, so none could have been merged).
fn setup(n: u64) -> (Type1Container, GuestMemory, Vec<[u64; 3]>) {
    let b: Arc<dyn Backend> = Arc::new(vfio_core::MockBackend::new(
        MockConfig::empty().with_group(MockGroupConfig::new(1).with_device(MockDeviceConfig::edu("0000:00:03.0"))),
    ));
    let c = Type1Container::open(b, &[1], VFIO_TYPE1V2_IOMMU).expect("mock container");
    let mem = GuestMemory::create("vfiokit-bench", (n * PAGE) as usize).expect("memfd");
    mem.write(0, &vec![1u8; (n * PAGE) as usize]).expect("touch every page");
    let raw: Vec<[u64; 3]> = (0..n).map(|i| [IOVA0 + 2 * i * PAGE, mem.addr() + i * PAGE, PAGE]).collect();
    for m in &raw {
        c.map_dma(m[0], m[1], m[2], dma_flags::READ_WRITE).expect("map");
    }
    (c, mem, raw)
}

fn second_view(mem: &GuestMemory) -> GuestMemory {
    // SAFETY: dup of a descriptor `mem` keeps open; the result is owned once.
    let fd = unsafe { OwnedFd::from_raw_fd(libc::dup(mem.raw_fd())) };
    GuestMemory::from_fd(fd, mem.len()).expect("second view")
}

/// Invalidate .. last update, as a hand-over does it.
fn window(n: u64) -> Time {
    let (c, mem, raw) = setup(n);
    let maps: Vec<Mapping> = raw.iter().map(|m| Mapping { iova: m[0], size: m[2], offset: m[1] - mem.addr() }).collect();
    let d = Description { iommufd: None, groups: c.group_ids(), devices: vec![], memory_len: mem.len() as u64, irqs: vec![], mappings: maps };
    timed(|| {
        assert_eq!(c.invalidate_all_vaddrs().expect("invalidate"), n * PAGE);
        let got = Description::parse(&d.to_text()).expect("parse");
        let new = second_view(&mem);
        live::update_all(&c, &new, &got.mappings).expect("update");
        new
    })
}

/// The way without VFIO_UPDATE_VADDR: every mapping unmapped, then mapped
/// again from the new view.
fn remap(n: u64) -> Time {
    let (c, mem, raw) = setup(n);
    timed(|| {
        let new = second_view(&mem);
        assert_eq!(c.unmap_all().expect("unmap"), n * PAGE);
        for m in &raw {
            c.map_dma(m[0], new.addr() + (m[1] - mem.addr()), m[2], dma_flags::READ_WRITE).expect("map");
        }
        new
    })
}

fn us(ns: u64) -> String {
    format!("{:.1}", ns as f64 / 1000.0)
}

fn row(name: &str, value: String, target: &str, ok: bool) {
    println!("    {} {name:<44} {value:>22}   {target}", if ok { "ok  " } else { "MISS" });
    if let Ok(file) = std::env::var("VFIOKIT_BENCH_ROWS") {
        use std::io::Write;
        let line = format!(
            "{{\"bench\":\"vfio-core live\",\"name\":\"{name}\",\"value\":\"{value}\",\"target\":\"{target}\",\"ok\":{ok}}}\n"
        );
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(file).expect("rows file");
        f.write_all(line.as_bytes()).expect("rows file");
    }
}

fn main() {
    println!("\nvfio-core live hand-over on the mock: invalidate every mapping .. last update, best of {RUNS}\n");
    println!("    {:>9} {:>14} {:>14} {:>12} {:>16} {:>14}", "mappings", "window us", "cpu us", "us/mapping", "unmap+map us", "window/remap");
    let mut per = Vec::new();
    for n in [1u64, 64, 4096] {
        let w = best(&(0..RUNS).map(|_| window(n)).collect::<Vec<_>>());
        let r = best(&(0..RUNS).map(|_| remap(n)).collect::<Vec<_>>());
        println!(
            "    {n:>9} {:>14} {:>14} {:>12.2} {:>16} {:>13.2}x",
            us(w.wall),
            us(w.cpu),
            w.cpu as f64 / 1000.0 / n as f64,
            us(r.cpu),
            w.cpu as f64 / r.cpu as f64
        );
        per.push((n, w, r));
    }
    let (w1, w64, w4096) = (per[0].1, per[1].1, per[2].1);
    println!(
        "\n    growth (cpu): 64 mappings {:.1}x the window of 1, 4096 mappings {:.1}x the window of 64 (linear: 64x)",
        w64.cpu as f64 / w1.cpu as f64,
        w4096.cpu as f64 / w64.cpu as f64
    );
    println!("\nsummary");
    // One mapping is all fixed cost (mapping the memfd again), the same on
    // both sides: its ratio is printed above, the rows hold the counts where
    // the per-mapping work decides.
    for (n, w, r) in &per[1..] {
        let ratio = w.cpu as f64 / r.cpu as f64;
        row(&format!("hand-over window / unmap+map, {n} mappings"), format!("{ratio:.2}x cpu"), "< 1x", ratio < 1.0);
    }
    let growth = w4096.cpu as f64 / w64.cpu as f64;
    row("hand-over window 4096 / 64 mappings", format!("{growth:.1}x cpu"), "<= 128x (linear 64x)", growth <= 128.0);
}
