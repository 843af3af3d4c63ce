#!/usr/bin/env node
// hubflow's WebAssembly function worker (`runtime: wasm`).
//
// Started by hubflow as `node hubflow_wasm_worker.js <module.wasm> <name>
// <settings JSON>`, one process per function instance, so that a crash of
// the engine ends this process and never the broker. It compiles the WASI
// preview 1 command module once, then answers one framed request at a time
// (schemas/worker-frames.md) by running its `_start` on an instance in the
// state of a fresh one (instantiated once, reset after every call):
//
//   - the payload is the module's stdin, what it writes to stdout is the
//     output (nothing written: nothing published);
//   - Baetyl's context is in its environment (MESSAGE_TOPIC, MESSAGE_QOS,
//     MESSAGE_TIMESTAMP, FUNCTION_NAME, FUNCTION_INVOKE_ID) next to `env`;
//   - a non-zero exit status or a trap answers an error (WasmExit, WasmTrap)
//     whose message is the last lines the module wrote to stderr.
//
// Sandbox: the module sees only the directories in `preopens` (none by
// default) and no sockets; its memory cannot grow beyond `memoryPages`. A
// module that never ends is stopped by hubflow, which kills this process
// when the invocation's timeout passes.
'use strict';

const fs = require('fs');
const path = require('path');
const msgpack = require('./msgpack_lite');

// node:wasi warns that it is experimental on every start; that line would
// land in hubflow's log for each new instance and says nothing to an
// operator.
const emitWarning = process.emitWarning.bind(process);
process.emitWarning = (warning, ...rest) => {
  const type = typeof rest[0] === 'string' ? rest[0] : rest[0] && rest[0].type;
  if (type === 'ExperimentalWarning' && String(warning).includes('WASI')) return;
  emitWarning(warning, ...rest);
};
const { WASI } = require('node:wasi');

// WASI constants used below.
const ESUCCESS = 0;
const EFAULT = 21;
const EFBIG = 22;
const ESPIPE = 70;
const FILETYPE_UNKNOWN = 0;
const RIGHT_FD_READ = 1n << 1n;
const RIGHT_FD_WRITE = 1n << 6n;
const RIGHT_POLL_FD_READWRITE = 1n << 27n;

const STDERR_TAIL_BYTES = 8192;
const STDERR_TAIL_LINES = 20;
const PAGE = 65536;

// Frames are read and written with blocking system calls, not streams:
// hubflow sends one request and waits for its reply, and a module runs
// synchronously anyway, so an event loop would only add work per message.
// (The fds hubflow hands over are blocking; should one not be, EAGAIN
// waits a moment and tries again.)
const pause = new Int32Array(new SharedArrayBuffer(4));
function retrying(io) {
  for (;;) {
    try {
      return io();
    } catch (err) {
      if (err.code !== 'EAGAIN') throw err;
      Atomics.wait(pause, 0, 0, 1);
    }
  }
}

function writeAll(fd, bytes) {
  for (let done = 0; done < bytes.length;) {
    done += retrying(() => fs.writeSync(fd, bytes, done, bytes.length - done));
  }
}

// Requests arrive through one buffer, grown to the largest frame seen: a
// request is read where it lies (its payload is copied once, into the
// module's memory), and frames that arrive together come from one read.
class FrameReader {
  constructor() {
    this.buf = Buffer.allocUnsafe(64 * 1024);
    this.start = 0; // the next frame's first byte
    this.end = 0; // after the last byte read
    this.bodyStart = 0; // the body of the frame next() found
    this.bodyStop = 0;
  }

  // Finds the next frame's body, [bodyStart, bodyStop) of buf; false at
  // the end of stdin. The body stays valid until the next call.
  next() {
    if (this.start === this.end) this.start = this.end = 0;
    for (;;) {
      const have = this.end - this.start;
      let need = 4;
      if (have >= 4) {
        need = 4 + this.buf.readUInt32BE(this.start);
        if (have >= need) {
          this.bodyStart = this.start + 4;
          this.bodyStop = this.start = this.start + need;
          return true;
        }
      }
      if (this.start + need > this.buf.length) this.makeRoom(need);
      const n = retrying(() => fs.readSync(0, this.buf, this.end, this.buf.length - this.end, null));
      if (n === 0) return false;
      this.end += n;
    }
  }

