"""Samples/s of the event train loader on the embedded saccade digits: cold (building the frame cache) and warm.

    python benchmarks/event_loading.py                     # quickstart_dvs data settings, 0 and 2 workers
    python benchmarks/event_loading.py --time-steps 10 --workers 0 1 2 4

The data settings are those of ``configs/quickstart_dvs.yaml`` (T, binning, frame size,
augmentation, batch size); only the cache folder, ``num_workers`` and, if given, T change. For each
worker count, in a fresh cache folder: *cold* is the samples of the first pass of the train loader
divided by the time to build the cache (simulate the sensor, frame, write HDF5) plus that pass;
*build* is the train part's recordings per second of cache building alone; *warm* is a second
pass of the same loader, read from the finished cache with augmentation on (persistent workers:
already started). No model runs: this is what the data side can feed a training step.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from torch.utils.data import DataLoader

from snn_lightning.data import EventDataModule

QUICKSTART_DVS = Path(__file__).resolve().parents[1] / "configs" / "quickstart_dvs.yaml"


def one_pass(loader: DataLoader) -> tuple[int, float]:
    """Return ``(samples, seconds)`` of one pass over ``loader``."""
    start = time.perf_counter()
    samples = sum(len(labels) for _, labels in loader)
    return samples, time.perf_counter() - start


def measure(settings: dict[str, Any], workers: int) -> dict[str, float]:
    """Return the cold, build and warm samples/s of the train loader with ``workers`` worker processes."""
    with tempfile.TemporaryDirectory() as root:
        data = EventDataModule(**(settings | {"root": root, "cache_dir": None, "num_workers": workers}))
        start = time.perf_counter()
        data.setup("fit")
        build = time.perf_counter() - start
        loader = data.train_dataloader()
        samples, first = one_pass(loader)
        _, warm = one_pass(loader)
        recordings = len(data.train_set) + len(data.val_set)
    return {"cold": samples / (build + first), "build": recordings / build, "warm": samples / warm}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-steps", type=int, default=None, help="frames per recording (default: the config's)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts to measure")
    args = parser.parse_args()
    config = yaml.safe_load(QUICKSTART_DVS.read_text())
    frames = args.time_steps or config["model"]["init_args"]["time_steps"]
    settings = config["data"]["init_args"] | {"frames": frames}
    rows = [(workers, measure(settings, workers)) for workers in args.workers]
    print(f"\nsaccade digits train split, T={settings['frames']}, batch {settings['batch_size']} (samples/s)")
    print(f"{'workers':>8} {'cold':>10} {'build':>10} {'warm':>10}")
    for workers, rates in rows:
        print(f"{workers:>8} {rates['cold']:>10.0f} {rates['build']:>10.0f} {rates['warm']:>10.0f}")


if __name__ == "__main__":
    main()
