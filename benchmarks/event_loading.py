"""Samples/s of the event train loader on the embedded saccade digits: cold (building the frame cache) and warm.

    python benchmarks/event_loading.py                     # quickstart_dvs data settings, 0 and 2 workers
    python benchmarks/event_loading.py --time-steps 10 --workers 0 1 2 4
    python benchmarks/event_loading.py --smoke             # seconds: 0 workers, 2 batches (the suite runs it)

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
import itertools
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from torch.utils.data import DataLoader

from snn_lightning.data import EventDataModule, FrameAugment

QUICKSTART_DVS = Path(__file__).resolve().parents[1] / "configs" / "quickstart_dvs.yaml"


def one_pass(loader: DataLoader, batches: int | None = None) -> tuple[int, float]:
    """Return ``(samples, seconds)`` of one pass over ``loader``, or over its first ``batches`` batches."""
    start = time.perf_counter()
    samples = sum(len(labels) for _, labels in itertools.islice(loader, batches))
    return samples, time.perf_counter() - start


def measure(settings: dict[str, Any], workers: int, batches: int | None = None) -> dict[str, float]:
    """Return the cold, build and warm samples/s of the train loader with ``workers`` worker processes.

    ``batches`` cuts each pass short (the cache is still built whole).
    """
    with tempfile.TemporaryDirectory() as root:
        data = EventDataModule(**(settings | {"root": root, "cache_dir": None, "num_workers": workers}))
        start = time.perf_counter()
        data.setup("fit")
        build = time.perf_counter() - start
        loader = data.train_dataloader()
        samples, first = one_pass(loader, batches)
        _, warm = one_pass(loader, batches)
        recordings = len(data.train_set) + len(data.val_set)
    return {"cold": samples / (build + first), "build": recordings / build, "warm": samples / warm}


def main() -> None:
    """Print the samples/s table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--time-steps", type=int, default=None, help="frames per recording (default: the config's)")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="worker counts to measure")
    parser.add_argument(
        "--smoke", action="store_true", help="0 workers, passes of 2 batches: checks the script runs in seconds"
    )
    args = parser.parse_args()
    batches = 2 if args.smoke else None
    if args.smoke:
        args.workers = [0]
    config = yaml.safe_load(QUICKSTART_DVS.read_text())
    frames = args.time_steps or config["model"]["init_args"]["time_steps"]
    settings = config["data"]["init_args"] | {"frames": frames}
    # The CLI turns the config's augment mapping into a FrameAugment; outside it, that is done here.
    if settings.get("augment") is not None:
        settings["augment"] = FrameAugment(**settings["augment"])
    rows = [(workers, measure(settings, workers, batches)) for workers in args.workers]
    print(f"\nsaccade digits train split, T={settings['frames']}, batch {settings['batch_size']} (samples/s)")
    print(f"{'workers':>8} {'cold':>10} {'build':>10} {'warm':>10}")
    for workers, rates in rows:
        print(f"{workers:>8} {rates['cold']:>10.0f} {rates['build']:>10.0f} {rates['warm']:>10.0f}")


if __name__ == "__main__":
    main()
