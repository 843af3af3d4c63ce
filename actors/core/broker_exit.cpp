#include "core/broker_exit.hpp"

#include <caf/detail/sync_request_bouncer.hpp>
#include <caf/scheduled_actor.hpp>

namespace hubflow {

void close_mailbox_on_exit(caf::scheduled_actor* self) {
  // Attachables run inside the broker's cleanup, in its own thread (the
  // mailbox's reader), with the reason it stopped. What follows is what
  // scheduled_actor::cleanup does for every other actor.
  self->attach_functor([self](const caf::error& reason) {
    auto& mailbox = self->mailbox();
    if (mailbox.closed())
      return;
    mailbox.close();
    self->get_normal_queue().flush_cache();
    self->get_urgent_queue().flush_cache();
    caf::detail::sync_request_bouncer bounce{reason};
    while (mailbox.queue().new_round(1000, bounce).consumed_items)
      ; // drops each message, answers each request
  });
}

} // namespace hubflow