  // Moves the unread bytes to the front of a buffer of at least `size`.
  makeRoom(size) {
    const target = size > this.buf.length
      ? Buffer.allocUnsafe(Math.max(size, 2 * this.buf.length)) : this.buf;
    this.buf.copy(target, 0, this.start, this.end);
    this.end -= this.start;
    this.start = 0;
    this.buf = target;
  }
}

// A frame: its length, then the MessagePack body.
function frame(body) {
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

// The key/value pairs of a successful reply before its output's bytes
// (schemas/worker-frames.md); the id goes between them.
const REPLY_ID = Buffer.from([0x83, 0xa2, ...Buffer.from('id')]);
const REPLY_OK_OUTPUT = Buffer.from([0xa2, ...Buffer.from('ok'), 0xc3,
                                     0xa6, ...Buffer.from('output')]);
const BIN32 = 0xc6;
const NIL = 0xc0;

// A successful reply, built in one buffer kept from call to call: the
// frame header and the map's head are written before the module runs, what
// it writes to stdout goes straight after them, and the lengths are filled
// in at the end.
class Reply {
  constructor() {
    this.out = new msgpack.Writer();
    this.binAt = 0; // where the output's bin32 header is
  }
  begin(id) {
    const out = this.out;
    out.len = 0;
    out.u32(0);
    out.bytes(REPLY_ID);
    msgpack.encodeValue(out, id);
    out.bytes(REPLY_OK_OUTPUT);
    this.binAt = out.len;
    out.byte(BIN32);
    out.u32(0);
  }
  outputSize() {
    return this.out.len - this.binAt - 5;
  }
  append(bytes, from, to) {
    const out = this.out;
    out.reserve(to - from);
    out.buf.set(bytes.subarray(from, to), out.len);
    out.len += to - from;
  }
  // The frame to send; no output is nil (nothing published).
  finish() {
    const out = this.out;
    const size = this.outputSize();
    if (size === 0) {
      out.buf[this.binAt] = NIL;
      out.len = this.binAt + 1;
    } else {
      out.buf.writeUInt32BE(size, this.binAt + 1);
    }
    out.buf.writeUInt32BE(out.len - 4, 0);
    return out.buf.subarray(0, out.len);
  }
}

// ---- reading and patching the binary

class Reader {
  constructor(bytes, pos, end) {
    this.bytes = bytes;
    this.pos = pos;
    this.end = end;
  }
  byte() {
    if (this.pos >= this.end) throw new Error('truncated module');
    return this.bytes[this.pos++];
  }
  leb() {
    let value = 0;
    let shift = 0;
    for (;;) {
      const b = this.byte();
      value += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return value;
      shift += 7;
    }
  }
  skip(n) {
    if (this.pos + n > this.end) throw new Error('truncated module');
    this.pos += n;
  }
  // A constant expression (global initialisers, segment offsets); false
  // when it holds something this reader does not know.
  constExpr() {
    for (;;) {
      const op = this.byte();
      switch (op) {
        case 0x0b: return true; // end
        case 0x41: case 0x42: case 0x23: case 0xd2: this.leb(); break;
        case 0x43: this.skip(4); break;
        case 0x44: this.skip(8); break;
        case 0xd0: this.byte(); break;
        default: return false;
      }
    }
  }
}

function leb(value) {
  const out = [];
  do {
    let b = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) b |= 0x80;
    out.push(b);
  } while (value > 0);
  return out;
}

function section(id, body) {
  return Buffer.from([id, ...leb(body.length), ...body]);
}

