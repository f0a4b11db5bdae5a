//! Steps the x86 cases share: bringing a container up, mapping and
//! unmapping with labelled steps, reading IOMMU info, and host buffers.

use std::mem::size_of;
use std::ptr::NonNull;

use vfio_core::backend::RawFd;
use vfio_core::uapi::*;

use crate::case::{Abort, Ctx};

/// Anonymous, page-aligned, zeroed host memory for DMA, unmapped on drop.
pub struct HostBuf {
    ptr: NonNull<u8>,
    len: usize,
}

impl HostBuf {
    pub fn new(len: usize) -> Self {
        // SAFETY: an anonymous private mapping with no address hint touches
        // no existing memory; the result is checked against MAP_FAILED.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        assert!(p != libc::MAP_FAILED, "mmap of {len} bytes of anonymous memory failed");
        Self { ptr: NonNull::new(p.cast()).expect("mmap returned NULL"), len }
    }

    pub fn addr(&self) -> u64 {
        self.ptr.as_ptr() as u64
    }

    pub fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` readable bytes owned by self.
        // A device may write it by DMA meanwhile; the cases read it only after
        // the device reports the transfer done.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn bytes_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in `bytes`, and `&mut self` makes this the only Rust view.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for HostBuf {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`; no view outlives self.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

pub fn flags_text(flags: u32) -> String {
    let mut s = String::new();
    if flags & VFIO_DMA_MAP_FLAG_READ != 0 {
        s.push('R');
    }
    if flags & VFIO_DMA_MAP_FLAG_WRITE != 0 {
        s.push('W');
    }
    let rest = flags & !(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
    if rest != 0 || s.is_empty() {
        s.push_str(&format!("{rest:#x}"));
    }
    s
}

pub const RW: u32 = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE;

/// A container with the group of `role` attached and no IOMMU set yet: the
/// state the order rules are checked in. Returns (container, group).
pub fn attached(ctx: &mut Ctx, role: &str) -> Result<(RawFd, RawFd), Abort> {
    let c = ctx.open_container();
    let c = ctx.need(c, "open /dev/vfio/vfio")?;
    let g = ctx.open_group(role);
    let g = ctx.need(g, "open the group")?;
    let r = ctx.backend.group_set_container(g, c);
    let r = ctx.call("GROUP_SET_CONTAINER", r);
    ctx.need(r, "GROUP_SET_CONTAINER")?;
    Ok((c, g))
}

/// A container with the group of `role` attached and type1v2 set: the state
/// every map/unmap rule starts from. Returns (container, group).
pub fn type1v2(ctx: &mut Ctx, role: &str) -> Result<(RawFd, RawFd), Abort> {
    let (c, g) = attached(ctx, role)?;
    let r = ctx.backend.set_iommu(c, VFIO_TYPE1V2_IOMMU);
    let r = ctx.call("SET_IOMMU TYPE1v2", r);
    ctx.need(r, "SET_IOMMU TYPE1v2")?;
    Ok((c, g))
}

/// `VFIO_IOMMU_MAP_DMA`, labelled with the IOVA, size, flags and the host
/// address as an offset into `buf` (absolute addresses differ between runs).
pub fn map(ctx: &mut Ctx, c: RawFd, buf: &HostBuf, offset: u64, iova: u64, size: u64, flags: u32) -> Result<(), i32> {
    let m = vfio_iommu_type1_dma_map {
        argsz: size_of::<vfio_iommu_type1_dma_map>() as u32,
        flags,
        vaddr: buf.addr() + offset,
        iova,
        size,
    };
    let r = ctx.backend.map_dma(c, &m);
    ctx.call(format!("MAP_DMA iova={iova:#x} size={size:#x} flags={} vaddr=buf+{offset:#x}", flags_text(flags)), r)
        .map_err(|e| e.0)
}

/// `VFIO_IOMMU_UNMAP_DMA`; records and returns the size the kernel reports.
pub fn unmap(ctx: &mut Ctx, c: RawFd, iova: u64, size: u64, flags: u32) -> Result<u64, i32> {
    let mut u = vfio_iommu_type1_dma_unmap {
        argsz: size_of::<vfio_iommu_type1_dma_unmap>() as u32,
        flags,
        iova,
        size,
        data: [],
    };
    let r = ctx.backend.unmap_dma(c, &mut u);
    let label = if flags == 0 {
        format!("UNMAP_DMA iova={iova:#x} size={size:#x}")
    } else {
        format!("UNMAP_DMA iova={iova:#x} size={size:#x} flags={flags:#x}")
    };
    ctx.call_v(label, r.map(|_| u.size), |s| format!("size={s:#x}")).map_err(|e| e.0)
}

/// What `VFIO_IOMMU_GET_INFO` returned, capability chain decoded.
#[derive(Debug, Default)]
pub struct Type1Info {
    pub argsz: u32,
    pub flags: u32,
    pub pgsizes: u64,
    pub cap_offset: u32,
    pub ranges: Vec<(u64, u64)>,
    pub dma_avail: Option<u32>,
    pub migration: Option<(u32, u64, u64)>,
    /// Each capability's id and offset, in chain order: the layout itself
    /// is ABI (6.1 packs the chain; later kernels align every entry to 8).
    pub chain: Vec<(u16, usize)>,
}

impl Type1Info {
    pub fn render(&self) -> String {
        let mut s = format!("argsz={} flags={:#x} pgsizes={:#x} cap_offset={}", self.argsz, self.flags, self.pgsizes, self.cap_offset);
        if !self.ranges.is_empty() {
            let r: Vec<String> = self.ranges.iter().map(|(a, b)| format!("{a:#x}-{b:#x}")).collect();
            s.push_str(&format!(" iova_ranges=[{}]", r.join(",")));
        }
        if let Some(a) = self.dma_avail {
            s.push_str(&format!(" dma_avail={a}"));
        }
        if !self.chain.is_empty() {
            let c: Vec<String> = self.chain.iter().map(|(id, at)| format!("{id}@{at}")).collect();
            s.push_str(&format!(" chain=[{}]", c.join(",")));
        }
        if let Some((f, p, m)) = self.migration {
            s.push_str(&format!(" migration=flags:{f:#x},pgsizes:{p:#x},max_bitmap:{m:#x}"));
        }
        s
    }
}

fn read_u32(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn read_u64(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

/// `VFIO_IOMMU_GET_INFO` with a buffer of `argsz` bytes (rounded up to 8).
pub fn iommu_info(ctx: &mut Ctx, c: RawFd, argsz: u32) -> Result<Type1Info, i32> {
    let mut buf = vec![0u64; (argsz as usize).div_ceil(8).max(1)];
    // argsz is the first u32 of the struct (native endian, as the kernel reads it).
    buf[0] = if cfg!(target_endian = "little") { argsz as u64 } else { (argsz as u64) << 32 };
    let r = ctx.backend.iommu_get_info(c, &mut buf);
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let r = r.map(|_| decode_info(&bytes));
    ctx.call_v(format!("IOMMU_GET_INFO argsz={argsz}"), r, |i| i.render()).map_err(|e| e.0)
}

fn decode_info(b: &[u8]) -> Type1Info {
    let mut info = Type1Info { argsz: read_u32(b, 0), flags: read_u32(b, 4), pgsizes: read_u64(b, 8), ..Default::default() };
    if b.len() >= 24 {
        info.cap_offset = read_u32(b, 16);
    }
    let mut next = info.cap_offset as usize;
    let mut guard = 0;
    while next != 0 && next + 8 <= b.len() && guard < 16 {
        guard += 1;
        let id = u16::from_ne_bytes([b[next], b[next + 1]]);
        info.chain.push((id, next));
        let following = read_u32(b, next + 4) as usize;
        match id {
            VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE => {
                let n = read_u32(b, next + 8) as usize;
                for i in 0..n {
                    let at = next + 16 + i * 16;
                    if at + 16 <= b.len() {
                        info.ranges.push((read_u64(b, at), read_u64(b, at + 8)));
                    }
                }
            }
            VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL => info.dma_avail = Some(read_u32(b, next + 8)),
            VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION => {
                info.migration = Some((read_u32(b, next + 8), read_u64(b, next + 16), read_u64(b, next + 24)))
            }
            _ => {}
        }
        next = following;
    }
    info
}
