//! Holds `vfio_core::uapi` to the system's `linux/vfio.h`: a C program built
//! with `cc` prints every size, field offset and constant in the table
//! below, and each must equal the Rust side.
//!
//! To add a struct or constant, add a line to `abi_table!`: `struct NAME {
//! fields }` checks size and offsets, `const NAME` checks a value.

use std::collections::HashMap;
use std::mem::{offset_of, size_of};
use std::process::Command;

use vfio_core::uapi::spapr::{
    vfio_eeh_pe_err, vfio_eeh_pe_op, vfio_iommu_spapr_register_memory, vfio_iommu_spapr_tce_create,
    vfio_iommu_spapr_tce_ddw_info, vfio_iommu_spapr_tce_info, vfio_iommu_spapr_tce_remove,
};
use vfio_core::uapi::*;

/// One entry: the C expression's name and the Rust value.
struct Entry {
    c_name: String,
    c_expr: String,
    rust: u64,
}

macro_rules! abi_table {
    ($( struct $s:ident { $($f:ident),* } )* ; $( const $c:path = $cname:literal ),* $(,)?) => {{
        let mut v: Vec<Entry> = Vec::new();
        $(
            v.push(Entry {
                c_name: format!("sizeof {}", stringify!($s)),
                c_expr: format!("sizeof(struct {})", stringify!($s)),
                rust: size_of::<$s>() as u64,
            });
            $(
                v.push(Entry {
                    c_name: format!("offsetof {}.{}", stringify!($s), c_field(stringify!($f))),
                    c_expr: format!("offsetof(struct {}, {})", stringify!($s), c_field(stringify!($f))),
                    rust: offset_of!($s, $f) as u64,
                });
            )*
        )*
        $(
            v.push(Entry { c_name: format!("const {}", $cname), c_expr: format!("(unsigned long long)({})", $cname), rust: $c as u64 });
        )*
        v
    }};
}

/// Rust field names that differ from C (keywords).
fn c_field(f: &str) -> &str {
    match f {
        "type_" => "type",
        other => other,
    }
}

