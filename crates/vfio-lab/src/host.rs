//! The machine a conformance run works on: the lab topology (roles, BDFs,
//! drivers, groupings), as the lab runner writes it to `topology.json`, plus
//! the IOMMU group number of each device. In the guest the numbers come
//! from sysfs, as the kernel assigned them; for the mock they are assigned
//! here, one per distinct group, and the mock is configured with them.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::report::HostDevice;

/// One device of `topology.json` (packages/testkit/src/lab/x86/topology.ts).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TopologyDevice {
    pub role: String,
    pub bdf: String,
    pub model: String,
    pub driver: Option<String>,
    pub group_with: Vec<String>,
    pub group_bridges: Vec<String>,
    /// Whether a reset works when vfio-pci opens it (VFIO_DEVICE_FLAGS_RESET).
    /// Not the same as a listed `resetMethods` (read by topology.lab.ts
    /// only): a `bus` method goes stale once another device joins the bus.
    #[serde(default)]
    pub reset_works: bool,
}

/// The host the guest is (packages/testkit/src/lab/x86/hosts.ts `LabHostFacts`):
/// which mock profile answers as its kernel does.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostFacts {
    /// `vtd`, `amd-vi`, `smmuv3`, `virtio-iommu`: a vfio-core [`vfio_core::backend::HostIommuProfile`].
    pub iommu: String,
    pub msi_isolated: bool,
    /// `allow_unsafe_interrupts` of the VFIO IOMMU backend the suite runs
    /// on: vfio_iommu_type1's (x86 suite, the mock's type1) or iommufd's
    /// (iommufd suite, the mock's iommufd profile).
    pub allow_unsafe_interrupts: bool,
    /// The guest kernel's version (`7.2.13-1`) where the mock's answers
    /// depend on it (the iommufd lab's kernel is built from either
    /// linux-source-7.2 or linux-source-6.12); absent: the newest the lab knows.
    #[serde(default)]
    pub kernel: Option<String>,
}

impl Default for HostFacts {
    /// The x86 lab's own: VT-d with interrupt remapping.
    fn default() -> Self {
        Self { iommu: "vtd".into(), msi_isolated: true, allow_unsafe_interrupts: false, kernel: None }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Topology {
    pub name: String,
    pub dma_entry_limit: u32,
    pub devices: Vec<TopologyDevice>,
    #[serde(default)]
    pub host: HostFacts,
    /// The driver the guest binds to each pcie-pci-bridge (arm64: shpchp).
    #[serde(default)]
    pub bridge_driver: Option<String>,
}

impl Topology {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read topology {}: {e}", path.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("topology {} is malformed: {e}", path.display()))
    }
}

#[derive(Debug, Clone)]
pub struct LabHost {
    pub topology: Topology,
    groups: BTreeMap<String, u32>,
    drivers: BTreeMap<String, Option<String>>,
    /// Each device's VFIO cdev number (`vfio-dev/vfioN`), on a kernel with
    /// CONFIG_VFIO_DEVICE_CDEV and a device bound to vfio-pci.
    cdevs: BTreeMap<String, u32>,
}

impl LabHost {
    /// Group numbers as the running kernel assigned them (`iommu_group` links in sysfs).
    pub fn from_sysfs(topology: Topology, sysfs: &Path) -> Result<Self, String> {
        let mut groups = BTreeMap::new();
        let mut drivers = BTreeMap::new();
        let mut cdevs = BTreeMap::new();
        for d in &topology.devices {
            let link = sysfs.join("bus/pci/devices").join(&d.bdf).join("iommu_group");
            let target = match std::fs::read_link(&link) {
                Ok(t) => t,
                // Where devices join their group at probe (arm64 with a
                // device tree), an unbound device has no group yet: it
                // counts as in the group of the peers it shares one with.
                Err(_) if d.driver.is_none() && sysfs.join("bus/pci/devices").join(&d.bdf).exists() => {
                    match d.group_with.iter().filter(|r| **r != d.role).find_map(|peer| {
                        let p = topology.devices.iter().find(|x| &x.role == peer)?;
                        std::fs::read_link(sysfs.join("bus/pci/devices").join(&p.bdf).join("iommu_group")).ok()
                    }) {
                        Some(t) => t,
                        None => return Err(format!("{}: no IOMMU group, and no peer in {:?} has one", link.display(), d.group_with)),
                    }
                }
                Err(e) => return Err(format!("{}: {e} (is {} in this machine?)", link.display(), d.bdf)),
            };
            let id = target
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.parse().ok())
                .ok_or_else(|| format!("{} points to {}, not a group number", link.display(), target.display()))?;
            groups.insert(d.role.clone(), id);
            let driver = std::fs::read_link(sysfs.join("bus/pci/devices").join(&d.bdf).join("driver"))
                .ok()
                .and_then(|t| t.file_name().and_then(|n| n.to_str()).map(String::from));
            drivers.insert(d.role.clone(), driver);
            let cdev = std::fs::read_dir(sysfs.join("bus/pci/devices").join(&d.bdf).join("vfio-dev"))
                .ok()
                .and_then(|mut dir| dir.find_map(|e| e.ok()?.file_name().to_str()?.strip_prefix("vfio")?.parse().ok()));
            if let Some(n) = cdev {
                cdevs.insert(d.role.clone(), n);
            }
        }
        Ok(Self { topology, groups, drivers, cdevs })
    }

