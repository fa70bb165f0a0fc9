//! The helper's reader: the client's messages, read on a thread of their own so that
//! a `Cancel` is seen while a request is being executed.
//!
//! The thread reads one message after the other and queues it for the helper's loop;
//! a [`Request::Cancel`] is not queued but acted on at once: it sets
//! [`relstore_core::cancel`]'s flag, so the store stops at its next safe point exactly
//! as in a local command interrupted by Ctrl-C. The queue is short (a few messages of
//! an object stream), so the helper never holds more of the client's data than that
//! in memory; a `Cancel` sent after object data still in flight is seen once the
//! data ahead of it has been read. The thread ends after `Bye`, at the end of the
//! stream, on a broken connection, or when the loop stops listening.

use std::io::Read;
use std::sync::mpsc::{sync_channel, Receiver};

use crate::error::HelperError;
use crate::frame::FrameReader;
use crate::proto::Request;

/// Messages read ahead of the helper's loop.
const QUEUE: usize = 8;

type Item = Result<Option<Request>, HelperError>;

/// The client's messages, as the reader thread delivers them.
pub(crate) struct Inbox {
    rx: Receiver<Item>,
}

impl Inbox {
    /// Starts reading `r` (the greeting already done) on a thread of its own.
    pub(crate) fn start<R: Read + Send + 'static>(mut r: FrameReader<R>) -> Inbox {
        let (tx, rx) = sync_channel::<Item>(QUEUE);
        std::thread::spawn(move || loop {
            let item = r.recv::<Request>("reading from the client");
            let last = matches!(item, Ok(Some(Request::Bye)) | Ok(None) | Err(_));
            match item {
                Ok(Some(Request::Cancel)) => {
                    relstore_core::cancel::request(0);
                }
                item => {
                    if tx.send(item).is_err() || last {
                        return;
                    }
                }
            }
        });
        Inbox { rx }
    }

    /// The next message; `None` when the stream ended cleanly between messages.
    pub(crate) fn recv(&self, step: &'static str) -> Result<Option<Request>, HelperError> {
        self.rx.recv().unwrap_or(Err(HelperError::Closed { step }))
    }

    /// Like [`Inbox::recv`], with end of stream as an error.
    pub(crate) fn expect(&self, step: &'static str) -> Result<Request, HelperError> {
        self.recv(step)?.ok_or(HelperError::Closed { step })
    }
}
