//! The sPAPR conformance cases: each runs on a fresh container, on the
//! kernel in the pseries guest and on the mock on the host, and records the
//! same steps on both. Calls that the kernel answers with an oops or a
//! console WARNING (a map past a window's end, unregistering mapped memory,
//! registering 0 bytes) are never issued raw: their cases go through
//! vfio-core's `TceContainer`, which refuses them first.

use vfio_core::spapr::{DmaDirection, TceContainer, TceVersion};
use vfio_core::uapi::spapr as u;

use crate::memlock::LowMemlock;
use crate::spapr::{errno, group_status, in_child, with_raw_fds, Bench, Buffer, Rec, Stop};

pub struct SpaprCase {
    pub name: &'static str,
    /// PEs (PHBs) the case needs.
    pub pes: usize,
    pub run: fn(&mut Bench, &mut Rec) -> Result<(), Stop>,
}

const RW: u32 = u::VFIO_DMA_MAP_FLAG_READ | u::VFIO_DMA_MAP_FLAG_WRITE;
const GIB: u64 = 1 << 30;
const PAGE: u64 = 0x1000;

fn info_text(i: &u::vfio_iommu_spapr_tce_info) -> String {
    format!(
        "flags={:#x} dma32={:#x}+{:#x} pgsizes={:#x} windows={} levels={}",
        i.flags, i.dma32_window_start, i.dma32_window_size, i.ddw.pgsizes, i.ddw.max_dynamic_windows_supported, i.ddw.levels
    )
}

fn none<T>(_: &T) -> String {
    String::new()
}

fn ret(v: &i32) -> String {
    format!("ret={v}")
}

fn hex(v: &u64) -> String {
    format!("start={v:#x}")
}

/// Attaches pe0 and sets the IOMMU type: every case starts here.
fn setup(b: &mut Bench, r: &mut Rec, v2: bool) -> Result<(), Stop> {
    r.must("SET_CONTAINER pe0", b.attach(0), none)?;
    r.must(if v2 { "SET_IOMMU SPAPR_TCE_v2" } else { "SET_IOMMU SPAPR_TCE" }, b.set_iommu(v2), none)?;
    Ok(())
}

fn register(b: &mut Bench, r: &mut Rec, buf: &Buffer, what: &str) -> Result<(), Stop> {
    r.must(format!("REGISTER_MEMORY {what} size={:#x}", buf.size), errno(b.ops().register_memory(buf.addr, buf.size, 0)), none)
}

/// What the child of the unregister-while-mapped case prints before it
/// exits (the lab's pseries console check expects the warning it names,
/// once, only after this line).
pub const LEAK_ANNOUNCE: &str = "vfiokit-pseries: expect-warning destroy_context: a child process leaked a registration by UNREGISTER_MEMORY while mapped";

/// UNREGISTER_MEMORY of a region a TCE still points into, and what the
/// process sees after it. tce_iommu_unregister_pages takes the region off
/// the container's list (tce_iommu_prereg_free's mm_iommu_put only drops a
/// user) and then ignores the EBUSY of its own mm_iommu_put, so the ioctl
/// answers 0 and the mm keeps the region with one user no container holds:
/// it stays pinned and charged, still backs maps (mm_iommu_lookup searches
/// the mm, not the container), is taken back by a register of the same
/// range, and refuses an overlapping one, until the process exits, where
/// destroy_context (arch/powerpc/mm/book3s64/mmu_context.c) warns that the
/// mm's iommu_group_mem_list is not empty. Run in a child process, so the
/// leak and the warning end with it.
fn unregister_while_mapped(b: &mut Bench, r: &mut Rec) -> Result<(), Stop> {
    setup(b, r, true)?;
    let buf = Buffer::new(2 * PAGE as usize, PAGE as usize);
    r.must("REGISTER_MEMORY buf size=0x2000", errno(b.ops().register_memory(buf.addr, 2 * PAGE, 0)), none)?;
    r.must("MAP_DMA iova=0 buf size=0x1000 RW", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret)?;
    r.step("UNREGISTER_MEMORY buf size=0x2000 (a TCE still points into it)", errno(b.ops().unregister_memory(buf.addr, 2 * PAGE, 0)), none);
    r.step("MAP_DMA iova=0x1000 buf+0x1000 size=0x1000 RW (after it)", errno(b.ops().map_dma(PAGE, buf.addr + PAGE, PAGE, RW)), ret);
    r.step("UNMAP_DMA iova=0 size=0x2000", errno(b.ops().unmap_dma(0, 2 * PAGE, 0)), ret);
    r.step("UNREGISTER_MEMORY buf size=0x2000 again", errno(b.ops().unregister_memory(buf.addr, 2 * PAGE, 0)), none);
    r.step("REGISTER_MEMORY buf size=0x1000 (overlaps the leaked region)", errno(b.ops().register_memory(buf.addr, PAGE, 0)), none);
    r.step("REGISTER_MEMORY buf size=0x2000 (the leaked region itself)", errno(b.ops().register_memory(buf.addr, 2 * PAGE, 0)), none);
    r.step("UNREGISTER_MEMORY buf size=0x2000 (nothing mapped now)", errno(b.ops().unregister_memory(buf.addr, 2 * PAGE, 0)), none);
    r.step("REGISTER_MEMORY buf size=0x1000 (overlaps it still)", errno(b.ops().register_memory(buf.addr, PAGE, 0)), none);
    Ok(())
}