// The module's sections: id, where each begins (pos) and its body
// [start, end).
function sections(bytes) {
  const list = [];
  for (let pos = 8; pos < bytes.length;) {
    const head = new Reader(bytes, pos, bytes.length);
    const id = head.byte();
    const size = head.leb();
    const end = head.pos + size;
    if (end > bytes.length) throw new Error('truncated section ' + id);
    list.push({ id, pos, start: head.pos, end });
    pos = end;
  }
  return list;
}

// Whether the code in [start, end) of bytes may hold an instruction that
// changes a table (table.set 0x26; table.init, copy, grow, fill: 0xfc 12,
// 14-17). The bytes are not decoded, so an immediate that happens to hold
// such a byte counts too: a false answer is certain, and spares each reset
// putting the table back (a call into V8 per entry).
function mayChangeTables(bytes, start, end) {
  for (let i = start; i < end; ++i) {
    if (bytes[i] === 0x26) return true;
    if (bytes[i] === 0xfc && i + 1 < end && [12, 14, 15, 16, 17].includes(bytes[i + 1])) return true;
  }
  return false;
}

// Rewrites the module so that an instance can be reset to the state it
// had right after instantiation:
//   - every memory it defines is capped at `maxPages` (the engine then
//     refuses to grow it further: memory.grow returns -1, malloc NULL);
//   - its mutable globals and its table (when its code may change it) are
//     exported under hubflow's own names, so that their values can be
//     saved and put back.
// `resettable` is false for modules whose state this cannot capture: a
// start function, passive or declarative segments (data.drop/elem.drop
// cannot be undone), SIMD globals; those are instantiated afresh for every
// invocation instead.
function prepare(bytes, maxPages) {
  const parts = [bytes.subarray(0, 8)];
  const mutableGlobals = [];
  const list = sections(bytes);
  // The code comes after the exports it decides about.
  const code = list.find((s) => s.id === 10);
  const tableChanges = code !== undefined && mayChangeTables(bytes, code.start, code.end);
  let definedTables = 0;
  let resettable = true;
  for (const { id, pos, start, end } of list) {
    const r = new Reader(bytes, start, end);
    let replaced = null;
    if (id === 4) {
      definedTables = r.leb();
    } else if (id === 5) {
      const count = r.leb();
      const body = leb(count);
      for (let i = 0; i < count; ++i) {
        const flags = r.byte();
        if (flags & 0x04) throw new Error('64-bit memories are not supported');
        if (flags & 0x02) resettable = false; // shared memory
        const initial = r.leb();
        const max = (flags & 0x01) ? r.leb() : Infinity;
        if (initial > maxPages) {
          throw new RangeError(`the module needs ${initial * PAGE} bytes of memory ` +
                               `to start, over instance.memory (${maxPages * PAGE})`);
        }
        body.push(flags | 0x01, ...leb(initial), ...leb(Math.min(max, maxPages)));
      }
      replaced = section(5, body);
    } else if (id === 6) {
      const count = r.leb();
      for (let i = 0; i < count; ++i) {
        const type = r.byte();
        const mutable = r.byte() === 1;
        if (!r.constExpr()) resettable = false;
        if (mutable) {
          if (type === 0x7b) resettable = false; // v128: not visible to JS
          else mutableGlobals.push(i);
        }
      }
    } else if (id === 7) {
      const count = r.leb();
      const extra = [];
      for (const i of mutableGlobals) {
        extra.push(Buffer.from(`__hubflow_global_${i}`), 3, i);
      }
      if (definedTables > 0 && tableChanges) extra.push(Buffer.from('__hubflow_table_0'), 1, 0);
      const added = [];
      for (let i = 0; i < extra.length; i += 3) {
        added.push(...leb(extra[i].length), ...extra[i], extra[i + 1], ...leb(extra[i + 2]));
      }
      const body = [...leb(count + extra.length / 3), ...bytes.subarray(r.pos, end), ...added];
      replaced = section(7, body);
    } else if (id === 8 || id === 12) {
      resettable = false; // a start function; passive data segments
    } else if (id === 9) {
      const count = r.leb();
      for (let i = 0; i < count && resettable; ++i) {
        // Only the plain form (active, table 0, function indices) is
        // understood; the others may be passive.
        if (r.leb() !== 0 || !r.constExpr()) {
          resettable = false;
          break;
        }
        for (let n = r.leb(); n > 0; --n) r.leb();
      }
    }
    parts.push(replaced || bytes.subarray(pos, end));
  }
  return { bytes: Buffer.concat(parts), mutableGlobals, resettable };
}

