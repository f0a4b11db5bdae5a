//! The hand-over's rules on the mock (the flow between processes on the
//! kernel is the lab's: crates/vfio-lab live-handover), and its wire format
//! over a real socketpair.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

use super::*;
use crate::backend::{MockBackend, MockConfig, MockDeviceConfig, MockGroupConfig};
use crate::dma_flags::READ_WRITE as RW;
use crate::uapi::VFIO_TYPE1V2_IOMMU;

const MB: u64 = 1 << 20;

fn container() -> Type1Container {
    let b: Arc<dyn Backend> = Arc::new(MockBackend::new(
        MockConfig::empty().with_group(MockGroupConfig::new(1).with_device(MockDeviceConfig::edu("0000:00:03.0"))),
    ));
    Type1Container::open(b, &[1], VFIO_TYPE1V2_IOMMU).unwrap()
}

/// Four 1 MiB mappings of a 4 MiB guest memory, at IOVA 16 MiB + n MiB.
fn mapped(c: &Type1Container, mem: &GuestMemory) -> Vec<[u64; 3]> {
    (0..4u64)
        .map(|i| {
            let m = [16 * MB + i * MB, mem.addr() + i * MB, MB];
            c.map_dma(m[0], m[1], m[2], RW).unwrap();
            m
        })
        .collect()
}

fn second_view(mem: &GuestMemory) -> GuestMemory {
    // SAFETY: dup of a descriptor `mem` keeps open.
    let fd = unsafe { OwnedFd::from_raw_fd(libc::dup(mem.raw_fd())) };
    GuestMemory::from_fd(fd, mem.len()).unwrap()
}

fn handover<'a>(c: &'a Type1Container, mem: &'a GuestMemory, maps: &'a [[u64; 3]]) -> Handover<'a> {
    Handover { container: c, devices: &[], memory: mem, mappings: maps, irqs: &[] }
}

/// Every mapping is valid again: one ALL invalidation covers them all, and
/// each then takes an update (the extent is intact).
fn assert_all_valid(c: &Type1Container, mem: &GuestMemory, maps: &[Mapping]) {
    assert_eq!(c.invalidate_all_vaddrs().unwrap(), maps.iter().map(|m| m.size).sum::<u64>());
    update_all(c, mem, maps).unwrap();
}

#[test]
fn a_mapping_outside_the_shared_memory_is_refused_before_anything_changes() {
    let c = container();
    let mem = GuestMemory::create("t", (4 * MB) as usize).unwrap();
    let anon = crate::HostMemory::new(4096).unwrap();
    c.map_dma(0x1000_0000, anon.addr(), 4096, RW).unwrap();
    let maps = [[0x1000_0000, anon.addr(), 4096]];
    let e = prepare(&handover(&c, &mem, &maps)).unwrap_err();
    assert_eq!(e.code(), "EINVAL");
    assert!(e.detail.as_deref().unwrap().contains("not inside the shared guest memory"), "{e}");
    // Nothing was invalidated: a normal update is refused as for a valid mapping.
    assert_eq!(c.update_vaddr(0x1000_0000, anon.addr(), 4096).unwrap_err().code(), "EINVAL");
}

#[test]
fn overlapping_or_unaligned_mappings_are_refused() {
    let c = container();
    let mem = GuestMemory::create("t", (4 * MB) as usize).unwrap();
    let a = mem.addr();
    assert_eq!(prepare(&handover(&c, &mem, &[[16 * MB, a, MB], [16 * MB + 4096, a, 4096]])).unwrap_err().code(), "EINVAL");
    assert_eq!(prepare(&handover(&c, &mem, &[[16 * MB + 1, a, 4096]])).unwrap_err().code(), "EINVAL");
}

#[test]
fn interrupts_of_a_device_not_handed_over_are_refused() {
    let c = container();
    let mem = GuestMemory::create("t", (4 * MB) as usize).unwrap();
    let irqs = [Irq { device: "0000:00:03.0".into(), index: 1, eventfds: vec![0] }];
    let h = Handover { container: &c, devices: &[], memory: &mem, mappings: &[], irqs: &irqs };
    assert!(prepare(&h).unwrap_err().detail.unwrap().contains("not handed over"));
}

