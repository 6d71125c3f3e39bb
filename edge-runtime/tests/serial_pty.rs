//! The report link over real pseudo-terminals (the kernel's tty layer, raw
//! mode, as a UART would be): every journaled report reaches the host
//! exactly once by sequence number, through garbage on the line, a link
//! that drops mid-frame and comes back, and a host that asks for a resend.
//! Linux-only (ptys); nothing here sets a baud rate, so it also runs under
//! qemu-user.

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use nemascope_edge::journal::{Journal, Record};
use nemascope_edge::link::protocol::Message;
use nemascope_edge::link::{HostLink, UnitLink};
use serialport::{SerialPort, TTYPort};

fn record(i: u32) -> Record {
    Record {
        time_ms: 1_764_000_000_000 + i as u64,
        sample: format!("plot-{}", i / 10),
        source: format!("f{i}.png"),
        classes: ["worm", "egg", "cyst"].map(String::from).to_vec(),
        counts: vec![i, i % 4, i % 2],
        frame_ms: 55,
        model: "test".into(),
        warnings: 0,
        error: None,
        identity: None,
    }
}

fn pair() -> (TTYPort, TTYPort) {
    let (mut unit, mut host) = TTYPort::pair().expect("a pseudo-terminal pair");
    unit.set_timeout(Duration::from_millis(5)).unwrap();
    host.set_timeout(Duration::from_millis(5)).unwrap();
    (unit, host)
}

fn read_some(port: &mut TTYPort) -> Vec<u8> {
    let mut buf = [0u8; 4096];
    match port.read(&mut buf) {
        Ok(n) => buf[..n].to_vec(),
        Err(_) => Vec::new(), // timed out: nothing waiting
    }
}

/// Runs both sides until the host holds `until` reports (or 10 s pass).
/// `noise` is written to the unit's side of the line by the host each round.
fn pump(
    unit: &mut UnitLink,
    journal: &mut Journal,
    host: &mut HostLink,
    got: &mut Vec<u64>,
    ports: &mut (TTYPort, TTYPort),
    until: u64,
    noise: &[u8],
) {
    let t0 = Instant::now();
    while host.stored < until || journal.acked() < until {
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "link stalled at {}",
            host.stored
        );
        let now = Instant::now();
        unit.poll(journal, now, &mut ports.0).unwrap();
        let bytes = read_some(&mut ports.1);
        host.receive(&bytes, &mut ports.1, |m| {
            if let Message::Report { seq, .. } = m {
                got.push(*seq);
            }
            true
        })
        .unwrap();
        if !noise.is_empty() {
            ports.1.write_all(noise).unwrap();
        }
        let bytes = read_some(&mut ports.0);
        unit.receive(&bytes, journal, Instant::now(), &mut ports.0)
            .unwrap();
    }
}

#[test]
fn reports_arrive_once_through_garbage_drops_and_resends() {
    let dir = tempfile::tempdir().unwrap();
    let mut journal = Journal::open(dir.path()).unwrap();
    for i in 1..=30 {
        journal.append(&record(i)).unwrap();
    }
    let mut ports = pair();
    let mut unit = UnitLink::new(&journal, "test", Instant::now());
    unit.resend_after = Duration::from_millis(200);
    let mut host = HostLink::new(0);
    let mut got = Vec::new();

    // 1. Garbage from the host's side between its acks: counted, harmless.
    pump(
        &mut unit,
        &mut journal,
        &mut host,
        &mut got,
        &mut ports,
        10,
        b"\x13\x37\xff\x00\x01\x02\x00",
    );
    assert!(unit.decoder.malformed > 0);
    assert!(journal.acked() >= 10);

    // 2. The link drops with reports in flight and half a frame on the
    //    wire; a new port comes up (the unit restarts after the last ack).
    unit.poll(&mut journal, Instant::now(), &mut ports.0)
        .unwrap();
    let half = Message::Report {
        seq: 11,
        time_ms: 0,
        sample: Default::default(),
        counts: Default::default(),
        frame_ms: 0,
        warnings: 0,
    }
    .encode();
    ports.0.write_all(&half[..half.len() / 2]).unwrap();
    drop(ports);
    let mut ports = pair();
    // The new line starts with the tail of a frame from the old one.
    ports.0.write_all(&half[half.len() / 2..]).unwrap();
    unit.reconnected(&journal);
    pump(
        &mut unit,
        &mut journal,
        &mut host,
        &mut got,
        &mut ports,
        20,
        &[],
    );

    // 3. New reports while the host lost its acknowledgements: the unit's
    //    resend timer sends them again, the host acknowledges duplicates
    //    without storing them twice.
    for i in 31..=40 {
        journal.append(&record(i)).unwrap();
    }
    let mut lossy = HostLink::new(host.stored);
    let bytes = {
        unit.poll(&mut journal, Instant::now(), &mut ports.0)
            .unwrap();
        std::thread::sleep(Duration::from_millis(20));
        read_some(&mut ports.1)
    };
    // The host stores these but its acks never reach the unit.
    lossy
        .receive(&bytes, &mut std::io::sink(), |m| {
            if let Message::Report { seq, .. } = m {
                got.push(*seq);
            }
            true
        })
        .unwrap();
    assert!(lossy.stored > 20);
    std::thread::sleep(Duration::from_millis(250));
    pump(
        &mut unit,
        &mut journal,
        &mut lossy,
        &mut got,
        &mut ports,
        40,
        &[],
    );
    assert!(lossy.duplicates > 0, "the resend reached the host");

    // 4. The host asks for the unit's status.
    ports.1.write_all(&Message::GetStatus.encode()).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let bytes = read_some(&mut ports.0);
    unit.receive(&bytes, &mut journal, Instant::now(), &mut ports.0)
        .unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let bytes = read_some(&mut ports.1);
    lossy
        .receive(&bytes, &mut std::io::sink(), |_| true)
        .unwrap();
    match &lossy.last_status {
        Some(Message::Status {
            last_seq,
            acked_seq,
            malformed,
            ..
        }) => {
            assert_eq!((*last_seq, *acked_seq), (40, 40));
            assert!(*malformed > 0);
        }
        other => panic!("no status: {other:?}"),
    }

    // 5. A resend from 35, below the last acknowledgement (a host that lost
    //    its store): sent again, acknowledged, not stored twice.
    let before = lossy.duplicates;
    ports
        .1
        .write_all(&Message::ResendFrom { seq: 35 }.encode())
        .unwrap();
    let t0 = Instant::now();
    while lossy.duplicates < before + 6 {
        assert!(t0.elapsed() < Duration::from_secs(10), "resend never came");
        let bytes = read_some(&mut ports.0);
        unit.receive(&bytes, &mut journal, Instant::now(), &mut ports.0)
            .unwrap();
        unit.poll(&mut journal, Instant::now(), &mut ports.0)
            .unwrap();
        let bytes = read_some(&mut ports.1);
        lossy
            .receive(&bytes, &mut ports.1, |_| panic!("stored twice"))
            .unwrap();
    }

    // Exactly once, in order.
    assert_eq!(got, (1..=40).collect::<Vec<u64>>());
    assert_eq!(journal.acked(), 40);
}