function loadModule(file, settings) {
  const prepared = prepare(fs.readFileSync(file), settings.memoryPages);
  const module = new WebAssembly.Module(prepared.bytes);
  const provided = new WASI({ version: 'preview1' }).wasiImport;
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module !== 'wasi_snapshot_preview1' || imp.kind !== 'function' ||
        !(imp.name in provided)) {
      throw new TypeError(`imports ${imp.module}.${imp.name} (${imp.kind}), ` +
                          'which the host does not provide');
    }
  }
  const exported = WebAssembly.Module.exports(module);
  if (!exported.some((e) => e.name === '_start' && e.kind === 'function')) {
    throw new TypeError('exports no function _start');
  }
  return Object.assign(prepared, { module, imports: Object.keys(provided) });
}

// ---- one invocation's I/O

// Keeps the last bytes a module wrote to stderr.
class Tail {
  constructor() {
    this.chunks = [];
    this.size = 0;
  }
  push(chunk) {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size - this.chunks[0].length >= STDERR_TAIL_BYTES) {
      this.size -= this.chunks.shift().length;
    }
  }
  lines() {
    const text = Buffer.concat(this.chunks).toString('utf8').replace(/\s+$/, '');
    return text.split('\n').slice(-STDERR_TAIL_LINES).join('\n');
  }
}

// One invocation: its request, read in place from the frame
// (schemas/worker-frames.md), and what the module wrote to stderr. Its
// environment is only put together when the module asks for it.
class Call {
  constructor(engine, buf, start, stop) {
    this.engine = engine;
    this.id = 0;
    this.input = buf; // stdin: [inputPos, inputStop) of buf
    this.inputPos = 0;
    this.inputStop = 0;
    this.contextStart = 0; // the context map: [contextStart, contextStop) of buf
    this.contextStop = 0;
    this.env = null;
    this.outputOverflow = false;
    this.stderr = null;
    const c = new msgpack.Cursor(buf, start, stop);
    if (c.next() !== msgpack.MAP) throw new TypeError('a request frame is not a map');
    for (let n = c.value; n > 0; --n) {
      const key = c.next();
      let name = null;
      if (key === msgpack.STR) {
        name = c.is('id') ? 'id' : c.is('event') ? 'event' : c.is('context') ? 'context' : null;
      } else {
        c.skipContents(key);
      }
      if (name === 'context') {
        this.contextStart = c.pos;
        c.skip();
        this.contextStop = c.pos;
        continue;
      }
      const kind = c.next();
      if (name === 'id' && kind === msgpack.NUMBER) {
        this.id = c.value;
      } else if (name === 'event' && (kind === msgpack.BIN || kind === msgpack.STR)) {
        this.inputPos = c.start;
        this.inputStop = c.stop;
      } else {
        c.skipContents(kind);
      }
    }
    if (c.pos !== stop) throw new RangeError('a request frame has trailing bytes');
  }

  environment() {
    if (this.env) return this.env;
    const ctx = this.contextStop > this.contextStart
      ? msgpack.decode(this.input.subarray(this.contextStart, this.contextStop)) : {};
    this.env = new Strings(this.engine.env +
      `MESSAGE_TOPIC=${ctx.messageTopic ?? ''}\0` +
      `MESSAGE_QOS=${ctx.messageQOS ?? 0}\0` +
      `MESSAGE_TIMESTAMP=${ctx.messageTimestamp ?? 0}\0` +
      `FUNCTION_NAME=${ctx.functionName ?? ''}\0` +
      `FUNCTION_INVOKE_ID=${ctx.functionInvokeID ?? ''}\0`);
    return this.env;
  }

