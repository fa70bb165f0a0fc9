//! Errors of the connection itself (as opposed to errors of the store, which travel
//! as [`crate::proto::WireError`] and come back as `TargetError`s).

use std::io;

use relstore_core::TargetError;

/// What went wrong between the two ends of a helper connection.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// Reading or writing the byte stream failed.
    #[error("cannot {step}")]
    Io {
        step: &'static str,
        #[source]
        source: io::Error,
    },
    /// The other end closed the stream (at a message boundary or inside one).
    #[error("the other end closed the connection while this side was {step}")]
    Closed { step: &'static str },
    /// The other end answered with something that is not the helper greeting: usually
    /// a shell message such as `relstore: command not found`.
    #[error("the other end is not a relstore helper (it answered {got:?})")]
    NotAHelper { got: String },
    /// Both ends are helpers, but they share no protocol version.
    #[error(
        "relstore {theirs_tool} on the other end speaks helper protocol {theirs_min}..={theirs_max}, \
         this relstore {ours_tool} speaks {ours_min}..={ours_max}; install the same relstore version on both ends"
    )]
    Incompatible {
        ours_min: u16,
        ours_max: u16,
        ours_tool: String,
        theirs_min: u16,
        theirs_max: u16,
        theirs_tool: String,
    },
    /// A message broke the protocol (undecodable, too large, unexpected at this point).
    #[error("helper protocol error: {0}")]
    Protocol(String),
    /// An earlier failure left the connection in an unknown state; nothing more is
    /// sent on it.
    #[error("the helper connection failed earlier and is no longer used")]
    Broken,
}

impl HelperError {
    /// An I/O failure during `step`, with end-of-stream reported as [`HelperError::Closed`].
    pub(crate) fn io(step: &'static str, source: io::Error) -> HelperError {
        match source.kind() {
            io::ErrorKind::UnexpectedEof | io::ErrorKind::BrokenPipe => {
                HelperError::Closed { step }
            }
            _ => HelperError::Io { step, source },
        }
    }

    /// The same failure as a target error naming `location` (the client's view). A
    /// failure of the connection itself keeps an I/O error of the connection kind in
    /// its causes, so the engine can tell a lost connection (and reconnect) from a
    /// failure of the store; the text is the same either way.
    pub(crate) fn into_target_error(self, location: &str) -> TargetError {
        let lost = match &self {
            HelperError::Closed { .. } | HelperError::Broken => {
                Some(io::ErrorKind::ConnectionAborted)
            }
            HelperError::Io { source, .. }
                if matches!(
                    source.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::BrokenPipe
                        | io::ErrorKind::NotConnected
                        | io::ErrorKind::TimedOut
                ) =>
            {
                Some(source.kind())
            }
            _ => None,
        };
        match lost {
            Some(kind) => TargetError::Connect {
                spec: location.to_owned(),
                source: Box::new(io::Error::new(kind, self)),
            },
            None => TargetError::Other(format!("{location}: {}", error_chain(&self))),
        }
    }
}

/// `error: cause: cause` on one line, as the CLI prints errors.
pub(crate) fn error_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}
