//! `vfio-lab`: the lab's conformance suite, written once and run twice.
//!
//! ```text
//! vfio-lab x86 --backend kernel --topology topology.json [--out results.jsonl] [--sysfs /sys]
//! vfio-lab x86 --backend mock   --topology topology.json [--out results.jsonl]
//! vfio-lab iommufd --backend kernel|mock --topology topology.json [...]   (see iommufd.rs)
//! vfio-lab spapr --backend kernel|mock --phbs N [--out results.jsonl]   (see spapr.rs)
//! ```
//!
//! In the lab guest it runs against the real kernel (`--backend kernel`); on
//! the host the lab runner runs it against the mock configured as that guest.
//! Results go out as JSON lines (see `report`); the runner compares the two
//! files case by case. Progress goes to stderr. The exit code is 0 when every
//! case ran (whatever it found: judging is the runner's), 1 when the run
//! could not be done, 2 on a usage error.

mod case;
mod edu;
mod host;
mod live_handover;
mod live_iommufd;
mod memlock;
mod iommufd;
mod iommufd_dirty;
mod mock_host;
mod report;
mod spapr;
mod spapr_cases;
mod spapr_dma;
mod x86;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use vfio_core::backend::{Backend, KernelBackend};

use crate::case::{Case, Ctx};
use crate::host::{LabHost, Topology};
use crate::report::{Line, Writer};

struct Args {
    suite: String,
    backend: String,
    topology: PathBuf,
    out: Option<PathBuf>,
    sysfs: PathBuf,
    only: Option<String>,
}

const USAGE: &str = "usage: vfio-lab x86|iommufd|iommufd-selftest --backend kernel|mock --topology FILE [--out FILE] [--sysfs DIR] [--only TEXT]\n       vfio-lab spapr --backend kernel|mock --phbs N [--out FILE]";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let suite = it.next().ok_or("no suite given")?;
    let mut args =
        Args { suite, backend: String::new(), topology: PathBuf::new(), out: None, sysfs: "/sys".into(), only: None };
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--backend" => args.backend = value()?,
            "--topology" => args.topology = value()?.into(),
            "--out" => args.out = Some(value()?.into()),
            "--sysfs" => args.sysfs = value()?.into(),
            "--only" => args.only = Some(value()?),
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    if !["x86", "iommufd", "iommufd-selftest"].contains(&args.suite.as_str()) {
        return Err(format!("unknown suite '{}': the suites are x86, iommufd, iommufd-selftest and spapr", args.suite));
    }
    if args.backend != "kernel" && args.backend != "mock" {
        return Err(format!("--backend must be kernel or mock, not '{}'", args.backend));
    }
    if args.topology.as_os_str().is_empty() {
        return Err("--topology is required".into());
    }
    Ok(args)
}

fn run(args: &Args) -> Result<(), String> {
    let topology = Topology::load(&args.topology)?;
    eprintln!("vfio-lab {} {}: topology {}", args.backend, args.suite, topology.name);
    let selftest = args.suite == "iommufd-selftest";
    let (host, backend): (LabHost, Arc<dyn Backend>) = if selftest {
        // A guest without an IOMMU: no device plays a role, only
        // IOMMUFD_TEST's mock devices.
        let host = LabHost::assigned(topology);
        let backend: Arc<dyn Backend> = if args.backend == "kernel" {
            Arc::new(KernelBackend::new())
        } else {
            mock_host::mock_selftest_backend(host.topology.host.kernel.as_deref())
        };
        (host, backend)
    } else if args.backend == "kernel" {
        (LabHost::from_sysfs(topology, &args.sysfs)?, Arc::new(KernelBackend::new()))
    } else {
        let host = LabHost::assigned(topology);
        let backend = mock_host::mock_backend(&host, args.suite == "iommufd");
        (host, backend)
    };
    let out: Box<dyn Write> = match &args.out {
        Some(p) => Box::new(BufWriter::new(File::create(p).map_err(|e| format!("cannot create {}: {e}", p.display()))?)),
        None => Box::new(io::stdout().lock()),
    };
    let io_err = |e: io::Error| format!("cannot write results: {e}");
    let mut w = Writer::new(out, &args.suite, &args.backend).map_err(io_err)?;
    w.line(&Line::Host { devices: host.describe() }).map_err(io_err)?;

    let cases: Vec<Case> = match args.suite.as_str() {
        "iommufd" => iommufd::cases(),
        "iommufd-selftest" => iommufd_dirty::selftest_cases(),
        _ => x86::cases(),
    };
    for case in cases.iter().filter(|c| args.only.as_ref().is_none_or(|o| c.name.contains(o.as_str()))) {
        let started = Instant::now();
        let mut ctx = Ctx::new(Arc::clone(&backend), &host);
        let outcome = (case.run)(&mut ctx);
        let line = ctx.finish(case.name, outcome);
        eprintln!("vfio-lab {} {}: {} ({} ms)", args.backend, args.suite, case.name, started.elapsed().as_millis());
        w.line(&line).map_err(io_err)?;
    }
    w.finish().map_err(io_err)
}