  logStderr(chunk) {
    if (!this.stderr) this.stderr = new Tail();
    this.stderr.push(chunk);
    writeAll(2, chunk); // hubflow logs it under the function's name
  }
}

class Exit {
  constructor(code) {
    this.code = code;
  }
}

// NUL-terminated strings (argv, the environment) as WASI hands them over:
// one block of bytes and where each string starts in it.
class Strings {
  constructor(text) {
    this.bytes = Buffer.from(text);
    this.starts = [];
    for (let i = 0; i < this.bytes.length; i = this.bytes.indexOf(0, i) + 1) {
      this.starts.push(i);
    }
  }
  sizesGet(slot, countPtr, sizePtr) {
    const view = slot.view();
    view.setUint32(countPtr, this.starts.length, true);
    view.setUint32(sizePtr, this.bytes.length, true);
    return ESUCCESS;
  }
  get(slot, ptrs, buf) {
    const view = slot.view();
    slot.bytes.set(this.bytes, buf);
    for (let i = 0; i < this.starts.length; ++i) {
      view.setUint32(ptrs + 4 * i, buf + this.starts[i], true);
    }
    return ESUCCESS;
  }
}

// ---- instances

// The image as runs of 4 KiB blocks that are all zero or not: most of a
// fresh memory is zero (stack, heap), and filling is cheaper than copying.
function zeroRuns(image) {
  const BLOCK = 4096;
  const runs = [];
  for (let from = 0; from < image.length; from += BLOCK) {
    const to = Math.min(from + BLOCK, image.length);
    const zero = image.subarray(from, to).every((b) => b === 0);
    const last = runs[runs.length - 1];
    if (last && last[2] === zero) last[1] = to;
    else runs.push([from, to, zero]);
  }
  return runs;
}

// One instantiation of the module with its own WASI context. Its imports
// are plain JS functions (V8 instantiates a module whose imports are
// node:wasi's native functions ~30x slower) that serve stdio, arguments,
// environment and exit from the current Call and pass everything else to
// node:wasi.
class Slot {
  constructor(engine) {
    this.engine = engine;
    this.call = null;
    this.wasiDirty = false;
    this.newWasi();
    const slot = this;
    const imports = {};
    for (const name of engine.prepared.imports) {
      imports[name] = function (...a) { return slot.wasi.wasiImport[name](...a); };
    }
    const own = {
      args_sizes_get: (c, s) => engine.args.sizesGet(slot, c, s),
      args_get: (p, b) => engine.args.get(slot, p, b),
      environ_sizes_get: (c, s) => slot.call.environment().sizesGet(slot, c, s),
      environ_get: (p, b) => slot.call.environment().get(slot, p, b),
      proc_exit: (code) => { throw new Exit(code); },
      fd_read: (fd, iovs, n, nread) => (fd === 0 ? slot.readStdin(iovs, n, nread)
        : slot.wasi.wasiImport.fd_read(fd, iovs, n, nread)),
      fd_write: (fd, iovs, n, nwritten) => (fd === 1 || fd === 2
        ? slot.writeStdio(fd, iovs, n, nwritten)
        : slot.wasi.wasiImport.fd_write(fd, iovs, n, nwritten)),
      fd_fdstat_get: (fd, ptr) => (fd <= 2 ? slot.stdioStat(fd, ptr)
        : slot.wasi.wasiImport.fd_fdstat_get(fd, ptr)),
      fd_seek: (fd, ...a) => (fd <= 2 ? ESPIPE : slot.wasi.wasiImport.fd_seek(fd, ...a)),
      fd_tell: (fd, ...a) => (fd <= 2 ? ESPIPE : slot.wasi.wasiImport.fd_tell(fd, ...a)),
      fd_close: (fd) => (fd <= 2 ? ESUCCESS : slot.changeFds('fd_close', fd)),
    };
    // Calls that change the WASI context's file descriptors: the next
    // invocation gets a fresh context, as a fresh instance would.
    for (const name of ['path_open', 'fd_renumber', 'sock_accept']) {
      own[name] = (...a) => slot.changeFds(name, ...a);
    }
    for (const name of Object.keys(own)) {
      if (name in imports) imports[name] = own[name];
    }
    this.instance = new WebAssembly.Instance(engine.prepared.module,
                                             { wasi_snapshot_preview1: imports });
    const exports = this.instance.exports;
    this.memory = exports.memory;
    this.bytes = new Uint8Array(0); // see view()
    this.dataView = null;
    this.wasi.initialize({ exports: { memory: this.memory } });
    if (engine.prepared.resettable) {
      this.image = new Uint8Array(this.memory.buffer).slice();
      this.imageRuns = zeroRuns(this.image);
      this.globals = engine.prepared.mutableGlobals.map((i) => exports[`__hubflow_global_${i}`]);
      this.globalValues = this.globals.map((g) => g.value);
      this.table = exports.__hubflow_table_0;
      this.tableValues = [];
      for (let i = 0; this.table && i < this.table.length; ++i) this.tableValues.push(this.table.get(i));
    }
  }

