// hubflow's sayhi in Node, written to Baetyl's handler contract
// (`exports.handler = (event, context, callback)`).
//
// The event is an object when the message is a JSON object and a Buffer
// otherwise; the context carries the message's qos, topic and timestamp and
// the function's name and invocation id. The object passed to the callback
// is published as JSON; an error passed to it becomes an error report.
'use strict';

const CONTEXT_FIELDS = ['messageQOS', 'messageTopic', 'messageTimestamp',
  'functionName', 'functionInvokeID'];

exports.handler = (event, context, callback) => {
  let reply;
  if (Buffer.isBuffer(event)) {
    reply = { bytes: event.toString('utf8') };
  } else if ('err' in event) {
    return callback(new TypeError(event.err));
  } else {
    reply = Object.assign({}, event);
  }
  for (const field of CONTEXT_FIELDS) {
    if (context[field] !== undefined) reply[field] = context[field];
  }
  reply.Say = 'Hello hubflow';
  return callback(null, reply);
};
