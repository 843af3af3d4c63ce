// What a CAF broker leaves behind when it stops, and the one call that
// cleans it up.
//
// CAF 0.17.6's abstract_broker::cleanup goes straight to
// local_actor::cleanup and skips scheduled_actor::cleanup, so a broker that
// stopped (for any reason: quit, an exit message, exit_reason::kill) never
// closes its mailbox. Whatever is sent to it afterwards is queued there for
// good: a request gets no answer (a requester waiting with caf::infinite
// waits for ever), and a message the broker sent itself (a pending
// delayed_send timer) holds a strong reference to the broker from inside
// its own mailbox, a cycle that keeps the broker and everything its queued
// messages reference (their senders, the requests' response handlers)
// allocated until the process ends (LeakSanitizer reported the hub's, the
// HTTP API's and the stats port's, each with its pending timer).
#pragma once

#include <caf/fwd.hpp>

namespace hubflow {

/// Makes `self` (a broker, at the start of its behavior) close its mailbox
/// when it stops, as every other CAF actor does: queued and later messages
/// are dropped and requests among them answered with
/// sec::request_receiver_down.
void close_mailbox_on_exit(caf::scheduled_actor* self);

} // namespace hubflow
