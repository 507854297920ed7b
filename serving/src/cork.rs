//! The writes of an HTTP/2 connection, gathered into one system call per turn of the connection.
//!
//! h2 flushes its write buffer whenever it cannot append the next frame to it: a DATA payload
//! over 256 bytes is handed to the socket as a slice of its own, and the frame after it (a gRPC
//! call's trailers) waits for a flush of its own. Every answered call would then cost two writes,
//! each a TCP segment that wakes the client. [`Corked`] copies what h2 writes into a buffer and
//! takes `poll_flush` as a request only; the connection's driver sends the buffer once hyper's
//! connection has done all it can for now ([`Cork::poll_send`], called after the connection
//! future returned `Pending`), so the frames of every call answered in one turn leave in one
//! write. While other connections have calls in flight, the driver first yields once to the
//! tasks waiting to run, which include this connection's other calls (hyper runs each in a task
//! of its own): calls that finish in that round leave in the same write, one wake-up of the
//! client for all of them. A connection alone on the server sends at once: its client waits for
//! those answers before it sends more, and holding them back would leave both sides idle.
//! Shutting the stream down sends what is buffered first.
//!
//! The buffer holds at most [`BUFFER_LIMIT`] bytes: past it a write waits until the buffer is
//! sent (the socket's own back-pressure), and a single write larger than the limit goes straight
//! to the socket.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most bytes kept before a write has to wait for them to be sent.
pub const BUFFER_LIMIT: usize = 256 * 1024;

/// The stream side, given to hyper: reads pass through, writes are buffered.
pub struct Corked<S> {
    shared: Arc<Mutex<Inner<S>>>,
}

/// The driver's side: sends what the stream side buffered.
pub struct Cork<S> {
    shared: Arc<Mutex<Inner<S>>>,
}

struct Inner<S> {
    io: S,
    buf: Vec<u8>,
    /// How much of `buf` is already written.
    sent: usize,
    /// Whether the driver has yielded once since the last send.
    yielded: bool,
    /// Written to the stream below and not yet flushed there (TLS may hold records until then).
    unflushed: bool,
}

/// The buffer capacity an idle connection keeps; a larger one, grown by a burst, is given back.
const KEPT_CAPACITY: usize = 16 * 1024;

/// `io` split into the stream hyper reads and writes, and the handle that sends its writes.
pub fn corked<S>(io: S) -> (Corked<S>, Cork<S>) {
    let shared = Arc::new(Mutex::new(Inner { io, buf: Vec::new(), sent: 0, yielded: false, unflushed: false }));
    (Corked { shared: shared.clone() }, Cork { shared })
}

/// Both sides run on the connection's one task, one after the other, so the lock is never
/// contended; a panic while it was held leaves bytes and a socket, which stay usable.
fn lock<S>(shared: &Mutex<Inner<S>>) -> std::sync::MutexGuard<'_, Inner<S>> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<S: AsyncWrite + Unpin> Inner<S> {
    /// Writes everything buffered, then flushes the stream below (TLS writes its records then).
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.sent < self.buf.len() {
            match ready!(Pin::new(&mut self.io).poll_write(cx, &self.buf[self.sent..])) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => {
                    self.sent += n;
                    self.unflushed = true;
                }
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        self.buf.clear();
        self.buf.shrink_to(KEPT_CAPACITY);
        self.sent = 0;
        if self.unflushed {
            ready!(Pin::new(&mut self.io).poll_flush(cx))?;
            self.unflushed = false;
        }
        Poll::Ready(Ok(()))
    }

    fn poll_write(&mut self, cx: &mut Context<'_>, bufs: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if self.buf.len() + total > BUFFER_LIMIT {
            ready!(self.poll_send(cx))?;
            if total > BUFFER_LIMIT {
                return Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
            }
        }
        for slice in bufs {
            self.buf.extend_from_slice(slice);
        }
        Poll::Ready(Ok(total))
    }
}

