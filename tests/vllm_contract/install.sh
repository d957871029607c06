#!/usr/bin/env bash
# Prepares real vLLM releases for the contract tests (`pytest -m vllm_contract`), outside the project's
# environment: each release in its own folder (`pip install --no-deps --target`), its pure-Python
# dependencies in one more, so that `import vllm` fails everywhere else and the project's tests never see it.
#
#   bash tests/vllm_contract/install.sh            # the releases in versions.txt
#   GPGRL_VLLM_CONTRACT_DIR=DIR bash ...           # where (default ~/.cache/gpgrl/vllm-contract)
#
# Idempotent: a finished folder is kept (marked by a .complete file); an interrupted one is redone.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${GPGRL_VLLM_CONTRACT_DIR:-$HOME/.cache/gpgrl/vllm-contract}
python=${PYTHON:-python}
mkdir -p "$root"

install() {  # install DIR KEY ARGS...: pip install --target DIR ARGS, atomically, redone when KEY changes
  local dir=$1 key=$2; shift 2
  if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$key" ]; then
    echo "vllm_contract: $dir is ready"; return
  fi
  rm -rf "$dir" "$dir.partial"
  echo "vllm_contract: installing $key into $dir"
  "$python" -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --target "$dir.partial" "$@"
  echo "$key" > "$dir.partial/.complete"
  mv "$dir.partial" "$dir"
}

install "$root/deps" "requirements $(sha256sum "$here/requirements.txt" | cut -c1-16)" -r "$here/requirements.txt"
grep -v '^#' "$here/versions.txt" | while read -r version; do
  [ -n "$version" ] && install "$root/vllm-$version" "vllm==$version" --no-deps "vllm==$version"
done
echo "vllm_contract: ready in $root"
