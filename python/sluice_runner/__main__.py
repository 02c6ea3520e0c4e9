"""``python3 -m sluice_runner [--workers N] [--drain-timeout SECS]``: the runner process.

Started by an interface process, with the protocol on stdin/stdout; it exits 0 when stdin
reaches EOF, after the calls in flight finish (or the drain timeout passes).
"""

import argparse
import os
import sys

from . import server


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python3 -m sluice_runner")
    parser.add_argument("--workers", type=int, default=server.DEFAULT_WORKERS)
    parser.add_argument("--drain-timeout", type=float, default=10.0)
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    proto_in, proto_out = server.take_stdio()
    srv = server.Server(proto_in, proto_out, workers=args.workers)
    srv.serve()
    abandoned = srv.finish(args.drain_timeout)
    if abandoned:
        print(
            f"sluice_runner: exiting with {abandoned} call(s) unfinished after "
            f"{args.drain_timeout:g} s",
            file=sys.stderr,
        )
    sys.stderr.flush()
    # os._exit: a normal exit joins the worker threads, and a call stuck in user code
    # would hold the process forever.
    os._exit(0)


if __name__ == "__main__":
    main()
