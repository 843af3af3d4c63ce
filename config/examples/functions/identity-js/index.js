// Publishes the event unchanged (JSON objects are re-serialized): the
// smallest Node function, for measuring what the runtime itself costs.
'use strict';

exports.handler = (event, context, callback) => callback(null, event);
