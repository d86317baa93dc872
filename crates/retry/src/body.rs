//! [`ReplayBody`]: a request body that can be sent again.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};

use tower_prism_core::BoxError;

use crate::error::Error;

struct Buffered<B> {
    /// Chunks read so far (empty once over the limit).
    chunks: Vec<Bytes>,
    len: usize,
    /// The part of the original body nobody has read yet.
    rest: Option<Pin<Box<B>>>,
    trailers: Option<HeaderMap>,
}

struct Shared<B> {
    /// Held here while no copy is being read; a copy takes it on its first poll and puts
    /// it back when dropped.
    state: Mutex<Option<Buffered<B>>>,
    over_limit: AtomicBool,
    limit: usize,
    size_hint: SizeHint,
    end_stream: bool,
}

/// An [`http_body::Body`](Body) that keeps what it sends, up to `limit` bytes, so that a retry can
/// send it again.
///
/// The first copy streams the original body, remembering each chunk; a later copy (from
/// [`try_clone`](ReplayBody::try_clone)) first replays the remembered chunks, then reads on
/// where the earlier one stopped. A body longer than `limit` streams through unchanged and
/// complete (nothing is lost) but stops remembering: [`try_clone`](ReplayBody::try_clone)
/// then returns `None` and the request is not retried.
///
/// Every copy reports the original body's [`size_hint`](Body::size_hint), so a
/// `Content-Length` stays the same across attempts.
///
/// One copy reads at a time: a copy polled while another holds the original body (an
/// attempt still sending a slow upload) fails with [`Error::BodyInUse`]. The retry stage
/// therefore sends a hedge only while no copy [`is_in_use`](ReplayBody::is_in_use); a
/// hedge due during an upload waits for the next hedge delay after it.
///
/// ```
/// use bytes::Bytes;
/// use http_body_util::{BodyExt, Full};
/// use tower_prism_retry::ReplayBody;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let first = ReplayBody::new(Full::new(Bytes::from_static(b"hello")), 1024);
/// let again = first.try_clone().unwrap();
/// assert_eq!(first.collect().await.unwrap().to_bytes(), "hello");
/// assert_eq!(again.collect().await.unwrap().to_bytes(), "hello");
/// # }
/// ```
pub struct ReplayBody<B> {
    state: Option<Buffered<B>>,
    shared: Arc<Shared<B>>,
    /// Remembered chunks this copy has sent.
    replayed: usize,
    trailers_sent: bool,
}

impl<B> std::fmt::Debug for ReplayBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayBody")
            .field("limit", &self.shared.limit)
            .field("replayable", &self.is_replayable())
            .finish_non_exhaustive()
    }
}

impl<B: Body> ReplayBody<B> {
    /// Wraps `body`, remembering up to `limit` bytes of it.
    pub fn new(body: B, limit: usize) -> Self {
        let size_hint = body.size_hint();
        let end_stream = body.is_end_stream();
        ReplayBody {
            state: None,
            shared: Arc::new(Shared {
                state: Mutex::new(Some(Buffered {
                    chunks: Vec::new(),
                    len: 0,
                    rest: Some(Box::pin(body)),
                    trailers: None,
                })),
                over_limit: AtomicBool::new(false),
                limit,
                size_hint,
                end_stream,
            }),
            replayed: 0,
            trailers_sent: false,
        }
    }
}

impl<B> ReplayBody<B> {
    /// Whether a copy could still replay everything sent so far.
    pub fn is_replayable(&self) -> bool {
        !self.shared.over_limit.load(Ordering::Acquire)
    }

    /// A copy that sends the same bytes from the start, or `None` once the body went over
    /// its limit (or the original body failed).
    pub fn try_clone(&self) -> Option<Self> {
        self.is_replayable().then(|| ReplayBody {
            state: None,
            shared: self.shared.clone(),
            replayed: 0,
            trailers_sent: false,
        })
    }

    /// The most bytes remembered.
    pub fn limit(&self) -> usize {
        self.shared.limit
    }

