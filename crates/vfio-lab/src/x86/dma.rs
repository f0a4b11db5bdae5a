//! type1v2 map and unmap rules (drivers/vfio/vfio_iommu_type1.c in 6.1:
//! vfio_dma_do_map, vfio_dma_do_unmap, vfio_iommu_iova_dma_valid,
//! vfio_iommu_type1_get_info) and vfio-core's batches with rollback.

use std::sync::Arc;

use vfio_core::uapi::*;

use super::util::{iommu_info, map, type1v2, unmap, HostBuf, RW};
use crate::case::{Case, CaseResult, Ctx};

const PAGE: u64 = 4096;
/// Below edu's 28-bit DMA mask, and inside the first IOVA range.
const IOVA: u64 = 0x10_0000;

fn info_sizes(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    // Too small for the fixed part; exactly the v1 part (no cap_offset);
    // the whole struct but no room for capabilities; room for everything.
    for argsz in [8, 16, 24, 4096] {
        let _ = iommu_info(ctx, c, argsz);
    }
    Ok(())
}

fn dma_avail_counts_entries(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(4 * PAGE as usize);
    let _ = map(ctx, c, &buf, 0, IOVA, PAGE, RW);
    let _ = map(ctx, c, &buf, PAGE, IOVA + PAGE, 2 * PAGE, RW);
    let _ = iommu_info(ctx, c, 4096);
    let _ = unmap(ctx, c, IOVA, PAGE, 0);
    let _ = iommu_info(ctx, c, 4096);
    Ok(())
}

fn map_then_unmap(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(16 * PAGE as usize);
    let _ = map(ctx, c, &buf, 0, IOVA, 16 * PAGE, RW);
    let _ = unmap(ctx, c, IOVA, 16 * PAGE, 0);
    let _ = map(ctx, c, &buf, 0, IOVA, 16 * PAGE, VFIO_DMA_MAP_FLAG_READ);
    let _ = unmap(ctx, c, IOVA, 16 * PAGE, 0);
    let _ = map(ctx, c, &buf, 0, IOVA, 16 * PAGE, VFIO_DMA_MAP_FLAG_WRITE);
    let _ = unmap(ctx, c, IOVA, 16 * PAGE, 0);
    Ok(())
}

fn overlap(ctx: &mut Ctx) -> CaseResult {
    // vfio_find_dma finds any mapping that intersects the new range.
    let (c, _) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(16 * PAGE as usize);
    let _ = map(ctx, c, &buf, 0, IOVA + 4 * PAGE, 4 * PAGE, RW);
    let _ = map(ctx, c, &buf, 0, IOVA + 4 * PAGE, 4 * PAGE, RW); // the same range
    let _ = map(ctx, c, &buf, 0, IOVA + 2 * PAGE, 4 * PAGE, RW); // overlaps the start
    let _ = map(ctx, c, &buf, 0, IOVA + 7 * PAGE, 4 * PAGE, RW); // overlaps the end
    let _ = map(ctx, c, &buf, 0, IOVA, 16 * PAGE, RW); // covers it
    let _ = map(ctx, c, &buf, 0, IOVA + 5 * PAGE, PAGE, RW); // inside it
    let _ = map(ctx, c, &buf, 0, IOVA + 3 * PAGE, PAGE, RW); // just before: fine
    let _ = map(ctx, c, &buf, 0, IOVA + 8 * PAGE, PAGE, RW); // just after: fine
    // The same host pages at a second IOVA are fine too.
    let _ = map(ctx, c, &buf, 4 * PAGE, IOVA + 9 * PAGE, 4 * PAGE, RW);
    Ok(())
}

fn bad_arguments(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(4 * PAGE as usize);
    let _ = map(ctx, c, &buf, 0, IOVA, 0, RW); // zero size
    let _ = map(ctx, c, &buf, 0, IOVA + 0x800, PAGE, RW); // unaligned IOVA
    let _ = map(ctx, c, &buf, 0x800, IOVA, PAGE, RW); // unaligned host address
    let _ = map(ctx, c, &buf, 0, IOVA, PAGE + 0x800, RW); // unaligned size
    let _ = map(ctx, c, &buf, 0, IOVA, PAGE, 0); // neither READ nor WRITE
    let _ = map(ctx, c, &buf, 0, IOVA, PAGE, RW | 0x80); // an unknown flag
    let _ = map(ctx, c, &buf, 0, u64::MAX - PAGE + 1, 2 * PAGE, RW); // IOVA wraps
    // Nothing of the above was mapped: the whole range is still free.
    let _ = map(ctx, c, &buf, 0, IOVA, 4 * PAGE, RW);
    Ok(())
}

