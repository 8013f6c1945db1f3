#!/usr/bin/env bash
# The package test: a fresh Debian 12 root (debootstrap, from Debian's mirror) that has never
# seen Rust; the .deb installed there with apt (which pulls in the window's libraries); then,
# inside it, with no compiler: `toylens --version`, a training run and its evaluation, and the
# window opened under Xvfb (installed in the root for the test only) and photographed. As root.
#
#   scripts/package.sh && scripts/test-package.sh [DEB] [SCREENSHOT.png]
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/toylens-target}
DEB=${1:-$(ls -t "$CARGO_TARGET_DIR"/package/toylens_*_amd64.deb | head -1)}
SHOT=${2:-$CARGO_TARGET_DIR/package/package-test.png}
ROOT=${ROOT:-/tmp/toylens-package-root}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" = 0 ] || { echo "run as root (debootstrap and chroot)"; exit 1; }
command -v debootstrap >/dev/null || { apt-get update -qq; apt-get install -y -qq debootstrap; }
started=$(date +%s)

rm -rf "$ROOT"
echo "== debootstrap bookworm into $ROOT"
debootstrap --variant=minbase bookworm "$ROOT" "$MIRROR" >/dev/null
mount -t proc proc "$ROOT/proc"
mount --rbind /dev "$ROOT/dev"
trap 'umount -lR "$ROOT/dev" 2>/dev/null; umount -l "$ROOT/proc" 2>/dev/null || true' EXIT
cp /etc/resolv.conf "$ROOT/etc/resolv.conf"
in_root() { chroot "$ROOT" /usr/bin/env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@"; }
echo "== no Rust in the root"
if in_root sh -c 'command -v cargo || command -v rustc || command -v cc'; then
    echo "the root has a compiler"; exit 1
fi
echo "== apt install ./$(basename "$DEB")"
cp "$DEB" "$ROOT/tmp/"
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "/tmp/$(basename "$DEB")" >/dev/null
echo "== toylens --version"
in_root toylens --version
echo "== train and evaluate"
in_root toylens train --preset fast --out /tmp/x.safetensors
in_root toylens eval /tmp/x.safetensors
echo "== desktop integration"
test -f "$ROOT/usr/share/applications/toylens.desktop"
test -f "$ROOT/usr/share/icons/hicolor/256x256/apps/toylens.png"
echo "== the window under Xvfb (test-only packages)"
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    xvfb xauth x11-apps >/dev/null
in_root sh -c '
    export HOME=/root XDG_RUNTIME_DIR=/tmp/xdg; mkdir -p -m 700 /tmp/xdg
    Xvfb :77 -screen 0 1280x800x24 -nolisten tcp >/tmp/xvfb.log 2>&1 & X=$!
    sleep 2
    DISPLAY=:77 RUST_LOG=toylens=info toylens >/tmp/window.log 2>&1 & APP=$!
    sleep 12
    DISPLAY=:77 xwd -root -silent > /tmp/window.xwd
    kill $APP $X 2>/dev/null; wait 2>/dev/null; true'
grep -h "first frame" "$ROOT/tmp/window.log" || true
convert "xwd:$ROOT/tmp/window.xwd" "$SHOT"
colours=$(convert "$SHOT" -format %k info:)
echo "screenshot $SHOT: $colours colours"
[ "$colours" -gt 50 ] || { echo "the screenshot is blank"; tail -20 "$ROOT/tmp/window.log"; exit 1; }
settings=$ROOT/root/.local/share/toylens
[ -d "$settings" ] || { echo "the window wrote no settings into $settings"; exit 1; }
echo "== remove: everything the package installed goes, the user's settings stay"
in_root apt-get remove -y -qq toylens >/dev/null
for f in /usr/bin/toylens /usr/share/applications/toylens.desktop \
    /usr/share/icons/hicolor/256x256/apps/toylens.png /usr/share/mime/packages/toylens.xml; do
    [ ! -e "$ROOT$f" ] || { echo "$f is still there"; exit 1; }
done
[ -d "$settings" ] || { echo "removing the package removed $settings"; exit 1; }
echo "package test passed in $(( $(date +%s) - started )) s"