/// Two containers of one process, one PE each, registering the same
/// memory: the mm holds one region (mm_iommu_get finds it, `used` counts
/// both), an overlapping range is refused in either, each maps through it,
/// and the region goes when its last user unregisters with nothing mapped.
fn two_containers_share_a_region(b: &mut Bench, r: &mut Rec) -> Result<(), Stop> {
    setup(b, r, true)?;
    let mut other = b.world().container().map_err(Stop)?;
    r.must("SET_CONTAINER pe1 (a second container)", other.attach(1), none)?;
    r.must("SET_IOMMU SPAPR_TCE_v2 (second container)", other.set_iommu(true), none)?;
    let buf = Buffer::new(2 * PAGE as usize, PAGE as usize);
    r.must("first: REGISTER_MEMORY buf size=0x2000", errno(b.ops().register_memory(buf.addr, 2 * PAGE, 0)), none)?;
    r.step("second: REGISTER_MEMORY buf size=0x1000 (overlaps)", errno(other.ops().register_memory(buf.addr, PAGE, 0)), none);
    r.step("second: REGISTER_MEMORY buf size=0x2000 (the same region)", errno(other.ops().register_memory(buf.addr, 2 * PAGE, 0)), none);
    r.step("second: REGISTER_MEMORY buf size=0x2000 again", errno(other.ops().register_memory(buf.addr, 2 * PAGE, 0)), none);
    r.step("first: MAP_DMA iova=0 buf size=0x1000 RW", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
    r.step("second: MAP_DMA iova=0 buf+0x1000 size=0x1000 RW", errno(other.ops().map_dma(0, buf.addr + PAGE, PAGE, RW)), ret);
    r.step("first: UNMAP_DMA iova=0 size=0x1000", errno(b.ops().unmap_dma(0, PAGE, 0)), ret);
    r.step("first: UNREGISTER_MEMORY buf size=0x2000", errno(b.ops().unregister_memory(buf.addr, 2 * PAGE, 0)), none);
    r.step("second: MAP_DMA iova=0x1000 buf size=0x1000 RW (after the first let go)", errno(other.ops().map_dma(PAGE, buf.addr, PAGE, RW)), ret);
    r.step("second: UNMAP_DMA iova=0 size=0x2000", errno(other.ops().unmap_dma(0, 2 * PAGE, 0)), ret);
    r.step("second: UNREGISTER_MEMORY buf size=0x2000", errno(other.ops().unregister_memory(buf.addr, 2 * PAGE, 0)), none);
    r.step("first: REGISTER_MEMORY buf size=0x1000 (the region is gone)", errno(b.ops().register_memory(buf.addr, PAGE, 0)), none);
    r.step("first: UNREGISTER_MEMORY buf size=0x1000", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
    Ok(())
}

pub static CASES: &[SpaprCase] = &[
    SpaprCase {
        name: "UNREGISTER_MEMORY while a TCE maps the region answers 0 and leaks it: it still backs maps, refuses an overlapping region and is taken back by the same one (in a child process, whose exit the kernel warns about)",
        pes: 1,
        run: |b, r| in_child(b.world(), r, LEAK_ANNOUNCE, unregister_while_mapped),
    },
    SpaprCase {
        name: "two containers of one process share a registered region: MAP_DMA through either, an overlapping region refused, gone after the last unregister",
        pes: 2,
        run: two_containers_share_a_region,
    },
    SpaprCase {
        name: "MAP_DMA in a v2 container two PEs share fails as TCE_CREATE does",
        pes: 2,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("SET_CONTAINER pe1", b.attach(1), none);
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            r.step("REGISTER_MEMORY buf", errno(b.ops().register_memory(buf.addr, PAGE, 0)), none);
            r.step("MAP_DMA iova=0 size=0x1000 RW (the default window is due)", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0 size=0x1000", errno(b.ops().unmap_dma(0, PAGE, 0)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "REGISTER_MEMORY and MAP_DMA of shared (MAP_SHARED) memory succeed as for private memory",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::shared(2 * PAGE as usize);
            r.must("REGISTER_MEMORY shared buf size=0x2000", errno(b.ops().register_memory(buf.addr, 2 * PAGE, 0)), none)?;
            r.step("MAP_DMA iova=0 shared buf size=0x2000 RW", errno(b.ops().map_dma(0, buf.addr, 2 * PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0 size=0x2000", errno(b.ops().unmap_dma(0, 2 * PAGE, 0)), ret);
            r.step("UNREGISTER_MEMORY shared buf", errno(b.ops().unregister_memory(buf.addr, 2 * PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "v1 MAP_DMA of shared (MAP_SHARED) memory pins it as private memory",
        pes: 1,
        run: |b, r| {
            setup(b, r, false)?;
            r.must("ENABLE", errno(b.ops().enable()), none)?;
            let buf = Buffer::shared(2 * PAGE as usize);
            r.step("MAP_DMA iova=0 shared buf size=0x2000 RW", errno(b.ops().map_dma(0, buf.addr, 2 * PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0 size=0x2000", errno(b.ops().unmap_dma(0, 2 * PAGE, 0)), ret);
            r.step("DISABLE", errno(b.ops().disable()), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "v1 answers the v2 calls (REGISTER/UNREGISTER_MEMORY, TCE_CREATE/REMOVE) with ENOTTY, maps only between ENABLE and DISABLE, and ENABLE twice fails",
        pes: 1,
        run: |b, r| {
            setup(b, r, false)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            r.step("REGISTER_MEMORY buf", errno(b.ops().register_memory(buf.addr, PAGE, 0)), none);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            r.step("TCE_CREATE shift=12 size=256MiB", errno(b.ops().tce_create(12, 1 << 28, 1, 0)), hex);
            r.step("TCE_REMOVE 0", errno(b.ops().tce_remove(0, 0)), none);
            r.step("MAP_DMA iova=0 size=0x1000 RW (before ENABLE)", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0 size=0x1000 (before ENABLE)", errno(b.ops().unmap_dma(0, PAGE, 0)), ret);
            r.must("ENABLE", errno(b.ops().enable()), none)?;
            r.step("ENABLE again", errno(b.ops().enable()), none);
            r.step("REGISTER_MEMORY buf (enabled)", errno(b.ops().register_memory(buf.addr, PAGE, 0)), none);
            r.step("MAP_DMA iova=0 size=0x1000 RW", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("GET_INFO argsz=32 (enabled)", errno(b.ops().tce_get_info(32)), info_text);
            r.step("UNMAP_DMA iova=0 size=0x1000", errno(b.ops().unmap_dma(0, PAGE, 0)), ret);
            r.step("DISABLE", errno(b.ops().disable()), none);
            r.step("MAP_DMA iova=0 size=0x1000 RW (after DISABLE)", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("DISABLE again", errno(b.ops().disable()), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "v2 answers the v1 calls (ENABLE, DISABLE) with ENOTTY, before and after memory is registered",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("ENABLE (nothing registered)", errno(b.ops().enable()), none);
            r.step("DISABLE (nothing registered)", errno(b.ops().disable()), none);
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("ENABLE (after REGISTER_MEMORY)", errno(b.ops().enable()), none);
            r.step("MAP_DMA iova=0 size=0x1000 RW", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("DISABLE (a TCE is live)", errno(b.ops().disable()), none);
            r.step("UNMAP_DMA iova=0 size=0x1000", errno(b.ops().unmap_dma(0, PAGE, 0)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "CHECK_EXTENSION on a pseries host offers both TCE types, EEH as eeh_enabled() says, and no type1",
        pes: 1,
        run: |b, r| {
            for (name, ext) in [
                ("SPAPR_TCE_v2", vfio_core::uapi::VFIO_SPAPR_TCE_V2_IOMMU),
                ("SPAPR_TCE", vfio_core::uapi::VFIO_SPAPR_TCE_IOMMU),
                ("EEH", vfio_core::uapi::VFIO_EEH),
                ("TYPE1v2", vfio_core::uapi::VFIO_TYPE1V2_IOMMU),
            ] {
                r.step(format!("CHECK_EXTENSION {name} (no group yet)"), b.check_extension(ext), |v| format!("{v}"));
            }
            setup(b, r, true)?;
            r.step("CHECK_EXTENSION EEH (v2 set)", b.check_extension(vfio_core::uapi::VFIO_EEH), |v| format!("{v}"));
            Ok(())
        },
    },
    SpaprCase {
        name: "GET_INFO reports the default 32-bit window and dynamic windows",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("GET_INFO argsz=32", errno(b.ops().tce_get_info(32)), info_text);
            Ok(())
        },
    },
    SpaprCase {
        name: "GET_INFO with argsz 16 sets the DDW flag but writes no ddw fields",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("GET_INFO argsz=16", errno(b.ops().tce_get_info(16)), info_text);
            Ok(())
        },
    },
    SpaprCase {
        name: "GET_INFO with argsz 8 fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("GET_INFO argsz=8", errno(b.ops().tce_get_info(8)), info_text);
            Ok(())
        },
    },
    SpaprCase {
        name: "v1 GET_INFO reports no dynamic windows",
        pes: 1,
        run: |b, r| {
            setup(b, r, false)?;
            r.step("GET_INFO argsz=32", errno(b.ops().tce_get_info(32)), info_text);
            Ok(())
        },
    },
    SpaprCase {
        name: "v2 MAP_DMA before any memory is registered fails with EPERM",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            r.step("MAP_DMA iova=0 size=0x1000 RW", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            Ok(())
        },
    },
    SpaprCase {
        name: "UNREGISTER_MEMORY before the container has an mm fails with EPERM",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "REGISTER_MEMORY of a misaligned address fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(2 * PAGE as usize, PAGE as usize);
            r.step("REGISTER_MEMORY buf+0x800 size=0x1000", errno(b.ops().register_memory(buf.addr + 0x800, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "REGISTER_MEMORY with a flag fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            r.step("REGISTER_MEMORY buf flags=1", errno(b.ops().register_memory(buf.addr, PAGE, 1)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "REGISTER_MEMORY of the same region twice fails with EBUSY",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("REGISTER_MEMORY buf again", errno(b.ops().register_memory(buf.addr, PAGE, 0)), none);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "REGISTER_MEMORY overlapping a registered region fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(3 * PAGE as usize, PAGE as usize);
            r.must("REGISTER_MEMORY buf size=0x2000", errno(b.ops().register_memory(buf.addr, 2 * PAGE, 0)), none)?;
            r.step("REGISTER_MEMORY buf+0x1000 size=0x2000", errno(b.ops().register_memory(buf.addr + PAGE, 2 * PAGE, 0)), none);
            r.step("UNREGISTER_MEMORY buf size=0x2000", errno(b.ops().unregister_memory(buf.addr, 2 * PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "UNREGISTER_MEMORY of a region not registered as such fails with ENOENT",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(2 * PAGE as usize, PAGE as usize);
            r.must("REGISTER_MEMORY buf size=0x2000", errno(b.ops().register_memory(buf.addr, 2 * PAGE, 0)), none)?;
            r.step("UNREGISTER_MEMORY buf size=0x1000", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            r.step("UNREGISTER_MEMORY buf size=0x2000", errno(b.ops().unregister_memory(buf.addr, 2 * PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "MAP_DMA into the default window, UNMAP_DMA, then UNREGISTER_MEMORY all succeed",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(4 * PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("MAP_DMA iova=0x100000 size=0x4000 RW", errno(b.ops().map_dma(0x10_0000, buf.addr, 4 * PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0x100000 size=0x4000", errno(b.ops().unmap_dma(0x10_0000, 4 * PAGE, 0)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, buf.size, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "MAP_DMA of memory that is not registered fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(2 * PAGE as usize, PAGE as usize);
            r.must("REGISTER_MEMORY buf size=0x1000", errno(b.ops().register_memory(buf.addr, PAGE, 0)), none)?;
            r.step("MAP_DMA iova=0 size=0x2000 RW", errno(b.ops().map_dma(0, buf.addr, 2 * PAGE, RW)), ret);
            r.step("UNREGISTER_MEMORY buf size=0x1000", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "MAP_DMA at an IOVA in no window fails with ENXIO",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("MAP_DMA iova=0x40000000 size=0x1000 RW", errno(b.ops().map_dma(GIB, buf.addr, PAGE, RW)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "MAP_DMA at a misaligned IOVA returns 1 and maps nothing",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("MAP_DMA iova=0x800 size=0x1000 RW", errno(b.ops().map_dma(0x800, buf.addr, PAGE, RW)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "MAP_DMA of a misaligned size fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("MAP_DMA iova=0 size=0x800 RW", errno(b.ops().map_dma(0, buf.addr, 0x800, RW)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "MAP_DMA without READ or WRITE fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("MAP_DMA iova=0 size=0x1000 flags=0", errno(b.ops().map_dma(0, buf.addr, PAGE, 0)), ret);
            r.step("MAP_DMA iova=0 size=0x1000 flags=RW|4", errno(b.ops().map_dma(0, buf.addr, PAGE, RW | 4)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "MAP_DMA over a live TCE replaces it",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(2 * PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("MAP_DMA iova=0 buf size=0x1000 RW", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step(
                "MAP_DMA iova=0 buf+0x1000 size=0x1000 READ",
                errno(b.ops().map_dma(0, buf.addr + PAGE, PAGE, u::VFIO_DMA_MAP_FLAG_READ)),
                ret,
            );
            r.step("UNMAP_DMA iova=0 size=0x1000", errno(b.ops().unmap_dma(0, PAGE, 0)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, buf.size, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "UNMAP_DMA with a flag fails with EINVAL and of a misaligned size with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("UNMAP_DMA iova=0 size=0x1000 flags=1", errno(b.ops().unmap_dma(0, PAGE, 1)), ret);
            r.step("UNMAP_DMA iova=0 size=0x800", errno(b.ops().unmap_dma(0, 0x800, 0)), ret);
            r.step("UNMAP_DMA iova=0x800 size=0x1000", errno(b.ops().unmap_dma(0x800, PAGE, 0)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "UNMAP_DMA of part of a mapping succeeds",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(2 * PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("MAP_DMA iova=0 size=0x2000 RW", errno(b.ops().map_dma(0, buf.addr, 2 * PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0x1000 size=0x1000", errno(b.ops().unmap_dma(PAGE, PAGE, 0)), ret);
            r.step("UNMAP_DMA iova=0 size=0x1000", errno(b.ops().unmap_dma(0, PAGE, 0)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, buf.size, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "TCE_CREATE of a 1 GiB window of 64 KiB TCEs lands at the firmware's 64-bit address",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let start = r.step("TCE_CREATE shift=16 size=1GiB levels=1", errno(b.ops().tce_create(16, GIB, 1, 0)), hex);
            if let Some(s) = start {
                r.step("TCE_REMOVE start", errno(b.ops().tce_remove(s, 0)), none);
            }
            Ok(())
        },
    },
    SpaprCase {
        name: "TCE_CREATE with a page size the PE does not offer fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("TCE_CREATE shift=20 size=1GiB levels=1", errno(b.ops().tce_create(20, GIB, 1, 0)), hex);
            Ok(())
        },
    },
    SpaprCase {
        name: "TCE_CREATE of a size that is not a power of two fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("TCE_CREATE shift=16 size=768MiB levels=1", errno(b.ops().tce_create(16, 3 << 28, 1, 0)), hex);
            Ok(())
        },
    },
    SpaprCase {
        name: "TCE_CREATE of a 2 GiB window, twice the guest's RAM, is accepted in 4 KiB and in 64 KiB TCEs",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let s = r.step("TCE_CREATE shift=12 size=2GiB", errno(b.ops().tce_create(12, 2 * GIB, 1, 0)), hex);
            if let Some(s) = s {
                r.step("TCE_REMOVE start", errno(b.ops().tce_remove(s, 0)), none);
            }
            let s = r.step("TCE_CREATE shift=16 size=2GiB", errno(b.ops().tce_create(16, 2 * GIB, 1, 0)), hex);
            if let Some(s) = s {
                r.step("TCE_REMOVE start", errno(b.ops().tce_remove(s, 0)), none);
            }
            Ok(())
        },
    },
    SpaprCase {
        name: "TCE_CREATE with two levels fails with EINVAL (pseries tables have one)",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("TCE_CREATE shift=16 size=1GiB levels=2", errno(b.ops().tce_create(16, GIB, 2, 0)), hex);
            Ok(())
        },
    },
    SpaprCase {
        name: "TCE_CREATE with a flag fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("TCE_CREATE shift=16 size=1GiB flags=1", errno(b.ops().tce_create(16, GIB, 1, 1)), hex);
            Ok(())
        },
    },
    SpaprCase {
        name: "TCE_CREATE of a third window fails with ENOSPC",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let s = r.must("TCE_CREATE shift=16 size=1GiB", errno(b.ops().tce_create(16, GIB, 1, 0)), hex)?;
            r.step("TCE_CREATE shift=16 size=1GiB again", errno(b.ops().tce_create(16, GIB, 1, 0)), hex);
            r.step("TCE_REMOVE start", errno(b.ops().tce_remove(s, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "TCE_REMOVE of an address in no window fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("TCE_REMOVE start=0x40000000", errno(b.ops().tce_remove(GIB, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "TCE_REMOVE of the default window before first use, then a 4 KiB window of 256 MiB comes back at 0",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("TCE_REMOVE start=0", errno(b.ops().tce_remove(0, 0)), none);
            let s = r.step("TCE_CREATE shift=12 size=256MiB", errno(b.ops().tce_create(12, 1 << 28, 1, 0)), hex);
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("MAP_DMA iova=0x10000000 size=0x1000 RW", errno(b.ops().map_dma(1 << 28, buf.addr, PAGE, RW)), ret);
            r.step("MAP_DMA iova=0xfff000 size=0x1000 RW", errno(b.ops().map_dma(0xff_f000, buf.addr, PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0xfff000 size=0x1000", errno(b.ops().unmap_dma(0xff_f000, PAGE, 0)), ret);
            if let Some(s) = s {
                r.step("TCE_REMOVE start", errno(b.ops().tce_remove(s, 0)), none);
            }
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "MAP_DMA of 64 KiB TCEs over 4 KiB pages fails with EINVAL",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let s = r.must("TCE_CREATE shift=16 size=1GiB", errno(b.ops().tce_create(16, GIB, 1, 0)), hex)?;
            let buf = Buffer::new(0x20000, 0x10000);
            register(b, r, &buf, "buf (64 KiB aligned)")?;
            r.step("MAP_DMA iova=start size=0x10000 RW", errno(b.ops().map_dma(s, buf.addr, 0x10000, RW)), ret);
            r.step("TCE_REMOVE start", errno(b.ops().tce_remove(s, 0)), none);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, buf.size, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "v2 ENABLE fails with ENOTTY",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("ENABLE (v2)", errno(b.ops().enable()), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "v1 maps into the default window after ENABLE without registering memory",
        pes: 1,
        run: |b, r| {
            setup(b, r, false)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            r.step("MAP_DMA before ENABLE", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("ENABLE", errno(b.ops().enable()), none);
            r.step("ENABLE again", errno(b.ops().enable()), none);
            r.step("REGISTER_MEMORY buf (v1)", errno(b.ops().register_memory(buf.addr, PAGE, 0)), none);
            r.step("TCE_CREATE (v1)", errno(b.ops().tce_create(16, GIB, 1, 0)), hex);
            r.step("MAP_DMA iova=0 size=0x1000 RW", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0 size=0x1000", errno(b.ops().unmap_dma(0, PAGE, 0)), ret);
            r.step("DISABLE", errno(b.ops().disable()), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "EEH_PE_OP on a pseries PE under TCG",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("EEH_PE_OP GET_STATE", errno(b.ops().eeh_pe_op(u::VFIO_EEH_PE_GET_STATE)), ret);
            Ok(())
        },
    },
    SpaprCase {
        name: "vfio-core refuses a map or unmap that runs past the window end before the kernel sees it",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(2 * PAGE as usize, PAGE as usize);
            let mut c = r.must("vfio-core TceContainer::new v2", errno(TceContainer::new(b.ops(), TceVersion::V2, 0, 12)), |_| String::new())?;
            r.must("vfio-core register buf", errno(c.register(buf.addr, buf.size)), none)?;
            let m = c.map(GIB - PAGE, buf.addr, 2 * PAGE, DmaDirection::Bidirectional);
            let refused = m.as_ref().err().and_then(|e| e.detail.clone()).unwrap_or_default();
            r.step("vfio-core map iova=0x3ffff000 size=0x2000", errno(m), none);
            r.check("the refusal came from vfio-core, not the kernel", refused.contains("before the ioctl"), refused);
            r.step("vfio-core unmap iova=0x3ffff000 size=0x2000", errno(c.unmap(GIB - PAGE, 2 * PAGE)), none);
            r.step("vfio-core map iova=0x3fffe000 size=0x2000", errno(c.map(GIB - 2 * PAGE, buf.addr, 2 * PAGE, DmaDirection::Bidirectional)), none);
            r.step("vfio-core release", errno(c.release()), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "vfio-core refuses to unregister memory that is still mapped",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            let mut c = r.must("vfio-core TceContainer::new v2", errno(TceContainer::new(b.ops(), TceVersion::V2, 0, 12)), |_| String::new())?;
            r.must("vfio-core register buf", errno(c.register(buf.addr, buf.size)), none)?;
            r.must("vfio-core map iova=0 size=0x1000", errno(c.map(0, buf.addr, PAGE, DmaDirection::Bidirectional)), none)?;
            r.step("vfio-core unregister buf", errno(c.unregister(buf.addr, buf.size)), none);
            r.step("vfio-core unmap iova=0", errno(c.unmap(0, PAGE)), none);
            r.step("vfio-core unregister buf", errno(c.unregister(buf.addr, buf.size)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "vfio-core creates a 64-bit window of 4 KiB TCEs with the levels the PE allows and maps into it",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            let mut c = r.must("vfio-core TceContainer::new v2", errno(TceContainer::new(b.ops(), TceVersion::V2, 0, 12)), |_| String::new())?;
            let w = r.must("vfio-core create_window shift=12 size=1GiB", errno(c.create_window(12, GIB)), |w| format!("start={:#x} size={:#x}", w.start, w.size))?;
            r.must("vfio-core register buf", errno(c.register(buf.addr, buf.size)), none)?;
            r.step("vfio-core map iova=start", errno(c.map(w.start, buf.addr, PAGE, DmaDirection::Bidirectional)), none);
            r.step("vfio-core remove_window start", errno(c.remove_window(w.start)), none);
            r.step("vfio-core release", errno(c.release()), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "a second PE joins a v2 container, then TCE_CREATE fails with EPERM",
        pes: 2,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("SET_CONTAINER pe1", b.attach(1), none);
            r.step("TCE_CREATE shift=16 size=1GiB", errno(b.ops().tce_create(16, GIB, 1, 0)), hex);
            Ok(())
        },
    },
    SpaprCase {
        name: "a second PE into a v2 container that has a window fails with EPERM",
        pes: 2,
        run: |b, r| {
            setup(b, r, true)?;
            let s = r.must("TCE_CREATE shift=16 size=1GiB", errno(b.ops().tce_create(16, GIB, 1, 0)), hex)?;
            r.step("SET_CONTAINER pe1", b.attach(1), none);
            r.step("TCE_REMOVE start", errno(b.ops().tce_remove(s, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "a second PE into a v1 container fails with EBUSY",
        pes: 2,
        run: |b, r| {
            setup(b, r, false)?;
            r.step("SET_CONTAINER pe1", b.attach(1), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "REGISTER_MEMORY of memory the process has not mapped (address 0, a range running into a hole) pins nothing",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("REGISTER_MEMORY vaddr=0 size=0x1000", errno(b.ops().register_memory(0, PAGE, 0)), none);
            let buf = Buffer::new(4 * PAGE as usize, PAGE as usize);
            buf.punch(2, 2);
            r.step("REGISTER_MEMORY buf size=0x4000 (last two pages unmapped)", errno(b.ops().register_memory(buf.addr, 4 * PAGE, 0)), none);
            r.step("MAP_DMA iova=0 buf size=0x1000 RW", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("UNREGISTER_MEMORY buf size=0x4000", errno(b.ops().unregister_memory(buf.addr, 4 * PAGE, 0)), none);
            r.step("REGISTER_MEMORY buf size=0x2000 (the mapped half)", errno(b.ops().register_memory(buf.addr, 2 * PAGE, 0)), none);
            r.step("UNREGISTER_MEMORY buf size=0x2000", errno(b.ops().unregister_memory(buf.addr, 2 * PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "v1 MAP_DMA of memory the process has not mapped fails and leaves no TCE",
        pes: 1,
        run: |b, r| {
            setup(b, r, false)?;
            r.must("ENABLE", errno(b.ops().enable()), none)?;
            r.step("MAP_DMA iova=0 vaddr=0 size=0x1000 RW", errno(b.ops().map_dma(0, 0, PAGE, RW)), ret);
            let buf = Buffer::new(4 * PAGE as usize, PAGE as usize);
            buf.punch(2, 2);
            r.step("MAP_DMA iova=0 buf size=0x4000 RW (last two pages unmapped)", errno(b.ops().map_dma(0, buf.addr, 4 * PAGE, RW)), ret);
            r.step("MAP_DMA iova=0 buf size=0x2000 RW (the mapped half)", errno(b.ops().map_dma(0, buf.addr, 2 * PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0 size=0x4000", errno(b.ops().unmap_dma(0, 4 * PAGE, 0)), ret);
            r.step("DISABLE", errno(b.ops().disable()), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "without CAP_IPC_LOCK, v1 ENABLE charges the whole 32-bit window to RLIMIT_MEMLOCK",
        pes: 1,
        run: |b, r| {
            setup(b, r, false)?;
            {
                let _low = LowMemlock::new(16 * PAGE);
                r.step("ENABLE under a 64 KiB RLIMIT_MEMLOCK", errno(b.ops().enable()), none);
            }
            r.step("ENABLE with the limit restored", errno(b.ops().enable()), none);
            r.step("DISABLE", errno(b.ops().disable()), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "without CAP_IPC_LOCK, v2 REGISTER_MEMORY and the default window's table are charged to RLIMIT_MEMLOCK",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(32 * PAGE as usize, PAGE as usize);
            let low = LowMemlock::new(16 * PAGE);
            r.step("REGISTER_MEMORY buf size=0x20000 (past the limit)", errno(b.ops().register_memory(buf.addr, 32 * PAGE, 0)), none);
            r.step("REGISTER_MEMORY buf size=0x8000", errno(b.ops().register_memory(buf.addr, 8 * PAGE, 0)), none);
            // The first map creates the default window, whose 2 MiB table is charged too.
            r.step("MAP_DMA iova=0 size=0x1000 RW (creates the default window)", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            drop(low);
            r.step("MAP_DMA iova=0 size=0x1000 RW (limit restored)", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0 size=0x1000", errno(b.ops().unmap_dma(0, PAGE, 0)), ret);
            r.step("UNREGISTER_MEMORY buf size=0x8000", errno(b.ops().unregister_memory(buf.addr, 8 * PAGE, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "MAP_DMA at a misaligned host address fails with EINVAL and UNMAP_DMA of a never-mapped range succeeds",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(2 * PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("MAP_DMA iova=0 vaddr=buf+0x800 size=0x1000 RW", errno(b.ops().map_dma(0, buf.addr + 0x800, PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0x200000 size=0x10000 (never mapped)", errno(b.ops().unmap_dma(0x20_0000, 0x1_0000, 0)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, buf.size, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "TCE_REMOVE of the default window, then TCE_CREATE of it at full size (1 GiB of 4 KiB TCEs) brings it back at 0",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            r.step("MAP_DMA iova=0 size=0x1000 RW", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("TCE_REMOVE 0", errno(b.ops().tce_remove(0, 0)), none);
            r.step("MAP_DMA iova=0 size=0x1000 RW (no window)", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("TCE_CREATE shift=12 size=1GiB", errno(b.ops().tce_create(12, GIB, 1, 0)), hex);
            r.step("MAP_DMA iova=0 size=0x1000 RW (window back)", errno(b.ops().map_dma(0, buf.addr, PAGE, RW)), ret);
            r.step("UNMAP_DMA iova=0 size=0x1000", errno(b.ops().unmap_dma(0, PAGE, 0)), ret);
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, buf.size, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "300 MAP_DMA of single pages in a loop all succeed and 300 UNMAP_DMA take them back",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let buf = Buffer::new(300 * PAGE as usize, PAGE as usize);
            register(b, r, &buf, "buf")?;
            let mut ops = b.ops();
            let maps: Vec<String> = (0..300u64).map(|i| match ops.map_dma(2 * i * PAGE, buf.addr + i * PAGE, PAGE, RW) { Ok(v) => format!("{v}"), Err(e) => e.code().to_string() }).collect();
            let unmaps: Vec<String> = (0..300u64).map(|i| match ops.unmap_dma(2 * i * PAGE, PAGE, 0) { Ok(v) => format!("{v}"), Err(e) => e.code().to_string() }).collect();
            drop(ops);
            let summary = |v: &[String]| {
                let mut counts = std::collections::BTreeMap::new();
                for x in v {
                    *counts.entry(x.clone()).or_insert(0) += 1;
                }
                format!("{counts:?}")
            };
            r.step("300 MAP_DMA", Ok::<_, i32>(summary(&maps)), |s| s.clone());
            r.step("300 UNMAP_DMA", Ok::<_, i32>(summary(&unmaps)), |s| s.clone());
            r.step("UNREGISTER_MEMORY buf", errno(b.ops().unregister_memory(buf.addr, buf.size, 0)), none);
            Ok(())
        },
    },
    SpaprCase {
        name: "EEH_PE_OP ENABLE on a pseries PE under TCG",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            r.step("EEH_PE_OP ENABLE", errno(b.ops().eeh_pe_op(u::VFIO_EEH_PE_ENABLE)), ret);
            Ok(())
        },
    },
    SpaprCase {
        name: "the PCI command register reads back bit for bit after open, memory decoding and bus mastering",
        pes: 1,
        run: |b, r| {
            setup(b, r, true)?;
            let dev = r.must("GET_DEVICE_FD pe0", b.device(0, 0), none)?;
            let read = |d: &vfio_core::Device| errno(d.read_config::<2>(4)).map(u16::from_le_bytes);
            let open = r.must("read command after open", read(&dev), |v| format!("command={v:#06x}"))?;
            for (label, value) in [("|= memory", open | 0x2), ("|= memory | bus master", open | 0x6), ("cleared of memory and bus master", open & !0x6)] {
                r.step(format!("write command {label}"), errno(dev.write_config(4, &value.to_le_bytes())), none);
                r.step(format!("read command after {label}"), read(&dev), |v| format!("command={v:#06x}"));
            }
            Ok(())
        },
    },
    SpaprCase {
        name: "raw calls: API version, group status before and after SET_CONTAINER, GET_DEVICE_FD before it, and the device's info, regions and IRQs",
        pes: 1,
        run: |b, r| {
            use vfio_core::backend::{read_pod, buf_bytes};
            use vfio_core::uapi as k;
            let pe = b.pe(0).clone();
            with_raw_fds(b, |be, fds| {
                let c = r.must("open /dev/vfio/vfio", be.open_container().map_err(|e| e.0), none)?;
                fds.push(c);
                r.step("GET_API_VERSION", be.get_api_version(c).map_err(|e| e.0), |v| format!("{v}"));
                let g = r.must("open group of pe0", be.open_group(pe.group).map_err(|e| e.0), none)?;
                fds.push(g);
                group_status(be, g, r, "GROUP_GET_STATUS before SET_CONTAINER");
                let name = std::ffi::CString::new(pe.bdf.clone()).expect("a BDF has no NUL");
                r.step("GET_DEVICE_FD before SET_CONTAINER", be.group_get_device_fd(g, &name).map_err(|e| e.0), none);
                r.must("GROUP_SET_CONTAINER", be.group_set_container(g, c).map_err(|e| e.0), none)?;
                group_status(be, g, r, "GROUP_GET_STATUS after SET_CONTAINER");
                r.step("GET_DEVICE_FD before SET_IOMMU", be.group_get_device_fd(g, &name).map_err(|e| e.0), none);
                r.must("SET_IOMMU SPAPR_TCE_v2", be.set_iommu(c, k::VFIO_SPAPR_TCE_V2_IOMMU).map_err(|e| e.0), none)?;
                let d = r.must("GET_DEVICE_FD", be.group_get_device_fd(g, &name).map_err(|e| e.0), none)?;
                fds.push(d);
                let mut buf = [0u64; 8];
                buf[0] = if cfg!(target_endian = "little") { 64 } else { 64 << 32 };
                let res = be.device_get_info(d, &mut buf).map_err(|e| e.0).map(|_| read_pod::<k::vfio_device_info>(buf_bytes(&buf), 0).unwrap_or_default());
                r.step("DEVICE_GET_INFO", res, |i| format!("flags={:#x} regions={} irqs={}", i.flags, i.num_regions, i.num_irqs));
                for index in 0..10u32 {
                    let mut buf = [0u64; 8];
                    let head = k::vfio_region_info { argsz: 32, index, ..Default::default() };
                    vfio_core::backend::write_pod(vfio_core::backend::buf_bytes_mut(&mut buf), 0, &head, 32);
                    let res = be.device_get_region_info(d, &mut buf).map_err(|e| e.0).map(|_| read_pod::<k::vfio_region_info>(buf_bytes(&buf), 0).unwrap_or_default());
                    r.step(format!("DEVICE_GET_REGION_INFO index={index}"), res, |i| format!("flags={:#x} size={:#x} offset={:#x}", i.flags, i.size, i.offset));
                }
                for index in 0..6u32 {
                    let mut info = k::vfio_irq_info { argsz: 16, flags: 0, index, count: 0 };
                    let res = be.device_get_irq_info(d, &mut info).map_err(|e| e.0).map(|_| info);
                    r.step(format!("DEVICE_GET_IRQ_INFO index={index}"), res, |i| format!("flags={:#x} count={}", i.flags, i.count));
                }
                Ok(())
            })
        },
    },
];

/// The cases of the two-function guest (two edus, functions of one slot,
/// behind one PHB: one PE, one group).
pub static FUNCTION_CASES: &[SpaprCase] = &[
    SpaprCase {
        name: "two functions in one PE: one group's status, a device fd for each (and for one twice), none for a BDF outside it",
        pes: 1,
        run: crate::spapr_dma::two_functions_raw,
    },
    SpaprCase {
        name: "two functions in one PE share its container: one TCE mapping serves both edus' DMA, and none lands after unmap",
        pes: 1,
        run: crate::spapr_dma::two_functions_share_the_pe,
    },
];