fn ranges(ctx: &mut Ctx) -> CaseResult {
    // vfio_iommu_iova_dma_valid: the whole range must lie in one reported
    // IOVA range; VT-d's are 0-0xfedfffff and 0xfef00000-(2^39-1), the hole
    // being the MSI window.
    let (c, _) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(2 * PAGE as usize);
    let _ = map(ctx, c, &buf, 0, 0xfee0_0000, PAGE, RW); // in the MSI window
    let _ = map(ctx, c, &buf, 0, 0xfedf_f000, 2 * PAGE, RW); // runs into it
    let _ = map(ctx, c, &buf, 0, 0xfedf_f000, PAGE, RW); // the last page below it
    let _ = map(ctx, c, &buf, 0, 0xfef0_0000, PAGE, RW); // the first page above it
    let _ = map(ctx, c, &buf, 0, 0x7f_ffff_f000, PAGE, RW); // the last page of the top range
    let _ = map(ctx, c, &buf, 0, 0x80_0000_0000, PAGE, RW); // past the top
    let _ = map(ctx, c, &buf, 0, 0, PAGE, RW); // IOVA 0 is a valid address
    Ok(())
}

/// Maps placed by the IOVA ranges the container reports, so one case
/// covers every host IOMMU's holes (VT-d's MSI window; AMD-Vi's MSI window
/// and HyperTransport hole below 1 TiB; SMMUv3's MSI doorbell): for each
/// gap, the last page below it, its first and last pages, a map running
/// into it, one across it, and the first page above it; then the last page
/// of the top range and the page past it (when the top is not 2^64).
/// vfio_iommu_iova_dma_valid rejects a map that is not inside one range
/// with EINVAL before pinning anything, so a map across a hole may be
/// larger than the buffer behind it.
fn around_every_hole(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    let info = iommu_info(ctx, c, 4096).map_err(|e| crate::case::Abort(format!("IOMMU_GET_INFO failed with errno {e}")))?;
    let buf = HostBuf::new(2 * PAGE as usize);
    for pair in info.ranges.windows(2) {
        let (below_end, above_start) = (pair[0].1, pair[1].0);
        let (hole_start, hole_end) = (below_end + 1, above_start - 1);
        let _ = map(ctx, c, &buf, 0, below_end + 1 - PAGE, PAGE, RW); // the last page below the hole
        let _ = map(ctx, c, &buf, 0, hole_start, PAGE, RW); // the hole's first page
        let _ = map(ctx, c, &buf, 0, hole_end + 1 - PAGE, PAGE, RW); // its last page
        let _ = map(ctx, c, &buf, 0, hole_start - PAGE, 2 * PAGE, RW); // runs into it
        let _ = map(ctx, c, &buf, 0, hole_start - PAGE, hole_end - hole_start + 1 + 2 * PAGE, RW); // across it
        let _ = map(ctx, c, &buf, 0, above_start, PAGE, RW); // the first page above it
    }
    if let Some(&(_, top)) = info.ranges.last() {
        let _ = map(ctx, c, &buf, 0, top - (PAGE - 1), PAGE, RW); // the highest page
        if let Some(past) = top.checked_add(1) {
            let _ = map(ctx, c, &buf, 0, past, PAGE, RW); // past the top
        }
    }
    Ok(())
}

