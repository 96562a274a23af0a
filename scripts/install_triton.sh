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
command -v unzip >/dev/null 2>&1 || fail "unzip not found (apt-get install unzip)"

echo "Installing Triton Inference Server (nvidia-pytriton==$PYTRITON_VERSION) into $DIR"
rm -rf "$DIR"
mkdir -p "$DIR"
"$PYTHON" -m pip download -q --disable-pip-version-check --no-deps \
  "nvidia-pytriton==$PYTRITON_VERSION" -d "$DIR/wheel"
unzip -q "$DIR"/wheel/nvidia_pytriton-*.whl 'pytriton/tritonserver/*' 'nvidia_pytriton.libs/*' \
  -d "$DIR"
rm -rf "$DIR/wheel"
SERVER="$DIR/pytriton/tritonserver"
# Without the stub beside the backend, loading fails with "triton_python_backend_stub is not found".
cp "$SERVER/python_backend_stubs/3.11/triton_python_backend_stub" "$SERVER/backends/python/"
chmod +x "$SERVER/bin/tritonserver" "$SERVER/backends/python/triton_python_backend_stub"

# The models' environment: the stub imports packages from the virtualenv active when the server
# starts, and with numpy 2 every inference fails ("output tensor shape does not match").
"$PYTHON" -m venv "$DIR/venv"
"$DIR/venv/bin/pip" install -q --disable-pip-version-check \
  "numpy<2" "lightgbm==4.7.*" onnxruntime
"$DIR/venv/bin/python" -c "import numpy, lightgbm, onnxruntime"

echo "$WANT" >"$STAMP"
echo "Triton server installed: $SERVER/bin/tritonserver"
