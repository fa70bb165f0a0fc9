//! A throwaway OpenSSH server on 127.0.0.1 for integration tests.
//!
//! Each [`Sshd::start`] makes a temp dir with fresh host and user keys, a minimal config
//! (key auth only, no PAM, internal-sftp, loopback only), checks it with `sshd -t`, runs
//! `/usr/sbin/sshd -D` as a child on a free port, waits until the port accepts,
//! records the host key with `ssh-keyscan` and kills the server on drop. Anything that
//! goes wrong panics with sshd's log: these tests must never pass by skipping.

#![allow(dead_code)] // each test binary uses a different part

use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use relstore_ssh::{ConnectOptions, Identity, RemoteOptions};

pub const SSHD: &str = "/usr/sbin/sshd";

pub struct Sshd {
    /// Keys, config, log; `work` inside is where tests put files (mode 0777).
    pub dir: tempfile::TempDir,
    pub port: u16,
    /// known_hosts written by ssh-keyscan for `[127.0.0.1]:PORT`.
    pub known_hosts: PathBuf,
    /// The user's private key (authorized for every user of this server).
    pub user_key: PathBuf,
    /// The server's public host key.
    pub host_pub: PathBuf,
    /// The user tests log in as: the one running the tests.
    pub user: String,
    log: PathBuf,
    child: Child,
}

fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot run {cmd:?}: {e} (is openssh-server/openssh-client installed?)")
    });
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn keygen(path: &Path) {
    run(Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "relstore-test", "-f"])
        .arg(path));
}

