//! The I/O benchmark's arithmetic, frames and table, plus one short real run (root).

use std::net::Ipv4Addr;
use std::sync::Mutex;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};

use super::report::grouped;
use super::scenario::{self, Expect, FIRST_SOURCE_PORT, FRAME_LEN};
use super::topology::cpu_mask;
use super::*;

#[test]
fn spread_takes_the_middle_value_and_the_extremes() {
    let s = spread(&[3.0, 1.0, 2.0]).unwrap();
    assert_eq!((s.median, s.min, s.max), (2.0, 1.0, 3.0));
    let even = spread(&[4.0, 1.0, 3.0, 2.0]).unwrap();
    assert_eq!(even.median, 2.5);
    assert_eq!(spread(&[]), None);
}

#[test]
fn rates_are_grouped_by_thousands() {
    assert_eq!(grouped(0.0), "0");
    assert_eq!(grouped(999.4), "999");
    assert_eq!(grouped(1000.0), "1,000");
    assert_eq!(grouped(1_234_567.8), "1,234,568");
}

#[test]
fn rps_masks_select_one_cpu_in_32_bit_words() {
    assert_eq!(cpu_mask(0), "1");
    assert_eq!(cpu_mask(1), "2");
    assert_eq!(cpu_mask(31), "80000000");
    assert_eq!(cpu_mask(33), "2,00000000");
    assert_eq!(cpu_mask(64), "1,00000000,00000000");
}

#[test]
fn backends_parse_from_their_names_only() {
    for b in Backend::ALL {
        assert_eq!(b.name().parse::<Backend>(), Ok(b));
    }
    assert!("af_packet".parse::<Backend>().is_err());
}

fn ipv4(a: [u8; 4]) -> Ipv4Addr {
    Ipv4Addr::from(a)
}

#[test]
fn frames_are_minimum_size_udp_to_the_service_with_valid_checksums() {
    let snap = scenario::snapshot();
    let frames = scenario::frames(&snap);
    assert_eq!(frames.len(), usize::from(FLOWS));
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(frame.len(), FRAME_LEN);
        let parsed = SlicedPacket::from_ethernet(frame).unwrap();
        let Some(NetSlice::Ipv4(ip)) = parsed.net else {
            panic!("not IPv4")
        };
        let ip_header = ip.header().to_header();
        assert_eq!(ip_header.header_checksum, ip_header.calc_header_checksum());
        assert_eq!(ipv4(ip_header.source), Ipv4Addr::new(10, 244, 1, 10));
        assert_eq!(ipv4(ip_header.destination), scenario::service_vip());
        let Some(TransportSlice::Udp(udp)) = parsed.transport else {
            panic!("not UDP")
        };
        assert_eq!(usize::from(udp.source_port() - FIRST_SOURCE_PORT), i);
        assert_eq!(udp.destination_port(), 53);
        let expected = udp
            .to_header()
            .calc_checksum_ipv4(&ip_header, udp.payload())
            .unwrap();
        assert_eq!(udp.checksum(), expected);
        assert!(Expect::reflected().matches(frame));
        assert!(!Expect::forwarded().matches(frame));
    }
}

#[test]
fn the_forwarded_expectation_recognises_the_dnated_frame_only() {
    // Independent builder: pod 0 -> pod 1 (10.244.1.11) UDP 53, as the pipeline emits it.
    let builder = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([10, 244, 1, 10], [10, 244, 1, 11], 63)
        .udp(10_000, 53);
    let mut dnated = Vec::new();
    builder.write(&mut dnated, &[0; 18]).unwrap();
    assert!(Expect::forwarded().matches(&dnated));
    assert!(!Expect::reflected().matches(&dnated));
    let other_port = {
        let mut f = dnated.clone();
        f[37] ^= 1; // low byte of the UDP destination port
        f
    };
    assert!(!Expect::forwarded().matches(&other_port));
    assert!(!Expect::forwarded().matches(&dnated[..20]));
}

fn trial(mode: Mode, delivered: u64, received: u64) -> Trial {
    Trial {
        mode,
        generator: GeneratorCounts {
            sent: 2_000,
            delivered,
            elapsed: Duration::from_secs(1),
            ..GeneratorCounts::default()
        },
        forwarder: ForwarderCounts {
            received,
            ..ForwarderCounts::default()
        },
    }
}

