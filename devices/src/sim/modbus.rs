//! A simulated temperature controller on Modbus RTU: a heating block at a deck position.
//!
//! Frames are slave address, function code, data, CRC-16/MODBUS low byte first. Bytes arriving together are
//! framed as the client library does, by the length the function code implies, checked by the CRC, dropping
//! bytes that do not start a valid frame one at a time; and an unfinished frame is dropped when the line falls
//! silent (see [`super::SILENCE`]), as the 3.5-character gap ends a frame on a real line. Requests for another
//! slave address are ignored; broadcasts (address 0) are executed without a reply.
//!
//! Holding registers (the register map of [`crate::drivers::modbus`]): process value and set point in tenths of a
//! degree Celsius, the run flag (heating on or off), the model code and the firmware version. Function codes 3
//! (read holding registers), 6 (write one) and 16 (write several) are served; any other is answered with
//! exception 1, an address outside the map with exception 2, a value out of range with exception 3. Faults:
//! `busy` answers exception 6 (server busy) and `firmware_error` exception 4 (server device failure), without
//! acting.
//!
//! The block heats the vessel standing at its position through the bench, as a hotplate does (without a stirrer).

use bytes::{Buf, BytesMut};

use super::Simulator;
use super::bench::{Bench, PlateCommand};
use super::pty::Wire;
use crate::drivers::modbus::{FIRMWARE, MODEL, PROCESS_VALUE, RUN, SET_POINT, crc16};
use crate::lab::ModbusConfig;

/// The block's own set-point range, degC.
const RANGE: (f64, f64) = (0.0, 400.0);

/// The firmware version register's value: 1.05.
const FIRMWARE_VERSION: u16 = 105;

pub(crate) struct ModbusSim {
    address: u8,
    model_code: u16,
    position: String,
    bench: Bench,
}

/// Why a request was refused, as a Modbus exception code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Exception {
    IllegalFunction = 1,
    IllegalAddress = 2,
    IllegalValue = 3,
    DeviceFailure = 4,
    Busy = 6,
}

impl ModbusSim {
    pub(crate) fn new(config: &ModbusConfig, position: &str, bench: Bench) -> Self {
        ModbusSim { address: config.address, model_code: config.model_code, position: position.to_owned(), bench }
    }

    fn read(&self, register: u16) -> Result<u16, Exception> {
        let r = self.bench.plate_readings(&self.position).ok_or(Exception::DeviceFailure)?;
        let tenths = |t: f64| ((t * 10.0).round().clamp(f64::from(i16::MIN), f64::from(i16::MAX)) as i16) as u16;
        match register {
            PROCESS_VALUE => Ok(tenths(r.temperature)),
            SET_POINT => Ok(tenths(r.set_point)),
            RUN => Ok(u16::from(self.bench.plate(&self.position).is_some_and(|p| p.heater_on))),
            MODEL => Ok(self.model_code),
            FIRMWARE => Ok(FIRMWARE_VERSION),
            _ => Err(Exception::IllegalAddress),
        }
    }

    fn write(&self, register: u16, value: u16) -> Result<(), Exception> {
        match register {
            SET_POINT => {
                let t = f64::from(value as i16) / 10.0;
                if !(RANGE.0..=RANGE.1).contains(&t) {
                    return Err(Exception::IllegalValue);
                }
                self.bench.plate_command(&self.position, PlateCommand::SetPoint(t));
                Ok(())
            }
            RUN if value <= 1 => {
                self.bench.plate_command(&self.position, PlateCommand::Heater(value == 1));
                Ok(())
            }
            RUN => Err(Exception::IllegalValue),
            _ => Err(Exception::IllegalAddress),
        }
    }

    /// The reply PDU to a request PDU (function code first).
    fn execute(&self, pdu: &[u8]) -> Result<Vec<u8>, Exception> {
        let word = |i: usize| u16::from_be_bytes([pdu[i], pdu[i + 1]]);
        match pdu[0] {
            3 => {
                let (start, count) = (word(1), word(3));
                if !(1..=125).contains(&count) {
                    return Err(Exception::IllegalValue);
                }
                let mut out = vec![3, (count * 2) as u8];
                for r in start..start.saturating_add(count) {
                    out.extend_from_slice(&self.read(r)?.to_be_bytes());
                }
                Ok(out)
            }
            6 => {
                self.write(word(1), word(3))?;
                Ok(pdu.to_vec())
            }
            16 => {
                let (start, count) = (word(1), word(3));
                if !(1..=123).contains(&count) || usize::from(pdu[5]) != 2 * usize::from(count) {
                    return Err(Exception::IllegalValue);
                }
                for k in 0..count {
                    self.write(start + k, word(6 + 2 * usize::from(k)))?;
                }
                Ok(pdu[..5].to_vec())
            }
            _ => Err(Exception::IllegalFunction),
        }
    }
}

/// The length of the request frame starting `input`, if its function code says (or needs more bytes to say).
fn request_len(input: &[u8]) -> Option<usize> {
    match input.get(1)? {
        1..=6 => Some(8),
        15 | 16 => input.get(6).map(|&n| 9 + usize::from(n)),
        // An unknown function: the shortest frame a CRC could end; exception 1 answers it.
        _ => Some(4),
    }
}

impl Simulator for ModbusSim {
    fn frame(&mut self, input: &mut BytesMut) -> Option<Vec<u8>> {
        loop {
            let len = request_len(input)?;
            if input.len() < len {
                return None;
            }
            let (body, crc) = input[..len].split_at(len - 2);
            if crc16(body).to_le_bytes() == [crc[0], crc[1]] {
                return Some(input.split_to(len).to_vec());
            }
            // Not a frame here: resynchronise one byte later, as the client library does.
            input.advance(1);
        }
    }

    fn ends_frames_at_silence(&self) -> bool {
        true
    }

    async fn handle(&mut self, command: Vec<u8>, wire: &mut Wire) -> bool {
        let address = command[0];
        if address != self.address && address != 0 {
            return true;
        }
        let pdu = &command[1..command.len() - 2];
        let result = if wire.busy() {
            Err(Exception::Busy)
        } else if wire.firmware_error() {
            Err(Exception::DeviceFailure)
        } else {
            self.execute(pdu)
        };
        if address == 0 {
            return true;
        }
        let mut reply = vec![self.address];
        match result {
            Ok(p) => reply.extend_from_slice(&p),
            Err(e) => reply.extend_from_slice(&[pdu[0] | 0x80, e as u8]),
        }
        let crc = crc16(&reply);
        reply.extend_from_slice(&crc.to_le_bytes());
        wire.reply(&reply).await
    }
}