#[test]
fn the_new_process_updates_every_mapping_to_its_own_view_of_the_memfd() {
    let c = container();
    let old = GuestMemory::create("t", (4 * MB) as usize).unwrap();
    let raw = mapped(&c, &old);
    let maps = prepare(&handover(&c, &old, &raw)).unwrap();
    assert_eq!(c.invalidate_all_vaddrs().unwrap(), 4 * MB);
    let new = second_view(&old);
    update_all(&c, &new, &maps).unwrap();
    // Updated, so a second update of the same range is refused (EINVAL).
    assert_eq!(c.update_vaddr(maps[0].iova, new.addr(), MB).unwrap_err().code(), "EINVAL");
    assert_all_valid(&c, &new, &maps);
}

#[test]
fn an_update_that_fails_midway_gives_back_what_it_updated_and_the_old_process_restores_all() {
    let c = container();
    let old = GuestMemory::create("t", (4 * MB) as usize).unwrap();
    let raw = mapped(&c, &old);
    let mut maps = prepare(&handover(&c, &old, &raw)).unwrap();
    c.invalidate_all_vaddrs().unwrap();
    let new = second_view(&old);
    maps[2].size = 2 * MB; // a description that does not match the kernel's extent
    let e = update_all(&c, &new, &maps).unwrap_err();
    assert_eq!((e.code(), e.entry), ("EINVAL", Some(2)));
    assert!(e.detail.as_deref().unwrap().contains("the 2 updated before it were invalidated again"), "{e}");
    maps[2].size = MB;
    restore(&c, &old, &maps).unwrap();
    assert_all_valid(&c, &old, &maps);
}

#[test]
fn the_old_process_restores_mappings_a_dead_new_process_had_already_updated() {
    let c = container();
    let old = GuestMemory::create("t", (4 * MB) as usize).unwrap();
    let raw = mapped(&c, &old);
    let maps = prepare(&handover(&c, &old, &raw)).unwrap();
    c.invalidate_all_vaddrs().unwrap();
    let new = second_view(&old);
    update_all(&c, &new, &maps[..2]).unwrap(); // then it died
    drop(new);
    restore(&c, &old, &maps).unwrap();
    assert_all_valid(&c, &old, &maps);
}

#[test]
fn a_hand_over_whose_descriptors_cannot_be_sent_leaves_every_mapping_with_the_old_address() {
    // The mock's descriptors are entries of its own table, not files of
    // this process: sendmsg refuses them (EBADF), as it would a closed fd.
    let c = container();
    let old = GuestMemory::create("t", (4 * MB) as usize).unwrap();
    let raw = mapped(&c, &old);
    let (a, _b) = pair();
    let e = hand_over(a.as_raw_fd(), &handover(&c, &old, &raw)).unwrap_err();
    assert_eq!(e.code(), "EBADF");
    let maps = prepare(&handover(&c, &old, &raw)).unwrap();
    assert_all_valid(&c, &old, &maps);
}

#[test]
fn a_description_that_misses_a_mapping_is_refused_and_the_described_ones_get_their_address_back() {
    let c = container();
    let old = GuestMemory::create("t", (4 * MB) as usize).unwrap();
    let raw = mapped(&c, &old);
    let (a, _b) = pair();
    let e = hand_over(a.as_raw_fd(), &handover(&c, &old, &raw[..3])).unwrap_err();
    assert!(e.detail.as_deref().unwrap().contains("holds 0x400000 bytes of mappings but the description covers 0x300000"), "{e}");
    // The undescribed one stays invalid: its owner must update it.
    c.update_vaddr(raw[3][0], raw[3][1], MB).unwrap();
    let maps = prepare(&handover(&c, &old, &raw)).unwrap();
    assert_all_valid(&c, &old, &maps);
}

// ---- the wire ----

fn pair() -> (OwnedFd, OwnedFd) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors socketpair writes.
    assert_eq!(unsafe { libc::socketpair(libc::AF_UNIX, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) }, 0);
    // SAFETY: socketpair just opened both; each is owned once.
    unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) }
}

fn description(maps: usize, irq: u32) -> Description {
    Description {
        iommufd: None,
        groups: vec![7, 9],
        devices: vec!["0000:00:03.0".into()],
        memory_len: 1 << 33,
        irqs: if irq > 0 { vec![IrqDesc { device: "0000:00:03.0".into(), index: 2, count: irq }] } else { vec![] },
        mappings: (0..maps as u64).map(|i| Mapping { iova: i << 21, size: 1 << 21, offset: i << 21 }).collect(),
    }
}

