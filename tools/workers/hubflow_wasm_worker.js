#!/usr/bin/env node
// hubflow's WebAssembly function worker (`runtime: wasm`).
//
// Started by hubflow as `node hubflow_wasm_worker.js <module.wasm> <name>
// <settings JSON>`, one process per function instance, so that a crash of
// the engine ends this process and never the broker. It compiles the WASI
// preview 1 command module once, then answers one framed request at a time
// (schemas/worker-frames.md) by instantiating the module afresh and running
// its `_start`:
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

// stdin through one buffer: a request's header and body usually arrive in
// one read.
const input = { buffer: Buffer.allocUnsafe(64 * 1024), start: 0, end: 0 };

// Exactly `size` bytes from stdin, or null at its end.
function readExactly(size) {
  const buffered = input.end - input.start;
  if (buffered >= size) {
    const bytes = input.buffer.subarray(input.start, input.start + size);
    input.start += size;
    return bytes;
  }
  // Not all there: what is buffered, then reads straight into the result
  // (a large body) or refills of the buffer (a small one).
  const bytes = Buffer.allocUnsafe(size);
  input.buffer.copy(bytes, 0, input.start, input.end);
  input.start = input.end = 0;
  let done = buffered;
  while (done < size) {
    if (size - done >= input.buffer.length) {
      const n = retrying(() => fs.readSync(0, bytes, done, size - done, null));
      if (n === 0) return null;
      done += n;
      continue;
    }
    const n = retrying(() => fs.readSync(0, input.buffer, 0, input.buffer.length, null));
    if (n === 0) return null;
    const take = Math.min(n, size - done);
    input.buffer.copy(bytes, done, 0, take);
    done += take;
    input.start = take;
    input.end = n;
  }
  return bytes;
}