  newWasi() {
    this.wasi = new WASI({
      version: 'preview1',
      preopens: this.engine.settings.preopens,
      stdin: this.engine.nullFd,
      stdout: this.engine.nullFd,
      stderr: this.engine.nullFd,
    });
  }

  changeFds(name, ...a) {
    this.wasiDirty = true;
    return this.wasi.wasiImport[name](...a);
  }

  // The module's memory as bytes and as a DataView. Growing the memory
  // detaches the buffer they were made on (their length becomes 0); they
  // are renewed then.
  view() {
    if (this.bytes.length === 0) {
      this.bytes = new Uint8Array(this.memory.buffer);
      this.dataView = new DataView(this.memory.buffer);
    }
    return this.dataView;
  }

  // Puts memory, globals and table back as they were after instantiation;
  // false when that is not possible (memory or table grew).
  reset() {
    if (!this.engine.prepared.resettable) return false;
    this.view();
    if (this.bytes.length !== this.image.length) return false;
    if (this.table && this.table.length !== this.tableValues.length) return false;
    const bytes = this.bytes;
    for (const [from, to, zero] of this.imageRuns) {
      if (zero) bytes.fill(0, from, to);
      else bytes.set(this.image.subarray(from, to), from);
    }
    this.globals.forEach((g, i) => { g.value = this.globalValues[i]; });
    this.tableValues.forEach((v, i) => this.table.set(i, v));
    if (this.wasiDirty) {
      this.newWasi();
      this.wasi.initialize({ exports: { memory: this.memory } });
      this.wasiDirty = false;
    }
    return true;
  }

  // Whether the `count` iovecs at `iovs` lie inside the memory.
  iovecsFit(view, iovs, count) {
    for (let i = 0; i < count; ++i) {
      const base = view.getUint32(iovs + 8 * i, true);
      if (base + view.getUint32(iovs + 8 * i + 4, true) > this.bytes.length) return false;
    }
    return true;
  }

  readStdin(iovs, count, nreadPtr) {
    const call = this.call;
    const view = this.view();
    if (!this.iovecsFit(view, iovs, count)) return EFAULT;
    let n = 0;
    for (let i = 0; i < count; ++i) {
      const base = view.getUint32(iovs + 8 * i, true);
      const len = view.getUint32(iovs + 8 * i + 4, true);
      const take = Math.min(len, call.inputStop - call.inputPos);
      this.bytes.set(call.input.subarray(call.inputPos, call.inputPos + take), base);
      call.inputPos += take;
      n += take;
      if (take < len) break;
    }
    view.setUint32(nreadPtr, n, true);
    return ESUCCESS;
  }

