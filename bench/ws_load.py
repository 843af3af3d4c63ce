#!/usr/bin/python3
"""MQTT load client on Eclipse Paho (Debian's python3-paho-mqtt 1.6), over
TCP or WebSocket, for bench/ws_compare.sh.

One publisher (this process) and N subscribers (one process each, so the
client is not one interpreter behind one GIL) on one topic. The publisher
sends --messages messages as fast as a window of unfinished publishes lets it
(QoS 0: written to the socket; QoS 1: not yet acknowledged, --inflight, 20 by
default like Mosquitto's receive maximum), or paced with --rate. Every payload
starts with the send time (CLOCK_MONOTONIC, ns, shared by all processes) and
the sequence number. Each subscriber counts distinct messages and records
their latencies. Output: one JSON line with sent, expected, delivered,
duplicates, lost, duration (first publish to last delivery), delivered msg/s
(all subscribers together), latency p50/p99/max in us and the client's own
CPU time.

Exit status: 0 when every expected delivery arrived, 1 when some were lost,
2 when the run could not start (connect, subscribe).

  bench/ws_load.py --port 9001 --transport websockets --path /mqtt \\
      --qos 1 --subscribers 4 --messages 20000

Python is slow: a paho client handles some tens of thousands of messages per
second per process, so msg/s here is usually the client's limit, not the
broker's. The broker's CPU time per message (measured by ws_compare.sh) is
the figure to compare.
"""

import argparse
import json
import multiprocessing as mp
import os
import queue
import resource
import select
import socket
import struct
import sys
import time

import paho.mqtt.client as mqtt

STAMP = struct.Struct(">QI")  # send time (ns), sequence number


def make_client(args, client_id):
    client = mqtt.Client(client_id=client_id, clean_session=True,
                         protocol=mqtt.MQTTv311, transport=args.transport)
    if args.transport == "websockets":
        client.ws_set_options(path=args.path)
    return client


def connect(client, args, deadline):
    """Connects and waits for the CONNACK; returns None or an error string."""
    state = {}

    def on_connect(c, userdata, flags, rc):
        state["rc"] = rc

    client.on_connect = on_connect
    try:
        client.connect(args.host, args.port, keepalive=60)
    except Exception as e:  # refused, reset, bad upgrade...
        return "connect to %s:%d (%s): %s" % (args.host, args.port, args.transport, e)
    # paho 1.6 leaves Nagle's algorithm on, which holds small writes (QoS 1
    # PUBACKs, paced publishes) for tens of ms; both brokers set TCP_NODELAY.
    sock = client.socket()
    getattr(sock, "_socket", sock).setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while "rc" not in state:
        if time.monotonic() > deadline:
            return "no CONNACK within %.0f s" % args.connect_timeout
        rc = client.loop(timeout=0.1)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            return "connection lost before CONNACK: %s" % mqtt.error_string(rc)
    if state["rc"] != 0:
        return "CONNACK refused: %s" % mqtt.connack_string(state["rc"])
    return None


def read_all(client):
    """Reads every packet waiting on the socket (paho's loop() reads one QoS 0
    packet per select, which would make the subscriber measure select)."""
    for _ in range(10000):
        rc = client._packet_read()
        if rc == mqtt.MQTT_ERR_AGAIN:
            return mqtt.MQTT_ERR_SUCCESS
        if rc != mqtt.MQTT_ERR_SUCCESS:
            return rc
    return mqtt.MQTT_ERR_SUCCESS


