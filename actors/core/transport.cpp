#include "core/transport.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

namespace hubflow {

caf_transport::caf_transport(caf::io::broker* self,
                             caf::io::connection_handle hdl)
  : self_(self), hdl_(hdl), fd_(static_cast<int>(hdl.id())) {
  // Small MQTT packets must not wait for Nagle's algorithm.
  int one = 1;
  ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  peer_ = self_->remote_addr(hdl_);
  // at_most(N) zeroes N bytes after every read: keep N small.
  self_->configure_read(hdl_, caf::io::receive_policy::at_most(4096));
  // Tells us when CAF's buffer drained, so ::send() may take over again.
  self_->ack_writes(hdl_, true);
}

void caf_transport::send(const char* data, std::size_t size) {
  if (closed_ || half_closed_ || size == 0)
    return; // CAF may have closed the descriptor (and the OS reused it)
  std::size_t sent = 0;
  if (caf_pending_ == 0) {
    // Straight to the socket: cheaper than CAF's flush (no epoll_ctl, no
    // extra loop pass). Only while CAF holds nothing, to keep the order.
    auto n = ::send(fd_, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0)
      sent = static_cast<std::size_t>(n);
    // On EAGAIN or an error CAF takes everything; it reports a broken
    // connection itself.
  }
  if (sent < size) {
    auto& buf = self_->wr_buf(hdl_);
    buf.insert(buf.end(), data + sent, data + size);
    caf_pending_ += size - sent;
    self_->flush(hdl_);
  }
}

void caf_transport::written(std::uint64_t bytes) {
  caf_pending_ = caf_pending_ > bytes ? caf_pending_ - bytes : 0;
  if (fin_pending_ && caf_pending_ == 0) {
    fin_pending_ = false;
    ::shutdown(fd_, SHUT_WR);
  }
}

void caf_transport::shutdown_write() {
  if (closed_ || half_closed_)
    return;
  half_closed_ = true; // nothing is sent after the FIN
  if (caf_pending_ == 0)
    ::shutdown(fd_, SHUT_WR);
  else
    fin_pending_ = true;
}

void caf_transport::close() {
  if (closed_)
    return;
  self_->close(hdl_); // CAF writes what it holds, then closes
  closed_ = true;
}

} // namespace hubflow
