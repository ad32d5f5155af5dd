#!/usr/bin/env bash
# Builds both packages from one release build and installs each as a user would: the wheel into
# a fresh venv (then the installed jam checks the installed jamd with jam check --strict), the .deb with dpkg (then
# jamd --version, and removal). Run as root on Debian, from anywhere: .ci/run calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }
work=target/packaging
mkdir -p "$work"

step "Packaging tools: maturin (in its own venv) and cargo-deb"
if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends python3-venv
fi
if [[ ! -x $work/tools/bin/maturin ]]; then
    python3 -m venv "$work/tools"
    "$work/tools/bin/pip" install --quiet 'maturin>=1.5,<2'
fi
maturin=$work/tools/bin/maturin
"$maturin" --version
if ! type -P cargo-deb >/dev/null; then
    cargo install --locked cargo-deb
fi
cargo deb --version

step "One release build, reused by maturin and cargo deb"
cargo build --release

step "Wheel: maturin build --release"
rm -rf target/wheels
"$maturin" build --release --out target/wheels
wheel=$(ls target/wheels/jam_time-*.whl)
echo "$wheel"
python3 -m zipfile -l "$wheel"

step "Wheel: pip install into a fresh venv; the installed jam checks the installed jamd"
venv=$work/venv
rm -rf "$venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --no-index "$wheel"
(
    export PATH="$PWD/$venv/bin:$PATH"
    [[ $(command -v jamd) == "$PWD/$venv/bin/jamd" ]] && [[ $(command -v jam) == "$PWD/$venv/bin/jam" ]]
    jamd --version
    log=$work/jamd.log
    jamd --listen 127.0.0.1:0 --utc 2>"$log" &
    pid=$!
    trap 'kill "$pid" 2>/dev/null || true' EXIT
    addr=
    for _ in $(seq 100); do
        addr=$(sed -n 's/.*jamd listening on \([0-9.]*:[0-9]*\).*/\1/p' "$log")
        [[ -n $addr ]] && break
        sleep 0.1
    done
    [[ -n $addr ]] || { cat "$log"; exit 1; }
    reply=$(jam time --strict "$addr")
    echo "jam time --strict $addr -> $reply"
    [[ $reply == JAM\ * ]]
    # The grader, installed from the wheel, grades the server installed beside it.
    jam check --strict "$addr"
)

step "Debian package: cargo deb"
rm -rf target/debian
cargo deb
deb=$(ls target/debian/jam-time_*.deb)
dpkg-deb --info "$deb"
contents=$(dpkg -c "$deb")
echo "$contents"
for path in \
    ./usr/bin/jamd ./usr/bin/jam \
    ./usr/lib/systemd/system/jamd.service ./usr/lib/systemd/system/jamd.socket \
    ./usr/share/man/man1/jamd.1.gz ./usr/share/man/man1/jam.1.gz \
    ./usr/share/bash-completion/completions/jamd ./usr/share/bash-completion/completions/jam \
    ./usr/share/zsh/vendor-completions/_jamd ./usr/share/zsh/vendor-completions/_jam \
    ./usr/share/fish/vendor_completions.d/jamd.fish ./usr/share/fish/vendor_completions.d/jam.fish \
    ./usr/lib/sysctl.d/50-jamd.conf; do
    grep -qE " $path\$" <<<"$contents" || { echo "missing from the .deb: $path"; exit 1; }
done
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./usr/lib/systemd/system/jamd.service | grep -qx 'ExecStart=/usr/bin/jamd'

step "Debian package: dpkg -i, jamd --version, dpkg --purge"
# postinst reserves port 45000 at run time; put back the machine's list afterwards.
reserved=/proc/sys/net/ipv4/ip_local_reserved_ports
before=$(cat "$reserved" 2>/dev/null || true)
dpkg -i "$deb"
/usr/bin/jamd --version
/usr/bin/jam --version
echo "reserved ports now: $(cat "$reserved" 2>/dev/null || echo '?')"
dpkg --purge jam-time
if [[ -e /usr/bin/jamd || -e /usr/lib/sysctl.d/50-jamd.conf ]]; then
    echo "files left after purge"
    exit 1
fi
(printf '%s\n' "$before" >"$reserved") 2>/dev/null || true

step "Packages built and installed"
ls -l "$wheel" "$deb"
