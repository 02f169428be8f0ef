#!/usr/bin/env python3
"""An independent Modbus RTU server for lab's driver tests: pymodbus, on a serial port, serving given registers.

Usage: modbus_server.py PORT CONFIG_JSON

CONFIG_JSON: {"unit": 1, "baud": 9600, "parity": "N", "stop_bits": 1,
              "holding": {"address": word, ...}, "input": {...}, "coils": {...}, "discrete": {...},
              "identity": {"vendor": "...", "product": "...", "revision": "..."} or null}

Only the addresses given exist; reading or writing any other is exception 2 (illegal data address), as on a real
controller. Addresses are 0-based wire addresses. The server prints "ready" once it is about to open the port, and
runs until it is killed. It is not part of lab: the device tests start it (devices/tests/devices/independent.rs)
to check the driver against a Modbus implementation that shares no code with lab's own.
"""

import json
import logging
import os
import sys

from pymodbus.datastore import ModbusServerContext, ModbusSlaveContext, ModbusSparseDataBlock
from pymodbus.device import ModbusDeviceIdentification
from pymodbus.server import StartSerialServer
from pymodbus.transaction import ModbusRtuFramer


def block(values):
    """A sparse block holding exactly the given addresses."""
    return ModbusSparseDataBlock({int(address): int(word) for address, word in (values or {}).items()})


def main():
    if os.environ.get("MODBUS_SERVER_DEBUG"):
        logging.basicConfig(level=logging.DEBUG)
    port, config = sys.argv[1], json.loads(sys.argv[2])
    slave = ModbusSlaveContext(
        di=block(config.get("discrete")),
        co=block(config.get("coils")),
        hr=block(config.get("holding")),
        ir=block(config.get("input")),
        zero_mode=True,
    )
    context = ModbusServerContext(slaves={config["unit"]: slave}, single=False)
    identity = None
    if config.get("identity"):
        info = config["identity"]
        identity = ModbusDeviceIdentification(
            info_name={
                "VendorName": info["vendor"],
                "ProductCode": info["product"],
                "MajorMinorRevision": info.get("revision", "1.0"),
            }
        )
    print("ready", flush=True)
    StartSerialServer(
        context=context,
        identity=identity,
        framer=ModbusRtuFramer,
        port=port,
        baudrate=config.get("baud", 9600),
        parity=config.get("parity", "N"),
        stopbits=config.get("stop_bits", 1),
        bytesize=8,
        timeout=0.05,
    )


if __name__ == "__main__":
    main()