fn table() -> Vec<Entry> {
    abi_table! {
        struct vfio_info_cap_header { id, version, next }
        struct vfio_group_status { argsz, flags }
        struct vfio_device_info { argsz, flags, num_regions, num_irqs, cap_offset }
        struct vfio_region_info { argsz, flags, index, cap_offset, size, offset }
        struct vfio_region_sparse_mmap_area { offset, size }
        struct vfio_region_info_cap_sparse_mmap { header, nr_areas, reserved, areas }
        struct vfio_region_info_cap_type { header, type_, subtype }
        struct vfio_irq_info { argsz, flags, index, count }
        struct vfio_irq_set { argsz, flags, index, start, count, data }
        struct vfio_pci_dependent_device { group_id, segment, bus, devfn }
        struct vfio_pci_hot_reset_info { argsz, flags, count, devices }
        struct vfio_pci_hot_reset { argsz, flags, count, group_fds }
        struct vfio_iommu_type1_info { argsz, flags, iova_pgsizes, cap_offset }
        struct vfio_iova_range { start, end }
        struct vfio_iommu_type1_info_cap_iova_range { header, nr_iovas, reserved, iova_ranges }
        struct vfio_iommu_type1_info_cap_migration { header, flags, pgsize_bitmap, max_dirty_bitmap_size }
        struct vfio_iommu_type1_info_dma_avail { header, avail }
        struct vfio_iommu_type1_dma_map { argsz, flags, vaddr, iova, size }
        struct vfio_bitmap { pgsize, size, data }
        struct vfio_iommu_type1_dma_unmap { argsz, flags, iova, size, data }
        struct vfio_iommu_type1_dirty_bitmap { argsz, flags, data }
        struct vfio_iommu_type1_dirty_bitmap_get { iova, size, bitmap }
        struct vfio_iommu_spapr_tce_ddw_info { pgsizes, max_dynamic_windows_supported, levels }
        struct vfio_iommu_spapr_tce_info { argsz, flags, dma32_window_start, dma32_window_size, ddw }
        struct vfio_iommu_spapr_register_memory { argsz, flags, vaddr, size }
        struct vfio_iommu_spapr_tce_create { argsz, flags, page_shift, window_size, levels, start_addr }
        struct vfio_iommu_spapr_tce_remove { argsz, flags, start_addr }
        struct vfio_eeh_pe_err { type_, func, addr, mask }
        struct vfio_eeh_pe_op { argsz, flags, op, err }
        ;
        const VFIO_API_VERSION = "VFIO_API_VERSION",
        const VFIO_TYPE1_IOMMU = "VFIO_TYPE1_IOMMU",
        const VFIO_SPAPR_TCE_IOMMU = "VFIO_SPAPR_TCE_IOMMU",
        const VFIO_TYPE1V2_IOMMU = "VFIO_TYPE1v2_IOMMU",
        const VFIO_DMA_CC_IOMMU = "VFIO_DMA_CC_IOMMU",
        const VFIO_EEH = "VFIO_EEH",
        const VFIO_TYPE1_NESTING_IOMMU = "VFIO_TYPE1_NESTING_IOMMU",
        const VFIO_SPAPR_TCE_V2_IOMMU = "VFIO_SPAPR_TCE_v2_IOMMU",
        const VFIO_NOIOMMU_IOMMU = "VFIO_NOIOMMU_IOMMU",
        const VFIO_UNMAP_ALL = "VFIO_UNMAP_ALL",
        const VFIO_UPDATE_VADDR = "VFIO_UPDATE_VADDR",
        const VFIO_GET_API_VERSION = "VFIO_GET_API_VERSION",
        const VFIO_CHECK_EXTENSION = "VFIO_CHECK_EXTENSION",
        const VFIO_SET_IOMMU = "VFIO_SET_IOMMU",
        const VFIO_GROUP_GET_STATUS = "VFIO_GROUP_GET_STATUS",
        const VFIO_GROUP_SET_CONTAINER = "VFIO_GROUP_SET_CONTAINER",
        const VFIO_GROUP_UNSET_CONTAINER = "VFIO_GROUP_UNSET_CONTAINER",
        const VFIO_GROUP_GET_DEVICE_FD = "VFIO_GROUP_GET_DEVICE_FD",
        const VFIO_DEVICE_GET_INFO = "VFIO_DEVICE_GET_INFO",
        const VFIO_DEVICE_GET_REGION_INFO = "VFIO_DEVICE_GET_REGION_INFO",
        const VFIO_DEVICE_GET_IRQ_INFO = "VFIO_DEVICE_GET_IRQ_INFO",
        const VFIO_DEVICE_SET_IRQS = "VFIO_DEVICE_SET_IRQS",
        const VFIO_DEVICE_RESET = "VFIO_DEVICE_RESET",
        const VFIO_DEVICE_GET_PCI_HOT_RESET_INFO = "VFIO_DEVICE_GET_PCI_HOT_RESET_INFO",
        const VFIO_DEVICE_PCI_HOT_RESET = "VFIO_DEVICE_PCI_HOT_RESET",
        const VFIO_IOMMU_GET_INFO = "VFIO_IOMMU_GET_INFO",
        const VFIO_IOMMU_MAP_DMA = "VFIO_IOMMU_MAP_DMA",
        const VFIO_IOMMU_UNMAP_DMA = "VFIO_IOMMU_UNMAP_DMA",
        const VFIO_IOMMU_ENABLE = "VFIO_IOMMU_ENABLE",
        const VFIO_IOMMU_DISABLE = "VFIO_IOMMU_DISABLE",
        const VFIO_IOMMU_DIRTY_PAGES = "VFIO_IOMMU_DIRTY_PAGES",
        const VFIO_GROUP_FLAGS_VIABLE = "VFIO_GROUP_FLAGS_VIABLE",
        const VFIO_GROUP_FLAGS_CONTAINER_SET = "VFIO_GROUP_FLAGS_CONTAINER_SET",
        const VFIO_DEVICE_FLAGS_RESET = "VFIO_DEVICE_FLAGS_RESET",
        const VFIO_DEVICE_FLAGS_PCI = "VFIO_DEVICE_FLAGS_PCI",
        const VFIO_DEVICE_FLAGS_CAPS = "VFIO_DEVICE_FLAGS_CAPS",
        const VFIO_REGION_INFO_FLAG_READ = "VFIO_REGION_INFO_FLAG_READ",
        const VFIO_REGION_INFO_FLAG_WRITE = "VFIO_REGION_INFO_FLAG_WRITE",
        const VFIO_REGION_INFO_FLAG_MMAP = "VFIO_REGION_INFO_FLAG_MMAP",
        const VFIO_REGION_INFO_FLAG_CAPS = "VFIO_REGION_INFO_FLAG_CAPS",
        const VFIO_REGION_INFO_CAP_SPARSE_MMAP = "VFIO_REGION_INFO_CAP_SPARSE_MMAP",
        const VFIO_REGION_INFO_CAP_TYPE = "VFIO_REGION_INFO_CAP_TYPE",
        const VFIO_REGION_INFO_CAP_MSIX_MAPPABLE = "VFIO_REGION_INFO_CAP_MSIX_MAPPABLE",
        const VFIO_IRQ_INFO_EVENTFD = "VFIO_IRQ_INFO_EVENTFD",
        const VFIO_IRQ_INFO_MASKABLE = "VFIO_IRQ_INFO_MASKABLE",
        const VFIO_IRQ_INFO_AUTOMASKED = "VFIO_IRQ_INFO_AUTOMASKED",
        const VFIO_IRQ_INFO_NORESIZE = "VFIO_IRQ_INFO_NORESIZE",
        const VFIO_IRQ_SET_DATA_NONE = "VFIO_IRQ_SET_DATA_NONE",
        const VFIO_IRQ_SET_DATA_BOOL = "VFIO_IRQ_SET_DATA_BOOL",
        const VFIO_IRQ_SET_DATA_EVENTFD = "VFIO_IRQ_SET_DATA_EVENTFD",
        const VFIO_IRQ_SET_ACTION_MASK = "VFIO_IRQ_SET_ACTION_MASK",
        const VFIO_IRQ_SET_ACTION_UNMASK = "VFIO_IRQ_SET_ACTION_UNMASK",
        const VFIO_IRQ_SET_ACTION_TRIGGER = "VFIO_IRQ_SET_ACTION_TRIGGER",
        const VFIO_PCI_BAR0_REGION_INDEX = "VFIO_PCI_BAR0_REGION_INDEX",
        const VFIO_PCI_ROM_REGION_INDEX = "VFIO_PCI_ROM_REGION_INDEX",
        const VFIO_PCI_CONFIG_REGION_INDEX = "VFIO_PCI_CONFIG_REGION_INDEX",
        const VFIO_PCI_VGA_REGION_INDEX = "VFIO_PCI_VGA_REGION_INDEX",
        const VFIO_PCI_NUM_REGIONS = "VFIO_PCI_NUM_REGIONS",
        const VFIO_PCI_INTX_IRQ_INDEX = "VFIO_PCI_INTX_IRQ_INDEX",
        const VFIO_PCI_MSI_IRQ_INDEX = "VFIO_PCI_MSI_IRQ_INDEX",
        const VFIO_PCI_MSIX_IRQ_INDEX = "VFIO_PCI_MSIX_IRQ_INDEX",
        const VFIO_PCI_ERR_IRQ_INDEX = "VFIO_PCI_ERR_IRQ_INDEX",
        const VFIO_PCI_REQ_IRQ_INDEX = "VFIO_PCI_REQ_IRQ_INDEX",
        const VFIO_PCI_NUM_IRQS = "VFIO_PCI_NUM_IRQS",
        const VFIO_IOMMU_INFO_PGSIZES = "VFIO_IOMMU_INFO_PGSIZES",
        const VFIO_IOMMU_INFO_CAPS = "VFIO_IOMMU_INFO_CAPS",
        const VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE = "VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE",
        const VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION = "VFIO_IOMMU_TYPE1_INFO_CAP_MIGRATION",
        const VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL = "VFIO_IOMMU_TYPE1_INFO_DMA_AVAIL",
        const VFIO_DMA_MAP_FLAG_READ = "VFIO_DMA_MAP_FLAG_READ",
        const VFIO_DMA_MAP_FLAG_WRITE = "VFIO_DMA_MAP_FLAG_WRITE",
        const VFIO_DMA_MAP_FLAG_VADDR = "VFIO_DMA_MAP_FLAG_VADDR",
        const VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP = "VFIO_DMA_UNMAP_FLAG_GET_DIRTY_BITMAP",
        const VFIO_DMA_UNMAP_FLAG_ALL = "VFIO_DMA_UNMAP_FLAG_ALL",
        const VFIO_DMA_UNMAP_FLAG_VADDR = "VFIO_DMA_UNMAP_FLAG_VADDR",
        const VFIO_IOMMU_DIRTY_PAGES_FLAG_START = "VFIO_IOMMU_DIRTY_PAGES_FLAG_START",
        const VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP = "VFIO_IOMMU_DIRTY_PAGES_FLAG_STOP",
        const VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP = "VFIO_IOMMU_DIRTY_PAGES_FLAG_GET_BITMAP",
        const spapr::VFIO_IOMMU_SPAPR_TCE_GET_INFO = "VFIO_IOMMU_SPAPR_TCE_GET_INFO",
        const spapr::VFIO_IOMMU_SPAPR_REGISTER_MEMORY = "VFIO_IOMMU_SPAPR_REGISTER_MEMORY",
        const spapr::VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY = "VFIO_IOMMU_SPAPR_UNREGISTER_MEMORY",
        const spapr::VFIO_IOMMU_SPAPR_TCE_CREATE = "VFIO_IOMMU_SPAPR_TCE_CREATE",
        const spapr::VFIO_IOMMU_SPAPR_TCE_REMOVE = "VFIO_IOMMU_SPAPR_TCE_REMOVE",
        const spapr::VFIO_EEH_PE_OP = "VFIO_EEH_PE_OP",
    }
}

