//! type1 pins what it maps (vfio_pin_map_dma -> vfio_pin_pages_remote,
//! vfio_lock_acct): host memory the process has not mapped, and locked
//! memory past RLIMIT_MEMLOCK for a caller without CAP_IPC_LOCK. Also the
//! argument edges the map/unmap cases leave out (argsz, a range leaving the
//! aperture, what a failed unmap writes back).

use std::mem::size_of;

use vfio_core::backend::RawFd;
use vfio_core::uapi::*;

use super::util::{iommu_info, map, type1v2, unmap, HostBuf, RW};
use crate::case::{Case, CaseResult, Ctx};
use crate::memlock::LowMemlock;

const PAGE: u64 = 4096;
const IOVA: u64 = 0x10_0000;

/// `VFIO_IOMMU_MAP_DMA` of a host address given as is (not inside a buffer).
fn map_raw(ctx: &mut Ctx, c: RawFd, label: &str, vaddr: u64, iova: u64, size: u64) -> Result<(), i32> {
    let m = vfio_iommu_type1_dma_map { argsz: size_of::<vfio_iommu_type1_dma_map>() as u32, flags: RW, vaddr, iova, size };
    let r = ctx.backend.map_dma(c, &m);
    ctx.call(format!("MAP_DMA iova={iova:#x} size={size:#x} flags=RW vaddr={label}"), r).map_err(|e| e.0)
}

/// Unmaps the last `pages` pages of `buf` (the buffer's own munmap at drop
/// ignores the hole).
fn punch(buf: &HostBuf, from_page: u64, pages: u64) {
    // SAFETY: the range lies inside `buf`'s own mapping, which nothing else uses.
    unsafe { libc::munmap((buf.addr() + from_page * PAGE) as *mut libc::c_void, (pages * PAGE) as usize) };
}

fn unmapped_host_memory(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    let _ = map_raw(ctx, c, "0", 0, IOVA, PAGE);
    let buf = HostBuf::new(8 * PAGE as usize);
    punch(&buf, 4, 4);
    let _ = map_raw(ctx, c, "buf+0x4000 (unmapped)", buf.addr() + 4 * PAGE, IOVA, PAGE);
    let _ = map(ctx, c, &buf, 0, IOVA, 8 * PAGE, RW); // the last half unmapped
    let _ = map(ctx, c, &buf, 2 * PAGE, IOVA, 4 * PAGE, RW); // runs into the hole
    let _ = map(ctx, c, &buf, 0, IOVA, 4 * PAGE, RW); // the mapped half: fine
    let _ = iommu_info(ctx, c, 4096); // the failed maps took no entry
    let _ = map(ctx, c, &buf, 0, IOVA + 4 * PAGE, PAGE, RW); // the range after it is free
    Ok(())
}

fn memlock_limit(ctx: &mut Ctx) -> CaseResult {
    // A limit of 16 pages: vfio_pin_pages_remote refuses the page that
    // would take locked_vm past it, without CAP_IPC_LOCK. locked_vm counts
    // what earlier cases left charged too; these cases run before the ones
    // that leave pages charged for good on AMD-Vi (maps of the aperture's
    // last page, see dma.rs), and the mock keeps those charged as well.
    let (c, g) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(32 * PAGE as usize);
    let already = crate::memlock::locked_now();
    if already != 0 {
        eprintln!("memlock case: {already:#x} bytes were locked before it began");
    }
    let low = LowMemlock::new(16 * PAGE);
    ctx.observe("CAP_IPC_LOCK dropped", format!("{}", low.caps.is_some()));
    let _ = map(ctx, c, &buf, 0, IOVA, 8 * PAGE, RW);
    let _ = map(ctx, c, &buf, 8 * PAGE, IOVA + 8 * PAGE, 8 * PAGE, RW); // exactly at the limit
    let _ = map(ctx, c, &buf, 16 * PAGE, IOVA + 16 * PAGE, PAGE, RW); // one page past it
    let _ = map(ctx, c, &buf, 0, IOVA + 32 * PAGE, PAGE, RW); // the same page at another IOVA counts again
    let _ = unmap(ctx, c, IOVA, 8 * PAGE, 0);
    let _ = map(ctx, c, &buf, 16 * PAGE, IOVA + 16 * PAGE, 8 * PAGE, RW); // room again
    let _ = map(ctx, c, &buf, 24 * PAGE, IOVA + 24 * PAGE, 8 * PAGE, RW); // a whole map past it
    // Releasing the container gives every page back.
    ctx.close(g);
    ctx.close(c);
    let (c2, _) = type1v2(ctx, "solo")?;
    let _ = map(ctx, c2, &buf, 0, IOVA, 16 * PAGE, RW);
    let _ = unmap(ctx, c2, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL);
    drop(low);
    Ok(())
}

fn argsz_and_edges(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(4 * PAGE as usize);
    for argsz in [31u32, 8, 64] {
        let m = vfio_iommu_type1_dma_map { argsz, flags: RW, vaddr: buf.addr(), iova: IOVA, size: PAGE };
        let r = ctx.backend.map_dma(c, &m);
        let _ = ctx.call(format!("MAP_DMA argsz={argsz} iova={IOVA:#x} size=0x1000"), r);
    }
    let _ = unmap(ctx, c, IOVA, PAGE, 0);
    // A map that starts in the top IOVA range and ends past the aperture.
    let info = iommu_info(ctx, c, 4096).map_err(|e| crate::case::Abort(format!("IOMMU_GET_INFO failed with errno {e}")))?;
    if let Some(&(_, top)) = info.ranges.last() {
        let _ = map(ctx, c, &buf, 0, top - (PAGE - 1), 2 * PAGE, RW);
    }
    // What a failed unmap writes back into its struct: argsz, a bisected
    // mapping, a bad flag. The size field is compared as the kernel left it.
    let _ = map(ctx, c, &buf, 0, IOVA, 4 * PAGE, RW);
    for (label, argsz, iova, size, flags) in [
        ("argsz=16", 16u32, IOVA, 4 * PAGE, 0u32),
        ("a bisected mapping", 24, IOVA, PAGE, 0),
        ("an unknown flag", 24, IOVA, 4 * PAGE, 0x80),
        ("a misaligned size", 24, IOVA, 0x800, 0),
    ] {
        let mut u = vfio_iommu_type1_dma_unmap { argsz, flags, iova, size, data: [] };
        let r = ctx.backend.unmap_dma(c, &mut u);
        let _ = ctx.call(format!("UNMAP_DMA with {label}"), r);
        ctx.observe(format!("UNMAP_DMA with {label}: size after"), format!("{:#x}", u.size));
    }
    Ok(())
}

pub fn cases() -> Vec<Case> {
    vec![
        Case { name: "a map of host memory the process has not mapped (address 0, a hole, a range running into one) fails with EFAULT and takes nothing", run: unmapped_host_memory },
        Case { name: "without CAP_IPC_LOCK, maps past RLIMIT_MEMLOCK fail with ENOMEM until unmap or release gives pages back", run: memlock_limit },
        Case { name: "a map with a short argsz, one leaving the aperture, and what a failed unmap writes back", run: argsz_and_edges },
    ]
}
