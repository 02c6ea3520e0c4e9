"""A test host: runs ``python3 -m sluice_runner`` and speaks the protocol to it."""

import json
import os
import subprocess
import sys
import threading

PYTHON_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Host:
    """Starts a runner; answers callbacks with ``on_callback(msg) -> reply dict`` (None:
    leave the callback unanswered)."""

    def __init__(self, workers=8, on_callback=None, args=()):
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": PYTHON_DIR,
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sluice_runner", "--workers", str(workers), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.on_callback = on_callback or (lambda msg: {"ok": None})
        self.replies = {}
        self.logs = []
        self.callbacks = []
        self.cond = threading.Condition()
        self.stderr = b""
        self.next_id = 1
        self._lock = threading.Lock()
        self._readers = [
            threading.Thread(target=self._read, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read(self):
        for line in self.proc.stdout:
            msg = json.loads(line)
            if "cb" in msg:
                with self.cond:
                    self.callbacks.append(msg)
                    self.cond.notify_all()
                reply = self.on_callback(msg)
                if reply is not None:
                    self.send_raw(json.dumps(dict(reply, cb=msg["cb"])).encode() + b"\n")
            elif "log" in msg:
                with self.cond:
                    self.logs.append(msg)
                    self.cond.notify_all()
            else:
                with self.cond:
                    self.replies[msg["id"]] = msg
                    self.cond.notify_all()
        self.proc.stdout.close()

    def _read_stderr(self):
        for line in self.proc.stderr:
            with self.cond:
                self.stderr += line
                self.cond.notify_all()
        self.proc.stderr.close()

    def send_raw(self, data):
        with self._lock:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()

    def send(self, **request):
        with self._lock:
            rid = self.next_id
            self.next_id += 1
        self.send_raw(json.dumps({"id": rid, **request}).encode() + b"\n")
        return rid

    def wait(self, rid, timeout=10):
        with self.cond:
            if not self.cond.wait_for(lambda: rid in self.replies, timeout):
                raise AssertionError(f"no reply to {rid}; stderr: {self.stderr.decode()}")
            return self.replies.pop(rid)

    def wait_stderr(self, needle, timeout=10):
        with self.cond:
            if not self.cond.wait_for(lambda: needle in self.stderr, timeout):
                raise AssertionError(f"{needle!r} not on stderr: {self.stderr.decode()}")

    def request(self, **request):
        return self.wait(self.send(**request))

    def load(self, module, cls, source):
        reply = self.request(op="load", module=module, **{"class": cls}, source=source)
        if "error" in reply:
            raise AssertionError(f"load failed: {reply['error']}")
        return reply["ok"]

    def call(self, cls, method, *args, context=None):
        return self.request(
            op="call", **{"class": cls}, method=method, args=list(args), context=context or {}
        )

    def close(self, timeout=15):
        if self.proc.stdin and not self.proc.stdin.closed:
            self.proc.stdin.close()
        try:
            return self.proc.wait(timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            # The readers see EOF once the process is gone, and close their pipes.
            for reader in self._readers:
                reader.join(5)
