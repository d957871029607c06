#!/usr/bin/env bash
# Prepares the math-verify release the original GPG code ran (0.5.2, with its pinned dependencies) for the
# contract test (`pytest tests/mathverify_contract`), outside the project's environment: one folder
# (`pip install --no-deps --target`), so that only the probe's subprocess, with that folder on PYTHONPATH,
# ever imports it.
#
#   bash tests/mathverify_contract/install.sh       # the pins in requirements.txt
#   GPGRL_MATHVERIFY_CONTRACT_DIR=DIR bash ...       # where (default ~/.cache/gpgrl/mathverify-contract)
#
# Idempotent: a finished folder is kept (marked by a .complete file holding the requirements' hash); an
# interrupted or outdated one is redone. Needs PyPI (about 7 MB, a few seconds); fails with pip's message.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=${GPGRL_MATHVERIFY_CONTRACT_DIR:-$HOME/.cache/gpgrl/mathverify-contract}
python=${PYTHON:-python}
dir="$root/math-verify-0.5.2"
key="requirements $(sha256sum "$here/requirements.txt" | cut -c1-16)"
mkdir -p "$root"

if [ -f "$dir/.complete" ] && [ "$(cat "$dir/.complete")" = "$key" ]; then
  echo "mathverify_contract: $dir is ready"
  exit 0
fi
rm -rf "$dir" "$dir.partial"
echo "mathverify_contract: installing math-verify 0.5.2 and its pins into $dir"
if ! "$python" -m pip install --quiet --disable-pip-version-check --no-warn-conflicts --no-deps \
     --target "$dir.partial" -r "$here/requirements.txt"; then
  rm -rf "$dir.partial"
  echo "mathverify_contract: pip could not install $here/requirements.txt (see above); the contract test needs it" >&2
  exit 1
fi
echo "$key" > "$dir.partial/.complete"
mv "$dir.partial" "$dir"
echo "mathverify_contract: ready in $dir"
