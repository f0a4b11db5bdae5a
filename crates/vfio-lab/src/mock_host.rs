//! The mock configured as the lab guest: the host IOMMU profile the guest's
//! IOMMU answers as (VT-d, AMD-Vi, SMMUv3: vfio-core's mock profiles, with
//! each group reserving what the profile's `reserved_regions` show), its MSI
//! isolation and allow_unsafe_interrupts, one mock group per IOMMU group of
//! the topology with the same devices and drivers, and the same
//! `dma_entry_limit` the guest's module was loaded with.

use std::collections::BTreeMap;
use std::sync::Arc;

use vfio_core::backend::{
    Backend, DeviceModelConfig, GenericDeviceConfig, HostIommuProfile, IommufdProfile, MockBackend, MockConfig, MockDeviceConfig,
    MockGroupConfig,
};

use crate::host::LabHost;

/// The command register the firmware leaves in a PCI function before the
/// guest kernel binds it. The x86 guests (q35, VT-d or AMD-Vi) boot through
/// SeaBIOS, whose pci_bios_init_device enables I/O and memory decoding and
/// SERR#: the x86 lab reads 0x0103 through vfio-pci after open, 0x0107 with
/// bus mastering. The arm64 guest boots its kernel without firmware, which
/// leaves the register at 0 (vfio-pci's pci_enable_device then sets memory).
fn firmware_command(iommu: &str) -> u16 {
    use vfio_core::backend::mock::devices::pci;
    match iommu {
        "vtd" | "amd-vi" | "virtio-iommu" => pci::COMMAND_IO | pci::COMMAND_MEMORY | pci::COMMAND_SERR,
        _ => 0,
    }
}

/// A PCI function the cases never open: only its IDs and driver matter.
fn plain_function(address: &str, driver: Option<&str>, ids: (u16, u16), class_code: u32) -> MockDeviceConfig {
    MockDeviceConfig {
        address: address.into(),
        driver: driver.map(str::to_string),
        model: DeviceModelConfig::Generic(GenericDeviceConfig {
            vendor: ids.0,
            device: ids.1,
            class_code,
            bars: Vec::new(),
            reset: false,
            msi_vectors: 0,
            msix_vectors: 0,
            pcie: false,
        }),
    }
}

/// QEMU's `pcie-pci-bridge` (1b36:000e, a PCI-to-PCI bridge). pcieport
/// does not take a PCIe-to-PCI bridge; on x86 nothing does, so it never
/// blocks viability; on arm64 shpchp does, and then it blocks.
fn pcie_pci_bridge(address: &str, driver: Option<&str>) -> MockDeviceConfig {
    plain_function(address, driver, (0x1b36, 0x000e), 0x060400)
}

pub fn mock_config(host: &LabHost) -> MockConfig {
    let facts = &host.topology.host;
    let profile = HostIommuProfile::named(&facts.iommu)
        .unwrap_or_else(|| panic!("the lab topology's host IOMMU '{}' has no mock profile in vfio-core", facts.iommu));
    let mut groups: BTreeMap<u32, MockGroupConfig> = BTreeMap::new();
    for d in &host.topology.devices {
        let id = host.group_of(&d.role);
        let group = groups.entry(id).or_insert_with(|| {
            let mut g = MockGroupConfig::new(id);
            g.reserved.extend_from_slice(profile.group_reserved);
            // Where groups form at probe, a pcie-pci-bridge is in the group
            // only when a driver took it.
            let bridge_driver = host.topology.bridge_driver.as_deref();
            if !profile.groups_join_at_probe || bridge_driver.is_some() {
                for bridge in &d.group_bridges {
                    g.devices.push(pcie_pci_bridge(bridge, bridge_driver));
                }
            }
            g
        });
        if profile.groups_join_at_probe && d.driver.is_none() {
            continue;
        }
        let device = match d.model.as_str() {
            "edu" => {
                let mut edu = MockDeviceConfig::edu(&d.bdf).bound_to(d.driver.as_deref());
                if let DeviceModelConfig::Edu(e) = &mut edu.model {
                    e.command_at_boot = firmware_command(&facts.iommu);
                    // vfio-pci's reset_works, what the topology says the kernel
                    // answered at open (not every listed method still works).
                    e.reset = d.reset_works;
                }
                edu
            }
            // virtio-rng-pci (transitional): 1af4:1005, class 0x00ff00.
            "virtio-rng-pci" => plain_function(&d.bdf, d.driver.as_deref(), (0x1af4, 0x1005), 0x00ff00),
            other => panic!("the lab topology has a '{other}' at {}, which mock_host.rs cannot model yet", d.bdf),
        };
        group.devices.push(device);
    }
    let mut config = MockConfig::empty().with_iommu_profile(profile);
    config.msi_isolated = facts.msi_isolated;
    config.allow_unsafe_interrupts = facts.allow_unsafe_interrupts;
    config.dma_entry_limit = host.topology.dma_entry_limit;
    config.groups = groups.into_values().collect();
    config
}

