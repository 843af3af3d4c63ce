#!/usr/bin/env node
// hubflow's Node function worker.
//
// Started by hubflow as `node hubflow_worker.js <codedir> <module.function>
// <name>`, one process per function instance. It loads the handler, then
// answers one request at a time over length-prefixed msgpack frames on
// stdin/stdout (see schemas/worker-frames.md). Handlers follow Baetyl's
// contract:
//
//   exports.handler = (event, context, callback) => { ... callback(err, out) }
//   exports.handler = async (event, context) => out
//   exports.handler = (event, context) => out
//
// `event` is an object when the payload is a JSON object, else a Buffer. An
// object, array, number or boolean is published as JSON, a Buffer as it is, a
// string as UTF-8; undefined or null publishes nothing. A thrown error, a
// rejected promise or callback(err) becomes an error report.
'use strict';

const path = require('path');
const msgpack = require('./msgpack_lite');

// Frames own stdout. Whatever a handler prints (console.log writes to
// process.stdout) goes to stderr, which hubflow logs.
const frameOut = process.stdout;
const writeFrameBytes = frameOut.write.bind(frameOut);
process.stdout.write = process.stderr.write.bind(process.stderr);

function writeFrame(fields) {
  const body = msgpack.encode(fields);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  writeFrameBytes(Buffer.concat([header, body]));
}

// The stack up to the first frame of this worker: what follows is the
// worker's own machinery, not the handler's.
function handlerStack(stack) {
  const lines = stack.split('\n');
  const mine = lines.findIndex((line) => line.includes(__filename));
  return (mine < 0 ? lines : lines.slice(0, mine)).join('\n');
}

function errorFields(id, err) {
  const isError = err instanceof Error;
  return {
    id,
    ok: false,
    output: null,
    error: isError ? err.message : String(err),
    errorType: isError ? (err.name || err.constructor.name) : typeof err,
    traceback: isError && typeof err.stack === 'string' ? handlerStack(err.stack) : '',
  };
}

function loadHandler(codedir, spec) {
  const dot = spec.lastIndexOf('.');
  const moduleName = spec.slice(0, dot);
  const functionName = spec.slice(dot + 1);
  const mod = require(path.resolve(codedir, moduleName));
  const handler = mod[functionName];
  if (typeof handler !== 'function') {
    throw new TypeError(`module '${moduleName}' exports no function '${functionName}'`);
  }
  return handler;
}

function toEvent(request) {
  const payload = Buffer.from(request.event);
  if (request.json) {
    try {
      return JSON.parse(payload.toString('utf8'));
    } catch (e) {
      // hubflow said JSON; if V8 disagrees, hand over the bytes.
    }
  }
  return payload;
}

function toOutput(result) {
  if (result === undefined || result === null) return null;
  if (Buffer.isBuffer(result)) return result;
  if (result instanceof Uint8Array) return Buffer.from(result);
  if (typeof result === 'string') return Buffer.from(result, 'utf8');
  return Buffer.from(JSON.stringify(result), 'utf8');
}

// Settles with the handler's outcome however it reports it: the callback,
// a returned promise, or (for handlers without a callback parameter) the
// returned value. Whatever comes first wins.
function callHandler(handler, event, context) {
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (err, value) => {
      if (settled) return;
      settled = true;
      if (err !== undefined && err !== null) reject(err);
      else resolve(value);
    };
    let returned;
    try {
      returned = handler(event, context, settle);
    } catch (err) {
      settle(err === undefined || err === null ? new Error(String(err)) : err);
      return;
    }
    if (returned && typeof returned.then === 'function') {
      returned.then((value) => settle(null, value),
                    (err) => settle(err === undefined || err === null
                      ? new Error('promise rejected with ' + err) : err));
    } else if (handler.length < 3) {
      settle(null, returned);
    }
  });
}

async function serve(handler, request) {
  try {
    const result = await callHandler(handler, toEvent(request),
                                     Object.assign({}, request.context));
    return { id: request.id, ok: true, output: toOutput(result) };
  } catch (err) {
    return errorFields(request.id, err);
  }
}

function main() {
  const [codedir, spec] = process.argv.slice(2);
  let handler;
  try {
    handler = loadHandler(codedir, spec);
  } catch (err) {
    writeFrame(errorFields(0, err));
    process.exitCode = 1;
    return;
  }
  writeFrame({ id: 0, ok: true, runtime: 'node ' + process.version });

  // Requests are answered strictly in order, one at a time.
  let pending = Buffer.alloc(0);
  let queue = Promise.resolve();
  process.stdin.on('data', (chunk) => {
    pending = pending.length ? Buffer.concat([pending, chunk]) : chunk;
    while (pending.length >= 4) {
      const size = pending.readUInt32BE(0);
      if (pending.length < 4 + size) break;
      const request = msgpack.decode(pending.subarray(4, 4 + size));
      pending = pending.subarray(4 + size);
      queue = queue.then(() => serve(handler, request)).then(writeFrame);
    }
  });
  // hubflow closing stdin means: exit once the current request is answered.
  process.stdin.on('end', () => {
    queue.then(() => process.exit(0));
  });
}

main();