/// The aperture's last page, mapped, unmapped by its exact range, then
/// left to the container's release. Where the last IOVA range ends below
/// 2^64 (VT-d, SMMUv3) this is an ordinary map and unmap. Where it reaches
/// 2^64 (AMD-Vi) 6.1's type1 computes the mapping's end as
/// `dma->iova + dma->size`, which wraps to 0: vfio_find_dma_first_node
/// never finds it, so UNMAP_DMA succeeds with size 0 and leaves it (the
/// DMA entry stays taken), and at release vfio_unmap_unpin's
/// `while (iova < end)` never runs: the page stays pinned and charged to
/// locked_vm until the process exits (fixed upstream in 2025 by "vfio:
/// handle DMA map/unmap up to the addressable limit"). A one-page
/// RLIMIT_MEMLOCK after the release shows that charge: the next one-page
/// map fails with ENOMEM where it stayed. (The x86 suite runs this before
/// any other case that maps the last page.)
fn the_last_page_of_the_aperture(ctx: &mut Ctx) -> CaseResult {
    let (c, g) = type1v2(ctx, "solo")?;
    let info = iommu_info(ctx, c, 4096).map_err(|e| crate::case::Abort(format!("IOMMU_GET_INFO failed with errno {e}")))?;
    let Some(&(_, top)) = info.ranges.last() else { return Err(crate::case::Abort("no IOVA ranges".into())) };
    let last = top - (PAGE - 1);
    ctx.observe("the aperture ends at 2^64", format!("{}", top == u64::MAX));
    let buf = HostBuf::new(PAGE as usize);
    let _ = map(ctx, c, &buf, 0, last, PAGE, RW);
    let _ = unmap(ctx, c, last, PAGE, 0);
    let _ = iommu_info(ctx, c, 4096); // is its DMA entry still taken?
    ctx.close(g);
    ctx.close(c);
    let (c2, _) = type1v2(ctx, "solo")?;
    let low = crate::memlock::LowMemlock::new(PAGE);
    let _ = map(ctx, c2, &buf, 0, IOVA, PAGE, RW); // one page under a one-page limit
    let _ = unmap(ctx, c2, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL);
    drop(low);
    Ok(())
}

fn unmap_rules(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(16 * PAGE as usize);
    let _ = map(ctx, c, &buf, 0, IOVA, 4 * PAGE, RW);
    let _ = map(ctx, c, &buf, 4 * PAGE, IOVA + 4 * PAGE, 4 * PAGE, RW);
    // type1v2 refuses to split a mapping: an unmap must start and end on
    // mapping boundaries (the v2 checks in vfio_dma_do_unmap).
    let _ = unmap(ctx, c, IOVA, PAGE, 0); // the head of a mapping
    let _ = unmap(ctx, c, IOVA + PAGE, 3 * PAGE, 0); // its tail
    let _ = unmap(ctx, c, IOVA + 2 * PAGE, 4 * PAGE, 0); // across two
    let _ = unmap(ctx, c, IOVA, 0, 0); // zero size
    let _ = unmap(ctx, c, IOVA + 0x800, PAGE, 0); // unaligned IOVA
    let _ = unmap(ctx, c, IOVA, PAGE + 0x800, 0); // unaligned size
    let _ = unmap(ctx, c, 0x4000_0000, 4 * PAGE, 0); // nothing there: size 0
    let _ = unmap(ctx, c, IOVA - 4 * PAGE, 16 * PAGE, 0); // both, with room around
    let _ = unmap(ctx, c, IOVA, 8 * PAGE, 0); // gone already
    Ok(())
}

fn unmap_all(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(8 * PAGE as usize);
    let _ = map(ctx, c, &buf, 0, IOVA, 2 * PAGE, RW);
    let _ = map(ctx, c, &buf, 0, 0x2000_0000, 8 * PAGE, RW);
    let _ = unmap(ctx, c, IOVA, PAGE, VFIO_DMA_UNMAP_FLAG_ALL); // ALL takes no range
    let _ = unmap(ctx, c, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL);
    let _ = unmap(ctx, c, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL);
    let _ = unmap(ctx, c, 0, PAGE, 0x80); // an unknown flag
    Ok(())
}

