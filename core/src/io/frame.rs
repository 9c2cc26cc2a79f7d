//! Keeping a future's poll in a stack frame of its own.
//!
//! An async fn's body is inlined into whatever polls it, so one poll function ends up holding
//! the locals of every arm of every future beneath it in a single frame. On the boards that
//! frame sits under each signing chain, whichever arm signs. Awaiting a future through
//! [`out_of_line`] keeps its body (and the sync code inlined into it) in its own frame, only on
//! the stack while that future is polled.

use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};

/// Await `future` (pinned where it is awaited, `core::pin::pin!`) with its poll in a frame of
/// its own (see the module docs): `out_of_line(pin!(f)).await` behaves exactly as `f.await`.
/// Taking the future pinned keeps one copy of it in the awaiting future's state; an async
/// wrapper that took it by value would hold two.
pub fn out_of_line<F: Future>(future: Pin<&mut F>) -> OutOfLine<'_, F> {
    OutOfLine(future)
}

/// See [`out_of_line`].
pub struct OutOfLine<'p, F>(Pin<&'p mut F>);

impl<F: Future> Future for OutOfLine<'_, F> {
    type Output = F::Output;
    #[inline(never)]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        self.0.as_mut().poll(cx)
    }
}
