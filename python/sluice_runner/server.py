"""The runner's protocol loop: requests in on stdin, replies, callbacks and log lines out
on stdout, one JSON object per line. ``docs/runner-protocol.md`` is the contract.

The main thread only reads and dispatches; every request that runs user code goes to a
worker thread, so a slow call never delays the others and a worker blocked on a callback
never blocks the reader that will deliver the callback's answer.
"""

import itertools
import json
import linecache
import os
import platform
import queue
import re
import sys
import threading
import time
import traceback
import types
from concurrent.futures import Future

from . import context
from .bases import SLUICE_BASES
from .errors import QorusException, describe

PROTOCOL_ERROR = "PROTOCOL-ERROR"
SERIALIZATION_ERROR = "SERIALIZATION-ERROR"
CLASS_NOT_FOUND = "CLASS-NOT-FOUND"
METHOD_NOT_FOUND = "METHOD-NOT-FOUND"
INSTANCE_NOT_FOUND = "INSTANCE-NOT-FOUND"
RUNNER_STOPPING = "RUNNER-STOPPING"

DEFAULT_WORKERS = 32


def _reject_constant(name):
    raise ValueError(f"{name} is not JSON")


# Built once: json.dumps/json.loads with options build a new encoder/decoder per call.
# NaN and Infinity are not JSON, and the host's parser rejects them, so neither direction
# accepts them.
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)

# A request line that is not valid JSON still gets an error reply when its id can be read
# from its start (hosts write the id first), so the caller does not wait forever.
_ID_PREFIX = re.compile(rb'^\s*\{\s*"id"\s*:\s*(\d+)\s*[,}]')


def encode(obj):
    """One protocol line. Raises (TypeError, ValueError, ...) if obj is not JSON."""
    return _ENCODER.encode(obj).encode("utf-8") + b"\n"


def _text(value):
    """A str that is valid UTF-8 (lone surrogates escaped), whatever value is."""
    try:
        s = value if isinstance(value, str) else str(value)
    except Exception:
        s = f"<unprintable {type(value).__name__}>"
    return s.encode("utf-8", "backslashreplace").decode("utf-8")


def _stderr(message):
    print(f"sluice_runner: {message}", file=sys.stderr, flush=True)


class Fault(Exception):
    """A request the runner cannot carry out; not raised by user code, so no traceback."""

    def __init__(self, error_type, message):
        super().__init__(message)
        self.error_type = error_type
        self.message = message

    def error(self):
        return {"type": self.error_type, "message": self.message, "traceback": "", "info": None}


def _field(msg, name, kind, what):
    value = msg.get(name)
    if not isinstance(value, kind):
        raise Fault(PROTOCOL_ERROR, f"{what}: field {name!r} is missing or not {kind.__name__}")
    return value


def _context_of(msg):
    ctx = msg.get("context")
    if ctx is None:
        return {}
    if not isinstance(ctx, dict):
        raise Fault(PROTOCOL_ERROR, "field 'context' must be an object")
    return ctx


