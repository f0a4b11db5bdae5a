//! Container and group rules: API version, extensions, viability, and the
//! order in which a container, a group and a device must be set up
//! (drivers/vfio/container.c and group.c in 6.1: vfio_ioctl_set_iommu,
//! vfio_group_ioctl_set_container, vfio_group_ioctl_get_device_fd).

use std::mem::size_of;

use vfio_core::backend::RawFd;
use vfio_core::uapi::*;

use super::util::type1v2;
use crate::case::{Case, CaseResult, Ctx};

fn status(ctx: &mut Ctx, g: RawFd, label: &str) {
    let mut s = vfio_group_status { argsz: size_of::<vfio_group_status>() as u32, flags: 0 };
    let r = ctx.backend.group_get_status(g, &mut s);
    let _ = ctx.call_v(format!("GROUP_GET_STATUS {label}"), r.map(|_| s.flags), |f| {
        let mut names = Vec::new();
        if f & VFIO_GROUP_FLAGS_VIABLE != 0 {
            names.push("VIABLE");
        }
        if f & VFIO_GROUP_FLAGS_CONTAINER_SET != 0 {
            names.push("CONTAINER_SET");
        }
        format!("flags={f:#x} [{}]", names.join("|"))
    });
}

fn extension(ctx: &mut Ctx, c: RawFd, name: &str, ext: u32) {
    let r = ctx.backend.check_extension(c, ext);
    let _ = ctx.call_v(format!("CHECK_EXTENSION {name}"), r, |v| v.to_string());
}

fn all_extensions(ctx: &mut Ctx, c: RawFd) {
    for (name, ext) in [
        ("TYPE1", VFIO_TYPE1_IOMMU),
        ("SPAPR_TCE", VFIO_SPAPR_TCE_IOMMU),
        ("TYPE1v2", VFIO_TYPE1V2_IOMMU),
        ("DMA_CC", VFIO_DMA_CC_IOMMU),
        ("EEH", VFIO_EEH),
        ("TYPE1_NESTING", VFIO_TYPE1_NESTING_IOMMU),
        ("SPAPR_TCE_v2", VFIO_SPAPR_TCE_V2_IOMMU),
        ("NOIOMMU", VFIO_NOIOMMU_IOMMU),
        ("UNMAP_ALL", VFIO_UNMAP_ALL),
        ("UPDATE_VADDR", VFIO_UPDATE_VADDR),
        ("unknown 99", 99),
    ] {
        extension(ctx, c, name, ext);
    }
}

fn api_version(ctx: &mut Ctx) -> CaseResult {
    let c = ctx.open_container();
    let c = ctx.need(c, "open /dev/vfio/vfio")?;
    let r = ctx.backend.get_api_version(c);
    let v = ctx.call_v("GET_API_VERSION", r, |v| v.to_string());
    ctx.check("the API version is VFIO_API_VERSION (0)", v == Ok(VFIO_API_VERSION), format!("got {v:?}"));
    Ok(())
}

fn extensions_before_iommu(ctx: &mut Ctx) -> CaseResult {
    // With no IOMMU set, the container asks every registered IOMMU driver
    // (vfio_container_ioctl_check_extension); only type1 is loaded on x86.
    let c = ctx.open_container();
    let c = ctx.need(c, "open /dev/vfio/vfio")?;
    all_extensions(ctx, c);
    Ok(())
}

fn extensions_after_iommu(ctx: &mut Ctx) -> CaseResult {
    // Once set, the container's own IOMMU answers (vfio_iommu_type1_check_extension),
    // and DMA_CC then depends on its domains.
    let (c, _) = type1v2(ctx, "solo")?;
    all_extensions(ctx, c);
    Ok(())
}

fn viable_when_all_bound(ctx: &mut Ctx) -> CaseResult {
    let g = ctx.open_group("solo");
    let g = ctx.need(g, "open the group")?;
    status(ctx, g, "solo");
    Ok(())
}

fn viable_with_driverless_device(ctx: &mut Ctx) -> CaseResult {
    // Since 5.19 viability is DMA ownership (iommu_group_dma_owner_claimed):
    // a device with no driver at all claims none, so the group stays viable.
    let g = ctx.open_group("bridge-a");
    let g = ctx.need(g, "open the group")?;
    status(ctx, g, "bridge group, bridge-b unbound");
    let c = ctx.open_container();
    let c = ctx.need(c, "open /dev/vfio/vfio")?;
    let r = ctx.backend.group_set_container(g, c);
    let _ = ctx.call("GROUP_SET_CONTAINER", r);
    status(ctx, g, "after SET_CONTAINER");
    Ok(())
}