pub fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn current_user() -> String {
    let out = run(Command::new("id").arg("-un"));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

impl Sshd {
    pub fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// [`Sshd::start`] with `extra` lines appended to the config (say
    /// `SetEnv PATH=...` to give commands run over SSH another PATH).
    pub fn start_with(extra: &str) -> Sshd {
        Sshd::start_logging(extra, "VERBOSE")
    }

    /// [`Sshd::start_with`] at sshd `LogLevel` `level` (`DEBUG1` logs each
    /// direct-tcpip channel a jump host opens).
    pub fn start_logging(extra: &str, level: &str) -> Sshd {
        assert!(
            Path::new(SSHD).exists(),
            "{SSHD} is missing: install openssh-server (scripts/test.sh does)"
        );
        if is_root() {
            // sshd's privilege-separation directory.
            std::fs::create_dir_all("/run/sshd").expect("mkdir /run/sshd");
        }
        let dir = tempfile::Builder::new()
            .prefix("relstore-sshd-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path().to_path_buf();
        // Readable by every user: sshd reads authorized_keys as the user logging in.
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let work = d.join("work");
        std::fs::create_dir(&work).expect("mkdir work");
        std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o777)).expect("chmod");

        let host_key = d.join("host_ed25519");
        let user_key = d.join("user_ed25519");
        keygen(&host_key);
        keygen(&user_key);
        let authorized = d.join("authorized_keys");
        std::fs::copy(d.join("user_ed25519.pub"), &authorized).expect("authorized_keys");
        std::fs::set_permissions(&authorized, std::fs::Permissions::from_mode(0o644))
            .expect("chmod");
        let log = d.join("sshd.log");
        let cfg = d.join("sshd_config");

        let mut last_log = String::new();
        for _attempt in 0..5 {
            let port = free_port();
            std::fs::write(
                &cfg,
                format!(
                    "Port {port}\n\
                     ListenAddress 127.0.0.1\n\
                     HostKey {host}\n\
                     PidFile {dir}/sshd.pid\n\
                     AuthorizedKeysFile {dir}/authorized_keys\n\
                     PubkeyAuthentication yes\n\
                     PasswordAuthentication no\n\
                     KbdInteractiveAuthentication no\n\
                     PermitRootLogin prohibit-password\n\
                     StrictModes no\n\
                     UsePAM no\n\
                     Subsystem sftp internal-sftp\n\
                     MaxSessions 64\n\
                     MaxStartups 100:30:200\n\
                     LogLevel {level}\n\
                     {extra}\n",
                    host = host_key.display(),
                    dir = d.display(),
                ),
            )
            .expect("write sshd_config");
            run(Command::new(SSHD).arg("-t").arg("-f").arg(&cfg));
            let _ = std::fs::remove_file(&log);
            let mut child = Command::new(SSHD)
                .arg("-D")
                .arg("-f")
                .arg(&cfg)
                .arg("-E")
                .arg(&log)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {SSHD}: {e}"));
            let deadline = Instant::now() + Duration::from_secs(10);
            let mut exited = None;
            let mut ready = false;
            while Instant::now() < deadline {
                if let Ok(Some(status)) = child.try_wait() {
                    exited = Some(status);
                    break;
                }
                // sshd logs "Server listening" once bound; probing by connecting would
                // also work but leaves noise in the log.
                let text = std::fs::read_to_string(&log).unwrap_or_default();
                if text.contains("Server listening")
                    && TcpStream::connect(("127.0.0.1", port)).is_ok()
                {
                    ready = true;
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            last_log = std::fs::read_to_string(&log).unwrap_or_default();
            if ready {
                let known_hosts = d.join("known_hosts");
                let scan = run(Command::new("ssh-keyscan").args([
                    "-t",
                    "ed25519",
                    "-p",
                    &port.to_string(),
                    "127.0.0.1",
                ]));
                assert!(
                    !scan.stdout.is_empty(),
                    "ssh-keyscan found no key: {}\nsshd log:\n{}",
                    String::from_utf8_lossy(&scan.stderr),
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
                std::fs::write(&known_hosts, &scan.stdout).expect("write known_hosts");
                return Sshd {
                    port,
                    known_hosts,
                    user_key,
                    host_pub: d.join("host_ed25519.pub"),
                    user: current_user(),
                    log,
                    child,
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            if exited.is_some() && last_log.contains("Address already in use") {
                continue; // lost a race for the port: try another
            }
            panic!(
                "sshd did not start (exit status {exited:?}) with config {}:\n{last_log}",
                cfg.display()
            );
        }
        panic!("sshd could not bind a free port in 5 attempts:\n{last_log}");
    }

    /// sshd's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A world-writable directory for test files.
    pub fn work(&self) -> PathBuf {
        self.dir.path().join("work")
    }

    /// Connect options for `user` with the test key and the scanned known_hosts.
    pub fn options_as(&self, user: &str) -> ConnectOptions {
        let mut o = ConnectOptions::new("127.0.0.1", user, self.known_hosts.clone());
        o.port = self.port;
        o.connect_timeout = Duration::from_secs(10);
        o.identities.push(Identity::KeyFile {
            path: self.user_key.clone(),
            passphrase: None,
        });
        o
    }

    /// Connect options for the user running the tests.
    pub fn options(&self) -> ConnectOptions {
        self.options_as(&self.user)
    }
}

/// An `ssh-agent` started for one test (its socket inside the server's temp dir),
/// killed on drop.
pub struct Agent {
    pub socket: PathBuf,
    child: Child,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Sshd {
    /// Starts `ssh-agent -D` on a fresh socket; with `load_user_key` the user key is
    /// added to it (`ssh-add`). Panics if the agent does not come up.
    pub fn start_agent(&self, load_user_key: bool) -> Agent {
        let n = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let socket = self.dir.path().join(format!("agent-{n}.sock"));
        let child = Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start ssh-agent: {e} (install openssh-client)"));
        let agent = Agent { socket, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !agent.socket.exists() {
            assert!(
                Instant::now() < deadline,
                "ssh-agent did not create {}",
                agent.socket.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        if load_user_key {
            run(Command::new("ssh-add")
                .arg(&self.user_key)
                .env("SSH_AUTH_SOCK", &agent.socket)
                .stdin(Stdio::null()));
        }
        agent
    }

    /// A home directory with an empty `.ssh/` for tests (no default keys, config or
    /// known_hosts of the machine leak in).
    pub fn home(&self) -> PathBuf {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(home.join(".ssh")).expect("mkdir home/.ssh");
        home
    }

    /// Target options: the scanned known_hosts, the user key with `-i`, the test home,
    /// no agent, no passphrase prompt.
    pub fn remote_options(&self) -> RemoteOptions {
        RemoteOptions {
            identity_files: vec![self.user_key.clone()],
            known_hosts: Some(self.known_hosts.clone()),
            home: Some(self.home()),
            connect_timeout: Duration::from_secs(10),
            prompt_passphrase: false,
            ..RemoteOptions::default()
        }
    }

    /// `ssh://USER@127.0.0.1:PORT/PATH` for an absolute `path`.
    pub fn url_as(&self, user: &str, path: &Path) -> String {
        format!("ssh://{user}@127.0.0.1:{}{}", self.port, path.display())
    }

    /// [`Sshd::url_as`] for the user running the tests.
    pub fn url(&self, path: &Path) -> String {
        self.url_as(&self.user, path)
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        // Only the listener is our child; per-connection children exit when their
        // clients disconnect (or when the test process ends and closes the sockets).
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