#[test]
fn the_table_shows_medians_the_ratio_and_reasons_instead_of_numbers() {
    let measured = BackendResult {
        backend: Backend::AfPacket,
        outcome: Ok(vec![
            trial(Mode::Reflect, 1_400, 1_500),
            trial(Mode::Forward, 1_000, 1_500),
            trial(Mode::Pipeline, 950, 1_500),
            trial(Mode::Forward, 1_200, 1_500),
            trial(Mode::Pipeline, 900, 1_500),
            trial(Mode::Forward, 800, 1_500),
            trial(Mode::Pipeline, 990, 1_500),
        ]),
    };
    assert_eq!(measured.delivered(Mode::Forward).unwrap().median, 1_000.0);
    assert_eq!(measured.ratio(), Some(0.95));
    let report = Report {
        seconds: 1.0,
        repeats: 3,
        cpus: Some((0, 1)),
        steered: false,
        environment: String::new(),
        backends: vec![
            measured,
            BackendResult {
                backend: Backend::AfXdp,
                outcome: Err("no XDP here".to_owned()),
            },
            BackendResult {
                // Forward read everything offered (2,000 of 2,000): generator-bound.
                backend: Backend::Tap,
                outcome: Ok(vec![
                    trial(Mode::Forward, 2_000, 2_000),
                    trial(Mode::Pipeline, 1_900, 1_950),
                ]),
            },
        ],
    };
    let md = report.to_markdown();
    assert!(md.contains("| af-packet | reflect | 1,400 | 1,400 | 1,400 | 2,000 | 75.0 % |  |"));
    assert!(md.contains("| af-packet | forward | 1,000 | 800 | 1,200 | 2,000 | 75.0 % |  |"));
    assert!(
        md.contains("| af-packet | pipeline | 950 | 900 | 990 | 2,000 | 75.0 % | 95.0 % (meets")
    );
    assert!(md.contains("| af-xdp | — | not measured: no XDP here |"));
    assert!(md.contains(
        "| tap | pipeline | 1,900 | 1,900 | 1,900 | 2,000 | 97.5 % | 95.0 % (upper bound"
    ));
}

fn our_namespaces() -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let ours = format!("{PREFIX}{}-", std::process::id());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with(&ours))
        .map(str::to_owned)
        .collect()
}

/// Real runs one at a time: they share the CPUs, and each checks that none of this process's
/// namespaces is left.
static REAL_RUNS: Mutex<()> = Mutex::new(());

fn af_packet_for(seconds: f64) -> Options {
    Options {
        seconds,
        backends: vec![Backend::AfPacket],
        repeats: 1,
        steer_rx: false,
    }
}

#[test]
fn bad_options_are_refused_before_anything_is_made() {
    let _serial = REAL_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    require_root().unwrap();
    let no_time = run(&af_packet_for(0.0), &AtomicBool::new(false)).unwrap_err();
    assert_eq!(no_time.kind(), std::io::ErrorKind::InvalidInput);
    let too_long = run(&af_packet_for(MAX_SECONDS + 1.0), &AtomicBool::new(false)).unwrap_err();
    assert_eq!(too_long.kind(), std::io::ErrorKind::InvalidInput);
    let no_trials = Options {
        repeats: 0,
        ..af_packet_for(0.1)
    };
    let err = run(&no_trials, &AtomicBool::new(false)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(our_namespaces().is_empty());
}

#[test]
fn an_interrupted_run_stops_early_and_cleans_up() {
    let _serial = REAL_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    require_root().unwrap();
    let started = std::time::Instant::now();
    let err = run(&af_packet_for(30.0), &AtomicBool::new(true)).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::Interrupted);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
    assert!(
        our_namespaces().is_empty(),
        "left behind: {:?}",
        our_namespaces()
    );
}

#[test]
fn a_short_af_packet_run_moves_packets_in_every_mode_and_cleans_up() {
    let _serial = REAL_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    require_root().unwrap();
    let report = run(&af_packet_for(0.5), &AtomicBool::new(false)).unwrap();
    let [result] = report.backends.as_slice() else {
        panic!("one backend asked, {} reported", report.backends.len())
    };
    let trials = result.outcome.as_ref().unwrap();
    for mode in Mode::ALL {
        let t = trials.iter().find(|t| t.mode == mode).unwrap();
        assert!(t.generator.sent > 0, "{mode:?}: nothing sent");
        assert!(t.forwarder.received > 0, "{mode:?}: dataplane read nothing");
        assert!(t.generator.delivered > 0, "{mode:?}: nothing came back");
        assert_eq!(t.generator.stray, 0, "{mode:?}: unexpected frames");
    }
    let pipeline = trials.iter().find(|t| t.mode == Mode::Pipeline).unwrap();
    assert_eq!(pipeline.forwarder.new_flows, u64::from(FLOWS));
    for (reason, n) in &pipeline.forwarder.drops {
        assert_eq!(reason, "tx_ring_full", "{n} frames dropped for {reason}");
    }
    assert!(report.to_markdown().contains("| af-packet | pipeline |"));
    assert!(
        our_namespaces().is_empty(),
        "left behind: {:?}",
        our_namespaces()
    );
}

#[test]
fn steering_sets_rps_on_the_dataplane_ends_only() {
    let _serial = REAL_RUNS.lock().unwrap_or_else(|e| e.into_inner());
    require_root().unwrap();
    let rps = |ns: &str, ifname: &str| {
        let out = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "cat"])
            .arg(format!("/sys/class/net/{ifname}/queues/rx-0/rps_cpus"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // The kernel pads the mask to the CPU count; compare its value.
        u64::from_str_radix(String::from_utf8_lossy(&out.stdout).trim(), 16).unwrap()
    };
    {
        let topology = topology::Topology::veth(Some(1)).unwrap();
        for path in [topology.a, topology.b] {
            assert_eq!(rps(topology.dataplane_ns().name(), path.dataplane), 0b10);
            assert_eq!(rps(topology.generator_ns().name(), path.generator), 0);
        }
    }
    assert!(
        our_namespaces().is_empty(),
        "left behind: {:?}",
        our_namespaces()
    );
}
