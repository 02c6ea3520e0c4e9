"""The runner spoken to over its pipes, as a host in any language would."""

import time
import unittest

from harness import Host

STEP = '''
import os, sys, time
from wf import QorusNormalStep, StepError

class S(QorusNormalStep):
    def __init__(self):
        # The API works in __init__ already.
        self.wfiid = self.getWfiid()

    def primary(self):
        return [self.wfiid, self.getStaticData("a"), self.getStaticData("a", "b")]

    def update(self):
        self.updateDynamicData({"k": (1, 2)})
        self.deleteDynamicDataKey("gone")
        self.setOrderKeys({"x": "1"})
        return [self.getDynamicData(), self.getOrderKeys()]

    def log(self):
        UserApi.logWarn("%s and %s", "a", "b")
        UserApi.logInfo("%d", "not a number")
        self.logDebug("plain %s")
        return None

    def exit(self):
        sys.exit(3)

    def nan(self):
        return float("nan")

    def badinfo(self):
        raise StepError("E", "desc", {1, 2})

    def noisy(self):
        print("printed")
        os.system("echo subprocess")
        return "ok"

    def sleep(self, secs):
        time.sleep(secs)
        return secs

    def ask(self):
        return UserApi.callService("s", "m", 1, 2)

    def badargs(self):
        self.updateDynamicData({"x": object()})
'''


