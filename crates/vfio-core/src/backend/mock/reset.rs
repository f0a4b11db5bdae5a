//! Device resets (drivers/vfio/pci/vfio_pci_core.c): function reset, and
//! the bus hot reset with its dependent-device report.

use super::super::{argsz_of, buf_bytes, buf_bytes_mut, read_pod, write_pod, Errno, RawFd, SysResult};
use super::config::VFIO_PCI;
use super::fds::FdObj;
use super::{einval, Host};
use crate::uapi::*;

/// (segment, bus, devfn) of a PCI address "SSSS:BB:DD.F".
pub(super) fn pci_address(a: &str) -> Option<(u16, u8, u8)> {
    let (seg, rest) = a.split_once(':')?;
    let (bus, rest) = rest.split_once(':')?;
    let (dev, func) = rest.split_once('.')?;
    let dev = u8::from_str_radix(dev, 16).ok()?;
    let func = u8::from_str_radix(func, 16).ok()?;
    Some((u16::from_str_radix(seg, 16).ok()?, u8::from_str_radix(bus, 16).ok()?, (dev << 3) | func))
}

impl Host {
    // vfio_pci_core_ioctl_reset: EINVAL without a reset method; the
    // function reset keeps config space (saved and restored around it).
    pub(super) fn device_reset(&mut self, device: RawFd) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let d = h.device(device)?;
        let m = &mut h.devices[d].model;
        if !m.reset_works() {
            return einval();
        }
        m.config_mut().save();
        m.reset();
        m.config_mut().restore();
        Ok(())
    }

    // vfio_pci_ioctl_get_pci_hot_reset_info: a slot or bus reset must exist
    // (a device on a root bus has neither: ENODEV); every function on the
    // bus is affected, whatever its driver; a short buffer gets ENOSPC with
    // the count written.
    pub(super) fn device_get_pci_hot_reset_info(&mut self, device: RawFd, buf: &mut [u64]) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let d = h.device(device)?;
        let minsz = std::mem::offset_of!(vfio_pci_hot_reset_info, devices);
        let argsz = argsz_of(buf) as usize;
        if argsz < minsz {
            return einval();
        }
        let me = pci_address(&h.devices[d].address).ok_or(Errno(libc::ENODEV))?;
        if me.1 == 0 {
            return Err(Errno(libc::ENODEV));
        }
        let mut deps: Vec<vfio_pci_dependent_device> = h
            .devices
            .iter()
            .filter_map(|x| {
                let (seg, bus, devfn) = pci_address(&x.address)?;
                (seg == me.0 && bus == me.1).then_some(vfio_pci_dependent_device { group_id: x.group, segment: seg, bus, devfn })
            })
            .collect();
        deps.sort_by_key(|x| x.devfn);
        let mut hdr = vfio_pci_hot_reset_info { argsz: argsz as u32, flags: 0, count: deps.len() as u32, devices: [] };
        let need = minsz + deps.len() * std::mem::size_of::<vfio_pci_dependent_device>();
        let bytes = buf_bytes_mut(buf);
        if argsz < need {
            write_pod(bytes, 0, &hdr, minsz);
            return Err(Errno(libc::ENOSPC));
        }
        for (i, dep) in deps.iter().enumerate() {
            write_pod(bytes, minsz + i * 8, dep, 8);
        }
        hdr.count = deps.len() as u32;
        write_pod(bytes, 0, &hdr, minsz);
        Ok(())
    }

    // vfio_pci_ioctl_pci_hot_reset + vfio_pci_dev_set_hot_reset: flags must
    // be 0; ENODEV without a slot or bus reset; 1..=affected group fds, each
    // open (EBADF) and a group (EINVAL); every function on the bus bound to
    // vfio-pci (vfio_pci_dev_set_resettable) and in one of the groups
    // (vfio_dev_in_groups), else EINVAL. pci_reset_bus saves and restores
    // each function's config space around the reset.
    pub(super) fn device_pci_hot_reset(&mut self, device: RawFd, buf: &[u64]) -> SysResult<()> {
        let h = self;
        h.ioctls += 1;
        let d = h.device(device)?;
        let bytes = buf_bytes(buf);
        let minsz = std::mem::offset_of!(vfio_pci_hot_reset, group_fds);
        let hdr: vfio_pci_hot_reset = read_pod(bytes, 0).ok_or(Errno(libc::EINVAL))?;
        if (hdr.argsz as usize) < minsz || hdr.flags != 0 {
            return einval();
        }
        let me = pci_address(&h.devices[d].address).ok_or(Errno(libc::ENODEV))?;
        if me.1 == 0 {
            return Err(Errno(libc::ENODEV));
        }
        let on_bus: Vec<usize> = (0..h.devices.len())
            .filter(|&i| pci_address(&h.devices[i].address).is_some_and(|(s, b, _)| s == me.0 && b == me.1))
            .collect();
        if hdr.count == 0 || hdr.count as usize > on_bus.len() {
            return einval();
        }
        let fds = bytes
            .get(minsz..minsz + 4 * hdr.count as usize)
            .ok_or(Errno(libc::EFAULT))?
            .chunks_exact(4)
            .map(|c| i32::from_ne_bytes([c[0], c[1], c[2], c[3]]));
        let mut groups = Vec::new();
        for fd in fds {
            match h.fds.get(&fd) {
                None => return Err(Errno(libc::EBADF)),
                Some(FdObj::Group(g)) => groups.push(*g),
                Some(_) => return einval(),
            }
        }
        for &i in &on_bus {
            let dev = &h.devices[i];
            if dev.driver.as_deref() != Some(VFIO_PCI) || !groups.contains(&dev.group) {
                return einval();
            }
        }
        for &i in &on_bus {
            let m = &mut h.devices[i].model;
            m.config_mut().save();
            m.reset();
            m.config_mut().restore();
        }
        Ok(())
    }
}
