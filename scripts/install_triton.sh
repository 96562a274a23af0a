#!/usr/bin/env bash
# Install a CPU-only Triton Inference Server for the serving tests, once per machine.
#
# The PyPI wheel nvidia-pytriton ships the tritonserver binary, the Python backend and its stubs;
# it is unpacked (not installed: it pins numpy<2 and the project uses numpy 2) into
#   ${PLAYBOOK_TRITON_DIR:-$HOME/.cache/playbook/triton}
# with the Python 3.11 backend stub copied where the server looks for it, and a small virtualenv
# (numpy<2, lightgbm, onnxruntime) whose packages the Python-backend models import inside the
# stub. See ../shared/notes/triton-on-cpu.md. Only test set-up downloads; the pipeline never does.
#
# Idempotent and silent when already installed. The stamp file is written last, so an interrupted
# install is redone from scratch on the next run instead of leaving a half-made server behind.
# Fails loudly: the Triton tests need it, and `make test` runs this first.
set -euo pipefail

PYTRITON_VERSION="0.7.0"
PYTHON="${PYTHON:-python3.11}"
DIR="${PLAYBOOK_TRITON_DIR:-$HOME/.cache/playbook/triton}"
STAMP="$DIR/.installed"
WANT="nvidia-pytriton==$PYTRITON_VERSION python3.11 numpy<2 lightgbm==4.7.* onnxruntime"

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  exit 0
fi

fail() {
  echo "install_triton.sh: $*" >&2
  exit 1
}
command -v "$PYTHON" >/dev/null 2>&1 || fail "$PYTHON not found (the backend stub is for 3.11)"
"$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' ||
  fail "$PYTHON is not Python 3.11 (the backend stub is built for 3.11)"
# Only ever delete a folder this script made (an unfinished one has no stamp yet).
if [ -d "$DIR" ] && [ -n "$(ls -A "$DIR")" ] && [ ! -d "$DIR/wheel" ] && [ ! -d "$DIR/pytriton" ]; then
  fail "$DIR is not empty and is not a Triton install of this script; set PLAYBOOK_TRITON_DIR"
fi

echo "Installing Triton Inference Server (nvidia-pytriton==$PYTRITON_VERSION) into $DIR"
rm -rf "$DIR"
mkdir -p "$DIR"
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps \
  "nvidia-pytriton==$PYTRITON_VERSION" -d "$DIR/wheel"
# The server, its backends and stubs, and the shared libraries they link (no unzip needed).
"$PYTHON" - "$DIR" <<'PY'
import pathlib, sys, zipfile

folder = pathlib.Path(sys.argv[1])
(wheel,) = (folder / "wheel").glob("nvidia_pytriton-*.whl")
with zipfile.ZipFile(wheel) as archive:
    wanted = ("pytriton/tritonserver/", "nvidia_pytriton.libs/")
    archive.extractall(folder, [n for n in archive.namelist() if n.startswith(wanted)])
PY
rm -rf "$DIR/wheel"
SERVER="$DIR/pytriton/tritonserver"
# Without the stub beside the backend, loading fails with "triton_python_backend_stub is not found".
cp "$SERVER/python_backend_stubs/3.11/triton_python_backend_stub" "$SERVER/backends/python/"
chmod +x "$SERVER/bin/tritonserver" "$SERVER/backends/python/triton_python_backend_stub"
# The stub embeds the system's libpython3.11 (Debian: libpython3.11); install it when missing.
STUB="$SERVER/backends/python/triton_python_backend_stub"
if LD_LIBRARY_PATH="$DIR/nvidia_pytriton.libs" ldd "$STUB" | grep -q "libpython3.11.*not found"; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo -n"
  { $SUDO apt-get install -y -q libpython3.11 >/dev/null 2>&1 ||
    { $SUDO apt-get update -q >/dev/null 2>&1 &&
      $SUDO apt-get install -y -q libpython3.11 >/dev/null 2>&1; }; } ||
    fail "the Python backend stub needs libpython3.11.so.1.0 (apt-get install libpython3.11)"
fi

# The models' environment: the stub imports packages from the virtualenv active when the server
# starts, and with numpy 2 every inference fails ("output tensor shape does not match").
"$PYTHON" -m venv "$DIR/venv"
"$DIR/venv/bin/pip" install -q --disable-pip-version-check \
  "numpy<2" "lightgbm==4.7.*" onnxruntime
"$DIR/venv/bin/python" -c "import numpy, lightgbm, onnxruntime"

echo "$WANT" >"$STAMP"
echo "Triton server installed: $SERVER/bin/tritonserver"