#[test]
fn a_description_reads_back_as_written() {
    let d = description(3, 2);
    assert_eq!(Description::parse(&d.to_text()).unwrap(), d);
    assert_eq!(d.fd_count(), 7);
}

#[test]
fn a_description_out_of_order_or_past_the_memory_is_refused_with_the_line() {
    let text = description(1, 0).to_text();
    for (bad, says) in [
        (text.replace("vfiokit-live-update 1", "vfiokit-live-update 2"), "another version"),
        (text.replace("map 0x0 0x200000 0x0", "map 0x0 0x200000 0x1fffff000"), "runs past the guest memory"),
        (text.replace("memory 0x200000000\n", "memory 0x200000000\ngroup 11\n"), "line 7: 'group 11' is not expected here"),
        (text.replace("end\n", ""), "no 'end' line"),
        (text.replace("memory 0x200000000\n", "memory 0x200000000\nirq 0000:00:09.0 1 1\n"), "not handed over"),
    ] {
        let e = Description::parse(&bad).unwrap_err();
        assert_eq!(e.code(), "EPROTO");
        assert!(e.detail.as_deref().unwrap().contains(says), "{e}");
    }
}

#[test]
fn forty_one_descriptors_and_4096_mappings_cross_a_socket_in_order() {
    let (a, b) = pair();
    let d = description(4096, 36);
    let files: Vec<std::fs::File> = (0..d.fd_count()).map(|_| std::fs::File::open("/proc/self/exe").unwrap()).collect();
    let marker = GuestMemory::create("marker", 4096).unwrap();
    let mut raw: Vec<i32> = files.iter().map(|f| f.as_raw_fd()).collect();
    raw[33] = marker.raw_fd();
    let text = d.to_text();
    let sender = std::thread::spawn(move || wire::send(a.as_raw_fd(), text.as_bytes(), &raw).map(|_| a));
    let (got, fds) = wire::receive(b.as_raw_fd()).unwrap();
    let _a = sender.join().unwrap().unwrap();
    assert_eq!(got, d);
    assert_eq!(fds.len(), 41);
    // Each arrives in its place: a memfd put at position 33 comes out there.
    let _ = &files;
    let inode = |fd: i32| std::fs::metadata(format!("/proc/self/fd/{fd}")).map(|m| std::os::unix::fs::MetadataExt::ino(&m)).unwrap();
    assert_eq!(inode(fds[33].as_raw_fd()), inode(marker.raw_fd()));
    assert_ne!(inode(fds[32].as_raw_fd()), inode(marker.raw_fd()));
}

#[test]
fn a_sender_that_dies_before_the_descriptors_leaves_the_receiver_an_error_not_a_hang() {
    let (a, b) = pair();
    wire::send_all(a.as_raw_fd(), description(1, 0).to_text().as_bytes()).unwrap();
    drop(a);
    let e = wire::receive(b.as_raw_fd()).unwrap_err();
    assert!(e.detail.as_deref().unwrap().contains("closed the socket"), "{e}");
}

#[test]
fn the_old_process_reads_done_failed_or_a_closed_socket() {
    let (a, b) = pair();
    wire::send_all(b.as_raw_fd(), b"done\n").unwrap();
    assert_eq!(wire::wait_reply(a.as_raw_fd()), Ok(()));
    wire::send_all(b.as_raw_fd(), b"failed EINVAL on mapping 3\n").unwrap();
    assert_eq!(wire::wait_reply(a.as_raw_fd()), Err("the new process failed: EINVAL on mapping 3".into()));
    drop(b);
    assert!(wire::wait_reply(a.as_raw_fd()).unwrap_err().contains("closed the socket"));
}

#[test]
fn a_new_process_that_dies_with_the_description_unread_reads_as_closed_not_as_a_failed_read() {
    // The kernel resets the peer of a UNIX stream socket closed with unread
    // data (ECONNRESET, not end of stream); the iommufd lab met it when the
    // new process was killed as the hand-over arrived.
    let (a, b) = pair();
    wire::send_all(a.as_raw_fd(), description(1, 0).to_text().as_bytes()).unwrap();
    drop(b);
    let e = wire::wait_reply(a.as_raw_fd()).unwrap_err();
    assert!(e.contains("closed the socket"), "{e}");
}

// ---- the iommufd hand-over ----

