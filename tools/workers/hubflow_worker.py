#!/usr/bin/python3
"""hubflow's Python function worker.

Started by hubflow as `hubflow_worker.py <codedir> <module.function> <name>`,
one process per function instance. It loads the handler, then answers one
request at a time over length-prefixed msgpack frames on stdin/stdout (see
schemas/worker-frames.md). Handlers follow Baetyl's contract:

    def handler(event, context): ...      (or `async def`)

`event` is a dict when the payload is a JSON object, else bytes; `context`
holds messageQOS, messageTopic, messageTimestamp, functionName and
functionInvokeID. A dict or list is published as JSON, bytes as they are, a
str as UTF-8, None publishes nothing; an exception becomes an error report.
"""

# Only what every call needs is imported at start: a cold pool waits for
# this process, and asyncio, inspect, platform and traceback took 40 of its
# 50 ms (python3 -X importtime). They load when first needed.
import importlib
import json
import os
import struct
import sys
from collections.abc import Awaitable

try:
    import msgpack
except ImportError:
    sys.stderr.write(
        "hubflow_worker: the Python module 'msgpack' is missing for %s "
        "(install the Debian package python3-msgpack and use /usr/bin/python3)\n"
        % sys.executable)
    sys.exit(3)


def take_frame_streams():
    """Keeps stdin/stdout for frames only.

    Handlers print and libraries write to stdout; any byte of theirs on the
    frame stream would corrupt it. So frames use private copies of fds 0 and
    1, fd 1 becomes a copy of stderr (which hubflow logs) and fd 0 reads
    /dev/null.
    """
    frames_in = os.fdopen(os.dup(0), "rb", buffering=0)
    frames_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    return frames_in, frames_out


def read_exact(stream, size):
    chunks = []
    while size > 0:
        chunk = stream.read(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(stream):
    """The next frame as a dict, or None when hubflow closed the stream."""
    header = read_exact(stream, 4)
    if header is None:
        return None
    (size,) = struct.unpack(">I", header)
    body = read_exact(stream, size)
    if body is None:
        return None
    return msgpack.unpackb(body, raw=False)


def write_frame(stream, fields):
    body = msgpack.packb(fields, use_bin_type=True)
    stream.write(struct.pack(">I", len(body)) + body)


def error_fields(frame_id, exc, skip_worker_frame=False):
    import traceback
    tb = exc.__traceback__
    if skip_worker_frame and tb is not None:
        tb = tb.tb_next  # start at the handler, not at the worker's call
    return {
        "id": frame_id,
        "ok": False,
        "output": None,
        "error": str(exc),
        "errorType": type(exc).__name__,
        "traceback": "".join(traceback.format_exception(type(exc), exc, tb)),
    }


def load_handler(codedir, spec):
    module_name, _, function_name = spec.rpartition(".")
    sys.path.insert(0, codedir)
    module = importlib.import_module(module_name)
    handler = getattr(module, function_name, None)
    if handler is None:
        raise AttributeError("module '%s' has no function '%s'"
                             % (module_name, function_name))
    if not callable(handler):
        raise TypeError("'%s' is not callable" % spec)
    return handler


def to_output(result):
    """The bytes to publish for what a handler returned, None for nothing."""
    if result is None:
        return None
    if isinstance(result, (bytes, bytearray, memoryview)):
        return bytes(result)
    if isinstance(result, str):
        return result.encode("utf-8")
    return json.dumps(result, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def to_event(request):
    payload = request["event"]
    if request.get("json"):
        try:
            return json.loads(payload)
        except ValueError:
            pass  # hubflow said JSON; if Python disagrees, hand over bytes
    return payload


class Invoker:
    """Calls the handler; `async def` handlers run to completion on one
    event loop kept for the worker's lifetime."""

    def __init__(self, handler):
        self.handler = handler
        self.loop = None

    def __call__(self, event, context):
        result = self.handler(event, context)
        if isinstance(result, Awaitable):
            if self.loop is None:
                import asyncio
                self.loop = asyncio.new_event_loop()
            result = self.loop.run_until_complete(result)
        return result


def main():
    codedir, spec, name = sys.argv[1], sys.argv[2], sys.argv[3]
    frames_in, frames_out = take_frame_streams()
    try:
        invoke = Invoker(load_handler(codedir, spec))
    except BaseException as exc:  # report any import failure, then stop
        write_frame(frames_out, error_fields(0, exc))
        return 1
    write_frame(frames_out, {
        "id": 0,
        "ok": True,
        "runtime": "python %d.%d.%d" % sys.version_info[:3],
    })
    while True:
        request = read_frame(frames_in)
        if request is None:
            return 0
        frame_id = request["id"]
        try:
            result = invoke(to_event(request), dict(request["context"]))
            reply = {"id": frame_id, "ok": True, "output": to_output(result)}
        except Exception as exc:
            reply = error_fields(frame_id, exc, skip_worker_frame=True)
        write_frame(frames_out, reply)


if __name__ == "__main__":
    sys.exit(main())