def subscriber(index, args, ready, results, publishing_done):
    deadline = time.monotonic() + args.connect_timeout
    client = make_client(args, "ws-load-sub-%d-%d" % (os.getpid(), index))
    count = args.messages
    seen = bytearray(count)
    latencies = []
    stats = {"delivered": 0, "duplicates": 0, "first": None, "last": None}

    def on_message(c, userdata, message):
        now = time.monotonic_ns()
        sent, seq = STAMP.unpack_from(message.payload)
        if seq < count and not seen[seq]:
            seen[seq] = 1
            stats["delivered"] += 1
            latencies.append(now - sent)
        else:
            stats["duplicates"] += 1
        if stats["first"] is None:
            stats["first"] = now
        stats["last"] = now

    error = connect(client, args, deadline)
    if error is None:
        subscribed = {}
        client.on_subscribe = lambda c, u, mid, granted: subscribed.update(granted=granted)
        client.subscribe(args.topic, qos=args.qos)
        while "granted" not in subscribed and error is None:
            if time.monotonic() > deadline:
                error = "no SUBACK within %.0f s" % args.connect_timeout
            elif client.loop(timeout=0.1) != mqtt.MQTT_ERR_SUCCESS:
                error = "connection lost before SUBACK"
        if error is None and subscribed["granted"][0] > 2:
            error = "subscription refused (0x%02x)" % subscribed["granted"][0]
    if error is not None:
        ready.put(("error", "subscriber %d: %s" % (index, error)))
        return
    client.on_message = on_message
    ready.put(("ready", index))

    sock = client.socket()
    hard_deadline = None
    idle_since = time.monotonic()
    lost_connection = None
    while stats["delivered"] < count:
        now = time.monotonic()
        if publishing_done.is_set():
            if hard_deadline is None:
                hard_deadline = now + args.timeout
                idle_since = now
            if now - idle_since > args.idle_timeout or now > hard_deadline:
                break
        pending = getattr(sock, "pending", lambda: 0)()  # WS wrapper, TLS
        if not pending:
            readable, _, _ = select.select([sock], [], [], 0.05)
            if not readable:
                client.loop_misc()
                continue
        before = stats["delivered"] + stats["duplicates"]
        rc = read_all(client)
        if rc != mqtt.MQTT_ERR_SUCCESS:
            lost_connection = mqtt.error_string(rc)
            break
        if client.want_write():  # PUBACKs of QoS 1 deliveries
            client.loop_write()
        if stats["delivered"] + stats["duplicates"] != before:
            idle_since = time.monotonic()
    try:
        client.disconnect()
    except Exception:
        pass
    results.put({"index": index, "delivered": stats["delivered"],
                 "duplicates": stats["duplicates"], "first": stats["first"],
                 "last": stats["last"], "latencies": latencies,
                 "lost_connection": lost_connection})


