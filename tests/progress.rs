//! Progress output: bars only on a terminal, only on stderr, never with `--json`.
//!
//! Tests run without a terminal, which is the case the first test pins down. The second
//! runs the binary under a pseudo-terminal (`script` from util-linux/bsdutils) with
//! stdout redirected to a file, as in `relstore push … > log` typed at a terminal.

use std::process::Command;

use crate::util::Env;

/// Terminal control: ESC (cursor moves, line erases) or a carriage return (redraws).
fn has_control(bytes: &[u8]) -> bool {
    bytes.iter().any(|&b| b == 0x1b || b == b'\r')
}

// Local target only: progress output is drawn by the CLI the same way for every target
// (the SSH variants of push, upload counts and Ctrl-C run in the conformance suite).

#[test]
fn without_a_terminal_stdout_is_one_json_object_and_stderr_has_no_bars() {
    let env = Env::local();
    let src = env.site("src", 120, 41);
    for extra in [&["--json"][..], &[][..]] {
        let mut args = vec!["push", src.to_str().unwrap(), &env.target, "--force"];
        args.extend_from_slice(extra);
        let out = env.run(&args);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !has_control(&out.stderr),
            "control sequences on stderr: {:?}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!has_control(&out.stdout), "control sequences on stdout");
        if extra.contains(&"--json") {
            let v: serde_json::Value = serde_json::from_slice(&out.stdout)
                .unwrap_or_else(|e| panic!("stdout is not one JSON object ({e})"));
            assert!(v["files_total"].as_u64().unwrap() > 0, "{v}");
        }
    }
}

/// The bars speak the summaries' units: decimal sizes (MB, never MiB) and rates in
/// whole numbers per second (`20,475/s`, `12.3 MB/s`; never `20,474.5044/s`).
fn units_are_the_summaries(shown: &str) {
    assert!(!shown.contains("iB"), "binary units in the bars: {shown:?}");
    assert!(
        shown.contains(" kB") || shown.contains(" MB"),
        "no sizes in the bars: {shown:?}"
    );
    for token in shown.split(|c: char| c.is_whitespace() || c.is_control()) {
        let Some(number) = token.strip_suffix("/s") else {
            continue;
        };
        let byte_unit = ["B", "kB", "MB", "GB", "TB"].contains(&number);
        assert!(
            byte_unit || number.chars().all(|c| c.is_ascii_digit() || c == ','),
            "a rate that is not a whole number: {token:?} in {shown:?}"
        );
    }
}

/// Runs `shell_cmd` under a pseudo-terminal; returns what the terminal showed, or
/// `None` when `script` is not installed.
fn under_pty(env: &Env, shell_cmd: &str) -> Option<Vec<u8>> {
    let mut c = Command::new("script");
    c.args(["-qec", shell_cmd, "/dev/null"]);
    for (k, v) in env.cmd().get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    let out = match c.output() {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => panic!("script: {e}"),
    };
    assert!(
        out.status.success(),
        "{shell_cmd} failed under a pty: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    Some(out.stdout)
}

#[test]
fn on_a_terminal_bars_go_to_stderr_and_stdout_stays_clean() {
    let env = Env::local();
    let src = env.site("src", 150, 42);
    let bin = env!("CARGO_BIN_EXE_relstore");
    let human = env.path("human.out");
    // Slow the upload down so the bars are drawn several times whatever the machine.
    let cmd = format!(
        "RELSTORE_PAUSE_AT=upload.object:10 TERM=xterm '{bin}' push '{}' '{}' --release r1 > '{}'",
        src.display(),
        env.target,
        human.display()
    );
    let Some(screen) = under_pty(&env, &cmd) else {
        eprintln!("skipped: `script` is not installed");
        return;
    };
    let shown = String::from_utf8_lossy(&screen);
    assert!(
        shown.contains("uploading"),
        "no upload bar on the terminal: {shown:?}"
    );
    assert!(has_control(&screen), "no redraws: {shown:?}");
    units_are_the_summaries(&shown);
    let summary = std::fs::read(&human).unwrap();
    assert!(!has_control(&summary), "control sequences on stdout");
    assert!(
        String::from_utf8_lossy(&summary).starts_with("r1: "),
        "{summary:?}"
    );

    // --json at a terminal: no bars at all, and stdout parses.
    let json = env.path("json.out");
    std::fs::write(src.join("new.html"), "x").unwrap();
    let cmd = format!(
        "TERM=xterm '{bin}' push '{}' '{}' --release r2 --json > '{}'",
        src.display(),
        env.target,
        json.display()
    );
    let screen = under_pty(&env, &cmd).unwrap();
    assert!(
        !has_control(&screen),
        "bars with --json: {:?}",
        String::from_utf8_lossy(&screen)
    );
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(v["release"], "r2");
}