function writeFrame(fields) {
  const body = msgpack.encode(fields);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  writeAll(1, Buffer.concat([header, body]));
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

// Rewrites the module so that an instance can be reset to the state it
// had right after instantiation:
//   - every memory it defines is capped at `maxPages` (the engine then
//     refuses to grow it further: memory.grow returns -1, malloc NULL);
//   - its mutable globals and its table are exported under hubflow's own
//     names, so that their values can be saved and put back.
// `resettable` is false for modules whose state this cannot capture: a
// start function, passive or declarative segments (data.drop/elem.drop
// cannot be undone), SIMD globals; those are instantiated afresh for every
// invocation instead.
function prepare(bytes, maxPages) {
  const parts = [bytes.subarray(0, 8)];
  const mutableGlobals = [];
  let definedTables = 0;
  let resettable = true;
  let pos = 8;
  while (pos < bytes.length) {
    const head = new Reader(bytes, pos, bytes.length);
    const id = head.byte();
    const size = head.leb();
    const start = head.pos;
    const end = start + size;
    if (end > bytes.length) throw new Error('truncated section ' + id);
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
      if (definedTables > 0) extra.push(Buffer.from('__hubflow_table_0'), 1, 0);
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
    pos = end;
  }
  return { bytes: Buffer.concat(parts), mutableGlobals, hasTable: definedTables > 0, resettable };
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

// What the module's stdio, arguments and environment are during one
// invocation.
class Call {
  constructor(engine, request) {
    const ctx = request.context || {};
    this.env = new Strings(engine.env +
      `MESSAGE_TOPIC=${ctx.messageTopic ?? ''}\0` +
      `MESSAGE_QOS=${ctx.messageQOS ?? 0}\0` +
      `MESSAGE_TIMESTAMP=${ctx.messageTimestamp ?? 0}\0` +
      `FUNCTION_NAME=${ctx.functionName ?? ''}\0` +
      `FUNCTION_INVOKE_ID=${ctx.functionInvokeID ?? ''}\0`);
    this.input = Buffer.from(request.event || []);
    this.inputPos = 0;
    this.output = [];
    this.outputSize = 0;
    this.outputOverflow = false;
    this.stderr = new Tail();
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
  sizesGet(memory, countPtr, sizePtr) {
    const view = new DataView(memory.buffer);
    view.setUint32(countPtr, this.starts.length, true);
    view.setUint32(sizePtr, this.bytes.length, true);
    return ESUCCESS;
  }
  get(memory, ptrs, buf) {
    const view = new DataView(memory.buffer);
    new Uint8Array(memory.buffer).set(this.bytes, buf);
    for (let i = 0; i < this.starts.length; ++i) {
      view.setUint32(ptrs + 4 * i, buf + this.starts[i], true);
    }
    return ESUCCESS;
  }
}

// Reads an iovec array out of the module's memory.
function iovecs(memory, ptr, count) {
  const view = new DataView(memory.buffer);
  const result = [];
  for (let i = 0; i < count; ++i) {
    const base = view.getUint32(ptr + 8 * i, true);
    const len = view.getUint32(ptr + 8 * i + 4, true);
    if (base + len > memory.buffer.byteLength) return null;
    result.push([base, len]);
  }
  return result;
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
      args_sizes_get: (c, s) => engine.args.sizesGet(slot.memory, c, s),
      args_get: (p, b) => engine.args.get(slot.memory, p, b),
      environ_sizes_get: (c, s) => slot.call.env.sizesGet(slot.memory, c, s),
      environ_get: (p, b) => slot.call.env.get(slot.memory, p, b),
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

  // Puts memory, globals and table back as they were after instantiation;
  // false when that is not possible (memory or table grew).
  reset() {
    if (!this.engine.prepared.resettable) return false;
    if (this.memory.buffer.byteLength !== this.image.length) return false;
    if (this.table && this.table.length !== this.tableValues.length) return false;
    const bytes = new Uint8Array(this.memory.buffer);
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

  readStdin(iovs, count, nreadPtr) {
    const call = this.call;
    const list = iovecs(this.memory, iovs, count);
    if (!list) return EFAULT;
    const bytes = new Uint8Array(this.memory.buffer);
    let n = 0;
    for (const [ptr, len] of list) {
      const take = Math.min(len, call.input.length - call.inputPos);
      bytes.set(call.input.subarray(call.inputPos, call.inputPos + take), ptr);
      call.inputPos += take;
      n += take;
      if (take < len) break;
    }
    new DataView(this.memory.buffer).setUint32(nreadPtr, n, true);
    return ESUCCESS;
  }

  writeStdio(fd, iovs, count, nwrittenPtr) {
    const call = this.call;
    const list = iovecs(this.memory, iovs, count);
    if (!list) return EFAULT;
    const bytes = new Uint8Array(this.memory.buffer);
    let n = 0;
    for (const [ptr, len] of list) {
      const chunk = Buffer.from(bytes.subarray(ptr, ptr + len)); // a copy
      if (fd === 2) {
        call.stderr.push(chunk);
        writeAll(2, chunk); // hubflow logs it under the function's name
      } else {
        if (call.outputSize + len > this.engine.settings.maxOutput) {
          call.outputOverflow = true;
          return EFBIG;
        }
        call.output.push(chunk);
        call.outputSize += len;
      }
      n += len;
    }
    new DataView(this.memory.buffer).setUint32(nwrittenPtr, n, true);
    return ESUCCESS;
  }

  // stdio looks like pipes: not seekable, not a terminal (so the module's
  // libc buffers stdout fully).
  stdioStat(fd, ptr) {
    const view = new DataView(this.memory.buffer);
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
    this.slot = null;
    this.used = false;
  }

  run(request) {
    // Every invocation sees the module as just instantiated: a used slot
    // is reset, or replaced when it cannot be.
    if (!this.slot || (this.used && !this.slot.reset())) this.slot = new Slot(this);
    const slot = this.slot;
    const call = new Call(this, request);
    slot.call = call;
    this.used = true;
    const fail = (errorType, what) => {
      const tail = call.stderr.lines();
      return {
        id: request.id,
        ok: false,
        output: null,
        error: tail || what,
        errorType,
        traceback: tail ? what : '',
      };
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
    return {
      id: request.id,
      ok: true,
      output: call.outputSize ? Buffer.concat(call.output, call.outputSize) : null,
    };
  }
}

function main() {
  const [file, , settingsText] = process.argv.slice(2);
  let engine;
  try {
    engine = new Engine(file, JSON.parse(settingsText));
  } catch (err) {
    writeFrame({ id: 0, ok: false, error: err.message, errorType: err.name, traceback: '' });
    process.exitCode = 1;
    return;
  }
  writeFrame({ id: 0, ok: true, runtime: 'node:wasi ' + process.version });

  // Requests are answered strictly in order; a module that never ends
  // blocks here until hubflow kills the process. The end of stdin (hubflow
  // closing it) means: exit.
  for (;;) {
    const header = readExactly(4);
    const body = header && readExactly(header.readUInt32BE(0));
    if (!body) break;
    writeFrame(engine.run(msgpack.decode(body)));
  }
}

main();
