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

class Reader {
  constructor(buf) {
    this.buf = buf;
    this.pos = 0;
  }
  need(n) {
    if (this.pos + n > this.buf.length) throw new RangeError('msgpack: truncated input');
  }
  take(n) {
    this.need(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }
  read(method, size) {
    this.need(size);
    const v = this.buf[method](this.pos);
    this.pos += size;
    return v;
  }
}

function bigToNumber(v) {
  return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(v) : v;
}

function decodeValue(r) {
  const b = r.read('readUInt8', 1);
  if (b < 0x80) return b;
  if (b >= 0xe0) return b - 0x100;
  if ((b & 0xf0) === 0x80) return decodeMap(r, b & 0x0f);
  if ((b & 0xf0) === 0x90) return decodeArray(r, b & 0x0f);
  if ((b & 0xe0) === 0xa0) return r.take(b & 0x1f).toString('utf8');
  switch (b) {
    case 0xc0: return null;
    case 0xc2: return false;
    case 0xc3: return true;
    case 0xc4: return Buffer.from(r.take(r.read('readUInt8', 1)));
    case 0xc5: return Buffer.from(r.take(r.read('readUInt16BE', 2)));
    case 0xc6: return Buffer.from(r.take(r.read('readUInt32BE', 4)));
    case 0xca: return r.read('readFloatBE', 4);
    case 0xcb: return r.read('readDoubleBE', 8);
    case 0xcc: return r.read('readUInt8', 1);
    case 0xcd: return r.read('readUInt16BE', 2);
    case 0xce: return r.read('readUInt32BE', 4);
    case 0xcf: return bigToNumber(r.read('readBigUInt64BE', 8));
    case 0xd0: return r.read('readInt8', 1);
    case 0xd1: return r.read('readInt16BE', 2);
    case 0xd2: return r.read('readInt32BE', 4);
    case 0xd3: return bigToNumber(r.read('readBigInt64BE', 8));
    case 0xd9: return r.take(r.read('readUInt8', 1)).toString('utf8');
    case 0xda: return r.take(r.read('readUInt16BE', 2)).toString('utf8');
    case 0xdb: return r.take(r.read('readUInt32BE', 4)).toString('utf8');
    case 0xdc: return decodeArray(r, r.read('readUInt16BE', 2));
    case 0xdd: return decodeArray(r, r.read('readUInt32BE', 4));
    case 0xde: return decodeMap(r, r.read('readUInt16BE', 2));
    case 0xdf: return decodeMap(r, r.read('readUInt32BE', 4));
    default:
      throw new TypeError('msgpack: unsupported type byte 0x' + b.toString(16));
  }
}

function decodeArray(r, n) {
  const out = new Array(n);
  for (let i = 0; i < n; i++) out[i] = decodeValue(r);
  return out;
}

function decodeMap(r, n) {
  const out = {};
  for (let i = 0; i < n; i++) {
    const key = decodeValue(r);
    out[String(key)] = decodeValue(r);
  }
  return out;
}

function decode(buf) {
  const r = new Reader(buf);
  const value = decodeValue(r);
  if (r.pos !== buf.length) throw new RangeError('msgpack: trailing bytes');
  return value;
}

module.exports = { encode, decode };