    /// Group numbers for the mock: one per distinct set of group members, from 1.
    pub fn assigned(topology: Topology) -> Self {
        let mut by_members: BTreeMap<Vec<String>, u32> = BTreeMap::new();
        let mut groups = BTreeMap::new();
        for d in &topology.devices {
            let mut members = d.group_with.clone();
            members.sort();
            let next = by_members.len() as u32 + 1;
            let id = *by_members.entry(members).or_insert(next);
            groups.insert(d.role.clone(), id);
        }
        let drivers = topology.devices.iter().map(|d| (d.role.clone(), d.driver.clone())).collect();
        // The mock numbers cdevs in its device order (vfio-core's
        // Host::cdev_index): mock_host.rs lays devices out group by group,
        // in topology order within a group.
        let mut bound: Vec<(u32, usize, String)> = topology
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.driver.as_deref() == Some("vfio-pci"))
            .map(|(i, d)| (groups[&d.role], i, d.role.clone()))
            .collect();
        bound.sort();
        let cdevs = bound.into_iter().enumerate().map(|(n, (_, _, role))| (role, n as u32)).collect();
        Self { topology, groups, drivers, cdevs }
    }

    pub fn device(&self, role: &str) -> &TopologyDevice {
        self.topology.devices.iter().find(|d| d.role == role).unwrap_or_else(|| panic!("the lab topology has no device playing '{role}'"))
    }

    /// Whether the topology has a device playing `role` (some roles exist
    /// in one profile's guest only: `bus-reset` in the x86 topology).
    pub fn has(&self, role: &str) -> bool {
        self.topology.devices.iter().any(|d| d.role == role)
    }

    pub fn group_of(&self, role: &str) -> u32 {
        self.groups[&self.device(role).role]
    }

    pub fn bdf_of(&self, role: &str) -> &str {
        &self.device(role).bdf
    }

    /// The cdev number of the device playing `role`, if it has one.
    pub fn cdev_of(&self, role: &str) -> Option<u32> {
        self.cdevs.get(&self.device(role).role).copied()
    }

    /// A group number no device has, for the "no such group" rules.
    pub fn unused_group(&self) -> u32 {
        self.groups.values().max().copied().unwrap_or(0) + 100
    }

    /// What this run saw, for the results file.
    pub fn describe(&self) -> Vec<HostDevice> {
        self.topology
            .devices
            .iter()
            .map(|d| HostDevice {
                role: d.role.clone(),
                bdf: d.bdf.clone(),
                group: self.groups[&d.role],
                driver: self.drivers[&d.role].clone(),
            })
            .collect()
    }
}