/// Compiles a C program that includes `includes` (with `-I` for each of
/// `include_dirs`) and prints every entry's value, and returns the entries
/// whose C value differs from the Rust one.
fn mismatches(entries: &[Entry], include_dirs: &[&std::path::Path], includes: &[&str], tag: &str) -> Vec<String> {
    let mut c = String::from("#include <stdio.h>\n#include <stddef.h>\n");
    for h in includes {
        c.push_str(&format!("#include <{h}>\n"));
    }
    c.push_str("int main(void) {\n");
    for e in entries {
        c.push_str(&format!("  printf(\"%s=%llu\\n\", \"{}\", (unsigned long long)({}));\n", e.c_name, e.c_expr));
    }
    c.push_str("  return 0;\n}\n");
    let dir = std::env::temp_dir().join(format!("vfio-core-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let src = dir.join("abi.c");
    let exe = dir.join("abi");
    std::fs::write(&src, c).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let mut cmd = Command::new(&cc);
    for d in include_dirs {
        cmd.arg("-I").arg(d);
    }
    let out = cmd.arg("-o").arg(&exe).arg(&src).output().expect("a C compiler (cc)");
    let run = out.status.success().then(|| Command::new(&exe).output().unwrap());
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.status.success(), "{cc} failed: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(run.unwrap().stdout).unwrap();
    let c_side: HashMap<&str, u64> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k, v.parse().unwrap()))
        .collect();
    let mut bad = Vec::new();
    for e in entries {
        match c_side.get(e.c_name.as_str()) {
            Some(&v) if v == e.rust => {}
            other => bad.push(format!("{}: C {:?}, Rust {}", e.c_name, other, e.rust)),
        }
    }
    bad
}