mod iommufd_handover {
    use super::*;
    use crate::backend::IommufdProfile;
    use crate::iommufd::{CdevDevice, Iommufd};

    fn host() -> Arc<dyn Backend> {
        Arc::new(MockBackend::new(
            MockConfig::empty()
                .with_group(MockGroupConfig::new(1).with_device(MockDeviceConfig::edu("0000:00:03.0")))
                .with_iommufd(IommufdProfile::qemu_vtd(0, 0)),
        ))
    }

    fn maps() -> Vec<Mapping> {
        (0..4u64).map(|i| Mapping { iova: 16 * MB + i * MB, size: MB, offset: i * MB }).collect()
    }

    #[test]
    fn prepare_refuses_unaligned_outside_or_overlapping_mappings_and_interrupts_of_devices_not_handed_over() {
        let b = host();
        let ictx = Iommufd::open(b).unwrap();
        let mem = GuestMemory::create("t", (4 * MB) as usize).unwrap();
        let cases: [(Vec<Mapping>, Vec<Irq>, &str); 4] = [
            (vec![Mapping { iova: 16 * MB + 1, size: MB, offset: 0 }], vec![], "not page aligned"),
            (vec![Mapping { iova: 16 * MB, size: MB, offset: 4 * MB }], vec![], "runs past the guest memory"),
            (vec![Mapping { iova: 16 * MB, size: 2 * MB, offset: 0 }, Mapping { iova: 17 * MB, size: MB, offset: 2 * MB }], vec![], "overlap"),
            (vec![], vec![Irq { device: "vfio0".into(), index: 1, eventfds: vec![0] }], "not handed over"),
        ];
        for (m, irqs, says) in cases {
            let e = prepare_iommufd(&IommufdHandover { iommufd: &ictx, ioas_id: 1, devices: &[], memory: &mem, mappings: &m, irqs: &irqs }).unwrap_err();
            assert_eq!(e.code(), "EINVAL");
            assert!(e.detail.as_deref().unwrap().contains(says), "{e}");
        }
        prepare_iommufd(&IommufdHandover { iommufd: &ictx, ioas_id: 1, devices: &[], memory: &mem, mappings: &maps(), irqs: &[] }).unwrap();
    }

    #[test]
    fn an_iommufd_description_reads_back_as_written_and_takes_no_group_lines() {
        let d = Description {
            iommufd: Some(3),
            groups: vec![],
            devices: vec!["vfio0".into()],
            memory_len: 4 * MB,
            irqs: vec![IrqDesc { device: "vfio0".into(), index: 1, count: 1 }],
            mappings: maps(),
        };
        let text = d.to_text();
        assert!(text.starts_with("vfiokit-live-update 1\niommufd 3\ndevice vfio0\n"), "{text}");
        assert_eq!(Description::parse(&text).unwrap(), d);
        assert_eq!(d.fd_count(), 4); // iommufd, one cdev, the memfd, one eventfd
        let e = Description::parse(&text.replace("iommufd 3\n", "iommufd 3\ngroup 1\n")).unwrap_err();
        assert!(e.detail.as_deref().unwrap().contains("'group 1' is not expected here"), "{e}");
    }

    fn incoming(d: Description) -> Incoming {
        let mem = GuestMemory::create("t", d.memory_len as usize).unwrap();
        // SAFETY: each dup is of a descriptor `mem` keeps open, owned once.
        let fds = (0..d.fd_count()).map(|_| unsafe { OwnedFd::from_raw_fd(libc::dup(mem.raw_fd())) }).collect();
        Incoming { description: d, fds }
    }

    #[test]
    fn a_type1_description_is_not_adopted_as_an_iommufd_nor_the_other_way() {
        let type1 = description(1, 0);
        let e = incoming(type1.clone()).adopt_iommufd(host()).unwrap_err();
        assert_eq!(e.code(), "EPROTO");
        assert!(e.detail.as_deref().unwrap().contains("adopt it with adopt"), "{e}");
        let iommufd = Description { iommufd: Some(1), groups: vec![], devices: vec![], memory_len: MB, irqs: vec![], mappings: vec![] };
        let e = incoming(iommufd).adopt(host()).unwrap_err();
        assert!(e.detail.as_deref().unwrap().contains("adopt it with adopt_iommufd"), "{e}");
    }