def percentile(sorted_values, fraction):
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--transport", choices=("tcp", "websockets"), default="tcp")
    p.add_argument("--path", default="/mqtt", help="WebSocket path (default /mqtt)")
    p.add_argument("--topic", default="ws-load/t")
    p.add_argument("--qos", type=int, choices=(0, 1), default=0)
    p.add_argument("--subscribers", type=int, default=1)
    p.add_argument("--messages", type=int, default=20000, help="messages the publisher sends")
    p.add_argument("--payload-size", type=int, default=64)
    p.add_argument("--inflight", type=int, default=20,
                   help="QoS 1: unacknowledged publishes at most (default 20)")
    p.add_argument("--window", type=int, default=100,
                   help="QoS 0: publishes not yet written to the socket at most (default 100)")
    p.add_argument("--rate", type=float, default=0, help="msg/s, 0 (default): unpaced")
    p.add_argument("--timeout", type=float, default=60,
                   help="seconds after publishing ends to wait for deliveries at most")
    p.add_argument("--idle-timeout", type=float, default=2,
                   help="stop when nothing arrived for this long after publishing ended")
    p.add_argument("--connect-timeout", type=float, default=10)
    args = p.parse_args()
    if args.payload_size < STAMP.size:
        p.error("--payload-size must be at least %d" % STAMP.size)

    ready, results = mp.Queue(), mp.Queue()
    publishing_done = mp.Event()
    procs = [mp.Process(target=subscriber, args=(i, args, ready, results, publishing_done),
                        daemon=True) for i in range(args.subscribers)]
    for proc in procs:
        proc.start()

    def fail(message):
        print("ws_load.py: " + message, file=sys.stderr)
        print(json.dumps({"error": message}))
        publishing_done.set()
        for proc in procs:
            proc.terminate()
        sys.exit(2)

    for _ in procs:
        try:
            kind, what = ready.get(timeout=args.connect_timeout + 5)
        except queue.Empty:
            fail("a subscriber did not get ready")
        if kind == "error":
            fail(what)

    client = make_client(args, "ws-load-pub-%d" % os.getpid())
    window = args.inflight if args.qos else args.window
    client.max_inflight_messages_set(args.inflight)
    client.max_queued_messages_set(0)
    unfinished = [0]

    def on_publish(c, userdata, mid):
        unfinished[0] -= 1

    client.on_publish = on_publish
    error = connect(client, args, time.monotonic() + args.connect_timeout)
    if error is not None:
        fail("publisher: " + error)

    padding = b"x" * (args.payload_size - STAMP.size)
    first_publish = time.monotonic_ns()
    start = time.monotonic()
    sent = 0
    for seq in range(args.messages):
        if args.rate > 0:
            due = start + seq / args.rate
            while True:
                delay = due - time.monotonic()
                if delay <= 0:
                    break
                client.loop(timeout=min(delay, 0.01))  # reads PUBACKs meanwhile
        while unfinished[0] >= window:
            if client.loop(timeout=0.01) != mqtt.MQTT_ERR_SUCCESS:
                fail("publisher lost its connection after %d messages" % sent)
        unfinished[0] += 1
        info = client.publish(args.topic, STAMP.pack(time.monotonic_ns(), seq) + padding,
                              qos=args.qos)
        if info.rc != mqtt.MQTT_ERR_SUCCESS:
            fail("publish %d: %s" % (seq, mqtt.error_string(info.rc)))
        sent += 1
    drain_until = time.monotonic() + args.timeout
    while unfinished[0] > 0 and time.monotonic() < drain_until:
        if client.loop(timeout=0.01) != mqtt.MQTT_ERR_SUCCESS:
            break
    publishing_done.set()

    subs = []
    for _ in procs:
        try:
            subs.append(results.get(timeout=args.timeout + args.idle_timeout + 10))
        except queue.Empty:
            fail("a subscriber did not report")
    for proc in procs:
        proc.join(timeout=5)
    try:
        client.disconnect()
    except Exception:
        pass

    delivered = sum(s["delivered"] for s in subs)
    expected = args.messages * args.subscribers
    lasts = [s["last"] for s in subs if s["last"] is not None]
    duration = (max(lasts) - first_publish) / 1e9 if lasts else 0.0
    latencies = sorted(x for s in subs for x in s["latencies"])
    us = lambda ns: round(ns / 1000.0, 1) if ns is not None else None
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = {
        "transport": args.transport, "qos": args.qos, "subscribers": args.subscribers,
        "payload_size": args.payload_size, "rate": args.rate,
        "sent": sent, "expected": expected, "delivered": delivered,
        "duplicates": sum(s["duplicates"] for s in subs),
        "lost": expected - delivered,
        "duration_s": round(duration, 4),
        "delivered_per_s": round(delivered / duration, 1) if duration > 0 else 0.0,
        "latency_us": {"p50": us(percentile(latencies, 0.50)),
                       "p99": us(percentile(latencies, 0.99)),
                       "max": us(latencies[-1] if latencies else None)},
        "client_cpu_s": round(own.ru_utime + own.ru_stime
                              + children.ru_utime + children.ru_stime, 3),
        "lost_connections": [s["lost_connection"] for s in subs if s["lost_connection"]],
    }
    print(json.dumps(result))
    sys.exit(0 if delivered == expected else 1)


if __name__ == "__main__":
    main()
