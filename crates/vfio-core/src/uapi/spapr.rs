//! sPAPR (POWER) part of `include/uapi/linux/vfio.h`: the TCE IOMMU's info,
//! memory preregistration, dynamic DMA windows and EEH. The layouts are checked
//! against the system header by `tests::layouts_match_the_system_header`.

use super::vfio_io;
/// The sPAPR driver reads map/unmap through the type1 structures
/// (`tce_iommu_ioctl` uses only argsz, flags, vaddr, iova and size) and
/// enables a v1 container with the generic `VFIO_IOMMU_ENABLE`.
pub use super::{
    vfio_iommu_type1_dma_map, vfio_iommu_type1_dma_unmap, VFIO_DMA_MAP_FLAG_READ, VFIO_DMA_MAP_FLAG_WRITE,
    VFIO_IOMMU_DISABLE, VFIO_IOMMU_ENABLE, VFIO_IOMMU_MAP_DMA, VFIO_IOMMU_UNMAP_DMA,
};

pub const VFIO_IOMMU_SPAPR_TCE_GET_INFO: u64 = vfio_io(12);
pub const VFIO_IOMMU_SPAPR_REGISTER_MEMORY: u64 = vfio_io(17);
pub const VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY: u64 = vfio_io(18);
pub const VFIO_IOMMU_SPAPR_TCE_CREATE: u64 = vfio_io(19);
pub const VFIO_IOMMU_SPAPR_TCE_REMOVE: u64 = vfio_io(20);
pub const VFIO_EEH_PE_OP: u64 = vfio_io(21);

/// `vfio_iommu_spapr_tce_info.flags`: the ddw part is valid.
pub const VFIO_IOMMU_SPAPR_INFO_DDW: u32 = 1 << 0;