  writeStdio(fd, iovs, count, nwrittenPtr) {
    const call = this.call;
    const reply = this.engine.reply;
    const view = this.view();
    if (!this.iovecsFit(view, iovs, count)) return EFAULT;
    let n = 0;
    for (let i = 0; i < count; ++i) {
      const base = view.getUint32(iovs + 8 * i, true);
      const len = view.getUint32(iovs + 8 * i + 4, true);
      if (fd === 2) {
        call.logStderr(Buffer.from(this.bytes.subarray(base, base + len))); // a copy
      } else {
        if (reply.outputSize() + len > this.engine.settings.maxOutput) {
          call.outputOverflow = true;
          return EFBIG;
        }
        reply.append(this.bytes, base, base + len);
      }
      n += len;
    }
    view.setUint32(nwrittenPtr, n, true);
    return ESUCCESS;
  }

  // stdio looks like pipes: not seekable, not a terminal (so the module's
  // libc buffers stdout fully).
  stdioStat(fd, ptr) {
    const view = this.view();
    view.setUint8(ptr, FILETYPE_UNKNOWN);
    view.setUint16(ptr + 2, 0, true);
    const rights = (fd === 0 ? RIGHT_FD_READ : RIGHT_FD_WRITE) | RIGHT_POLL_FD_READWRITE;
    view.setBigUint64(ptr + 8, rights, true);
    view.setBigUint64(ptr + 16, 0n, true);
    return ESUCCESS;
  }
}

class Engine {
  constructor(file, settings) {
    this.settings = settings;
    this.prepared = loadModule(file, settings);
    this.args = new Strings([path.basename(file), ...settings.args].map((a) => a + '\0').join(''));
    this.env = Object.entries(settings.env).map(([k, v]) => `${k}=${v}\0`).join('');
    this.nullFd = fs.openSync('/dev/null', 'r+');
    this.reply = new Reply();
    this.slot = null;
  }

  // Every invocation sees the module as just instantiated: after one, the
  // slot is reset (while hubflow handles the reply), or dropped for a
  // fresh instance when it cannot be.
  ready() {
    if (this.slot && !this.slot.reset()) this.slot = null;
  }

  // Runs the request whose body is [start, stop) of buf; the reply frame.
  run(buf, start, stop) {
    const call = new Call(this, buf, start, stop);
    if (!this.slot) this.slot = new Slot(this);
    const slot = this.slot;
    slot.call = call;
    this.reply.begin(call.id);
    const fail = (errorType, what) => {
      const tail = call.stderr ? call.stderr.lines() : '';
      return frame(msgpack.encode({
        id: call.id,
        ok: false,
        output: null,
        error: tail || what,
        errorType,
        traceback: tail ? what : '',
      }));
    };
    let status = 0;
    try {
      slot.instance.exports._start();
    } catch (err) {
      if (err instanceof Exit) {
        status = err.code;
      } else {
        return fail('WasmTrap', 'wasm trap: ' + (err && err.message ? err.message : String(err)));
      }
    } finally {
      slot.call = null;
    }
    if (call.outputOverflow) {
      return fail('WasmOutputTooLarge',
                  `the module wrote more than ${this.settings.maxOutput} bytes to stdout ` +
                  '(instance.message.length.max)');
    }
    if (status !== 0) return fail('WasmExit', `the module exited with status ${status}`);
    return this.reply.finish();
  }
}

function main() {
  const [file, , settingsText] = process.argv.slice(2);
  let engine;
  try {
    engine = new Engine(file, JSON.parse(settingsText));
  } catch (err) {
    writeAll(1, frame(msgpack.encode({ id: 0, ok: false, error: err.message,
                                       errorType: err.name, traceback: '' })));
    process.exitCode = 1;
    return;
  }
  writeAll(1, frame(msgpack.encode({ id: 0, ok: true, runtime: 'node:wasi ' + process.version })));

  // Requests are answered strictly in order; a module that never ends
  // blocks here until hubflow kills the process. The end of stdin (hubflow
  // closing it) means: exit.
  const frames = new FrameReader();
  while (frames.next()) {
    writeAll(1, engine.run(frames.buf, frames.bodyStart, frames.bodyStop));
    engine.ready();
  }
}

main();
