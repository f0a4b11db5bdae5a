//! The mock configured as the lab guest: one mock group per IOMMU group of
//! the topology, with the same devices, the same drivers, the MSI window
//! reserved in every group (as each group's `reserved_regions` shows in the
//! guest), and the same `dma_entry_limit` the guest's module was loaded with.

use std::collections::BTreeMap;
use std::sync::Arc;

use vfio_core::backend::{
    Backend, DeviceModelConfig, GenericDeviceConfig, IovaSpan, MockBackend, MockConfig, MockDeviceConfig,
    MockGroupConfig,
};

use crate::host::LabHost;

/// The MSI window of x86 (IOAPIC/LAPIC MSI addresses), reserved by the IOMMU
/// driver in every group (intel_iommu_get_resv_regions).
const MSI_WINDOW: IovaSpan = IovaSpan::new(0xfee0_0000, 0xfeef_ffff);

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

/// QEMU's `pcie-pci-bridge` (1b36:000e, a PCI-to-PCI bridge). No driver:
/// pcieport does not take a PCIe-to-PCI bridge, so it never blocks viability.
fn pcie_pci_bridge(address: &str) -> MockDeviceConfig {
    plain_function(address, None, (0x1b36, 0x000e), 0x060400)
}

pub fn mock_config(host: &LabHost) -> MockConfig {
    let mut groups: BTreeMap<u32, MockGroupConfig> = BTreeMap::new();
    for d in &host.topology.devices {
        let id = host.group_of(&d.role);
        let group = groups.entry(id).or_insert_with(|| {
            let mut g = MockGroupConfig::new(id);
            g.reserved.push(MSI_WINDOW);
            for bridge in &d.group_bridges {
                g.devices.push(pcie_pci_bridge(bridge));
            }
            g
        });
        let device = match d.model.as_str() {
            "edu" => MockDeviceConfig::edu(&d.bdf).bound_to(d.driver.as_deref()),
            // virtio-rng-pci (transitional): 1af4:1005, class 0x00ff00.
            "virtio-rng-pci" => plain_function(&d.bdf, d.driver.as_deref(), (0x1af4, 0x1005), 0x00ff00),
            other => panic!("the lab topology has a '{other}' at {}, which mock_host.rs cannot model yet", d.bdf),
        };
        group.devices.push(device);
    }
    let mut config = MockConfig::empty();
    config.dma_entry_limit = host.topology.dma_entry_limit;
    config.groups = groups.into_values().collect();
    config
}

pub fn mock_backend(host: &LabHost) -> Arc<dyn Backend> {
    Arc::new(MockBackend::new(mock_config(host)))
}