class RunnerTest(unittest.TestCase):
    def setUp(self):
        self.host = Host(on_callback=self.answer)
        self.addCleanup(self.host.close)
        info = self.host.load("step_S_1", "S", STEP)
        self.assertEqual(info["base"], "QorusNormalStep")
        self.assertIn("primary", info["methods"])
        self.assertNotIn("getStaticData", info["methods"])

    @staticmethod
    def answer(msg):
        if msg["api"] == "callService":
            return {"error": {"err": "SERVICE-NOT-FOUND", "desc": f"no service {msg['args'][0]}"}}
        return {"ok": None}

    def test_ping(self):
        reply = self.host.request(op="ping")
        self.assertEqual(reply["ok"]["pid"], self.host.proc.pid)
        self.assertTrue(reply["ok"]["python"].startswith("3."))

    def test_context_is_read_locally(self):
        ctx = {"wfiid": 5, "staticdata": {"a": 1, "b": 2}}
        reply = self.host.call("S", "primary", context=ctx)
        self.assertEqual(reply["ok"], [5, 1, {"a": 1, "b": 2}])
        self.assertEqual(self.host.callbacks, [])

    def test_updates_are_callbacks_then_local(self):
        ctx = {"dynamicdata": {"gone": 1, "kept": 2}, "keys": {}}
        reply = self.host.call("S", "update", context=ctx)
        self.assertEqual(reply["ok"], [{"kept": 2, "k": [1, 2]}, {"x": "1"}])
        apis = [(c["api"], c["args"], c["call"]) for c in self.host.callbacks]
        rid = reply["id"]
        self.assertEqual(
            apis,
            [
                ("updateDynamicData", [{"k": [1, 2]}], rid),
                ("deleteDynamicDataKey", ["gone"], rid),
                ("setOrderKeys", [{"x": "1"}], rid),
            ],
        )

    def test_log_lines(self):
        reply = self.host.call("S", "log")
        self.assertEqual(reply["ok"], None)
        logs = [(m["log"], m["msg"], m["call"]) for m in self.host.logs]
        rid = reply["id"]
        self.assertEqual(
            logs,
            [("warn", "a and b", rid), ("info", "%d 'not a number'", rid), ("debug", "plain %s", rid)],
        )

    def test_refused_callback(self):
        error = self.host.call("S", "ask")["error"]
        self.assertEqual(error["type"], "SERVICE-NOT-FOUND")
        self.assertEqual(error["message"], "no service s")
        self.assertEqual(self.host.callbacks[0]["args"], ["s", "m", 1, 2])

    def test_unserialisable_callback_args(self):
        error = self.host.call("S", "badargs")["error"]
        self.assertEqual(error["type"], "SERIALIZATION-ERROR")
        self.assertEqual(self.host.callbacks, [])

    def test_errors_do_not_end_the_runner(self):
        self.assertEqual(self.host.call("S", "exit")["error"]["type"], "SystemExit")
        error = self.host.call("S", "nan")["error"]
        self.assertEqual(error["type"], "SERIALIZATION-ERROR")
        error = self.host.call("S", "badinfo")["error"]
        self.assertEqual((error["type"], error["info"]), ("E", "{1, 2}"))
        self.assertEqual(self.host.call("S", "noisy")["ok"], "ok")
        self.host.wait_stderr(b"printed")
        self.host.wait_stderr(b"subprocess")
        self.assertIn("ok", self.host.request(op="ping"))

    def test_malformed_lines(self):
        h = self.host
        h.send_raw(b"not json at all\n")
        h.send_raw(b"\xff\xfe garbage\n")
        h.send_raw(b"[1, 2, 3]\n")
        h.send_raw(b'{"op": "ping"}\n')  # no id: nobody to answer
        h.send_raw(b'{"id": "x", "op": "ping"}\n')
        h.send_raw(b'{"cb": 999, "ok": 1}\n')  # a reply to no callback
        h.send_raw(b"\n")
        h.send_raw(b'{"id": 900, "op": "call", "args": [NaN]}\n')
        self.assertEqual(h.wait(900)["error"]["type"], "PROTOCOL-ERROR")
        h.send_raw(b'{"id": 901, "op": "call", "class": "S", \n')
        self.assertEqual(h.wait(901)["error"]["type"], "PROTOCOL-ERROR")
        h.send_raw(b'{"id": 902}\n')
        self.assertEqual(h.wait(902)["error"]["type"], "PROTOCOL-ERROR")
        h.send_raw(b'{"id": 903, "op": "explode"}\n')
        self.assertEqual(h.wait(903)["error"]["type"], "PROTOCOL-ERROR")
        h.send_raw(b'{"id": 904, "op": "call", "class": "S", "method": "primary", "args": {}}\n')
        self.assertEqual(h.wait(904)["error"]["type"], "PROTOCOL-ERROR")
        h.send_raw(b'{"id": 905, "op": "call", "class": "S", "method": "__init__"}\n')
        self.assertEqual(h.wait(905)["error"]["type"], "METHOD-NOT-FOUND")
        h.send_raw(b'{"id": 906, "op": "load", "module": "json", "class": "X", "source": ""}\n')
        self.assertEqual(h.wait(906)["error"]["type"], "PROTOCOL-ERROR")
        h.send_raw(b'{"id": 907, "op": "call", "class": "S", "method": "primary", "context": []}\n')
        self.assertEqual(h.wait(907)["error"]["type"], "PROTOCOL-ERROR")
        self.assertIn("ok", h.request(op="ping"))
        h.wait_stderr(b"not valid JSON")
        h.wait_stderr(b"unknown callback 999")

    def test_eof_finishes_calls_in_flight_then_exits_0(self):
        rid = self.host.send(op="call", **{"class": "S"}, method="sleep", args=[0.3])
        time.sleep(0.1)
        self.assertEqual(self.host.close(), 0)
        self.assertEqual(self.host.wait(rid)["ok"], 0.3)

    def test_calls_run_concurrently(self):
        started = time.monotonic()
        ids = [self.host.send(op="call", **{"class": "S"}, method="sleep", args=[0.5]) for _ in range(8)]
        for rid in ids:
            self.assertEqual(self.host.wait(rid)["ok"], 0.5)
        self.assertLess(time.monotonic() - started, 2.5)


class DrainTimeoutTest(unittest.TestCase):
    def test_stuck_calls_do_not_hold_the_exit(self):
        host = Host(args=["--drain-timeout", "0.2"])
        self.addCleanup(host.close)
        host.load("m", "S", STEP)
        host.send(op="call", **{"class": "S"}, method="sleep", args=[30])
        time.sleep(0.2)
        started = time.monotonic()
        self.assertEqual(host.close(), 0)
        self.assertLess(time.monotonic() - started, 5)
        host.wait_stderr(b"1 call(s) unfinished")


class CallbackDuringShutdownTest(unittest.TestCase):
    def test_waiting_callback_fails_when_stdin_closes(self):
        host = Host(on_callback=lambda msg: None)  # never answers
        self.addCleanup(host.close)
        host.load("m", "S", STEP)
        rid = host.send(op="call", **{"class": "S"}, method="ask")
        with host.cond:
            host.cond.wait_for(lambda: host.callbacks, 10)
        host.proc.stdin.close()
        error = host.wait(rid)["error"]
        self.assertEqual(error["type"], "RUNNER-STOPPING")
        self.assertEqual(host.proc.wait(10), 0)


if __name__ == "__main__":
    unittest.main()
