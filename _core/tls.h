/* The TLS byte path in C (tls.c).
 *
 * aioloop's TLS protocol (aioloop/_tls.py) is asyncio's SSLProtocol state
 * machine -- handshake, shutdown, timeouts, flow control, errors -- with the
 * steady state (state WRAPPED) taken over here:
 *
 *   read:  the transport hands the ciphertext it read straight to
 *          aio_tls_feed() (no get_buffer()/buffer_updated() round trip);
 *          SSL_read() takes it from the transport's buffer (through a BIO
 *          of ours in front of the incoming MemoryBIO) and drains every
 *          whole record into one bytes object (or the BufferedProtocol's
 *          buffer) for the application.
 *   write: the application transport's write()/writelines() are C methods:
 *          SSL_write() of the data (small writelines() pieces coalesced into
 *          one record) straight into one bytes object, written to the TCP
 *          transport.
 *
 * OpenSSL is driven through the very SSL object Python's ssl module made
 * for the connection (the SSLObject from SSLContext.wrap_bio), so every
 * setting of the user's SSLContext, its callbacks and
 * get_extra_info('ssl_object') stay asyncio's; the functions come from the
 * libssl that Python's _ssl module loaded (dlsym), never a second copy.
 * Anything unusual -- an SSL error, a paused side, a non-empty backlog, a
 * state other than WRAPPED -- goes back to asyncio's Python code, which
 * replays it and raises asyncio's exceptions. */
#ifndef AIO_TLS_H
#define AIO_TLS_H

#include "transport.h"

/* Module setup: the TLSPump type and _core._tls_setup(). */
int aio_tls_add_types(PyObject *m, aio_state *st);
int aio_tls_traverse(aio_state *st, visitproc visit, void *arg);
void aio_tls_clear(aio_state *st);
extern PyMethodDef aio_tls_methods[];

/* Is protocol aioloop's TLS protocol (its exact class)? */
int aio_tls_is_protocol(aio_state *st, PyObject *protocol);

/* The connection's pump (a new reference) when the fast read path applies
 * now, else NULL with no exception set: the caller takes the generic
 * get_buffer()/buffer_updated() path. */
PyObject *aio_tls_fast_pump(TransportObject *t);

/* The pump's scratch buffer for a direct recv() (NULL when it cannot be
 * made: the caller takes the generic path). */
char *aio_tls_scratch(PyObject *pump, size_t *len);

/* Ciphertext read from the socket into the TLS layer, as a completed
 * buffer_updated() would be.  0, or -1 with an exception set as a
 * buffer_updated() that raised. */
int aio_tls_feed(TransportObject *t, PyObject *pump, const char *data, size_t n);

#endif