    /// Whether a copy (this one included) is reading the body now: it took the original
    /// body and has not been dropped, so another copy polled meanwhile would fail with
    /// [`Error::BodyInUse`]. Never for a body that was empty from the start. The retry
    /// stage sends no hedge of a request while its body is in use (a slow upload): see
    /// [`ReplayRequest::can_hedge`](crate::ReplayRequest::can_hedge).
    pub fn is_in_use(&self) -> bool {
        !self.shared.end_stream && tower_prism_core::internal::lock(&self.shared.state).is_none()
    }
}

impl<B> Drop for ReplayBody<B> {
    fn drop(&mut self) {
        if let Some(state) = self.state.take() {
            let mut slot = self.shared.state.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(state);
        }
    }
}

impl<B> Body for ReplayBody<B>
where
    B: Body,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        if this.state.is_none() {
            let taken = this
                .shared
                .state
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take();
            match taken {
                // A copy starting after the body went over its limit would send it truncated.
                Some(state) if this.shared.over_limit.load(Ordering::Acquire) => {
                    *this.shared.state.lock().unwrap_or_else(|e| e.into_inner()) = Some(state);
                    return Poll::Ready(Some(Err(Box::new(Error::BodyNotReplayable))));
                }
                Some(state) => this.state = Some(state),
                // nothing to read, whoever holds the body
                None if this.shared.end_stream => return Poll::Ready(None),
                None => return Poll::Ready(Some(Err(Box::new(Error::BodyInUse)))),
            }
        }
        let Some(state) = this.state.as_mut() else {
            return Poll::Ready(Some(Err(Box::new(Error::BodyInUse))));
        };
        let over_limit = this.shared.over_limit.load(Ordering::Acquire);
        if !over_limit && this.replayed < state.chunks.len() {
            let chunk = state.chunks[this.replayed].clone();
            this.replayed += 1;
            return Poll::Ready(Some(Ok(Frame::data(chunk))));
        }
        if let Some(rest) = state.rest.as_mut() {
            match ready!(rest.as_mut().poll_frame(cx)) {
                Some(Ok(frame)) => {
                    let frame = frame.map_data(|mut d| d.copy_to_bytes(d.remaining()));
                    if !over_limit {
                        if let Some(data) = frame.data_ref() {
                            if state.len + data.len() <= this.shared.limit {
                                state.len += data.len();
                                state.chunks.push(data.clone());
                                this.replayed = state.chunks.len();
                            } else {
                                this.shared.over_limit.store(true, Ordering::Release);
                                state.chunks = Vec::new();
                                state.len = 0;
                                this.replayed = 0;
                            }
                        } else if let Some(trailers) = frame.trailers_ref() {
                            state.trailers = Some(trailers.clone());
                            this.trailers_sent = true;
                        }
                    }
                    return Poll::Ready(Some(Ok(frame)));
                }
                Some(Err(e)) => {
                    // A body that failed part-way cannot be replayed faithfully.
                    this.shared.over_limit.store(true, Ordering::Release);
                    state.rest = None;
                    return Poll::Ready(Some(Err(e.into())));
                }
                // The end. A copy that read the trailers from the body has sent them; a
                // copy replaying what an earlier reader took (one that stopped at the
                // trailers, as hyper's clients do) sends the stored ones below.
                None => state.rest = None,
            }
        }
        if !this.trailers_sent {
            this.trailers_sent = true;
            if let Some(trailers) = &state.trailers {
                return Poll::Ready(Some(Ok(Frame::trailers(trailers.clone()))));
            }
        }
        Poll::Ready(None)
    }

    fn is_end_stream(&self) -> bool {
        match &self.state {
            None => self.shared.end_stream && self.replayed == 0,
            Some(state) => {
                state.rest.is_none()
                    && self.replayed >= state.chunks.len()
                    && (self.trailers_sent || state.trailers.is_none())
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.shared.size_hint
    }
}