    #[test]
    fn file_mappings_stay_put_while_their_accounting_moves_and_address_mappings_block_the_move() {
        // What the new process's complete() asks of the kernel, on the mock:
        // CHANGE_PROCESS succeeds over file mappings and changes no mapping.
        let b = host();
        let ictx = Iommufd::open(b.clone()).unwrap();
        let ioas = ictx.alloc_ioas().unwrap();
        let mut dev = CdevDevice::open(b, 0).unwrap();
        dev.bind(&ictx).unwrap();
        dev.attach(ioas.id()).unwrap();
        let mem = GuestMemory::create("t", (4 * MB) as usize).unwrap();
        for m in maps() {
            assert_eq!(ioas.map_file(Some(m.iova), mem.raw_fd(), m.offset, m.size, RW), Ok(m.iova));
        }
        ictx.change_process().unwrap();
        // Every mapping is where it was: each unmaps whole.
        for m in maps() {
            assert_eq!(ioas.unmap(m.iova, m.size), Ok(m.size));
        }
        let anon = crate::HostMemory::new(4096).unwrap();
        ioas.map(Some(16 * MB), anon.addr(), 4096, RW).unwrap();
        assert_eq!(ictx.change_process().unwrap_err().code(), "EINVAL");
    }

    /// An iommufd on the mock whose IOAS maps [`maps`] from a memfd.
    fn file_mapped() -> (Iommufd, crate::iommufd::Ioas, GuestMemory) {
        let ictx = Iommufd::open(host()).unwrap();
        let ioas = ictx.alloc_ioas().unwrap();
        let mem = GuestMemory::create("t", (4 * MB) as usize).unwrap();
        for m in maps() {
            ioas.map_file(Some(m.iova), mem.raw_fd(), m.offset, m.size, RW).unwrap();
        }
        (ictx, ioas, mem)
    }

    #[test]
    fn a_hand_over_whose_descriptors_cannot_be_sent_changes_nothing() {
        // The mock's descriptors are entries of its own table: sendmsg refuses them (EBADF).
        let (ictx, ioas, mem) = file_mapped();
        let (a, _b) = pair();
        let e = hand_over_iommufd(a.as_raw_fd(), &IommufdHandover { iommufd: &ictx, ioas_id: ioas.id(), devices: &[], memory: &mem, mappings: &maps(), irqs: &[] })
            .unwrap_err();
        assert_eq!(e.code(), "EBADF");
        assert_eq!(ioas.unmap_all(), Ok(4 * MB));
    }

    #[test]
    fn a_hand_over_with_a_mapping_made_from_addresses_is_refused_before_anything_is_sent() {
        let (ictx, ioas, mem) = file_mapped();
        let anon = crate::HostMemory::new(4096).unwrap();
        ioas.map(Some(64 * MB), anon.addr(), 4096, RW).unwrap();
        let (a, b_end) = pair();
        let h = IommufdHandover { iommufd: &ictx, ioas_id: ioas.id(), devices: &[], memory: &mem, mappings: &maps(), irqs: &[] };
        let e = hand_over_iommufd(a.as_raw_fd(), &h).unwrap_err();
        assert_eq!((e.code(), e.ioctl), ("EINVAL", "IOMMU_IOAS_CHANGE_PROCESS"));
        assert!(e.detail.as_deref().unwrap().contains("nothing was sent"), "{e}");
        // Nothing is waiting on the other end.
        let mut buf = [0u8; 8];
        // SAFETY: a non-blocking recv into a live buffer of its length.
        let n = unsafe { libc::recv(b_end.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT) };
        assert_eq!(n, -1);
    }

    #[test]
    fn taking_the_charge_back_restores_the_hand_over_and_passes_on_an_einval_a_second_call_confirms() {
        // On the mock CHANGE_PROCESS is EINVAL only for an address mapping,
        // which a second call answers alike: the error is passed on. (The
        // kernel's other EINVAL, a charge left on a dead mm, is followed by
        // a second call answering 0: the lab's iommufd hand-over case.)
        let (ictx, ioas, _mem) = file_mapped();
        assert_eq!(super::iommufd::take_back(&ictx, "gone".into()), Ok(Outcome::Restored { reason: "gone".into() }));
        let anon = crate::HostMemory::new(4096).unwrap();
        ioas.map(Some(64 * MB), anon.addr(), 4096, RW).unwrap();
        assert_eq!(super::iommufd::take_back(&ictx, "gone".into()).unwrap_err().code(), "EINVAL");
    }
}