fn entry_limit(ctx: &mut Ctx) -> CaseResult {
    // dma_entry_limit counts vfio_dma entries (one per successful map), not
    // pages; past it vfio_dma_do_map fails with ENOSPC. The x86 guest runs
    // with the kernel's default (65535, vfio_iommu_type1.c), so this is the
    // limit users meet. Every map pins the same host page (each vfio_dma
    // pins and charges it again), so the case needs one page of memory and
    // its cost is the ioctls alone.
    let limit = u64::from(ctx.host.topology.dma_entry_limit);
    let (c, _) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(PAGE as usize);
    let mut failed_at = None;
    for i in 0..limit {
        // Every other page, so no two entries are adjacent.
        let m = vfio_iommu_type1_dma_map {
            argsz: std::mem::size_of::<vfio_iommu_type1_dma_map>() as u32,
            flags: RW,
            vaddr: buf.addr(),
            iova: IOVA + 2 * i * PAGE,
            size: PAGE,
        };
        if let Err(e) = ctx.backend.map_dma(c, &m) {
            failed_at = Some((i, e.0));
            break;
        }
    }
    ctx.observe(format!("{limit} separate 4 KiB maps"), match failed_at {
        None => "all succeeded".to_string(),
        Some((i, e)) => format!("map {i} failed with {}", vfio_core::error::errno_name(e)),
    });
    let _ = iommu_info(ctx, c, 4096);
    let _ = map(ctx, c, &buf, 0, IOVA + 2 * limit * PAGE, PAGE, RW); // one more
    let _ = unmap(ctx, c, IOVA, PAGE, 0);
    let _ = map(ctx, c, &buf, 0, IOVA + 2 * limit * PAGE, PAGE, RW); // room again
    let _ = unmap(ctx, c, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL);
    Ok(())
}

fn closing_releases_mappings(ctx: &mut Ctx) -> CaseResult {
    // Closing the container (its last user) unmaps everything; a new
    // container can map the same IOVA at once.
    let (c, g) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(PAGE as usize);
    let _ = map(ctx, c, &buf, 0, IOVA, PAGE, RW);
    ctx.close(g);
    ctx.close(c);
    let (c2, _) = type1v2(ctx, "solo")?;
    let _ = map(ctx, c2, &buf, 0, IOVA, PAGE, RW);
    Ok(())
}

fn batch_rolls_back(ctx: &mut Ctx) -> CaseResult {
    // vfio-core's map_batch: all or nothing. Entry 3 overlaps a mapping made
    // before the batch; entries 0-2 must be unmapped again, and the error
    // must name entry 3 and EEXIST.
    use vfio_core::{BatchFlags, Container};
    let backend = Arc::clone(&ctx.backend);
    let container = Container::open(backend.clone());
    let container = ctx.need(container.map_err(|e| vfio_core::backend::Errno(e.errno)), "Container::open")?;
    let group = vfio_core::Group::open(backend, ctx.host.group_of("solo"));
    let group = ctx.need(group.map_err(|e| vfio_core::backend::Errno(e.errno)), "Group::open")?;
    let r = group.set_container(&container).map_err(|e| vfio_core::backend::Errno(e.errno));
    let r = ctx.call("Group::set_container", r);
    ctx.need(r, "Group::set_container")?;
    let r = container.set_iommu(VFIO_TYPE1V2_IOMMU).map_err(|e| vfio_core::backend::Errno(e.errno));
    let r = ctx.call("Container::set_iommu Type1v2", r);
    ctx.need(r, "Container::set_iommu")?;

    let buf = HostBuf::new(16 * PAGE as usize);
    let r = container.map_dma(IOVA + 6 * PAGE, buf.addr(), PAGE, RW).map_err(|e| vfio_core::backend::Errno(e.errno));
    let _ = ctx.call("map_dma iova=IOVA+6p size=1p (before the batch)", r);

    // Non-contiguous entries so none are coalesced: 0, 2, 4 fine, 6 collides.
    let entries: Vec<[u64; 3]> = [0u64, 2, 4, 6, 8].iter().map(|i| [IOVA + i * PAGE, buf.addr() + i * PAGE, PAGE]).collect();
    let r = container.map_batch(&entries, BatchFlags::All(RW));
    let text = match &r {
        Ok(_) => "ok".to_string(),
        Err(e) => format!("{} entry={:?}", vfio_core::error::errno_name(e.errno), e.entry),
    };
    ctx.observe("map_batch of 5 entries, the 4th overlapping", text);
    // Whatever the batch did is gone again: the first three IOVAs map now.
    for i in [0u64, 2, 4] {
        let r = container.map_dma(IOVA + i * PAGE, buf.addr(), PAGE, RW).map_err(|e| vfio_core::backend::Errno(e.errno));
        let _ = ctx.call(format!("map_dma iova=IOVA+{i}p after the rollback"), r);
    }
    let r = container.unmap_all().map_err(|e| vfio_core::backend::Errno(e.errno));
    let _ = ctx.call_v("unmap_all", r, |s| format!("size={s:#x}"));

    // A batch that succeeds: contiguous entries coalesce into one mapping,
    // which a single unmap of the whole range removes.
    let contiguous: Vec<[u64; 3]> = (0..8u64).map(|i| [IOVA + i * PAGE, buf.addr() + i * PAGE, PAGE]).collect();
    let r = container.map_batch(&contiguous, BatchFlags::All(RW)).map(|rep| rep.ioctls).map_err(|e| vfio_core::backend::Errno(e.errno));
    let _ = ctx.call_v("map_batch of 8 contiguous pages", r, |n| format!("ioctls={n}"));
    let r = container.unmap_dma(IOVA, 8 * PAGE).map_err(|e| vfio_core::backend::Errno(e.errno));
    let _ = ctx.call_v("unmap_dma of the whole batch", r, |s| format!("size={s:#x}"));
    drop(group);
    drop(container);
    Ok(())
}

