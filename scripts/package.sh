#!/usr/bin/env bash
# Packages toylens for people without Rust: the release binary, stripped (its debug info split
# into toylens.debug beside the packages), as
#   toylens_<version>_amd64.deb   the binary, a .desktop entry, the icon at every size, the
#                                 safetensors MIME type, docs; the window's runtime libraries
#                                 as dependencies, so `apt install ./toylens_*.deb` pulls them in
#   toylens-<version>-x86_64-linux.tar.gz   the binary with the README and the licence
# into $OUT (default: $CARGO_TARGET_DIR/package). Needs dpkg-deb; lintian, where installed, checks
# the .deb. The bundled model and the window's icon are compiled into the binary
# (include_bytes!), so the binary alone is the whole app.
#
#   scripts/package.sh
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/toylens-target}
OUT=${OUT:-$CARGO_TARGET_DIR/package}
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH=amd64

cargo build --release --locked
BIN=$CARGO_TARGET_DIR/release/toylens
mkdir -p "$OUT"
STAGE=$(mktemp -d)
trap 'rm -rf "$STAGE"' EXIT

# The binary without its debug info; the debug info kept apart, linked by name.
objcopy --only-keep-debug "$BIN" "$OUT/toylens.debug"
install -Dm755 "$BIN" "$STAGE/deb/usr/bin/toylens"
strip --strip-all --remove-section=.comment "$STAGE/deb/usr/bin/toylens"
echo "binary: $(stat -c %s "$BIN") bytes with line tables, $(stat -c %s "$STAGE/deb/usr/bin/toylens") stripped"

# The .deb's tree.
D=$STAGE/deb
install -Dm644 assets/linux/toylens.desktop "$D/usr/share/applications/toylens.desktop"
install -Dm644 assets/linux/toylens-mime.xml "$D/usr/share/mime/packages/toylens.xml"
install -Dm644 assets/icons/toylens.svg "$D/usr/share/icons/hicolor/scalable/apps/toylens.svg"
for size in 16 24 32 48 64 128 256 512; do
    install -Dm644 "assets/icons/${size}x${size}/toylens.png" \
        "$D/usr/share/icons/hicolor/${size}x${size}/apps/toylens.png"
done
install -Dm644 assets/linux/copyright "$D/usr/share/doc/toylens/copyright"
gzip -9n -c assets/linux/toylens.1 > "$STAGE/toylens.1.gz"
install -Dm644 "$STAGE/toylens.1.gz" "$D/usr/share/man/man1/toylens.1.gz"
gzip -9n -c README.md > "$STAGE/README.md.gz"
install -Dm644 "$STAGE/README.md.gz" "$D/usr/share/doc/toylens/README.md.gz"
cat > "$STAGE/changelog" <<CHANGES
toylens ($VERSION) unstable; urgency=medium

  * Packaged from commit $(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown).

 -- toylens developers <toylens@users.noreply.github.com>  $(date -R -d @"${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}")
CHANGES
gzip -9n -c "$STAGE/changelog" > "$STAGE/changelog.gz"
install -Dm644 "$STAGE/changelog.gz" "$D/usr/share/doc/toylens/changelog.gz"

# The window opens X11 or Wayland and draws with Vulkan or OpenGL, all loaded at run time:
# those libraries (and Mesa's drivers, for machines without a vendor's) are dependencies.
mkdir -p "$D/DEBIAN"
SIZE=$(du -sk --exclude=DEBIAN "$D" | cut -f1)
cat > "$D/DEBIAN/control" <<CONTROL
Package: toylens
Version: $VERSION
Architecture: $ARCH
Maintainer: toylens developers <toylens@users.noreply.github.com>
Installed-Size: $SIZE
Depends: libc6 (>= 2.34), libgcc-s1, libx11-6, libx11-xcb1, libxcursor1, libxi6, libxrandr2, libxkbcommon0, libxkbcommon-x11-0, libwayland-client0, libwayland-cursor0, libwayland-egl1, libegl1, libgl1, libgl1-mesa-dri, libvulkan1, mesa-vulkan-drivers
Recommends: xdg-desktop-portal-gtk | zenity
Section: science
Priority: optional
Description: train tiny transformers and take them apart
 toylens is a desktop app and command line for mechanistic interpretability
 on small models: it trains TransformerLens-style transformers on skip-trigram,
 induction, modular-addition or your own sequence tasks, Toy Models of
 Superposition and sparse autoencoders, shows them learning live, and takes
 them apart with TransformerLens's numbers (attention patterns, attribution,
 patching, circuits). Sweeps map hyperparameter grids into phase diagrams,
 here or on a Slurm cluster.
CONTROL
(cd "$D" && find usr -type f -exec md5sum {} + | sort -k2 > DEBIAN/md5sums)
chmod 644 "$D/DEBIAN/control" "$D/DEBIAN/md5sums"
DEB=$OUT/toylens_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$D" "$DEB" >/dev/null
echo "wrote $DEB ($(stat -c %s "$DEB") bytes)"

# The tarball for other distributions.
T=$STAGE/toylens-$VERSION-x86_64-linux
mkdir -p "$T"
cp "$D/usr/bin/toylens" README.md "$T/"
cp assets/linux/copyright "$T/LICENSE"
cp assets/linux/toylens.desktop assets/linux/toylens.1 "$T/"
cp assets/icons/256x256/toylens.png "$T/toylens.png"
TAR=$OUT/toylens-$VERSION-x86_64-linux.tar.gz
tar -C "$STAGE" --owner=0 --group=0 -czf "$TAR" "toylens-$VERSION-x86_64-linux"
echo "wrote $TAR ($(stat -c %s "$TAR") bytes)"

if command -v lintian >/dev/null; then
    echo "lintian:"
    lintian --info "$DEB" || true
fi
