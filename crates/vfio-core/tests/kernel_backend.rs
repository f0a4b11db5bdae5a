//! The kernel backend's plumbing, without /dev/vfio: a directory standing in
//! for /dev/vfio shows that paths, errnos and error names come through.

use std::sync::Arc;

use vfio_core::{Backend, Container, Group, KernelBackend};

/// A stand-in for /dev/vfio, removed when the test ends (tests leave nothing in /tmp).
struct DevDir(std::path::PathBuf);

impl std::ops::Deref for DevDir {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for DevDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn dev_dir(name: &str) -> DevDir {
    let d = std::env::temp_dir().join(format!("vfio-core-kernel-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    DevDir(d)
}

#[test]
fn a_missing_group_node_fails_to_open_with_enoent() {
    let d = dev_dir("empty");
    let b: Arc<dyn Backend> = Arc::new(KernelBackend::with_dev_dir(&*d));
    let e = Group::open(b, 7).unwrap_err();
    assert_eq!((e.code(), e.ioctl), ("ENOENT", "open"));
    assert_eq!(e.object, "kernel group 7 (/dev/vfio/7)");
}

#[test]
fn an_ioctl_on_a_file_that_is_not_vfio_fails_with_enotty() {
    let d = dev_dir("plain");
    std::fs::write(d.join("vfio"), b"").unwrap();
    let b: Arc<dyn Backend> = Arc::new(KernelBackend::with_dev_dir(&*d));
    let c = Container::open(b).unwrap();
    let e = c.api_version().unwrap_err();
    assert_eq!((e.code(), e.ioctl), ("ENOTTY", "VFIO_GET_API_VERSION"));
}

#[test]
fn a_kernel_container_reports_its_backend_kind() {
    let d = dev_dir("kind");
    std::fs::write(d.join("vfio"), b"").unwrap();
    let c = Container::open(Arc::new(KernelBackend::with_dev_dir(&*d))).unwrap();
    assert_eq!(c.backend_kind().to_string(), "kernel");
}

#[test]
fn a_group_and_a_container_from_different_backends_are_refused_with_ebadf() {
    let d = dev_dir("mixed");
    std::fs::write(d.join("vfio"), b"").unwrap();
    let c = Container::open(Arc::new(KernelBackend::with_dev_dir(&*d))).unwrap();
    let g = Group::open(Arc::new(vfio_core::MockBackend::default()), 1).unwrap();
    assert_eq!(g.set_container(&c).unwrap_err().code(), "EBADF");
}
