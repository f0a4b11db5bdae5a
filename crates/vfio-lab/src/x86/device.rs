//! Device fd rules for edu behind vfio-pci (drivers/vfio/pci/vfio_pci_core.c
//! in 6.1: vfio_pci_ioctl_get_info, vfio_pci_ioctl_get_region_info,
//! vfio_pci_ioctl_get_irq_info, vfio_pci_core_read/write, reset).

use std::mem::size_of;

use vfio_core::backend::RawFd;
use vfio_core::uapi::*;

use super::util::type1v2;
use crate::case::{Abort, Case, CaseResult, Ctx};

fn first_u32(argsz: u32) -> u64 {
    if cfg!(target_endian = "little") {
        argsz as u64
    } else {
        (argsz as u64) << 32
    }
}

fn bytes(buf: &[u64]) -> Vec<u8> {
    buf.iter().flat_map(|w| w.to_ne_bytes()).collect()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

/// Opens the device playing `role` in a fresh type1v2 container.
fn open_device(ctx: &mut Ctx, role: &str) -> Result<RawFd, Abort> {
    let (_, g) = type1v2(ctx, role)?;
    let d = ctx.device_fd(g, role);
    ctx.need(d, "GROUP_GET_DEVICE_FD")
}

fn device_info(ctx: &mut Ctx, d: RawFd, label: &str) {
    let mut buf = vec![0u64; 8];
    buf[0] = first_u32(size_of::<vfio_device_info>() as u32);
    let r = ctx.backend.device_get_info(d, &mut buf);
    let b = bytes(&buf);
    let _ = ctx.call_v(format!("DEVICE_GET_INFO {label}"), r, |_| {
        format!("flags={:#x} num_regions={} num_irqs={}", u32_at(&b, 4), u32_at(&b, 8), u32_at(&b, 12))
    });
}

/// `roles`, and `bus-reset` after them where the topology has it (x86's,
/// not arm64's): the one edu the kernel resets, alone behind a root port.
fn with_bus_reset(ctx: &Ctx, roles: &[&'static str]) -> Vec<&'static str> {
    let mut v = roles.to_vec();
    if ctx.host.has("bus-reset") {
        v.push("bus-reset");
    }
    v
}

fn info_of_each_kind(ctx: &mut Ctx) -> CaseResult {
    for role in with_bus_reset(ctx, &["solo", "bridge-a"]) {
        let d = open_device(ctx, role)?;
        device_info(ctx, d, role);
    }
    // Both functions of the two-function device, from their one group.
    let (_, g) = type1v2(ctx, "mf-0")?;
    for role in ["mf-0", "mf-1"] {
        let d = ctx.device_fd(g, role);
        let d = ctx.need(d, "GROUP_GET_DEVICE_FD")?;
        device_info(ctx, d, role);
    }
    Ok(())
}

/// `VFIO_DEVICE_GET_REGION_INFO` for `index`; returns (flags, size, offset) on success.
pub fn region_info(ctx: &mut Ctx, d: RawFd, index: u32) -> Option<(u32, u64, u64)> {
    let mut buf = vec![0u64; 32];
    buf[0] = first_u32(size_of::<vfio_region_info>() as u32);
    // index is the third u32 (bytes 8..12), the low half of the second word on little-endian.
    buf[1] = if cfg!(target_endian = "little") { index as u64 } else { (index as u64) << 32 };
    let r = ctx.backend.device_get_region_info(d, &mut buf);
    let b = bytes(&buf);
    let r = ctx.call_v(format!("DEVICE_GET_REGION_INFO index={index}"), r, |_| {
        format!(
            "argsz={} flags={:#x} cap_offset={} size={:#x} offset={:#x}",
            u32_at(&b, 0),
            u32_at(&b, 4),
            u32_at(&b, 12),
            u64_at(&b, 16),
            u64_at(&b, 24)
        )
    });
    r.ok().map(|_| (u32_at(&b, 4), u64_at(&b, 16), u64_at(&b, 24)))
}

fn regions(ctx: &mut Ctx) -> CaseResult {
    let d = open_device(ctx, "solo")?;
    // BARs 0-5, the ROM, config space, VGA, and one index past them all.
    for index in 0..=VFIO_PCI_NUM_REGIONS {
        region_info(ctx, d, index);
    }
    Ok(())
}

fn irqs(ctx: &mut Ctx) -> CaseResult {
    for role in ["solo", "bridge-a"] {
        let d = open_device(ctx, role)?;
        for index in 0..=VFIO_PCI_NUM_IRQS {
            let mut info = vfio_irq_info { argsz: size_of::<vfio_irq_info>() as u32, flags: 0, index, count: 0 };
            let r = ctx.backend.device_get_irq_info(d, &mut info);
            let _ = ctx.call_v(format!("DEVICE_GET_IRQ_INFO {role} index={index}"), r, |_| {
                format!("flags={:#x} count={}", info.flags, info.count)
            });
        }
    }
    Ok(())
}

fn config_space(ctx: &mut Ctx) -> CaseResult {
    let d = open_device(ctx, "solo")?;
    let Some((_, size, offset)) = region_info(ctx, d, VFIO_PCI_CONFIG_REGION_INDEX) else {
        return Err(Abort("no config region".into()));
    };
    let mut head = [0u8; 16];
    let r = ctx.backend.device_read(d, offset, &mut head);
    let _ = ctx.call_v("pread config 0x00-0x0f", r, |n| {
        format!(
            "n={n} vendor={:#06x} device={:#06x} class={:#08x} header_type={:#04x}",
            u16::from_le_bytes([head[0], head[1]]),
            u16::from_le_bytes([head[2], head[3]]),
            u32::from_le_bytes([head[8], head[9], head[10], head[11]]) >> 8,
            head[14]
        )
    });
    let mut past = [0u8; 4];
    let r = ctx.backend.device_read(d, offset + size, &mut past);
    let _ = ctx.call_v("pread config past its end", r, |n| format!("n={n}"));
    // vfio-pci virtualizes the command register (vfio_pci_config.c's
    // perm bits): every bit is compared after open, after memory decoding,
    // after bus mastering, and after clearing both.
    let mut cmd = [0u8; 2];
    let r = ctx.backend.device_read(d, offset + 4, &mut cmd);
    let r = ctx.call_v("pread command after open", r, |_| format!("command={:#06x}", u16::from_le_bytes(cmd)));
    ctx.need(r, "pread command register")?;
    let open = u16::from_le_bytes(cmd);
    for (label, value) in [("|= memory", open | 0x2), ("|= memory | bus master", open | 0x6), ("cleared of memory and bus master", open & !0x6)] {
        let r = ctx.backend.device_write(d, offset + 4, &value.to_le_bytes());
        let _ = ctx.call_v(format!("pwrite command {label}"), r, |n| format!("n={n}"));
        let mut again = [0u8; 2];
        let r = ctx.backend.device_read(d, offset + 4, &mut again);
        let _ = ctx.call_v(format!("pread command after {label}"), r, |_| format!("command={:#06x}", u16::from_le_bytes(again)));
    }
    Ok(())
}

fn bar0_by_pread(ctx: &mut Ctx) -> CaseResult {
    let d = open_device(ctx, "solo")?;
    let Some((_, _, offset)) = region_info(ctx, d, VFIO_PCI_BAR0_REGION_INDEX) else {
        return Err(Abort("no BAR0".into()));
    };
    let mut id = [0u8; 4];
    let r = ctx.backend.device_read(d, offset, &mut id);
    let _ = ctx.call_v("pread BAR0 0x00 (edu id)", r, |_| format!("{:#010x}", u32::from_le_bytes(id)));
    let r = ctx.backend.device_write(d, offset + 4, &0x1234_5678u32.to_le_bytes());
    let _ = ctx.call_v("pwrite BAR0 0x04 (liveness) 0x12345678", r, |n| format!("n={n}"));
    let mut live = [0u8; 4];
    let r = ctx.backend.device_read(d, offset + 4, &mut live);
    let _ = ctx.call_v("pread BAR0 0x04", r, |_| format!("{:#010x}", u32::from_le_bytes(live)));
    Ok(())
}

fn reset(ctx: &mut Ctx) -> CaseResult {
    for role in with_bus_reset(ctx, &["solo", "bridge-a", "mf-0"]) {
        let d = open_device(ctx, role)?;
        let r = ctx.backend.device_reset(d);
        let _ = ctx.call(format!("DEVICE_RESET {role}"), r);
    }
    Ok(())
}

pub fn cases() -> Vec<Case> {
    vec![
        Case { name: "DEVICE_GET_INFO reports a PCI device with 9 regions and 5 IRQ indexes", run: info_of_each_kind },
        Case { name: "DEVICE_GET_REGION_INFO reports edu's BAR0, empty BARs, config space, and EINVAL past the last index", run: regions },
        Case { name: "DEVICE_GET_IRQ_INFO reports INTx, one MSI vector, no MSI-X, and EINVAL past the last index", run: irqs },
        Case { name: "config space reads give edu's IDs, and the command register reads back bit for bit after open, memory and bus mastering", run: config_space },
        Case { name: "BAR0 reads and writes through the device fd reach edu's registers", run: bar0_by_pread },
        Case { name: "DEVICE_RESET answers as the device's reset methods allow", run: reset },
    ]
}
