#!/usr/bin/env bash
# Builds dist/wattlab/ (one folder) with PyInstaller and installs the .desktop file and icon for
# the current user. Not part of CI: it takes minutes and ~2 GB (torch is bundled).
set -euo pipefail
cd "$(dirname "$0")"
PY=${PY:-../.venv/bin/python}
"$PY" -m pip install -q "pyinstaller>=6"
rm -rf ../build/src && mkdir -p ../build/src/wattlab
touch ../build/src/wattlab/__init__.py
cp -r ../core ../build/src/wattlab/core
cp -r ../app ../build/src/wattlab/app
cp -r ../resources ../build/src/wattlab/resources
find ../build/src -name __pycache__ -prune -exec rm -rf {} +
"$PY" -m PyInstaller --noconfirm --distpath ../dist --workpath ../build wattlab.spec
echo "built ../dist/wattlab/wattlab"
if [ "${INSTALL_DESKTOP:-0}" = 1 ]; then
  mkdir -p ~/.local/share/applications ~/.local/share/icons/hicolor/256x256/apps
  sed "s|^Exec=.*|Exec=$(cd ../dist/wattlab && pwd)/wattlab gui|" wattlab.desktop \
    > ~/.local/share/applications/wattlab.desktop
  cp ../resources/icons/wattlab-256.png ~/.local/share/icons/hicolor/256x256/apps/wattlab.png
  echo "installed the desktop entry"
fi