fn main() {
    // The sPAPR suite (pseries guest) has its own arguments: spapr.rs.
    let raw: Vec<String> = std::env::args().skip(1).collect();
    if raw.first().map(String::as_str) == Some("spapr") {
        std::process::exit(spapr::main(&raw[1..]));
    }
    // A hand-over between processes on the kernel (live_handover.rs).
    // The iommufd hand-over (live_iommufd.rs).
    if raw.first().is_some_and(|a| a.starts_with("live-iommufd")) {
        std::process::exit(live_iommufd::main(&raw));
    }
    if raw.first().is_some_and(|a| a.starts_with("live-")) {
        std::process::exit(live_handover::main(&raw));
    }
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vfio-lab: {e}\n{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = run(&args) {
        eprintln!("vfio-lab: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::{HostFacts, TopologyDevice};

    fn device(role: &str, bdf: &str, model: &str, driver: Option<&str>, with: &[&str], bridges: &[&str]) -> TopologyDevice {
        TopologyDevice {
            role: role.into(),
            bdf: bdf.into(),
            model: model.into(),
            driver: driver.map(String::from),
            group_with: with.iter().map(|s| s.to_string()).collect(),
            group_bridges: bridges.iter().map(|s| s.to_string()).collect(),
            reset_works: false,
        }
    }

    /// The shape of the lab guest (packages/testkit/src/lab/x86/topology.ts).
    fn lab_shape() -> Topology {
        lab_shape_on(HostFacts::default())
    }

    fn lab_shape_on(host: HostFacts) -> Topology {
        let vfio = Some("vfio-pci");
        Topology {
            name: "x86-q35-edu".into(),
            dma_entry_limit: 65535,
            host,
            bridge_driver: None,
            devices: vec![
                device("solo", "0000:00:03.0", "edu", vfio, &["solo"], &[]),
                device("bridge-a", "0000:01:01.0", "edu", vfio, &["bridge-a", "bridge-b"], &["0000:00:04.0"]),
                device("bridge-b", "0000:01:02.0", "edu", None, &["bridge-a", "bridge-b"], &["0000:00:04.0"]),
                device("mf-0", "0000:02:00.0", "edu", vfio, &["mf-0", "mf-1"], &[]),
                device("mf-1", "0000:02:00.1", "edu", vfio, &["mf-0", "mf-1"], &[]),
                device("blocked", "0000:03:01.0", "edu", vfio, &["blocked", "blocked-peer"], &["0000:00:06.0"]),
                device("blocked-peer", "0000:03:02.0", "virtio-rng-pci", Some("virtio-pci"), &["blocked", "blocked-peer"], &["0000:00:06.0"]),
                TopologyDevice { reset_works: true, ..device("bus-reset", "0000:04:00.0", "edu", vfio, &["bus-reset"], &[]) },
            ],
        }
    }

    fn run_all(topology: Topology) -> Vec<Line> {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        let host = LabHost::assigned(topology);
        let backend = mock_host::mock_backend(&host, false);
        x86::cases()
            .into_iter()
            .map(|case| {
                let mut ctx = Ctx::new(Arc::clone(&backend), &host);
                let outcome = (case.run)(&mut ctx);
                ctx.finish(case.name, outcome)
            })
            .collect()
    }

    /// The suites lower RLIMIT_MEMLOCK, which is the whole process's, and
    /// the sPAPR suite forks: runs take turns, as the lab binary runs its
    /// cases one at a time.
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn assert_complete(topology: Topology) {
        for line in run_all(topology) {
            let Line::Case { name, aborted, checks, .. } = line else { unreachable!() };
            assert_eq!(aborted, None, "case '{name}' stopped early");
            let failed: Vec<_> = checks.iter().filter(|c| !c.ok).collect();
            assert!(failed.is_empty(), "case '{name}': {failed:?}");
        }
    }

    fn facts(iommu: &str, msi_isolated: bool, allow_unsafe_interrupts: bool) -> HostFacts {
        HostFacts { iommu: iommu.into(), msi_isolated, allow_unsafe_interrupts, kernel: None }
    }

    #[test]
    fn every_x86_case_runs_to_its_end_on_the_mock_with_every_check_holding() {
        // The lab compares these results with the kernel's; here they only
        // must be complete, so a case that aborts or a mock that breaks a
        // must-hold fact shows in `cargo test`, before any boot.
        assert_complete(lab_shape());
    }

    #[test]
    fn every_iommufd_case_runs_to_its_end_on_the_mock_with_every_check_holding() {
        let host = LabHost::assigned(lab_shape());
        let backend = mock_host::mock_backend(&host, true);
        for case in iommufd::cases() {
            let mut ctx = Ctx::new(Arc::clone(&backend), &host);
            let outcome = (case.run)(&mut ctx);
            let Line::Case { name, aborted, checks, .. } = ctx.finish(case.name, outcome) else { unreachable!() };
            assert_eq!(aborted, None, "case '{name}' stopped early");
            let failed: Vec<_> = checks.iter().filter(|c| !c.ok).collect();
            assert!(failed.is_empty(), "case '{name}': {failed:?}");
        }
    }

    #[test]
    fn every_iommufd_selftest_case_runs_to_its_end_on_the_mock_without_an_iommu() {
        let host = LabHost::assigned(lab_shape());
        let backend = mock_host::mock_selftest_backend(None);
        for case in iommufd_dirty::selftest_cases() {
            let mut ctx = Ctx::new(Arc::clone(&backend), &host);
            let outcome = (case.run)(&mut ctx);
            let Line::Case { name, aborted, .. } = ctx.finish(case.name, outcome) else { unreachable!() };
            assert_eq!(aborted, None, "case '{name}' stopped early");
        }
    }

    #[test]
    fn every_case_runs_to_its_end_on_the_amd_vi_and_smmuv3_profiles_and_without_msi_isolation_when_allowed() {
        assert_complete(lab_shape_on(facts("amd-vi", true, false)));
        assert_complete(lab_shape_on(facts("smmuv3", true, false)));
        assert_complete(lab_shape_on(facts("vtd", false, true)));
    }

    #[test]
    fn the_mock_resets_the_edu_the_topology_gives_a_reset_method_and_refuses_the_others() {
        // topology.json's resetMethods, checked against the kernel's
        // reset_method by topology.lab.ts, is what the mock's edu answers.
        let lines = run_all(lab_shape());
        let steps = lines
            .iter()
            .find_map(|l| match l {
                Line::Case { name, steps, .. } if name.starts_with("DEVICE_RESET") => Some(steps),
                _ => None,
            })
            .expect("the DEVICE_RESET case ran");
        let results: Vec<(&str, &str)> = steps.iter().filter(|s| s.call.starts_with("DEVICE_RESET")).map(|s| (s.call.as_str(), s.result.as_str())).collect();
        assert_eq!(
            results,
            [("DEVICE_RESET solo", "EINVAL"), ("DEVICE_RESET bridge-a", "EINVAL"), ("DEVICE_RESET mf-0", "EINVAL"), ("DEVICE_RESET bus-reset", "ok")]
        );
    }

    #[test]
    fn without_msi_isolation_every_case_that_stops_stops_at_set_iommu_with_eperm() {
        // vfio_iommu_type1_attach_group's "No interrupt remapping support":
        // what the lab's x86-noir and arm64 gicv2 boots show on the kernel.
        let mut stopped = 0;
        for line in run_all(lab_shape_on(facts("vtd", false, false))) {
            let Line::Case { name, aborted, steps, .. } = line else { unreachable!() };
            let set_iommu: Vec<_> = steps.iter().filter(|s| s.call.to_lowercase().contains("set_iommu") && s.call.contains("TYPE1")).collect();
            assert!(set_iommu.iter().all(|s| s.result == "EPERM" || s.result == "EINVAL"), "case '{name}': {set_iommu:?}");
            if let Some(why) = aborted {
                assert!(why.contains("EPERM") || !set_iommu.is_empty() || why.contains("failed"), "case '{name}' stopped for another reason: {why}");
                stopped += 1;
            }
        }
        assert!(stopped > 20, "only {stopped} cases stopped: the refusal is not reached");
    }

    /// The virtio-iommu boot's shape (X86_ROOT_PORT_TOPOLOGY in
    /// packages/testkit/src/lab/x86/topology.ts): nothing behind a bridge.
    fn root_port_shape(allow_unsafe_interrupts: bool) -> Topology {
        let vfio = Some("vfio-pci");
        Topology {
            name: "x86-q35-edu-root-ports".into(),
            dma_entry_limit: 65535,
            host: facts("virtio-iommu", false, allow_unsafe_interrupts),
            bridge_driver: None,
            devices: vec![
                device("solo", "0000:00:03.0", "edu", vfio, &["solo"], &[]),
                device("mf-0", "0000:01:00.0", "edu", vfio, &["mf-0", "mf-1"], &[]),
                device("mf-1", "0000:01:00.1", "edu", vfio, &["mf-0", "mf-1"], &[]),
                device("blocked", "0000:02:00.0", "edu", vfio, &["blocked", "blocked-peer"], &[]),
                device("blocked-peer", "0000:02:00.1", "virtio-rng-pci", Some("virtio-pci"), &["blocked", "blocked-peer"], &[]),
            ],
        }
    }

    fn run_iommufd(topology: Topology) -> Vec<(String, Option<String>, usize)> {
        let host = LabHost::assigned(topology);
        let backend = mock_host::mock_backend(&host, true);
        iommufd::cases()
            .into_iter()
            .map(|case| {
                let mut ctx = Ctx::new(Arc::clone(&backend), &host);
                let outcome = (case.run)(&mut ctx);
                let Line::Case { name, aborted, checks, .. } = ctx.finish(case.name, outcome) else { unreachable!() };
                (name, aborted, checks.iter().filter(|c| !c.ok).count())
            })
            .collect()
    }

    #[test]
    fn on_virtio_iommu_every_iommufd_case_runs_to_its_end_once_iommufd_allows_unsafe_interrupts() {
        for (name, aborted, failed) in run_iommufd(root_port_shape(true)) {
            assert_eq!((aborted, failed), (None, 0), "case '{name}'");
        }
    }

    #[test]
    fn on_virtio_iommu_without_unsafe_interrupts_every_iommufd_case_that_stops_stops_at_the_refused_bind() {
        // iommufd_device_bind: no isolated MSI and allow_unsafe_interrupts
        // off is EPERM, what the lab's virtio-iommu boot shows first.
        let results = run_iommufd(root_port_shape(false));
        let stopped: Vec<_> = results.iter().filter_map(|(name, aborted, _)| aborted.as_ref().map(|a| (name, a))).collect();
        for (name, why) in &stopped {
            assert!(*why == "BIND_IOMMUFD failed with EPERM" || *why == "bind failed with EPERM", "case '{name}' stopped for another reason: {why}");
        }
        assert!(stopped.len() >= 4, "only {} cases stopped: the refusal is not reached", stopped.len());
    }

    /// A sink the sPAPR suite writes its JSON lines into.
    #[derive(Clone, Default)]
    struct Lines(Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_spapr_case_runs_to_its_end_on_the_mock_with_one_and_two_phbs_and_two_functions() {
        let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
        for (phbs, functions) in [(1, 1), (2, 1), (1, 2)] {
            let sink = Lines::default();
            spapr::run(&spapr::World::mock(phbs, functions), Box::new(sink.clone())).unwrap();
            let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
            let mut cases = 0;
            for line in text.lines() {
                let Line::Case { name, aborted, checks, .. } = serde_json::from_str(line).unwrap() else { continue };
                assert_eq!(aborted, None, "{phbs} PHB(s), {functions} function(s): case '{name}' stopped early");
                let failed: Vec<_> = checks.iter().filter(|c| !c.ok).collect();
                assert!(failed.is_empty(), "case '{name}': {failed:?}");
                cases += 1;
            }
            assert!(cases >= 2, "{phbs} PHB(s), {functions} function(s): only {cases} cases ran");
        }
    }
}