fn not_viable_with_host_driver(ctx: &mut Ctx) -> CaseResult {
    // virtio-pci uses the DMA API, so it holds the group's DMA ownership and
    // iommu_group_claim_dma_owner refuses vfio with EPERM.
    let g = ctx.open_group("blocked");
    let g = ctx.need(g, "open the group")?;
    status(ctx, g, "blocked");
    let c = ctx.open_container();
    let c = ctx.need(c, "open /dev/vfio/vfio")?;
    let r = ctx.backend.group_set_container(g, c);
    let _ = ctx.call("GROUP_SET_CONTAINER", r);
    status(ctx, g, "after the refused SET_CONTAINER");
    Ok(())
}

fn device_fd_of_unbound_device(ctx: &mut Ctx) -> CaseResult {
    let (_, g) = type1v2(ctx, "bridge-a")?;
    let _ = ctx.device_fd(g, "bridge-b");
    let _ = ctx.device_fd(g, "bridge-a");
    let r = ctx.backend.group_get_device_fd(g, c"0000:00:1f.7");
    let _ = ctx.call("GROUP_GET_DEVICE_FD of a device in no group", r);
    Ok(())
}

fn group_opens_once(ctx: &mut Ctx) -> CaseResult {
    let g = ctx.open_group("solo");
    ctx.need(g, "open the group")?;
    let _ = ctx.open_group("solo");
    Ok(())
}

fn no_such_group(ctx: &mut Ctx) -> CaseResult {
    let id = ctx.host.unused_group();
    let _ = ctx.open_group_id("a group number no device has", id);
    Ok(())
}

fn set_iommu_needs_a_group(ctx: &mut Ctx) -> CaseResult {
    let c = ctx.open_container();
    let c = ctx.need(c, "open /dev/vfio/vfio")?;
    let r = ctx.backend.set_iommu(c, VFIO_TYPE1V2_IOMMU);
    let _ = ctx.call("SET_IOMMU TYPE1v2 with no group", r);
    Ok(())
}

fn map_needs_an_iommu(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = super::util::attached(ctx, "solo")?;
    let buf = super::util::HostBuf::new(4096);
    let _ = super::util::map(ctx, c, &buf, 0, 0x10_0000, 4096, super::util::RW);
    let mut info = vec![0u64; 8];
    info[0] = if cfg!(target_endian = "little") { 64 } else { 64 << 32 };
    let r = ctx.backend.iommu_get_info(c, &mut info);
    let _ = ctx.call("IOMMU_GET_INFO before SET_IOMMU", r);
    Ok(())
}

fn device_fd_needs_an_iommu(ctx: &mut Ctx) -> CaseResult {
    let g = ctx.open_group("solo");
    let g = ctx.need(g, "open the group")?;
    let _ = ctx.device_fd(g, "solo");
    let c = ctx.open_container();
    let c = ctx.need(c, "open /dev/vfio/vfio")?;
    let r = ctx.backend.group_set_container(g, c);
    let r = ctx.call("GROUP_SET_CONTAINER", r);
    ctx.need(r, "GROUP_SET_CONTAINER")?;
    let _ = ctx.device_fd(g, "solo");
    Ok(())
}

fn set_iommu_twice(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = type1v2(ctx, "solo")?;
    let r = ctx.backend.set_iommu(c, VFIO_TYPE1V2_IOMMU);
    let _ = ctx.call("SET_IOMMU TYPE1v2 again", r);
    Ok(())
}

fn set_iommu_unknown_type(ctx: &mut Ctx) -> CaseResult {
    let (c, _) = super::util::attached(ctx, "solo")?;
    let r = ctx.backend.set_iommu(c, VFIO_SPAPR_TCE_V2_IOMMU);
    let _ = ctx.call("SET_IOMMU SPAPR_TCE_v2 on x86", r);
    let r = ctx.backend.set_iommu(c, VFIO_TYPE1V2_IOMMU);
    let _ = ctx.call("SET_IOMMU TYPE1v2 afterwards", r);
    Ok(())
}

