//! The programs' shape, and the kernel steering a TAP's frames by the sending CPU.
#![allow(clippy::unwrap_used, reason = "tests unwrap what they set up")]

use std::net::UdpSocket;
use std::os::fd::AsFd;
use std::time::Duration;

use super::*;
use crate::io::PacketIo;
use crate::io::netdev;
use crate::io::tap::TapQueue;
use crate::io::testframes::parse_udp;
use crate::io::testnet::{Netns, require_root};
use crate::io::thread::pin_current_thread;
use crate::packet::{PacketPool, PortId};

#[test]
fn the_tap_program_maps_listed_cpus_to_their_position() {
    let p = tap_program(&[2, 5]).unwrap();
    assert_eq!(p.len(), 1 + 2 * 3 + 1);
    assert_eq!(
        (p[0].code, p[0].imm),
        (op::CALL, BPF_FUNC_GET_SMP_PROCESSOR_ID)
    );
    assert_eq!((p[1].code, p[1].imm, p[1].off), (JNE_IMM, 2, 2));
    assert_eq!((p[2].code, p[2].imm), (op::MOV64_IMM, 0));
    assert_eq!((p[4].imm, p[5].imm), (5, 1));
    assert_eq!(p.last().map(|i| i.code), Some(op::EXIT));
}

#[test]
fn the_socket_program_returns_the_position_or_the_cpu() {
    let p = socket_program(&[0, 3]).unwrap();
    assert_eq!(p.len(), 1 + 2 * 2 + 1);
    assert_eq!((p[1].code, p[1].k, p[1].jf), (BPF_JMP_JEQ_K, 0, 1));
    assert_eq!((p[2].code, p[2].k), (BPF_RET_K, 0));
    assert_eq!((p[3].k, p[4].k), (3, 1));
    assert_eq!(p[5].code, BPF_RET_A);
}

/// Which of `queues` holds a datagram to `port` (waits up to a second).
fn queue_of(queues: &mut [TapQueue], port: u16) -> Option<usize> {
    let mut pool = PacketPool::with_capacity(64);
    for _ in 0..100 {
        for (i, q) in queues.iter_mut().enumerate() {
            let mut batch = Vec::new();
            q.rx_burst(PortId(1), &mut pool, &mut batch, 32).unwrap();
            let hit = batch
                .iter()
                .any(|p| parse_udp(p.data()).is_some_and(|u| u.dport == port));
            for p in batch {
                pool.put(p);
            }
            if hit {
                return Some(i);
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

#[test]
fn a_tap_hands_each_cpus_frames_to_the_queue_of_that_cpus_worker() {
    require_root();
    let ns = Netns::create();
    ns.run(|| {
        let mut queues = vec![
            TapQueue::open("fpst0").unwrap(),
            TapQueue::open("fpst0").unwrap(),
        ];
        netdev::set_up("fpst0").unwrap();
        ns.ip(&["addr", "add", "10.2.0.1/24", "dev", "fpst0"]);
        ns.ip(&[
            "neigh",
            "add",
            "10.2.0.2",
            "lladdr",
            "02:00:00:00:00:02",
            "dev",
            "fpst0",
        ]);
        // Worker 0 on CPU 1, worker 1 on CPU 0: not the identity, so a CPU number taken for
        // a queue index would show.
        let steering = TapSteering::load(&[1, 0]).expect("the verifier accepts the program");
        steering.apply(queues[0].as_fd()).unwrap();
        for (cpu, port, want) in [(0, 7000, 1), (1, 7001, 0), (0, 7002, 1)] {
            std::thread::scope(|s| {
                s.spawn(|| {
                    pin_current_thread(cpu).unwrap();
                    let sock = UdpSocket::bind("10.2.0.1:0").unwrap();
                    sock.send_to(b"steer", ("10.2.0.2", port)).unwrap();
                });
            });
            assert_eq!(
                queue_of(&mut queues, port),
                Some(want),
                "a datagram sent on cpu {cpu} reaches worker {want}'s queue"
            );
        }
        clear_tap(queues[0].as_fd()).unwrap();
    });
}

/// A non-blocking UDP socket in a reuseport group on 127.0.0.1:`port`.
fn reuseport_socket(port: u16) -> UdpSocket {
    let fd =
        crate::io::sys::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_NONBLOCK, 0).unwrap();
    let one: std::ffi::c_int = 1;
    crate::io::sys::set_option(
        fd.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_REUSEPORT,
        &one,
        "SO_REUSEPORT",
    )
    .unwrap();
    let addr = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(std::net::Ipv4Addr::LOCALHOST).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: `addr` is a live sockaddr_in of the length passed, only read by the kernel.
    let ret = unsafe {
        libc::bind(
            std::os::fd::AsRawFd::as_raw_fd(&fd),
            std::ptr::from_ref(&addr).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    assert_eq!(ret, 0, "bind: {}", std::io::Error::last_os_error());
    UdpSocket::from(fd)
}

#[test]
fn a_reuseport_group_hands_each_cpus_datagrams_to_that_cpus_worker() {
    require_root();
    let ns = Netns::create();
    ns.run(|| {
        ns.ip(&["link", "set", "lo", "up"]);
        let group = [reuseport_socket(4789), reuseport_socket(4789)];
        steer_reuseport(&group[1], &[1, 0]).unwrap();
        for (cpu, tag, want) in [(0, 1u8, 1), (1, 2, 0), (0, 3, 1)] {
            std::thread::scope(|s| {
                s.spawn(|| {
                    pin_current_thread(cpu).unwrap();
                    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
                    sock.send_to(&[tag], "127.0.0.1:4789").unwrap();
                });
            });
            let mut got = None;
            for _ in 0..100 {
                for (i, sock) in group.iter().enumerate() {
                    let mut buf = [0u8; 16];
                    if let Ok(1) = sock.recv(&mut buf)
                        && buf[0] == tag
                    {
                        got = Some(i);
                    }
                }
                if got.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            assert_eq!(got, Some(want), "a datagram sent on cpu {cpu}");
        }
    });
}