/// The mock as the guest; `iommufd`: as the lab's own kernel, with
/// /dev/iommu and device cdevs (vfio-core's iommufd profile on the same
/// host IOMMU, with iommufd's allow_unsafe_interrupts as the host facts
/// say). The VT-d registers GET_HW_INFO returns depend on QEMU's options
/// and are not compared (the iommufd suite shows only their type and
/// length), so the profile carries zeros for them.
pub fn mock_backend(host: &LabHost, iommufd: bool) -> Arc<dyn Backend> {
    let mut config = mock_config(host);
    if iommufd {
        let facts = &host.topology.host;
        let on = HostIommuProfile::named(&facts.iommu).expect("mock_config checked the profile name");
        let mut profile = IommufdProfile::for_host(on);
        profile.allow_unsafe_interrupts = facts.allow_unsafe_interrupts;
        // The lab kernel (iommufd/kernel.config over x86_64_defconfig +
        // kvm_guest.config) has no transparent huge pages, and serves
        // /dev/vfio/vfio from iommufd (VFIO_CONTAINER=n).
        profile.transparent_hugepage = false;
        profile.vfio_compat_container = true;
        // CONFIG_IOMMUFD_TEST: the selftest mock domain, the lab's only
        // IOMMU with dirty tracking.
        profile.selftest = true;
        // Its mock IOMMU gets the mock devices unless an IOMMU registered
        // without a firmware node came first: the lab saw MOCK_DOMAIN
        // refused behind VT-d and succeed behind virtio-iommu (VIOT).
        // (6.12; from 7.2 on it always does, see kernel_answers).
        profile.selftest_probes = host.topology.host.iommu == "virtio-iommu";
        kernel_answers(&mut profile, host.topology.host.kernel.as_deref());
        config = config.with_iommufd(profile);
    }
    Arc::new(MockBackend::new(config))
}

/// The mock as the lab kernel in a guest without an IOMMU: /dev/iommu with
/// IOMMUFD_TEST, whose mock IOMMU then probes its mock devices, and no
/// group (no IOMMU, so no device is in one).
pub fn mock_selftest_backend(kernel: Option<&str>) -> Arc<dyn Backend> {
    let mut profile = IommufdProfile::qemu_vtd(0, 0);
    profile.transparent_hugepage = false;
    profile.vfio_compat_container = true;
    profile.selftest = true;
    profile.selftest_probes = true;
    kernel_answers(&mut profile, kernel);
    Arc::new(MockBackend::new(MockConfig::empty().with_iommufd(profile)))
}

/// What differs between the two sources the lab kernel builds from (6.12
/// and 7.2), for the kernel the lab booted (`None`: the newer). Seen in
/// the lab on 6.12.117 and 7.2.13; no kernel between was booted, so what
/// 7.2 does is taken for everything after 6.12 unless the source says
/// when it came (file mappings: 6.13).
pub fn kernel_answers(profile: &mut IommufdProfile, kernel: Option<&str>) {
    let v = kernel.and_then(major_minor).unwrap_or((u32::MAX, 0));
    profile.file_mappings = v >= (6, 13);
    profile.ats_not_supported_cap = v > (6, 12);
    profile.selftest_generic_pt = v > (6, 12);
    // 7.2's mock_dev_create adds a mock device with
    // iommu_mock_device_add, which gives it a fwspec naming the mock
    // IOMMU's fwnode (iommu.c), so its own IOMMU probes it whichever IOMMU
    // registered first: the lab saw MOCK_DOMAIN succeed behind VT-d.
    if v > (6, 12) {
        profile.selftest_probes = true;
        // 7.2's viommu_domain_alloc_paging gives a virtio-iommu domain its
        // geometry at allocation (virtio-iommu.c), where 6.12 waited for
        // the first attach.
        profile.geometry_at_first_attach = false;
    }
}

/// `(major, minor)` of a kernel version such as `7.2.13-1` or `6.12.117`.
pub fn major_minor(version: &str) -> Option<(u32, u32)> {
    let mut parts = version.split(['.', '-']);
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::{kernel_answers, major_minor};
    use vfio_core::backend::{HostIommuProfile, IommufdProfile};

    #[test]
    fn a_kernel_version_reads_as_its_major_and_minor() {
        assert_eq!(major_minor("7.2.13-1"), Some((7, 2)));
        assert_eq!(major_minor("6.12.117-1"), Some((6, 12)));
        assert_eq!(major_minor("linux"), None);
    }

    fn answers(kernel: Option<&str>, selftest_probes: bool) -> IommufdProfile {
        let mut p = IommufdProfile::for_host(HostIommuProfile::named("vtd").unwrap());
        p.selftest_probes = selftest_probes;
        kernel_answers(&mut p, kernel);
        p
    }

    #[test]
    fn a_virtio_iommu_domain_gets_its_geometry_at_first_attach_on_6_12_and_at_allocation_on_7_2() {
        let on = |kernel| {
            let mut p = IommufdProfile::for_host(HostIommuProfile::named("virtio-iommu").unwrap());
            kernel_answers(&mut p, Some(kernel));
            p.geometry_at_first_attach
        };
        assert!(on("6.12.117-1"));
        assert!(!on("7.2.13-1"));
    }

    #[test]
    fn told_6_12_the_mock_answers_as_6_12_in_every_way_the_lab_saw_7_2_differ() {
        let p = answers(Some("6.12.117-1"), false);
        assert!(!p.file_mappings && !p.ats_not_supported_cap && !p.selftest_generic_pt);
        // Behind VT-d the selftest IOMMU still gets no mock device.
        assert!(!p.selftest_probes);
    }

    #[test]
    fn told_7_2_the_mock_answers_as_7_2_and_its_selftest_iommu_probes_behind_vt_d() {
        let p = answers(Some("7.2.13-1"), false);
        assert!(p.file_mappings && p.ats_not_supported_cap && p.selftest_generic_pt && p.selftest_probes);
    }

    #[test]
    fn told_nothing_the_mock_answers_as_the_newer_kernel() {
        let p = answers(None, false);
        assert!(p.file_mappings && p.ats_not_supported_cap && p.selftest_generic_pt && p.selftest_probes);
    }
}