#[test]
fn every_size_offset_and_number_matches_the_system_header() {
    let header = std::path::Path::new("/usr/include/linux/vfio.h");
    assert!(header.exists(), "/usr/include/linux/vfio.h is missing: install linux-libc-dev");
    let entries = table();
    let bad = mismatches(&entries, &[], &["linux/vfio.h"], "abi");
    assert!(bad.is_empty(), "uapi disagrees with linux/vfio.h:\n{}", bad.join("\n"));
    assert!(entries.len() > 100, "the table covers the whole header ({} entries)", entries.len());
}

fn iommufd_table() -> Vec<Entry> {
    use vfio_core::uapi::iommufd::*;
    abi_table! {
        struct iommu_destroy { size, id }
        struct iommu_ioas_alloc { size, flags, out_ioas_id }
        struct iommu_iova_range { start, last }
        struct iommu_ioas_iova_ranges { size, ioas_id, num_iovas, __reserved, allowed_iovas, out_iova_alignment }
        struct iommu_ioas_allow_iovas { size, ioas_id, num_iovas, __reserved, allowed_iovas }
        struct iommu_ioas_map { size, flags, ioas_id, __reserved, user_va, length, iova }
        struct iommu_ioas_copy { size, flags, dst_ioas_id, src_ioas_id, length, dst_iova, src_iova }
        struct iommu_ioas_unmap { size, ioas_id, iova, length }
        struct iommu_option { size, option_id, op, __reserved, object_id, val64 }
        struct iommu_hwpt_alloc { size, flags, dev_id, pt_id, out_hwpt_id, __reserved, data_type, data_len, data_uptr, fault_id, __reserved2 }
        struct iommu_hw_info_vtd { flags, __reserved, cap_reg, ecap_reg }
        struct iommu_hw_info { size, flags, dev_id, data_len, data_uptr, out_data_type, out_max_pasid_log2, __reserved, out_capabilities }
        struct iommu_hwpt_set_dirty_tracking { size, flags, hwpt_id, __reserved }
        struct iommu_hwpt_get_dirty_bitmap { size, hwpt_id, flags, __reserved, iova, length, page_size, data }
        struct vfio_device_bind_iommufd { argsz, flags, iommufd, out_devid }
        struct vfio_device_attach_iommufd_pt { argsz, flags, pt_id }
        struct vfio_device_detach_iommufd_pt { argsz, flags }
        ;
        const IOMMU_DESTROY = "IOMMU_DESTROY",
        const IOMMU_IOAS_ALLOC = "IOMMU_IOAS_ALLOC",
        const IOMMU_IOAS_ALLOW_IOVAS = "IOMMU_IOAS_ALLOW_IOVAS",
        const IOMMU_IOAS_COPY = "IOMMU_IOAS_COPY",
        const IOMMU_IOAS_IOVA_RANGES = "IOMMU_IOAS_IOVA_RANGES",
        const IOMMU_IOAS_MAP = "IOMMU_IOAS_MAP",
        const IOMMU_IOAS_UNMAP = "IOMMU_IOAS_UNMAP",
        const IOMMU_OPTION = "IOMMU_OPTION",
        const IOMMU_VFIO_IOAS = "IOMMU_VFIO_IOAS",
        const IOMMU_HWPT_ALLOC = "IOMMU_HWPT_ALLOC",
        const IOMMU_GET_HW_INFO = "IOMMU_GET_HW_INFO",
        const IOMMU_HWPT_SET_DIRTY_TRACKING = "IOMMU_HWPT_SET_DIRTY_TRACKING",
        const IOMMU_HWPT_GET_DIRTY_BITMAP = "IOMMU_HWPT_GET_DIRTY_BITMAP",
        const IOMMU_IOAS_MAP_FIXED_IOVA = "IOMMU_IOAS_MAP_FIXED_IOVA",
        const IOMMU_IOAS_MAP_WRITEABLE = "IOMMU_IOAS_MAP_WRITEABLE",
        const IOMMU_IOAS_MAP_READABLE = "IOMMU_IOAS_MAP_READABLE",
        const IOMMU_OPTION_RLIMIT_MODE = "IOMMU_OPTION_RLIMIT_MODE",
        const IOMMU_OPTION_HUGE_PAGES = "IOMMU_OPTION_HUGE_PAGES",
        const IOMMU_OPTION_OP_SET = "IOMMU_OPTION_OP_SET",
        const IOMMU_OPTION_OP_GET = "IOMMU_OPTION_OP_GET",
        const IOMMU_HWPT_ALLOC_NEST_PARENT = "IOMMU_HWPT_ALLOC_NEST_PARENT",
        const IOMMU_HWPT_ALLOC_DIRTY_TRACKING = "IOMMU_HWPT_ALLOC_DIRTY_TRACKING",
        const IOMMU_HWPT_DATA_NONE = "IOMMU_HWPT_DATA_NONE",
        const IOMMU_HW_INFO_TYPE_NONE = "IOMMU_HW_INFO_TYPE_NONE",
        const IOMMU_HW_INFO_TYPE_INTEL_VTD = "IOMMU_HW_INFO_TYPE_INTEL_VTD",
        const IOMMU_HW_CAP_DIRTY_TRACKING = "IOMMU_HW_CAP_DIRTY_TRACKING",
        const IOMMU_HWPT_DIRTY_TRACKING_ENABLE = "IOMMU_HWPT_DIRTY_TRACKING_ENABLE",
        const IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR = "IOMMU_HWPT_GET_DIRTY_BITMAP_NO_CLEAR",
        const VFIO_DEVICE_BIND_IOMMUFD = "VFIO_DEVICE_BIND_IOMMUFD",
        const VFIO_DEVICE_ATTACH_IOMMUFD_PT = "VFIO_DEVICE_ATTACH_IOMMUFD_PT",
        const VFIO_DEVICE_DETACH_IOMMUFD_PT = "VFIO_DEVICE_DETACH_IOMMUFD_PT",
    }
}

