#!/usr/bin/env bash
# Rebuild the bundled demo run, cache/demo/, reproducibly:
#   1. a seeded 2,000-picture subset of Debian's public-domain openclipart, 64 px (build_openclipart.py)
#   2. 4 % of its captions swapped for other samples' captions (inject-miscaptions, ground truth kept)
#   3. a full clipmem run on it (preset tiny, its default 40 epochs: ~3 min on 2 CPU cores), then checkpoints
#      pruned so the folder stays < 25 MB
#   4. the dataset moved into cache/demo/dataset/ so the demo's images travel with it
# Env: N (2000), PRESET (tiny), EPOCHS (40), SEED (0), OUT (cache/demo), FORCE=1 to replace OUT.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${PYTHON:-$ROOT/.venv/bin/python}"
N="${N:-2000}"; PRESET="${PRESET:-tiny}"; EPOCHS="${EPOCHS:-40}"; SEED="${SEED:-0}"; OUT="${OUT:-$ROOT/cache/demo}"
MAX_MB=25
if [ -e "$OUT" ]; then
  [ "${FORCE:-0}" = 1 ] || { echo "$OUT exists; FORCE=1 replaces it" >&2; exit 2; }
  rm -rf "$OUT"
fi
WORK="$(mktemp -d)"; trap 'rm -rf "$WORK"' EXIT
cd "$ROOT"

"$PY" scripts/build_openclipart.py --out "$WORK/dataset" --size 64 --limit "$N" --seed "$SEED"
"$PY" -m clipmem_core inject-miscaptions --data "$WORK/dataset/captions.csv" \
  --out "$WORK/dataset/captions_noisy.csv" --fraction 0.04 --seed "$SEED"
"$PY" -m clipmem_core run --data "$WORK/dataset/captions_noisy.csv" --out "$OUT" --preset "$PRESET" \
  --epochs "$EPOCHS" --seed "$SEED"

rm -rf "$OUT/checkpoints"
mv "$WORK/dataset" "$OUT/dataset"
"$PY" - "$OUT" <<'PY'
"""Point the manifest at the dataset's new home inside the run, and forget the pruned checkpoints."""
import sys
from pathlib import Path
from clipmem_core import cache, load_run
from clipmem_core.atomic import write_json
out = Path(sys.argv[1])
run = load_run(out)
manifest = run.manifest
manifest.dataset.path = "dataset/captions_noisy.csv"
manifest.dataset.root = "dataset"
manifest.config["data"] = manifest.dataset.path  # not the build's temporary folder, gone by now
manifest.files = [f for f in manifest.files if not f.startswith(cache.CHECKPOINT_DIR)]
write_json(out / cache.MANIFEST, manifest.to_dict())
run = load_run(out)
assert run.image_path(0) is not None, "demo images are not reachable from the run"
PY
cat > "$OUT/README.md" <<MD
# Demo run: openclipart

A complete clipmem run, committed so that \`streamlit run app.py\` opens on real data with no other step.
Rebuild it with \`FORCE=1 scripts/build_demo.sh\`.

- **Images and captions:** a seeded subset (--limit $N --seed $SEED) of the Open Clip Art Library 0.18 from
  Debian's \`openclipart-png\` and \`openclipart-svg\` packages, built by \`scripts/build_openclipart.py\`:
  PNGs flattened onto white and resized to 64 x 64; captions from each SVG's \`dc:title\` and keywords.
  See \`dataset/SOURCE.txt\` for the package versions.
- **Licence:** public domain. Every picture carries \`cc:license PublicDomain\`; Debian's copyright file
  says the same (quoted in \`dataset/SOURCE.txt\`).
- **Mis-captions:** 4 % of the captions were replaced with other samples' captions
  (\`python -m clipmem_core inject-miscaptions --fraction 0.04 --seed $SEED\`); \`is_miscaptioned\` in
  \`dataset/captions_noisy.csv\` and \`scores.parquet\` is the ground truth.
- **Run:** \`python -m clipmem_core run --data captions_noisy.csv --preset $PRESET --epochs $EPOCHS --seed $SEED\`;
  the default full protocol (K = 2 folds: every sample scored); model checkpoints were deleted
  afterwards to keep the folder small.
MD
SIZE_MB=$(du -sm "$OUT" | cut -f1)
echo "demo: $OUT, ${SIZE_MB} MB"
[ "$SIZE_MB" -le "$MAX_MB" ] || { echo "demo is over ${MAX_MB} MB" >&2; exit 1; }
