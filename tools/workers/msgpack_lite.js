// A small, complete-enough MessagePack codec for hubflow's worker frames.
//
// Why not the npm package: the worker must run with nothing but node and
// the files in this directory (no npm install step, no network at setup),
// and frames only use nil, booleans, integers, floats, strings, binaries,
// arrays and maps — a few dozen lines each way. Extension types are refused.
'use strict';

// -- encoding ------------------------------------------------------------------

class Writer {
  constructor() {
    this.buf = Buffer.allocUnsafe(256);
    this.len = 0;
  }
  reserve(n) {
    if (this.len + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.len + n) size *= 2;
    const bigger = Buffer.allocUnsafe(size);
    this.buf.copy(bigger, 0, 0, this.len);
    this.buf = bigger;
  }
  byte(b) {
    this.reserve(1);
    this.buf[this.len++] = b;
  }
  bytes(src) {
    this.reserve(src.length);
    src.copy ? src.copy(this.buf, this.len) : this.buf.set(src, this.len);
    this.len += src.length;
  }
  u16(v) { this.reserve(2); this.buf.writeUInt16BE(v, this.len); this.len += 2; }
  u32(v) { this.reserve(4); this.buf.writeUInt32BE(v, this.len); this.len += 4; }
  result() { return this.buf.subarray(0, this.len); }
}

function header(w, size, fix, fixMax, c8, c16, c32) {
  if (fix !== null && size <= fixMax) w.byte(fix | size);
  else if (c8 !== null && size < 0x100) { w.byte(c8); w.byte(size); }
  else if (size < 0x10000) { w.byte(c16); w.u16(size); }
  else { w.byte(c32); w.u32(size); }
}

function encodeInteger(w, v) {
  if (v >= 0) {
    if (v < 0x80) w.byte(v);
    else if (v < 0x100) { w.byte(0xcc); w.byte(v); }
    else if (v < 0x10000) { w.byte(0xcd); w.u16(v); }
    else if (v < 0x100000000) { w.byte(0xce); w.u32(v); }
    else { w.byte(0xcf); w.reserve(8); w.buf.writeBigUInt64BE(BigInt(v), w.len); w.len += 8; }
  } else {
    if (v >= -32) w.byte(v & 0xff);
    else if (v >= -0x80) { w.byte(0xd0); w.reserve(1); w.buf.writeInt8(v, w.len); w.len += 1; }
    else if (v >= -0x8000) { w.byte(0xd1); w.reserve(2); w.buf.writeInt16BE(v, w.len); w.len += 2; }
    else if (v >= -0x80000000) { w.byte(0xd2); w.reserve(4); w.buf.writeInt32BE(v, w.len); w.len += 4; }
    else { w.byte(0xd3); w.reserve(8); w.buf.writeBigInt64BE(BigInt(v), w.len); w.len += 8; }
  }
}

function encodeValue(w, v) {
  if (v === null || v === undefined) w.byte(0xc0);
  else if (v === false) w.byte(0xc2);
  else if (v === true) w.byte(0xc3);
  else if (typeof v === 'number') {
    if (Number.isSafeInteger(v)) encodeInteger(w, v);
    else { w.byte(0xcb); w.reserve(8); w.buf.writeDoubleBE(v, w.len); w.len += 8; }
  } else if (typeof v === 'bigint') {
    encodeInteger(w, v); // only reached for values that fit 64 bits
  } else if (typeof v === 'string') {
    const bytes = Buffer.from(v, 'utf8');
    header(w, bytes.length, 0xa0, 31, 0xd9, 0xda, 0xdb);
    w.bytes(bytes);
  } else if (v instanceof Uint8Array) {
    header(w, v.length, null, 0, 0xc4, 0xc5, 0xc6);
    w.bytes(v);
  } else if (Array.isArray(v)) {
    header(w, v.length, 0x90, 15, null, 0xdc, 0xdd);
    for (const item of v) encodeValue(w, item);
  } else if (typeof v === 'object') {
    const keys = Object.keys(v);
    header(w, keys.length, 0x80, 15, null, 0xde, 0xdf);
    for (const k of keys) {
      encodeValue(w, k);
      encodeValue(w, v[k]);
    }
  } else {
    throw new TypeError('msgpack: cannot encode a ' + typeof v);
  }
}

function encode(value) {
  const w = new Writer();
  encodeValue(w, value);
  return Buffer.from(w.result());
}

// -- decoding ------------------------------------------------------------------

// What Cursor.next() found.
const NIL = 0;
const BOOL = 1;
const NUMBER = 2; // value: the number (a BigInt beyond 2^53)
const STR = 3; // [start, stop): its bytes in the buffer
const BIN = 4; // [start, stop): its bytes in the buffer
const ARRAY = 5; // value: the number of items that follow
const MAP = 6; // value: the number of key/value pairs that follow

function truncated() {
  throw new RangeError('msgpack: truncated input');
}

function bigToNumber(v) {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(v) : v;
}

