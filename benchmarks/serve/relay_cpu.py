"""The relay's own CPU time per request: the relay (in this process) in front of a trivial keep-alive HTTP
server (another process), loaded by loadgen.py (a third) with 16 clients.

    python benchmarks/serve/relay_cpu.py [--seconds 8]

Run it on two checkouts to compare relays (PYTHONPATH picks the raymlx that is measured).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raymlx.serve._relay import Relay

HERE = Path(__file__).resolve().parent

# Answers each request (head plus content-length bytes) with a fixed response: as little work as possible.
BACKEND = r'''
import asyncio, sys
ANSWER = b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 18\r\n\r\n{"predictions":[]}'

class Answer(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.buffer = transport, b""

    def data_received(self, data):
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].lower()
            length = int(head.split(b"content-length:")[1].split(b"\r\n")[0]) if b"content-length:" in head else 0
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            self.transport.write(ANSWER)

async def main():
    server = await asyncio.get_running_loop().create_server(Answer, "127.0.0.1", int(sys.argv[1]))
    await server.serve_forever()

asyncio.run(main())
'''


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=8)
    args = parser.parse_args()
    backend_port, relay_port = _free_port(), _free_port()
    backend = subprocess.Popen([sys.executable, "-c", BACKEND, str(backend_port)])
    relay = Relay("127.0.0.1", relay_port, lambda: [("127.0.0.1", backend_port)])
    try:
        time.sleep(1.0)
        relay.start()
        body = Path(tempfile.mkdtemp()) / "body.json"
        body.write_text(json.dumps({"records": [{"age": 59.0, "bmi": 32.1}]}))
        before = os.times()
        load = [sys.executable, str(HERE / "loadgen.py"), f"http://127.0.0.1:{relay_port}/predict", str(body),
                "-c", "16", "-s", str(args.seconds)]
        out = subprocess.run(load, capture_output=True, text=True, check=True)
        after = os.times()
    finally:
        relay.stop()
        backend.terminate()
        backend.wait()
    result = json.loads(out.stdout)
    cpu = (after.user - before.user) + (after.system - before.system)
    print(f"{result['requests']} requests, {result['rps']:.0f} req/s; relay CPU {cpu:.2f} s, "
          f"{1e6 * cpu / result['requests']:.1f} us a request")


if __name__ == "__main__":
    main()
