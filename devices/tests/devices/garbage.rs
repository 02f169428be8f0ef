//! Simulators survive garbage: seeded random bytes on every line, after which each still answers a valid command.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common;

/// Bytes that look enough like each protocol to reach deep into the parsers. Letters that start long physical
/// waits (G-code, `S` on the spectrometer) are left out so the test stays fast.
fn garbage(seed: u64, alphabet: &[u8]) -> Vec<u8> {
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    (0..4096)
        .map(|_| if rng.gen_bool(0.1) { rng.r#gen::<u8>() } else { alphabet[rng.gen_range(0..alphabet.len())] })
        .collect()
}

/// Reads until `done` holds for what arrived, or fails after a second.
async fn read_until(port: &mut devices::transport::SerialStream, done: impl Fn(&[u8]) -> bool) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while !done(&got) {
        match tokio::time::timeout_at(deadline, port.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!("no answer ({other:?}); got {}", devices::error::Printable(&got)),
        }
    }
    got
}

/// Reads and drops whatever arrives until the line has been quiet for 50 ms.
async fn drain(port: &mut devices::transport::SerialStream) {
    let mut buf = [0u8; 4096];
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(50), port.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
}

/// Sends `name`'s simulator 4 KiB of garbage from `alphabet`, then `probe`, and waits for an answer `answered`
/// accepts.
async fn garbage_then(
    lab: &devices::lab::Lab,
    sims: &devices::sim::SimLab,
    name: &str,
    seed: u64,
    alphabet: &[u8],
    probe: &[u8],
    answered: fn(&[u8]) -> bool,
) {
    let spec = lab.instrument(name).unwrap();
    let mut port = devices::transport::open_serial(name, &sims.ports[name], &spec.line).unwrap();
    for chunk in garbage(seed, alphabet).chunks(97) {
        port.write_all(chunk).await.unwrap();
    }
    drain(&mut port).await;
    port.write_all(probe).await.unwrap();
    read_until(&mut port, answered).await;
}

#[tokio::test]
async fn simulators_keep_answering_after_garbage() {
    let lab = common::sim_lab();
    let (sims, _clock) = common::start(&lab).await;
    let cases: [(&str, &[u8], &[u8], fn(&[u8]) -> bool); 4] = [
        ("pump_a", b"/1023ZYWIOBAPDapdVRQT?&F_,\r\n ", b"\r/1Q\r", |b| {
            b.ends_with(b"\x03\r\n") && b.windows(2).any(|w| w == b"/0")
        }),
        ("hotplate_1", b"IN_OUTSPV1245NAMESTARTOPRESETWD@ .\r\n", b"\r\nIN_NAME\r\n", |b| {
            b.ends_with(b"RCT digital\r\n")
        }),
        ("uvvis", b"bBvIAKQa?\x00\x01\x02\x03\xff", b"QQQv", |b| b.ends_with(&[0x06, 0x03, 0xE8])),
        ("gantry", b"N*;0123456789XYZFPSE .:-\"\r\n", b"\nM115\n", |b| {
            b.ends_with(b"ok\n") && b.windows(14).any(|w| w == b"FIRMWARE_NAME:")
        }),
    ];
    for (i, (name, alphabet, probe, answered)) in cases.into_iter().enumerate() {
        garbage_then(&lab, &sims, name, i as u64, alphabet, probe, answered).await;
    }
    sims.stop().await;
}

#[tokio::test]
async fn the_new_simulators_keep_answering_after_garbage() {
    let lab = common::clean_lab_with(&["pump_1", "balance_1", "valve", "block_1", "probe_1"]);
    let (sims, _clock) = common::start(&lab).await;
    let oem_q: Vec<u8> = devices::drivers::cavro::oem_frame(b'1', 5, false, b"Q");
    // The Eurotherm's loop mode, register 273, which starts off (2).
    let modbus_q: Vec<u8> = {
        const CRC: crc::Crc<u16> = crc::Crc::<u16>::new(&crc::CRC_16_MODBUS);
        let body = [0x01, 0x03, 0x01, 0x11, 0x00, 0x01];
        let mut v = body.to_vec();
        v.extend_from_slice(&CRC.checksum(&body).to_le_bytes());
        v
    };
    let cases: [(&str, &[u8], Vec<u8>, fn(&[u8]) -> bool); 5] = [
        // ETX and a byte end any frame the garbage left open; the answer to `Q` is STX `0` status ETX checksum.
        ("pump_1", b"\x02\x03\x0101239QZ&?R/\r", [b"\x03\x00".as_slice(), &oem_q].concat(), |b| {
            b.len() >= 5 && b[b.len() - 5] == 0x02 && b[b.len() - 4] == b'0' && b[b.len() - 2] == 0x03
        }),
        ("balance_1", b"SIZT@ 0123456789\"\r\n", b"\r\nI4\r\n".to_vec(), |b| b.ends_with(b"I4 A \"1126493049\"\r\n")),
        ("valve", b"GOCPNPIDVR0123456789/ \r\n", b"\rNP\r".to_vec(), |b| b.ends_with(b"NP06\r")),
        ("block_1", b"\x01\x03\x06\x10\x00\x02\xff\x83", modbus_q, |b| {
            b.len() >= 7 && b[b.len() - 7..b.len() - 2] == [0x01, 0x03, 0x02, 0x00, 0x02]
        }),
        ("probe_1", b"*IDN?:SYST:ERR;MEAS:TEMP? \r\n", b"\n*CLS\n*IDN?\n".to_vec(), |b| {
            b.ends_with(b"MODEL 2000,1308393,A20  /A02\n")
        }),
    ];
    for (i, (name, alphabet, probe, answered)) in cases.into_iter().enumerate() {
        garbage_then(&lab, &sims, name, 100 + i as u64, alphabet, &probe, answered).await;
    }
    sims.stop().await;
}

#[tokio::test]
async fn the_declared_simulators_keep_answering_after_garbage() {
    let mut lab = crate::declared::declared_lab();
    lab.instruments.retain(|i| i.name != "gantry");
    for i in &mut lab.instruments {
        i.faults = None;
    }
    let (sims, _clock) = common::start(&lab).await;
    let cases: [(&str, &[u8], &[u8], fn(&[u8]) -> bool); 4] = [
        ("syringe", b"0VERDIARATVOLRUNSTPCLDINF0123456789.UMLX\x02\x03\r", b"\r0VER\r", |b| {
            b.ends_with(b"\x0200SNE1000V3.928\x03")
        }),
        ("mfc", b"AS0123456789.??M*VE \r\n", b"\rA??M*\r", |b| b.ends_with(b"A M10\r")),
        ("circulator", b"{M0123456789ABCDEF*S\r\n", b"\r\n{M1B****\r\n", |b| b.ends_with(b"{S1B1234\r\n")),
        ("balance", b"\x1bPTVx1_23 \r\n", b"\r\n\x1bx1_\r\n", |b| b.ends_with(b"BCE224I-1S\r\n")),
    ];
    for (i, (name, alphabet, probe, answered)) in cases.into_iter().enumerate() {
        garbage_then(&lab, &sims, name, 200 + i as u64, alphabet, probe, answered).await;
    }
    sims.stop().await;
}
