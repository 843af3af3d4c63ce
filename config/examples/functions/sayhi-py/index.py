"""hubflow's sayhi in Python, written to Baetyl's handler contract.

The event is a dict when the message is a JSON object and bytes otherwise;
the context carries the message's qos, topic and timestamp and the function's
name and invocation id. Whatever dict this returns is published as JSON.
"""

CONTEXT_FIELDS = ("messageQOS", "messageTopic", "messageTimestamp",
                  "functionName", "functionInvokeID")


def handler(event, context):
    if isinstance(event, dict):
        if "err" in event:
            # An exception becomes an error report on the rule's error topic.
            raise TypeError(event["err"])
        reply = dict(event)
    else:
        reply = {"bytes": event.decode("utf-8", errors="replace")}
    for field in CONTEXT_FIELDS:
        if field in context:
            reply[field] = context[field]
    reply["Say"] = "Hello hubflow"
    return reply