fn type1_v1_unmap(ctx: &mut Ctx) -> CaseResult {
    // The v1 interface (VFIO_TYPE1_IOMMU) predates the no-split rule: an
    // unmap that starts at a mapping removes all of it, one that starts
    // inside a mapping removes nothing and succeeds (vfio_dma_do_unmap).
    let (c, _) = super::util::attached(ctx, "solo")?;
    let r = ctx.backend.set_iommu(c, VFIO_TYPE1_IOMMU);
    let r = ctx.call("SET_IOMMU TYPE1 (v1)", r);
    ctx.need(r, "SET_IOMMU TYPE1")?;
    let buf = HostBuf::new(8 * PAGE as usize);
    let _ = map(ctx, c, &buf, 0, IOVA, 4 * PAGE, RW);
    let _ = unmap(ctx, c, IOVA + PAGE, PAGE, 0); // inside: nothing
    let _ = unmap(ctx, c, IOVA, PAGE, 0); // at its start: all of it
    let _ = map(ctx, c, &buf, 0, IOVA, 4 * PAGE, RW); // so the range is free again
    Ok(())
}

pub fn cases() -> Vec<Case> {
    vec![
        Case { name: "IOMMU_GET_INFO reports page sizes, IOVA ranges and DMA entries, growing argsz when the buffer is short", run: info_sizes },
        Case { name: "the DMA-available capability counts mappings, not pages", run: dma_avail_counts_entries },
        Case { name: "a page-aligned map succeeds for each permission and unmap reports its size", run: map_then_unmap },
        Case { name: "a map overlapping an existing mapping fails with EEXIST", run: overlap },
        Case { name: "a map with a zero size, an unaligned address or size, or bad flags fails with EINVAL", run: bad_arguments },
        Case { name: "a map outside the reported IOVA ranges fails with EINVAL", run: ranges },
        Case { name: "the aperture's last page maps, and unmaps by its range unless the aperture ends at 2^64 (6.1 then never finds or unpins it, and its page stays charged)", run: the_last_page_of_the_aperture },
        Case { name: "maps below, into, across and above every hole of the reported IOVA ranges, and at their top", run: around_every_hole },
        Case { name: "an unmap must cover whole mappings and reports the size it removed", run: unmap_rules },
        Case { name: "UNMAP_DMA with FLAG_ALL removes every mapping and takes no range", run: unmap_all },
        Case { name: "maps past dma_entry_limit (the kernel's default, 65535 on x86) fail with ENOSPC until one is unmapped", run: entry_limit },
        Case { name: "closing the container releases its mappings", run: closing_releases_mappings },
        Case { name: "a type1 v1 container unmaps a whole mapping from its start and nothing from inside it", run: type1_v1_unmap },
        Case { name: "a batch that fails midway unmaps what it mapped and names the entry", run: batch_rolls_back },
    ]
}
