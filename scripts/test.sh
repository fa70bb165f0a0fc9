#!/usr/bin/env bash
# Installs what the test suite needs (if missing) and runs every test.
# This is the README's test command and exactly what CI (.ci/run) runs.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v setpriv >/dev/null || need+=(util-linux)
command -v cp >/dev/null || need+=(coreutils)
# crates/ssh tests run a throwaway OpenSSH sshd on loopback (ssh-keygen, ssh-keyscan too).
command -v /usr/sbin/sshd >/dev/null || need+=(openssh-server)
command -v ssh-keyscan >/dev/null || need+=(openssh-client)
# `relstore bench` compares with rsync --link-dest when rsync is installed; its test expects it.
command -v rsync >/dev/null || need+=(rsync)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi

cargo test --workspace "$@"
