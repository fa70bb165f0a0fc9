//! `relstore serve --stdio ROOT`: the helper end of helper mode (hidden from --help).
//!
//! Started by a relstore client over an SSH exec channel, it serves the store at ROOT
//! with the local target — the same code a local push runs — on stdin/stdout. Stdout
//! carries the protocol and nothing else: the process's own fd 1 is pointed at stderr
//! before serving, so no stray print can corrupt the stream. The helper ends as soon
//! as its client is gone (see `exit_when_the_client_is_gone`).

use std::fs::File;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;

use relstore_helper::{serve, HelperError, ServeOptions};
use relstore_local::LocalTarget;

/// Why the helper could not serve.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// Setting up stdin/stdout for the protocol failed.
    #[error("{what}")]
    Setup {
        what: &'static str,
        #[source]
        source: io::Error,
    },
    /// The session with the client failed.
    #[error("helper session failed")]
    Session(#[source] HelperError),
}

fn setup(what: &'static str) -> impl FnOnce(io::Error) -> ServeError {
    move |source| ServeError::Setup { what, source }
}

/// Serves ROOT until the client says goodbye or closes the stream.
pub fn serve_stdio(root: PathBuf) -> Result<(), ServeError> {
    let input = File::from(
        io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map_err(setup("cannot duplicate stdin"))?,
    );
    let output = File::from(
        io::stdout()
            .as_fd()
            .try_clone_to_owned()
            .map_err(setup("cannot duplicate stdout"))?,
    );
    // SAFETY: dup2 on two descriptors this process owns (0-2 are open for a process
    // started by sshd); it only changes what fd 1 refers to. The protocol goes through
    // the duplicate made above.
    if unsafe { libc::dup2(2, 1) } < 0 {
        return Err(setup("cannot point stdout at stderr")(
            io::Error::last_os_error(),
        ));
    }
    exit_when_the_client_is_gone();
    let target = LocalTarget::new(root);
    serve(input, output, &target, &ServeOptions::default())
        .map(|_| ())
        .map_err(ServeError::Session)
}

/// Ends this process as soon as the client's end of stdin is closed (the client
/// died, or its connection did), even in the middle of a request: the store is safe
/// against a crash at any moment, and a helper that outlived its client could still
/// be writing when the client's re-run starts. A client that is done says goodbye
/// first, so nothing it waits for is cut short.
fn exit_when_the_client_is_gone() {
    std::thread::spawn(|| loop {
        let mut fds = [libc::pollfd {
            fd: 0,
            events: 0,
            revents: 0,
        }];
        // SAFETY: poll(2) on one valid, initialised pollfd array of length 1.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, -1) };
        if n > 0 && fds[0].revents & (libc::POLLHUP | libc::POLLERR | libc::POLLNVAL) != 0 {
            std::process::exit(1);
        }
        if n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return;
        }
    });
}