// Reads elements one at a time, in place: strings and binaries stay ranges
// of the buffer, so that a reader wanting only some fields (the wasm
// worker's requests) decodes and copies nothing else. decode() is built on
// it.
class Cursor {
  constructor(buf, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
    this.value = null;
    this.start = 0;
    this.stop = 0;
  }
  // An unsigned big-endian integer of n bytes (n <= 4).
  uint(n) {
    if (this.pos + n > this.end) truncated();
    let v = 0;
    for (let i = 0; i < n; ++i) v = v * 256 + this.buf[this.pos++];
    return v;
  }
  fixed(method, n) {
    if (this.pos + n > this.end) truncated();
    const v = this.buf[method](this.pos);
    this.pos += n;
    return v;
  }
  bytes(kind, n) {
    if (this.pos + n > this.end) truncated();
    this.start = this.pos;
    this.stop = this.pos += n;
    return kind;
  }
  number(v) {
    this.value = v;
    return NUMBER;
  }
  // Reads the head of the next element and says what it is (NIL ... MAP).
  next() {
    const b = this.uint(1);
    if (b < 0x80) return this.number(b);
    if (b >= 0xe0) return this.number(b - 0x100);
    if ((b & 0xf0) === 0x80) { this.value = b & 0x0f; return MAP; }
    if ((b & 0xf0) === 0x90) { this.value = b & 0x0f; return ARRAY; }
    if ((b & 0xe0) === 0xa0) return this.bytes(STR, b & 0x1f);
    switch (b) {
      case 0xc0: return NIL;
      case 0xc2: this.value = false; return BOOL;
      case 0xc3: this.value = true; return BOOL;
      case 0xc4: return this.bytes(BIN, this.uint(1));
      case 0xc5: return this.bytes(BIN, this.uint(2));
      case 0xc6: return this.bytes(BIN, this.uint(4));
      case 0xca: return this.number(this.fixed('readFloatBE', 4));
      case 0xcb: return this.number(this.fixed('readDoubleBE', 8));
      case 0xcc: return this.number(this.uint(1));
      case 0xcd: return this.number(this.uint(2));
      case 0xce: return this.number(this.uint(4));
      case 0xcf: return this.number(bigToNumber(this.fixed('readBigUInt64BE', 8)));
      case 0xd0: return this.number(this.fixed('readInt8', 1));
      case 0xd1: return this.number(this.fixed('readInt16BE', 2));
      case 0xd2: return this.number(this.fixed('readInt32BE', 4));
      case 0xd3: return this.number(bigToNumber(this.fixed('readBigInt64BE', 8)));
      case 0xd9: return this.bytes(STR, this.uint(1));
      case 0xda: return this.bytes(STR, this.uint(2));
      case 0xdb: return this.bytes(STR, this.uint(4));
      case 0xdc: this.value = this.uint(2); return ARRAY;
      case 0xdd: this.value = this.uint(4); return ARRAY;
      case 0xde: this.value = this.uint(2); return MAP;
      case 0xdf: this.value = this.uint(4); return MAP;
      default:
        throw new TypeError('msgpack: unsupported type byte 0x' + b.toString(16));
    }
  }
  // Whether the string or binary just read holds exactly `ascii`.
  is(ascii) {
    if (this.stop - this.start !== ascii.length) return false;
    for (let i = 0; i < ascii.length; ++i) {
      if (this.buf[this.start + i] !== ascii.charCodeAt(i)) return false;
    }
    return true;
  }
  text() {
    return this.buf.toString('utf8', this.start, this.stop);
  }
  // Passes over what the element just read holds: an array's items, a
  // map's keys and values.
  skipContents(kind) {
    let pending = kind === ARRAY ? this.value : kind === MAP ? 2 * this.value : 0;
    for (; pending > 0; --pending) {
      const inner = this.next();
      if (inner === ARRAY) pending += this.value;
      else if (inner === MAP) pending += 2 * this.value;
    }
  }
  // Passes over the next element.
  skip() {
    this.skipContents(this.next());
  }
}

function decodeValue(c) {
  switch (c.next()) {
    case NIL: return null;
    case STR: return c.text();
    case BIN: return Buffer.from(c.buf.subarray(c.start, c.stop));
    case ARRAY: {
      const out = new Array(c.value);
      for (let i = 0; i < out.length; i++) out[i] = decodeValue(c);
      return out;
    }
    case MAP: {
      const out = {};
      for (let n = c.value; n > 0; n--) {
        const key = decodeValue(c);
        out[String(key)] = decodeValue(c);
      }
      return out;
    }
    default: return c.value; // BOOL, NUMBER
  }
}

function decode(buf) {
  const c = new Cursor(buf);
  const value = decodeValue(c);
  if (c.pos !== buf.length) throw new RangeError('msgpack: trailing bytes');
  return value;
}

module.exports = { encode, decode, Cursor, Writer, encodeValue, STR, BIN, MAP, NUMBER };
