#!/usr/bin/env bash
# The wheels bench/full.py needs on a GPU machine whose python3 (3.12, x86-64) already has torch, transformers,
# numpy, scipy, sklearn, opencv, onnxruntime, matplotlib, tqdm and pyyaml: pydantic and its dependencies (the
# configs), at the versions of this checkout's .venv. Writes them to .whl/ (git-ignored through
# .git/info/exclude, never committed) with .whl/COMMIT, the commit the device run reports (its copy has no .git).
#
#   bash bench/device_wheels.sh      # then carry .whl with the device command in bench/full.py's docstring
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir -p .whl
pins=$("$PY" - <<'PYEOF'
from importlib.metadata import version
names = ["pydantic", "pydantic-core", "annotated-types", "typing-inspection", "typing-extensions"]
print(" ".join(f"{n}=={version(n)}" for n in names))
PYEOF
)
platforms=""
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
    platforms="$platforms --platform $p"
done
# shellcheck disable=SC2086
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp $platforms \
    -d .whl $pins
git rev-parse --short=12 HEAD | tr -d '\n' > .whl/COMMIT
git diff --quiet HEAD -- . 2>/dev/null || printf '+dirty' >> .whl/COMMIT
ls -l .whl && echo "commit $(cat .whl/COMMIT)"
