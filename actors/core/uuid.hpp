// Random identifiers: Baetyl's functionInvokeID, CloudEvents ids.
#pragma once

#include <string>

namespace hubflow {

/// A random UUID (version 4) in its canonical text form. Thread-safe (one
/// generator per thread).
std::string make_uuid();

} // namespace hubflow
