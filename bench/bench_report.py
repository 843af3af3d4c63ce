"""What the bench scripts' result tables share (their report step runs
with bench/ on the import path: lib.sh's render_report)."""


def median(values):
    """The median of the values that are not None (the upper one of two),
    or None when there are none."""
    values = sorted(v for v in values if v is not None)
    return values[len(values) // 2] if values else None


def fmt(v, spec):
    """`v` formatted with `spec`, or n/a when it is missing."""
    return format(v, spec) if v is not None else "n/a"


def ratio(a, b):
    """a/b as a table cell (1.23x), or n/a when either is missing."""
    return "%.2fx" % (a / b) if a is not None and b else "n/a"


def exit_if_failed(rows):
    """Says how many runs failed (their cells are n/a) and exits 1, if any."""
    failed = sum(1 for r in rows if r.get("error"))
    if failed:
        print("%d runs failed (n/a above); see the messages before the table." % failed)
        raise SystemExit(1)