/// The newest complete `kernels/headers-<version>/include` in the cache that
/// packages/testkit/src/lab/iommufd/build-kernel.sh fills (`build-kernel.sh
/// headers` installs them without building the kernel) whose version starts
/// with `series` and whose linux/iommufd.h contains `needs`.
fn cached_headers(series: &str, needs: &str) -> Option<std::path::PathBuf> {
    let cache = std::env::var_os("VFIOKIT_CACHE")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cache/vfiokit")))?;
    let mut found: Vec<(std::time::SystemTime, std::path::PathBuf)> = std::fs::read_dir(cache.join("kernels"))
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("headers-{series}"))))
        .filter(|p| p.join(".complete").exists())
        .filter(|p| std::fs::read_to_string(p.join("include/linux/iommufd.h")).is_ok_and(|t| t.contains(needs)))
        .filter_map(|p| Some((p.join(".complete").metadata().ok()?.modified().ok()?, p.join("include"))))
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p)
}

/// 6.12's uapi headers: `VFIOKIT_KERNEL_HEADERS`, or the cached 6.12 ones
/// (`VFIOKIT_KERNEL_SUITE=trixie VFIOKIT_KERNEL_SOURCE=linux-source-6.12
/// build-kernel.sh headers`, which scripts/install.sh runs). The series is
/// pinned because uapi::iommufd has 6.12's layouts, which the 7.2 lab
/// kernel answers too: later kernels grow some of these structs at the end
/// (7.2's vfio_device_bind_iommufd and the attach and detach structs), and
/// accept the old size through `argsz`, so the newest headers would not be
/// an equal layout to compare with.
fn headers_612() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("VFIOKIT_KERNEL_HEADERS") {
        return Some(dir.into());
    }
    cached_headers("6.12.", "IOMMU_IOAS_ALLOC")
}

