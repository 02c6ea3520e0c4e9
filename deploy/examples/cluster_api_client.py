#!/usr/bin/env python3
"""A Sluice cluster API client in Python, written from docs/cluster-api.md alone.

It needs only pyzmq: the few protobuf messages it uses are encoded and decoded by the
small codec below, following the field numbers the document lists.

    python3 cluster_api_client.py --endpoint tcp://127.0.0.1:8002 \
        --cert client.cert --server-key "$(sluice keys public)" status

`client.cert` comes from `sluice keys gen --out client.cert`, and its public key must be
registered with `sluice keys register USER PUBLIC-KEY`. Prints the answer as JSON.
"""

import argparse
import json
import sys
import time

import zmq
import zmq.auth

# ---- a minimal protobuf codec (varints and length-delimited fields are all we need) ----


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(fields):
    """fields: list of (number, value); int -> varint, bytes/str -> length-delimited."""
    out = bytearray()
    for number, value in fields:
        if isinstance(value, int):
            out += _varint(number << 3 | 0) + _varint(value)
        else:
            data = value.encode() if isinstance(value, str) else value
            out += _varint(number << 3 | 2) + _varint(len(data)) + data
    return bytes(out)


def decode(data):
    """Returns {field number: [values]}; varints as int, length-delimited as bytes."""
    fields, i = {}, 0
    while i < len(data):
        key, i = _read_varint(data, i)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _read_varint(data, i)
        elif wire == 2:
            length, i = _read_varint(data, i)
            value, i = data[i:i + length], i + length
        elif wire == 1:
            value, i = data[i:i + 8], i + 8
        elif wire == 5:
            value, i = data[i:i + 4], i + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        fields.setdefault(number, []).append(value)
    return fields


def _read_varint(data, i):
    shift = result = 0
    while True:
        byte = data[i]
        i += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, i
        shift += 7


def first(fields, number, default=None):
    values = fields.get(number)
    return values[0] if values else default


def text(fields, number):
    return first(fields, number, b"").decode()


# ---- the cluster API --------------------------------------------------------------------

REQUEST = 1  # Envelope.Kind


class ClusterClient:
    def __init__(self, endpoint, cert, server_key, timeout_ms=10000):
        public, secret = zmq.auth.load_certificate(cert)
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.curve_publickey = public
        self.socket.curve_secretkey = secret
        self.socket.curve_serverkey = server_key.encode()
        self.socket.linger = 0
        self.socket.connect(endpoint)
        self.timeout_ms = timeout_ms
        self.next_id = 1

    def call(self, method, body=b""):
        request_id, self.next_id = self.next_id, self.next_id + 1
        deadline = int(time.time() * 1000) + self.timeout_ms
        envelope = encode([(1, request_id), (2, method), (3, REQUEST), (5, deadline), (7, body)])
        self.socket.send(envelope)
        while True:
            if not self.socket.poll(self.timeout_ms):
                raise TimeoutError(
                    "no answer to %s: is the master up and your key registered?" % method)
            reply = decode(self.socket.recv())
            if first(reply, 1) != request_id:
                continue  # an answer to an earlier, abandoned request
            error = first(reply, 6)
            if error is not None:
                e = decode(error)
                raise RuntimeError("%s: %s" % (text(e, 1), text(e, 2)))
            return first(reply, 7, b"")

    def status(self):
        s = decode(self.call("omq.system.get-status"))
        return {
            "instance_key": text(s, 1),
            "session_id": first(s, 2, 0),
            "master_pid": first(s, 3, 0),
            "host": text(s, 4),
            "version": text(s, 5),
            "started_ms": first(s, 6, 0),
            "uptime_ms": first(s, 7, 0),
            "status": text(s, 8),
            "processes": [registry_entry(decode(p)) for p in s.get(9, [])],
        }

    def events(self, since=0, wait_ms=0):
        body = encode([(1, since), (5, wait_ms)])
        listing = decode(self.call("omq.system.get-events", body))
        events = []
        for raw in listing.get(1, []):
            e = decode(raw)
            events.append({
                "id": first(e, 1, 0), "time": first(e, 2, 0), "class": first(e, 3, 0),
                "classstr": text(e, 4), "event": first(e, 5, 0), "eventstr": text(e, 6),
                "severity": first(e, 7, 0), "severitystr": text(e, 8), "caller": text(e, 9),
                "info": json.loads(first(e, 10, b"null") or b"null"),
            })
        return {"events": events, "last_id": first(listing, 2, 0)}


def registry_entry(p):
    return {
        "network_id": text(p, 1),
        "process_type": text(p, 2),
        "interfaces": [v.decode() for v in p.get(3, [])],
        "endpoints": [v.decode() for v in p.get(4, [])],
        "pid": first(p, 5, 0),
        "status": text(p, 6),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default="tcp://127.0.0.1:8002")
    parser.add_argument("--cert", required=True, help="client certificate (sluice keys gen)")
    parser.add_argument("--server-key", required=True, help="cluster public key, Z85")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds")
    parser.add_argument("command", choices=["status", "events", "ping"])
    parser.add_argument("--since", type=int, default=0)
    args = parser.parse_args()
    client = ClusterClient(args.endpoint, args.cert, args.server_key, int(args.timeout * 1000))
    try:
        if args.command == "status":
            result = client.status()
        elif args.command == "events":
            result = client.events(args.since)
        else:
            client.call("ping")
            result = {"ping": "ok"}
    except (TimeoutError, RuntimeError) as err:
        print("error: %s" % err, file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
