/*!
The queue in front of the one writer that owns the output. Every line is counted against a byte
budget while it waits to be written, so a slow reader on the daemon's side bounds our memory
instead of growing it: a sender waits for room (back-pressure), the writer frees room as it writes.
Heartbeats skip the budget: they are tiny and must never wait behind request work.
*/

use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};

/// The output is gone (the daemon disconnected); nothing more can be delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the session's output is closed")]
pub struct Closed;

/// One line (or two: a session's result and its `end`) on its way out, holding its share of the
/// byte budget until written.
pub(crate) struct Outgoing {
    pub(crate) line: Vec<u8>,
    /// A second line written right after `line`.
    pub(crate) then: Option<Vec<u8>>,
    _permit: Option<OwnedSemaphorePermit>,
}

#[derive(Clone)]
pub(crate) struct Outbox {
    lines: mpsc::UnboundedSender<Outgoing>,
    budget: Arc<Semaphore>,
    capacity: u32,
}

impl Outbox {
    /// An outbox whose queued lines hold at most `capacity` bytes (a single longer line is let
    /// through alone), and the receiver its writer drains.
    pub(crate) fn new(capacity: usize) -> (Outbox, mpsc::UnboundedReceiver<Outgoing>) {
        let capacity = u32::try_from(capacity).unwrap_or(u32::MAX).max(1);
        let (lines, receiver) = mpsc::unbounded_channel();
        (Outbox { lines, budget: Arc::new(Semaphore::new(capacity as usize)), capacity }, receiver)
    }

    /// Queues one line, waiting while the queue is full.
    pub(crate) async fn send(&self, line: Vec<u8>) -> Result<(), Closed> {
        let weight = u32::try_from(line.len()).unwrap_or(u32::MAX).clamp(1, self.capacity);
        let permit = self.budget.clone().acquire_many_owned(weight).await.map_err(|_| Closed)?;
        self.lines.send(Outgoing { line, then: None, _permit: Some(permit) }).map_err(|_| Closed)
    }

    /// Queues two lines to be written one after the other (one wait, one wake-up of the writer).
    pub(crate) async fn send_two(&self, line: Vec<u8>, then: Vec<u8>) -> Result<(), Closed> {
        let weight = u32::try_from(line.len() + then.len()).unwrap_or(u32::MAX).clamp(1, self.capacity);
        let permit = self.budget.clone().acquire_many_owned(weight).await.map_err(|_| Closed)?;
        self.lines.send(Outgoing { line, then: Some(then), _permit: Some(permit) }).map_err(|_| Closed)
    }

    /// Queues one line without waiting (heartbeats).
    pub(crate) fn send_now(&self, line: Vec<u8>) -> Result<(), Closed> {
        self.lines.send(Outgoing { line, then: None, _permit: None }).map_err(|_| Closed)
    }
}
