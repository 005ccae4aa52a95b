// How many NBD requests this process has started and not yet answered, over every server and
// connection. The servers count (RequestBudget); the inline-I/O gate reads it: a costly call is
// sent to the thread pool so that the event loop can serve other requests meanwhile, and when
// there are none (one request in flight: QD1) the pool's two wake-ups buy nothing. Process-wide on
// purpose: the event loop and the thread pool are the process's, not a connection's.
//
// Requests from clients over a Unix socket are also counted apart: such a client can send only
// as far ahead as its socket buffer (about 208 KiB here, net.core.wmem_default), so it waits while
// the loop is busy, where a TCP client's window lets it send megabytes ahead (util/inline-io.ts).
export const workInFlight = { requests: 0, overUnixSockets: 0 };
