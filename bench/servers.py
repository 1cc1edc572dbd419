"""Server processes for the benchmarks: a real ``vtrain-prover serve``, the bare gRPC baseline server
(``python -m bench.servers``), and the CPU time a process has used.

Not a benchmark module itself (``bench/run.py`` runs ``bench_*`` modules only).
"""

from __future__ import annotations

import os
import time


def _raw_server(max_bytes: int):
    from concurrent import futures

    import grpc

    def upload(request_iterator, context):
        total = 0
        for chunk in request_iterator:
            total += len(chunk)
        return total.to_bytes(8, "big")

    handler = grpc.method_handlers_generic_handler(
        "benchraw.Raw", {"Upload": grpc.stream_unary_rpc_method_handler(upload)})  # identity (de)serializers
    opts = [("grpc.max_receive_message_length", max_bytes), ("grpc.max_send_message_length", max_bytes)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=opts)
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    return server, port


def serve_raw() -> int:
    """The bare baseline server as its own process (prints ``listening on 127.0.0.1:PORT``, stops when its stdin
    closes)."""
    import sys

    from prover.session import Limits

    server, port = _raw_server(Limits().max_message_bytes)
    server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    sys.stdin.read()  # until the parent closes our stdin
    server.stop(None)
    return 0


def start_process(argv: list[str]):
    """A server process that prints ``listening on ADDR`` first; returns (Popen, address)."""
    import subprocess

    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith("listening on "):
        proc.kill()
        raise RuntimeError(f"server did not start: {line!r}")
    return proc, line.removeprefix("listening on ")


def prover_process(tmpdir, *extra: str):
    """A real ``vtrain-prover serve`` on port 0 with a fresh key: (Popen, address, public key)."""
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).parent / "vtrain-prover")
    key = Path(tmpdir) / "trainer.pem"
    pub = bytes.fromhex(subprocess.run([exe, "keygen", "--out", str(key), "--force"], capture_output=True, text=True,
                                       check=True).stdout.strip())
    proc, addr = start_process([exe, "serve", "--key", str(key), "--listen", "127.0.0.1:0", *extra])
    return proc, addr, pub


def stop_process(proc) -> None:
    import signal

    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.stdin.close()
            proc.wait(timeout=15)
        except Exception:  # noqa: BLE001 - a benchmark helper: make sure it is gone
            proc.kill()


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc)."""
    with open(f"/proc/{pid}/stat") as fh:
        fields = fh.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_cpu(fn, pid: int, cpu: list):
    """Run fn; append the CPU seconds it cost this process and server ``pid`` together."""
    def run():
        c0, s0 = time.process_time(), cpu_seconds(pid)
        out = fn()
        cpu.append(time.process_time() - c0 + cpu_seconds(pid) - s0)
        return out
    return run


if __name__ == "__main__":
    raise SystemExit(serve_raw())
