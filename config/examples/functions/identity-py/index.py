"""Publishes the event unchanged (JSON objects are re-serialized): the
smallest Python function, for measuring what the runtime itself costs."""


def handler(event, context):
    return event