#[test]
fn every_iommufd_and_cdev_size_offset_and_number_matches_the_6_12_headers() {
    let dir = headers_612().expect(
        "no 6.12 kernel headers: run 'VFIOKIT_KERNEL_SUITE=trixie VFIOKIT_KERNEL_SOURCE=linux-source-6.12 packages/testkit/src/lab/iommufd/build-kernel.sh headers' (it caches them under \
         ${VFIOKIT_CACHE:-$HOME/.cache/vfiokit}/kernels/headers-<version>/) or set VFIOKIT_KERNEL_HEADERS to a headers_install include dir",
    );
    let entries = iommufd_table();
    let bad = mismatches(&entries, &[&dir], &["linux/vfio.h", "linux/iommufd.h"], "abi-iommufd");
    assert!(bad.is_empty(), "uapi::iommufd disagrees with {}:\n{}", dir.display(), bad.join("\n"));
}

/// What came after 6.12, checked apart against newer headers: the Linux
/// 6.13 additions for live update (file mappings and moving them to another
/// process) and GET_HW_INFO's ATS bit (7.2 sets it).
fn file_mapping_table() -> Vec<Entry> {
    use vfio_core::uapi::iommufd::*;
    abi_table! {
        struct iommu_ioas_map_file { size, flags, ioas_id, fd, start, length, iova }
        struct iommu_ioas_change_process { size, __reserved }
        ;
        const IOMMU_IOAS_MAP_FILE = "IOMMU_IOAS_MAP_FILE",
        const IOMMU_IOAS_CHANGE_PROCESS = "IOMMU_IOAS_CHANGE_PROCESS",
        const IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED = "IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED",
    }
}

/// The newest cached kernel headers whose linux/iommufd.h has everything
/// of [`file_mapping_table`] (the lab kernel's, sid's linux-source-7.2:
/// `build-kernel.sh headers`), or `VFIOKIT_KERNEL_HEADERS_613`.
fn headers_613() -> Option<std::path::PathBuf> {
    if let Some(dir) = std::env::var_os("VFIOKIT_KERNEL_HEADERS_613") {
        return Some(dir.into());
    }
    cached_headers("", "IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED")
}

#[test]
fn map_file_change_process_and_the_ats_bit_match_the_lab_kernel_7_2_headers() {
    let dir = headers_613().expect(
        "no kernel headers with IOMMU_IOAS_CHANGE_PROCESS and IOMMU_HW_CAP_PCI_ATS_NOT_SUPPORTED: run \
         'packages/testkit/src/lab/iommufd/build-kernel.sh headers' (sid's linux-source-7.2) \
         or set VFIOKIT_KERNEL_HEADERS_613 to a headers_install include dir",
    );
    let entries = file_mapping_table();
    let bad = mismatches(&entries, &[&dir], &["linux/vfio.h", "linux/iommufd.h"], "abi-iommufd-613");
    assert!(bad.is_empty(), "uapi::iommufd disagrees with {}:\n{}", dir.display(), bad.join("\n"));
}
