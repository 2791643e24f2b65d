"""Mean of two reader weight folders (same start, same tensors) into OUT, with a model card whose
sha256 is the new file's; the int8 graph is made afterwards by ``train-reader --export-from OUT``."""

import hashlib
import json
import shutil
import sys
from pathlib import Path

from safetensors.numpy import load_file, save_file

a_dir, b_dir, out = (Path(x) for x in sys.argv[1:4])
a, b = load_file(str(a_dir / "reader.safetensors")), load_file(str(b_dir / "reader.safetensors"))
if a.keys() != b.keys():
    raise SystemExit(f"the two folders hold different tensors: {sorted(a.keys() ^ b.keys())[:5]}")
out.mkdir(parents=True, exist_ok=True)
weights = out / "reader.safetensors"
save_file({k: ((a[k].astype("float32") + b[k].astype("float32")) / 2).astype(a[k].dtype) for k in a}, str(weights))
card = json.loads((b_dir / "reader.json").read_text(encoding="utf-8"))
for key in ("onnx_file", "onnx_sha256", "onnx_bytes"):
    card.pop(key, None)
card.update(sha256=hashlib.sha256(weights.read_bytes()).hexdigest(), bytes=weights.stat().st_size)
card["training"] = dict(card.get("training", {}), note=f"mean of the weights in {a_dir} and {b_dir}")
(out / "reader.json").write_text(json.dumps(card, indent=1), encoding="utf-8")
shutil.copy(b_dir / "MODEL_CARD.md", out / "MODEL_CARD.md")
print(f"wrote {weights}; next: python -m qa train-reader --export-from {out} --export DIR")