impl<S: AsyncWrite + Unpin> Cork<S> {
    /// Sends what is buffered; with `yield_first`, after yielding once to the tasks waiting to
    /// run (the call wakes the task and returns `Pending`). `Pending` (with a wake-up) also while
    /// the socket cannot take it all.
    pub fn poll_send(&self, cx: &mut Context<'_>, yield_first: bool) -> Poll<io::Result<()>> {
        let mut inner = lock(&self.shared);
        let buffered = inner.sent < inner.buf.len();
        if !buffered && !inner.unflushed {
            return Poll::Ready(Ok(()));
        }
        if buffered && yield_first && !inner.yielded {
            inner.yielded = true;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        inner.yielded = false;
        inner.poll_send(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Corked<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut lock(&self.shared).io).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Corked<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        lock(&self.shared).poll_write(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        lock(&self.shared).poll_write(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    /// A request to send, carried out by [`Cork::poll_send`] when the connection has done all it
    /// can for now.
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut inner = lock(&self.shared);
        ready!(inner.poll_send(cx))?;
        Pin::new(&mut inner.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stream that records each write it gets and takes at most `room` bytes in all; its
    /// flushes wait while `flush_blocked`.
    #[derive(Default)]
    struct Recorder {
        writes: Vec<Vec<u8>>,
        room: usize,
        flushed: usize,
        flush_blocked: bool,
        shut: bool,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(mut self: Pin<&mut Self>, _cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            if self.room == 0 {
                return Poll::Pending;
            }
            let n = data.len().min(self.room);
            self.room -= n;
            self.writes.push(data[..n].to_vec());
            Poll::Ready(Ok(n))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            if self.flush_blocked {
                return Poll::Pending;
            }
            self.flushed += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.shut = true;
            Poll::Ready(Ok(()))
        }
    }

    fn context() -> Context<'static> {
        Context::from_waker(std::task::Waker::noop())
    }

    fn write(stream: &mut Corked<Recorder>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(stream).poll_write(&mut context(), data)
    }

    #[test]
    fn frames_written_and_flushed_in_one_turn_leave_in_one_write() {
        let (mut stream, cork) = corked(Recorder { room: usize::MAX, ..Recorder::default() });
        let mut cx = context();
        assert!(matches!(write(&mut stream, b"headers+data"), Poll::Ready(Ok(12))));
        assert!(matches!(Pin::new(&mut stream).poll_flush(&mut cx), Poll::Ready(Ok(()))));
        let slices = [IoSlice::new(b"trai"), IoSlice::new(b"lers")];
        assert!(matches!(Pin::new(&mut stream).poll_write_vectored(&mut cx, &slices), Poll::Ready(Ok(8))));
        assert!(matches!(Pin::new(&mut stream).poll_flush(&mut cx), Poll::Ready(Ok(()))));
        assert!(lock(&cork.shared).io.writes.is_empty(), "nothing is written before the turn ends");

        assert!(send(&cork).is_ready());
        let inner = lock(&cork.shared);
        assert_eq!(inner.io.writes, vec![b"headers+datatrailers".to_vec()]);
        assert_eq!(inner.io.flushed, 1);
    }

    #[test]
    fn the_driver_yields_once_before_it_sends_and_wakes_itself() {
        let (mut stream, cork) = corked(Recorder { room: usize::MAX, ..Recorder::default() });
        let woken = Arc::new(Woken::default());
        let waker = std::task::Waker::from(woken.clone());
        let mut cx = Context::from_waker(&waker);
        assert!(cork.poll_send(&mut cx, true).is_ready(), "nothing buffered: nothing to wait for");
        assert_eq!(woken.count(), 0);
        assert!(matches!(write(&mut stream, b"one"), Poll::Ready(Ok(3))));
        assert!(cork.poll_send(&mut cx, true).is_pending());
        assert_eq!(woken.count(), 1, "the yield wakes the driver again");
        // A call that finishes while the driver yields leaves in the same write.
        assert!(matches!(write(&mut stream, b"two"), Poll::Ready(Ok(3))));
        assert!(matches!(cork.poll_send(&mut cx, true), Poll::Ready(Ok(()))));
        assert_eq!(lock(&cork.shared).io.writes, vec![b"onetwo".to_vec()]);
        assert_eq!(woken.count(), 1);
        // Without other work to wait for, it sends at once.
        assert!(matches!(write(&mut stream, b"three"), Poll::Ready(Ok(5))));
        assert!(matches!(cork.poll_send(&mut cx, false), Poll::Ready(Ok(()))));
        assert_eq!(lock(&cork.shared).io.writes.len(), 2);
        assert_eq!(woken.count(), 1);
    }

    #[derive(Default)]
    struct Woken(std::sync::atomic::AtomicUsize);

    impl Woken {
        fn count(&self) -> usize {
            self.0.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    impl std::task::Wake for Woken {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The driver's send, past its one yield.
    fn send(cork: &Cork<Recorder>) -> Poll<io::Result<()>> {
        let mut cx = context();
        match cork.poll_send(&mut cx, true) {
            Poll::Pending if lock(&cork.shared).yielded => cork.poll_send(&mut cx, true),
            other => other,
        }
    }

    #[test]
    fn a_full_socket_keeps_the_rest_for_the_next_send_in_order() {
        let (mut stream, cork) = corked(Recorder { room: 5, ..Recorder::default() });
        assert!(matches!(write(&mut stream, b"0123456789"), Poll::Ready(Ok(10))));
        assert!(send(&cork).is_pending());
        assert_eq!(lock(&cork.shared).io.writes.concat(), b"01234");
        lock(&cork.shared).io.room = usize::MAX;
        assert!(matches!(write(&mut stream, b"ab"), Poll::Ready(Ok(2))));
        assert!(send(&cork).is_ready());
        let written: Vec<u8> = lock(&cork.shared).io.writes.concat();
        assert_eq!(written, b"0123456789ab");
    }

    #[test]
    fn past_the_limit_a_write_waits_for_the_buffer_and_a_huge_one_goes_straight_through() {
        let (mut stream, cork) = corked(Recorder { room: 0, ..Recorder::default() });
        let chunk = vec![7u8; BUFFER_LIMIT - 10];
        assert!(matches!(write(&mut stream, &chunk), Poll::Ready(Ok(n)) if n == chunk.len()));
        // Over the limit while the socket takes nothing: the write waits.
        assert!(write(&mut stream, &[1u8; 11]).is_pending());
        assert_eq!(lock(&cork.shared).buf.len(), chunk.len(), "the waiting write is not buffered");

        lock(&cork.shared).io.room = usize::MAX;
        let huge = vec![9u8; BUFFER_LIMIT + 1];
        assert!(matches!(write(&mut stream, &huge), Poll::Ready(Ok(n)) if n == huge.len()));
        let inner = lock(&cork.shared);
        assert_eq!(inner.io.writes.len(), 2, "the buffer, then the huge write by itself");
        assert_eq!(inner.io.writes[0], chunk);
        assert_eq!(inner.io.writes[1], huge);
        assert!(inner.buf.is_empty());
    }

    #[test]
    fn a_flush_left_pending_below_is_finished_by_the_next_send_and_a_burst_buffer_is_given_back() {
        let (mut stream, cork) = corked(Recorder { room: usize::MAX, flush_blocked: true, ..Recorder::default() });
        let burst = vec![5u8; 100 * 1024];
        assert!(matches!(write(&mut stream, &burst), Poll::Ready(Ok(n)) if n == burst.len()));
        assert!(send(&cork).is_pending(), "the bytes are written, the flush below waits");
        assert!(lock(&cork.shared).buf.capacity() <= KEPT_CAPACITY);
        lock(&cork.shared).io.flush_blocked = false;
        // Nothing is buffered any more, and still the flush is owed.
        assert!(matches!(cork.poll_send(&mut context(), false), Poll::Ready(Ok(()))));
        assert_eq!(lock(&cork.shared).io.flushed, 1);
        assert!(matches!(cork.poll_send(&mut context(), false), Poll::Ready(Ok(()))));
        assert_eq!(lock(&cork.shared).io.flushed, 1, "nothing owed: no second flush");
    }

    #[test]
    fn shutdown_sends_what_is_buffered_first() {
        let (mut stream, cork) = corked(Recorder { room: usize::MAX, ..Recorder::default() });
        let mut cx = context();
        assert!(matches!(write(&mut stream, b"goaway"), Poll::Ready(Ok(6))));
        assert!(matches!(Pin::new(&mut stream).poll_shutdown(&mut cx), Poll::Ready(Ok(()))));
        let inner = lock(&cork.shared);
        assert_eq!(inner.io.writes, vec![b"goaway".to_vec()]);
        assert!(inner.io.shut);
    }
}