pub const VFIO_EEH_PE_DISABLE: u32 = 0;
pub const VFIO_EEH_PE_ENABLE: u32 = 1;
pub const VFIO_EEH_PE_UNFREEZE_IO: u32 = 2;
pub const VFIO_EEH_PE_UNFREEZE_DMA: u32 = 3;
pub const VFIO_EEH_PE_GET_STATE: u32 = 4;
pub const VFIO_EEH_PE_STATE_NORMAL: u32 = 0;
pub const VFIO_EEH_PE_STATE_RESET: u32 = 1;
pub const VFIO_EEH_PE_STATE_STOPPED: u32 = 2;
pub const VFIO_EEH_PE_STATE_STOPPED_DMA: u32 = 4;
pub const VFIO_EEH_PE_STATE_UNAVAIL: u32 = 5;
pub const VFIO_EEH_PE_RESET_DEACTIVATE: u32 = 5;
pub const VFIO_EEH_PE_RESET_HOT: u32 = 6;
pub const VFIO_EEH_PE_RESET_FUNDAMENTAL: u32 = 7;
pub const VFIO_EEH_PE_CONFIGURE: u32 = 8;
pub const VFIO_EEH_PE_INJECT_ERR: u32 = 9;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_iommu_spapr_tce_ddw_info {
    /// Bitmap of supported TCE page sizes (bit n set: 2^n bytes).
    pub pgsizes: u64,
    pub max_dynamic_windows_supported: u32,
    pub levels: u32,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_iommu_spapr_tce_info {
    pub argsz: u32,
    pub flags: u32,
    pub dma32_window_start: u32,
    pub dma32_window_size: u32,
    pub ddw: vfio_iommu_spapr_tce_ddw_info,
}

/// The part of `vfio_iommu_spapr_tce_info` every kernel fills:
/// `offsetofend(struct vfio_iommu_spapr_tce_info, dma32_window_size)`.
pub const SPAPR_TCE_INFO_MINSZ: u32 = 16;

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_iommu_spapr_register_memory {
    pub argsz: u32,
    pub flags: u32,
    pub vaddr: u64,
    pub size: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_iommu_spapr_tce_create {
    pub argsz: u32,
    pub flags: u32,
    pub page_shift: u32,
    pub __resv1: u32,
    pub window_size: u64,
    pub levels: u32,
    pub __resv2: u32,
    /// Out: the bus address the platform chose for the window.
    pub start_addr: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_iommu_spapr_tce_remove {
    pub argsz: u32,
    pub flags: u32,
    pub start_addr: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_eeh_pe_err {
    pub type_: u32,
    pub func: u32,
    pub addr: u64,
    pub mask: u64,
}

#[repr(C)]
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct vfio_eeh_pe_op {
    pub argsz: u32,
    pub flags: u32,
    pub op: u32,
    /// The anonymous union of the header; `err` is its only member.
    pub err: vfio_eeh_pe_err,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};
    use std::process::Command;

    /// Compiles a C program against the system's `linux/vfio.h` that prints
    /// sizes, offsets and ioctl numbers, and compares each with the Rust side.
    #[test]
    fn layouts_match_the_system_header() {
        let header = std::path::Path::new("/usr/include/linux/vfio.h");
        if !header.exists() {
            panic!("/usr/include/linux/vfio.h is missing: install linux-libc-dev");
        }
        let dir = std::env::temp_dir().join(format!("vfio-spapr-layout-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("layout.c");
        let exe = dir.join("layout");
        let c = r#"
#include <stdio.h>
#include <stddef.h>
#include <linux/vfio.h>
#define S(t) printf(#t " %zu\n", sizeof(struct t));
#define O(t, f) printf(#t "." #f " %zu\n", offsetof(struct t, f));
#define N(n) printf(#n " %lu\n", (unsigned long)(n));
int main(void) {
  S(vfio_iommu_spapr_tce_ddw_info) S(vfio_iommu_spapr_tce_info) S(vfio_iommu_spapr_register_memory)
  S(vfio_iommu_spapr_tce_create) S(vfio_iommu_spapr_tce_remove) S(vfio_eeh_pe_err) S(vfio_eeh_pe_op)
  S(vfio_iommu_type1_dma_map) S(vfio_iommu_type1_dma_unmap)
  O(vfio_iommu_spapr_tce_info, ddw) O(vfio_iommu_spapr_tce_info, dma32_window_size)
  O(vfio_iommu_spapr_tce_create, window_size) O(vfio_iommu_spapr_tce_create, levels)
  O(vfio_iommu_spapr_tce_create, start_addr) O(vfio_iommu_spapr_tce_remove, start_addr)
  O(vfio_eeh_pe_op, op) O(vfio_eeh_pe_op, err) O(vfio_iommu_spapr_register_memory, size)
  N(VFIO_IOMMU_SPAPR_TCE_GET_INFO) N(VFIO_IOMMU_SPAPR_REGISTER_MEMORY) N(VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY)
  N(VFIO_IOMMU_SPAPR_TCE_CREATE) N(VFIO_IOMMU_SPAPR_TCE_REMOVE) N(VFIO_EEH_PE_OP)
  N(VFIO_IOMMU_MAP_DMA) N(VFIO_IOMMU_UNMAP_DMA) N(VFIO_IOMMU_ENABLE) N(VFIO_IOMMU_DISABLE)
  N(VFIO_IOMMU_SPAPR_INFO_DDW) N(VFIO_EEH_PE_INJECT_ERR) N(VFIO_EEH_PE_RESET_FUNDAMENTAL)
  return 0;
}
"#;
        std::fs::write(&src, c).unwrap();
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let status = Command::new(&cc).arg("-o").arg(&exe).arg(&src).status().expect("a C compiler (cc)");
        assert!(status.success(), "{cc} failed on {}", src.display());
        let out = Command::new(&exe).output().unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let c_side: std::collections::HashMap<&str, u64> = text
            .lines()
            .map(|l| {
                let (k, v) = l.rsplit_once(' ').unwrap();
                (k, v.parse().unwrap())
            })
            .collect();
        let rust_side: &[(&str, u64)] = &[
            ("vfio_iommu_spapr_tce_ddw_info", size_of::<vfio_iommu_spapr_tce_ddw_info>() as u64),
            ("vfio_iommu_spapr_tce_info", size_of::<vfio_iommu_spapr_tce_info>() as u64),
            ("vfio_iommu_spapr_register_memory", size_of::<vfio_iommu_spapr_register_memory>() as u64),
            ("vfio_iommu_spapr_tce_create", size_of::<vfio_iommu_spapr_tce_create>() as u64),
            ("vfio_iommu_spapr_tce_remove", size_of::<vfio_iommu_spapr_tce_remove>() as u64),
            ("vfio_eeh_pe_err", size_of::<vfio_eeh_pe_err>() as u64),
            ("vfio_eeh_pe_op", size_of::<vfio_eeh_pe_op>() as u64),
            ("vfio_iommu_type1_dma_map", size_of::<vfio_iommu_type1_dma_map>() as u64),
            ("vfio_iommu_type1_dma_unmap", size_of::<vfio_iommu_type1_dma_unmap>() as u64),
            ("vfio_iommu_spapr_tce_info.ddw", offset_of!(vfio_iommu_spapr_tce_info, ddw) as u64),
            (
                "vfio_iommu_spapr_tce_info.dma32_window_size",
                offset_of!(vfio_iommu_spapr_tce_info, dma32_window_size) as u64,
            ),
            ("vfio_iommu_spapr_tce_create.window_size", offset_of!(vfio_iommu_spapr_tce_create, window_size) as u64),
            ("vfio_iommu_spapr_tce_create.levels", offset_of!(vfio_iommu_spapr_tce_create, levels) as u64),
            ("vfio_iommu_spapr_tce_create.start_addr", offset_of!(vfio_iommu_spapr_tce_create, start_addr) as u64),
            ("vfio_iommu_spapr_tce_remove.start_addr", offset_of!(vfio_iommu_spapr_tce_remove, start_addr) as u64),
            ("vfio_eeh_pe_op.op", offset_of!(vfio_eeh_pe_op, op) as u64),
            ("vfio_eeh_pe_op.err", offset_of!(vfio_eeh_pe_op, err) as u64),
            ("vfio_iommu_spapr_register_memory.size", offset_of!(vfio_iommu_spapr_register_memory, size) as u64),
            ("VFIO_IOMMU_SPAPR_TCE_GET_INFO", VFIO_IOMMU_SPAPR_TCE_GET_INFO),
            ("VFIO_IOMMU_SPAPR_REGISTER_MEMORY", VFIO_IOMMU_SPAPR_REGISTER_MEMORY),
            ("VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY", VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY),
            ("VFIO_IOMMU_SPAPR_TCE_CREATE", VFIO_IOMMU_SPAPR_TCE_CREATE),
            ("VFIO_IOMMU_SPAPR_TCE_REMOVE", VFIO_IOMMU_SPAPR_TCE_REMOVE),
            ("VFIO_EEH_PE_OP", VFIO_EEH_PE_OP),
            ("VFIO_IOMMU_MAP_DMA", VFIO_IOMMU_MAP_DMA),
            ("VFIO_IOMMU_UNMAP_DMA", VFIO_IOMMU_UNMAP_DMA),
            ("VFIO_IOMMU_ENABLE", VFIO_IOMMU_ENABLE),
            ("VFIO_IOMMU_DISABLE", VFIO_IOMMU_DISABLE),
            ("VFIO_IOMMU_SPAPR_INFO_DDW", VFIO_IOMMU_SPAPR_INFO_DDW as u64),
            ("VFIO_EEH_PE_INJECT_ERR", VFIO_EEH_PE_INJECT_ERR as u64),
            ("VFIO_EEH_PE_RESET_FUNDAMENTAL", VFIO_EEH_PE_RESET_FUNDAMENTAL as u64),
        ];
        for (name, rust) in rust_side {
            assert_eq!(c_side.get(name), Some(rust), "{name}: C says {:?}, Rust says {rust}", c_side.get(name));
        }
        assert_eq!(SPAPR_TCE_INFO_MINSZ as usize, offset_of!(vfio_iommu_spapr_tce_info, ddw));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
