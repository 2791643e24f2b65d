"""Make ``.gpu-kit/`` (ignored): what a lent GPU machine needs to train the reader from the base
model with ``docs/gpu/train.sh``, about 58 MB, inside the 64 MiB a call can carry once the tracked
weights are set aside (docs/gpu/README.md).

- ``model16/``: the packaged all-MiniLM-L6-v2 folder in float16 (45 MB; training casts it back to float32);
- ``squad-train/``: SQuAD v1.1 train and its ambiguous-answer list (the held-out split and validation);
- ``retrieved-5.json.gz``: every question of fit-rerank's corpora with its top 5 passages, searched
  here (``train-reader --retrieved 5 --dump-retrieved``): the GPU image has no engine;
- ``wheels/``: this machine's tokenizers as a wheel for the GPU's Python (an image's 0.23.2 cuts
  long passages short; ``FastTokenizer`` refuses it).

Run from the repository root: ``.venv/bin/python docs/gpu/kit.py``."""

import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

from safetensors.torch import load_file, save_file

from qa.reading import model as rm
from qa.reading.train import DEFAULT_DATA

KIT = Path(".gpu-kit")
MODEL_FILES = ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")


def main() -> int:
    base = rm.packaged_model_path()
    model = KIT / "model16"
    model.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.half().contiguous() for k, v in load_file(str(base / "model.safetensors")).items()}
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    for name in MODEL_FILES:
        shutil.copy2(base / name, model / name)
    data = KIT / "squad-train"
    data.mkdir(exist_ok=True)
    for name in ("train-v1.1.json.gz", "ambiguous_answer_start_ids.txt"):
        shutil.copy2(DEFAULT_DATA / name, data / name)
    retrieved = KIT / "retrieved-5.json.gz"
    if not retrieved.is_file():
        subprocess.run(
            [sys.executable, "-m", "qa", "train-reader", "--retrieved", "5", "--dump-retrieved", str(retrieved)],
            check=True,
        )
    wheels = KIT / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    platforms = [x for p in PLATFORMS for x in ("--platform", p)]
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", "3.12",
         "--implementation", "cp", *platforms, "-d", str(wheels), f"tokenizers=={version('tokenizers')}"],
        check=True,
    )  # fmt: skip
    size = sum(f.stat().st_size for f in KIT.rglob("*") if f.is_file())
    print(f"{KIT}/: {size / 1e6:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