class Server:
    def __init__(self, infile, outfile, workers=DEFAULT_WORKERS):
        self._in = infile
        self._out = outfile
        self._out_lock = threading.Lock()
        self._out_broken = False
        self._workers = workers
        self._ops = {
            "load": self._load,
            "call": self._call,
            "create": self._create,
            "drop": self._drop,
        }
        self._classes = {}
        self._modules = set()
        self._instances = {}
        self._handles = itertools.count(1)
        self._cb_ids = itertools.count(1)
        self._cb_lock = threading.Lock()
        self._callbacks = {}
        self._closing = False
        self._busy = 0
        self._idle = threading.Condition()
        context.install(self)
        # A plain pool over a SimpleQueue rather than a ThreadPoolExecutor: with trivial
        # calls the executor's per-submit bookkeeping (a Future, its locks, the idle
        # semaphore) cut throughput by a third or more. Daemon threads, so a call stuck in
        # user code cannot hold the exit.
        self._queue = queue.SimpleQueue()
        for n in range(workers):
            threading.Thread(target=self._work, name=f"sluice-worker-{n}", daemon=True).start()

    # -- output ------------------------------------------------------------------------

    def _write(self, data):
        with self._out_lock:
            if self._out_broken:
                return
            try:
                self._out.write(data)
                self._out.flush()
            except (OSError, ValueError) as e:
                # The host is gone; stdin reaches EOF next and the runner exits.
                self._out_broken = True
                _stderr(f"cannot write to the host ({e}); output is discarded from now on")

    def _reply_ok(self, rid, value, what):
        try:
            data = encode({"id": rid, "ok": value})
        except Exception as e:
            self._reply_error(
                rid,
                Fault(
                    SERIALIZATION_ERROR,
                    f"{what} returned a value that is not JSON-serialisable: {_text(e)}",
                ).error(),
            )
            return
        self._write(data)

    def _reply_error(self, rid, error):
        try:
            data = encode({"id": rid, "error": error})
        except Exception:
            # The exception's info (or text) is not JSON: send its repr rather than
            # lose the error.
            info = error.get("info")
            error = {
                "type": _text(error.get("type")),
                "message": _text(error.get("message")),
                "traceback": _text(error.get("traceback")),
                "info": None if info is None else _text(repr(info)),
            }
            data = encode({"id": rid, "error": error})
        self._write(data)

    # -- the channel user code talks through (see context.py) --------------------------

    def log(self, call_id, level, message):
        self._write(encode({"log": level, "call": call_id, "msg": _text(message)}))

    def callback(self, call_id, api, args):
        cb = next(self._cb_ids)
        try:
            data = encode({"cb": cb, "call": call_id, "api": api, "args": args})
        except Exception as e:
            raise QorusException(
                SERIALIZATION_ERROR, f"the arguments of {api} are not JSON-serialisable: {_text(e)}"
            ) from None
        answer = Future()
        with self._cb_lock:
            if self._closing:
                raise QorusException(RUNNER_STOPPING, f"{api}: the runner is stopping")
            self._callbacks[cb] = answer
        self._write(data)
        ok, value = answer.result()
        if ok:
            return value
        err, desc = value
        raise QorusException(err, desc)

    def _callback_reply(self, msg):
        cb = msg.get("cb")
        with self._cb_lock:
            answer = self._callbacks.pop(cb, None) if isinstance(cb, int) else None
        if answer is None:
            _stderr(f"ignoring a reply to unknown callback {cb!r}")
            return
        if "ok" in msg:
            answer.set_result((True, msg["ok"]))
            return
        error = msg.get("error")
        if isinstance(error, dict) and isinstance(error.get("err"), str) and error["err"]:
            desc = error.get("desc")
            answer.set_result((False, (error["err"], "" if desc is None else _text(desc))))
        else:
            answer.set_result(
                (False, (PROTOCOL_ERROR, f"malformed reply to callback {cb}: {_text(msg)[:200]}"))
            )

    # -- input -------------------------------------------------------------------------

    def serve(self):
        """Reads and dispatches requests until stdin reaches EOF."""
        for raw in self._in:
            try:
                self._dispatch(raw)
            except Exception:
                # A bug here must cost one line, not the runner.
                _stderr("internal error on a request line:\n" + traceback.format_exc())

    def _dispatch(self, raw):
        line = raw.strip()
        if not line:
            return
        try:
            msg = _DECODER.decode(line.decode("utf-8"))
        except (ValueError, RecursionError) as e:
            m = _ID_PREFIX.match(line)
            if m:
                fault = Fault(PROTOCOL_ERROR, f"the request is not valid JSON: {_text(e)}")
                self._reply_error(int(m.group(1)), fault.error())
            else:
                _stderr(f"skipping a line that is not valid JSON ({_text(e)}): {line[:200]!r}")
            return
        if not isinstance(msg, dict):
            _stderr(f"skipping a line that is not a JSON object: {line[:200]!r}")
            return
        if "cb" in msg:
            self._callback_reply(msg)
            return
        rid = msg.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool) or rid < 0:
            _stderr(f"skipping a request without a usable id: {line[:200]!r}")
            return
        op = msg.get("op")
        if op == "ping":
            info = {"pid": os.getpid(), "python": platform.python_version()}
            self._reply_ok(rid, {**info, "workers": self._workers}, "ping")
            return
        run = self._ops.get(op)
        if run is None:
            self._reply_error(rid, Fault(PROTOCOL_ERROR, f"unknown op {op!r}").error())
            return
        with self._idle:
            self._busy += 1
        self._queue.put((run, rid, msg))

    def _work(self):
        while True:
            self._run(*self._queue.get())

    def _run(self, run, rid, msg):
        try:
            value, what = run(rid, msg)
        except Fault as fault:
            self._reply_error(rid, fault.error())
        except BaseException as e:
            # BaseException too: sys.exit() in a step must fail the step, not the runner.
            self._reply_error(rid, describe(e))
        else:
            self._reply_ok(rid, value, what)
        finally:
            context.set_current(None)
            with self._idle:
                self._busy -= 1
                if self._busy == 0:
                    self._idle.notify_all()

    # -- ops ---------------------------------------------------------------------------

    def _load(self, rid, msg):
        module = _field(msg, "module", str, "load")
        class_name = _field(msg, "class", str, "load")
        source = _field(msg, "source", str, "load")
        if module in sys.modules and module not in self._modules:
            raise Fault(PROTOCOL_ERROR, f"load: module name {module!r} is already taken")
        # Code run at import time logs and calls back as part of this request.
        context.set_current(context.Call(rid, {}))
        filename = f"{module}.py"
        code = compile(source, filename, "exec", dont_inherit=True)
        mod = types.ModuleType(module)
        mod.__file__ = filename
        previous = sys.modules.get(module), linecache.cache.get(filename)
        # Tracebacks show the user's source lines; mtime None keeps checkcache() from
        # discarding the entry for want of a file on disk.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        sys.modules[module] = mod
        self._modules.add(module)
        try:
            exec(code, mod.__dict__)
        except BaseException:
            self._restore(module, filename, previous)
            raise
        cls = mod.__dict__.get(class_name)
        if not isinstance(cls, type):
            self._restore(module, filename, previous)
            raise Fault(CLASS_NOT_FOUND, f"{filename} defines no class {class_name}")
        self._classes[class_name] = cls
        return self._class_info(cls), f"load of {class_name}"

    def _restore(self, module, filename, previous):
        old_module, old_lines = previous
        if old_module is None:
            sys.modules.pop(module, None)
            self._modules.discard(module)
            linecache.cache.pop(filename, None)
        else:
            sys.modules[module] = old_module
            linecache.cache[filename] = old_lines

    @staticmethod
    def _class_info(cls):
        methods = set()
        for klass in cls.__mro__:
            if klass in SLUICE_BASES or klass is object:
                continue
            for name, attr in vars(klass).items():
                if not name.startswith("__") and (
                    callable(attr) or isinstance(attr, (staticmethod, classmethod))
                ):
                    methods.add(name)
        base = next((k.__name__ for k in cls.__mro__ if k in SLUICE_BASES), "")
        return {"methods": sorted(methods), "base": base}

    def _class(self, msg, what):
        name = _field(msg, "class", str, what)
        cls = self._classes.get(name)
        if cls is None:
            raise Fault(CLASS_NOT_FOUND, f"class {name} is not loaded")
        return cls

    def _call(self, rid, msg):
        method = _field(msg, "method", str, "call")
        if method.startswith("__"):
            raise Fault(METHOD_NOT_FOUND, f"{method} cannot be called")
        args = msg.get("args", [])
        if not isinstance(args, list):
            raise Fault(PROTOCOL_ERROR, "call: field 'args' must be an array")
        handle = msg.get("instance")
        if handle is not None:
            if not isinstance(handle, str):
                raise Fault(PROTOCOL_ERROR, "call: field 'instance' must be a string")
            obj = self._instances.get(handle)
            if obj is None:
                raise Fault(INSTANCE_NOT_FOUND, f"no instance {handle!r}")
            created = getattr(obj, "_sluice_call", None)
            if msg.get("context") is not None:
                ctx = _context_of(msg)
            else:
                ctx = created.context if created is not None else {}
            context.set_current(context.Call(rid, ctx))
            what = f"{type(obj).__name__}.{method}"
        else:
            cls = self._class(msg, "call")
            context.set_current(context.Call(rid, _context_of(msg)))
            what = f"{cls.__name__}.{method}"
            # A fresh object per call: steps and jobs keep nothing between calls.
            obj = cls()
        fn = getattr(obj, method, None)
        if not callable(fn):
            raise Fault(METHOD_NOT_FOUND, f"{what} does not exist")
        return fn(*args), what

    def _create(self, rid, msg):
        cls = self._class(msg, "create")
        context.set_current(context.Call(rid, _context_of(msg)))
        obj = cls()
        handle = f"{cls.__name__}#{next(self._handles)}"
        self._instances[handle] = obj
        return handle, f"create of {cls.__name__}"

    def _drop(self, rid, msg):
        handle = _field(msg, "instance", str, "drop")
        return self._instances.pop(handle, None) is not None, "drop"

    # -- end ---------------------------------------------------------------------------

    def finish(self, timeout):
        """After EOF: fails callbacks still waiting (nobody will answer them) and waits up
        to ``timeout`` seconds for the calls in flight. Returns how many did not finish."""
        with self._cb_lock:
            self._closing = True
            waiting = list(self._callbacks.values())
            self._callbacks.clear()
        for answer in waiting:
            answer.set_result((False, (RUNNER_STOPPING, "the host closed the runner's input")))
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._busy:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._idle.wait(left)
            return self._busy


def take_stdio():
    """Keeps private handles on the protocol's fds 0 and 1 and gives user code harmless
    ones: fd 1 becomes a copy of stderr (so ``print``, C extensions and subprocesses land
    in the host's log, never in the protocol) and fd 0 reads /dev/null."""
    sys.stdout.flush()
    proto_in = os.dup(0)  # os.dup: not inherited by subprocesses user code starts
    proto_out = os.dup(1)
    os.dup2(2, 1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = sys.stderr
    sys.stdin = open(os.devnull, encoding="utf-8")
    return os.fdopen(proto_in, "rb"), os.fdopen(proto_out, "wb")
