#!/usr/bin/env bash
# Non-lesion pictures for the "cannot assess" gate (melanoma.negatives, recipe gate_negative_pictures), cut from
# Debian's artwork and game-data packages: thousands of photographs, paintings, wallpapers, textures, sprites,
# maps and page templates, from independent authors, none of them skin. Debian packages because they install here
# without a hub (the registries are reachable; an image hub is not) and each package is one source to hold out.
#
#     bash tools/nonlesion_pictures.sh DEST      # needs apt-get (Debian / Ubuntu); ~0.7 GB downloaded
#
# DEST/fit/<package>/...       what a gate's head may be fitted on
# DEST/held_out/<package>/...  never fitted on: the wider non-lesion test set (benchmarks/diagnoses.py
#                              --nonlesion-pictures DEST/held_out), chosen before any gate saw either
# Only picture files are kept. Run it again to rebuild DEST from scratch.
set -euo pipefail
DEST=${1:?usage: bash tools/nonlesion_pictures.sh DEST}
FIT="desktop-base gnome-backgrounds plasma-workspace-wallpapers ukui-wallpapers gimp-data openclipart-png
     wesnoth-1.16-data freeciv-data pingus-data blender-data"
HELD_OUT="mate-backgrounds tuxpaint-stamps-default hedgewars-data scribus-data"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf "$DEST" && mkdir -p "$DEST"
for part in fit held_out; do
  [ $part = fit ] && pkgs=$FIT || pkgs=$HELD_OUT
  for pkg in $pkgs; do
    (cd "$work" && apt-get download -q "$pkg" >/dev/null 2>&1) || { echo "cannot download $pkg (apt-get update?)" >&2; exit 1; }
    dpkg-deb -x "$work"/"$pkg"_*.deb "$work/x"
    mkdir -p "$DEST/$part/$pkg"
    (cd "$work/x" && find . -type f \( -iname '*.png' -o -iname '*.jpg' -o -iname '*.jpeg' -o -iname '*.webp' \) \
      -exec cp --parents {} "$DEST/$part/$pkg/" \;)
    rm -rf "$work/x" "$work"/*.deb
    echo "$part/$pkg: $(find "$DEST/$part/$pkg" -type f | wc -l) files"
  done
done