fn set_container_twice(ctx: &mut Ctx) -> CaseResult {
    let (c, g) = type1v2(ctx, "solo")?;
    let r = ctx.backend.group_set_container(g, c);
    let _ = ctx.call("GROUP_SET_CONTAINER again", r);
    Ok(())
}

fn second_group_joins_a_set_container(ctx: &mut Ctx) -> CaseResult {
    // A second group may join a container whose IOMMU is already set
    // (vfio_container_attach_group attaches it to the same IOMMU data).
    let (c, _) = type1v2(ctx, "solo")?;
    let g2 = ctx.open_group("mf-0");
    let g2 = ctx.need(g2, "open the second group")?;
    let r = ctx.backend.group_set_container(g2, c);
    let _ = ctx.call("GROUP_SET_CONTAINER second group", r);
    status(ctx, g2, "second group");
    Ok(())
}

fn unset_container_rules(ctx: &mut Ctx) -> CaseResult {
    let g = ctx.open_group("solo");
    let g = ctx.need(g, "open the group")?;
    let r = ctx.backend.group_unset_container(g);
    let _ = ctx.call("GROUP_UNSET_CONTAINER while not set", r);
    let c = ctx.open_container();
    let c = ctx.need(c, "open /dev/vfio/vfio")?;
    let r = ctx.backend.group_set_container(g, c);
    let r = ctx.call("GROUP_SET_CONTAINER", r);
    ctx.need(r, "GROUP_SET_CONTAINER")?;
    let r = ctx.backend.set_iommu(c, VFIO_TYPE1V2_IOMMU);
    let r = ctx.call("SET_IOMMU TYPE1v2", r);
    ctx.need(r, "SET_IOMMU")?;
    let d = ctx.device_fd(g, "solo");
    let d = ctx.need(d, "GROUP_GET_DEVICE_FD")?;
    let r = ctx.backend.group_unset_container(g);
    let _ = ctx.call("GROUP_UNSET_CONTAINER with a device fd open", r);
    ctx.close(d);
    let r = ctx.backend.group_unset_container(g);
    let _ = ctx.call("GROUP_UNSET_CONTAINER after closing the device", r);
    status(ctx, g, "after UNSET_CONTAINER");
    // The last group gone, the container forgets its IOMMU (__vfio_group_unset_container).
    let buf = super::util::HostBuf::new(4096);
    let _ = super::util::map(ctx, c, &buf, 0, 0x10_0000, 4096, super::util::RW);
    Ok(())
}

pub fn cases() -> Vec<Case> {
    vec![
        Case { name: "the API version is 0", run: api_version },
        Case { name: "a container without an IOMMU offers what the loaded IOMMU drivers offer", run: extensions_before_iommu },
        Case { name: "a type1v2 container answers extensions from its own IOMMU", run: extensions_after_iommu },
        Case { name: "a group whose only device is bound to vfio-pci is viable", run: viable_when_all_bound },
        Case { name: "a group with a driverless device not bound to vfio-pci is viable and can be attached", run: viable_with_driverless_device },
        Case { name: "a group with a device bound to a host driver is not viable and SET_CONTAINER fails with EPERM", run: not_viable_with_host_driver },
        Case { name: "a device not bound to vfio-pci has no device fd, even in a usable group", run: device_fd_of_unbound_device },
        Case { name: "a group can be open only once at a time", run: group_opens_once },
        Case { name: "opening a group that does not exist fails", run: no_such_group },
        Case { name: "SET_IOMMU before any group is attached fails with EINVAL", run: set_iommu_needs_a_group },
        Case { name: "MAP_DMA and IOMMU_GET_INFO before SET_IOMMU fail", run: map_needs_an_iommu },
        Case { name: "GET_DEVICE_FD before the container has an IOMMU fails", run: device_fd_needs_an_iommu },
        Case { name: "SET_IOMMU a second time fails", run: set_iommu_twice },
        Case { name: "SET_IOMMU with a type no loaded driver offers fails and leaves the container usable", run: set_iommu_unknown_type },
        Case { name: "SET_CONTAINER on a group already in a container fails", run: set_container_twice },
        Case { name: "a second group joins a container whose IOMMU is set", run: second_group_joins_a_set_container },
        Case { name: "UNSET_CONTAINER needs a container and no open device, and the last group out takes the IOMMU", run: unset_container_rules },
    ]
}
