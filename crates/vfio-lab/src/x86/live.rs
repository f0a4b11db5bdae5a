//! Live update of host addresses (VFIO_UPDATE_VADDR), as a VMM upgrade
//! uses it: the old process invalidates every mapping's host address in one
//! call, the new one gives each its new address. The kernel's rules
//! (drivers/vfio/vfio_iommu_type1.c): vfio_dma_do_unmap with
//! VFIO_DMA_UNMAP_FLAG_VADDR marks mappings invalid and gives back what it
//! marked when it meets one already invalid; vfio_dma_do_map with
//! VFIO_DMA_MAP_FLAG_VADDR takes only an invalidated mapping of exactly the
//! same extent (ENOENT where there is none); a normal map over an
//! invalidated mapping is still EEXIST; vfio_iommu_type1_attach_group
//! refuses a new group while any address is invalid (EBUSY).

use vfio_core::uapi::*;

use super::util::{iommu_info, map, type1v2, unmap, HostBuf, RW};
use crate::case::{Case, CaseResult, Ctx};

const PAGE: u64 = 4096;
const IOVA: u64 = 0x30_0000;
const OTHER: u64 = 0x80_0000;
const ALL_VADDR: u32 = VFIO_DMA_UNMAP_FLAG_ALL | VFIO_DMA_UNMAP_FLAG_VADDR;

fn update_rules(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    let r = ctx.backend.check_extension(c, VFIO_UPDATE_VADDR);
    let _ = ctx.call_v("CHECK_EXTENSION UPDATE_VADDR (IOMMU set)", r, |v| v.to_string());
    let old = HostBuf::new(4 * PAGE as usize);
    let new = HostBuf::new(4 * PAGE as usize);
    let _ = map(ctx, c, &old, 0, IOVA, 2 * PAGE, RW);
    let _ = map(ctx, c, &old, 2 * PAGE, OTHER, PAGE, RW);
    let _ = map(ctx, c, &new, 0, IOVA, 2 * PAGE, VFIO_DMA_MAP_FLAG_VADDR); // still valid
    let _ = unmap(ctx, c, 0, 0, ALL_VADDR); // both at once
    let _ = unmap(ctx, c, 0, 0, ALL_VADDR); // invalid already
    let _ = unmap(ctx, c, IOVA, 2 * PAGE, VFIO_DMA_UNMAP_FLAG_VADDR);
    let _ = map(ctx, c, &new, 0, IOVA, 2 * PAGE, RW); // a normal map over it
    let _ = map(ctx, c, &new, 0, IOVA, PAGE, VFIO_DMA_MAP_FLAG_VADDR); // a wrong size
    let _ = map(ctx, c, &new, 0, IOVA, 4 * PAGE, VFIO_DMA_MAP_FLAG_VADDR); // a wrong size, larger
    let _ = map(ctx, c, &new, 0, IOVA + PAGE, PAGE, VFIO_DMA_MAP_FLAG_VADDR); // inside it
    let _ = map(ctx, c, &new, 0, 0x4000_0000, PAGE, VFIO_DMA_MAP_FLAG_VADDR); // nothing there
    let _ = map(ctx, c, &new, 0, IOVA, 2 * PAGE, VFIO_DMA_MAP_FLAG_VADDR | VFIO_DMA_MAP_FLAG_READ);
    let _ = iommu_info(ctx, c, 4096); // dma_avail: still two entries
    let _ = map(ctx, c, &new, 0, IOVA, 2 * PAGE, VFIO_DMA_MAP_FLAG_VADDR);
    let _ = map(ctx, c, &new, 0, IOVA, 2 * PAGE, VFIO_DMA_MAP_FLAG_VADDR); // a second update
    // One of two invalid again: ALL stops at it and gives the other back.
    let _ = unmap(ctx, c, IOVA, 2 * PAGE, VFIO_DMA_UNMAP_FLAG_VADDR);
    let _ = unmap(ctx, c, 0, 0, ALL_VADDR);
    let _ = map(ctx, c, &new, 2 * PAGE, OTHER, PAGE, VFIO_DMA_MAP_FLAG_VADDR);
    let _ = map(ctx, c, &new, 0, IOVA, 2 * PAGE, VFIO_DMA_MAP_FLAG_VADDR);
    let _ = unmap(ctx, c, 0, 0, VFIO_DMA_UNMAP_FLAG_ALL);
    Ok(())
}

fn invalid_blocks_attach(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    let buf = HostBuf::new(2 * PAGE as usize);
    let _ = map(ctx, c, &buf, 0, IOVA, PAGE, RW);
    let _ = map(ctx, c, &buf, PAGE, OTHER, PAGE, RW);
    let _ = unmap(ctx, c, IOVA, PAGE, VFIO_DMA_UNMAP_FLAG_VADDR);
    let g = ctx.open_group("mf-0");
    let g = ctx.need(g, "open the group of mf-0")?;
    let r = ctx.backend.group_set_container(g, c);
    let _ = ctx.call("GROUP_SET_CONTAINER mf-0 while a vaddr is invalid", r);
    let _ = map(ctx, c, &buf, 0, IOVA, PAGE, VFIO_DMA_MAP_FLAG_VADDR);
    let r = ctx.backend.group_set_container(g, c);
    let _ = ctx.call("GROUP_SET_CONTAINER mf-0 once it is valid again", r);
    // An invalid mapping may still be unmapped, which ends the block too.
    let _ = unmap(ctx, c, OTHER, PAGE, VFIO_DMA_UNMAP_FLAG_VADDR);
    let _ = unmap(ctx, c, OTHER, PAGE, 0);
    let _ = map(ctx, c, &buf, PAGE, OTHER, PAGE, RW);
    Ok(())
}

pub fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "live update: every vaddr is invalidated in one call, and only an invalidated mapping of the same extent takes a new one",
            run: update_rules,
        },
        Case { name: "live update: no group joins while a vaddr is invalid, and unmapping an invalid mapping is allowed", run: invalid_blocks_attach },
    ]
}
