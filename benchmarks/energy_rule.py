"""Energy per sample of the paper networks at a given firing rate, by `EnergyEstimate`'s rule, per pooled-spike rule.

    python benchmarks/energy_rule.py                          # ResNet-34 224 px, ResNet-18 224 px, ResNet-19 and ResNet-20 32 px
    python benchmarks/energy_rule.py --rate 0.1 --time-steps 6
    python benchmarks/energy_rule.py --smoke                  # seconds: ResNet-20 at 16 px, T=2 (the suite runs it)

Every spiking neuron's output is replaced by independent random spikes at ``--rate`` (a forward
hook), so every layer after the first sees spikes, or pooled spikes, at that rate; the network's
weights do not matter for the count. ``EnergyEstimate`` then runs on one test image, once with
``pooled_spikes="ac"`` (the papers' rule) and once with ``"mac"``. Printed per network: the SOP
proxy of both rules, the memory-inclusive estimate, and the ANN's, in mJ per sample.
"""

from __future__ import annotations

import argparse
import tempfile

import lightning as L
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, TensorDataset

from snn_lightning.callbacks import EnergyEstimate, spiking_layers
from snn_lightning.modules import SNNClassifier

NETWORKS = (("resnet34", 224, 1000), ("resnet18", 224, 1000), ("resnet19", 32, 100), ("resnet20", 32, 10))


def fire_at(rate: float, generator: torch.Generator):
    """Return a forward hook that replaces a neuron's spikes by random spikes at ``rate``."""

    def hook(module: nn.Module, args: tuple, output: Tensor) -> Tensor:
        return torch.bernoulli(torch.full_like(output, rate), generator=generator)

    return hook


def energy(arch: str, side: int, classes: int, rate: float, time_steps: int, pooled_spikes: str) -> EnergyEstimate:
    """Return the estimate after testing ``arch`` on one random image with every neuron firing at ``rate``."""
    torch.manual_seed(0)
    model = SNNClassifier(arch=arch, num_classes=classes, in_channels=3, time_steps=time_steps)
    generator = torch.Generator().manual_seed(0)
    for neuron in spiking_layers(model).values():
        neuron.register_forward_hook(fire_at(rate, generator))
    estimate = EnergyEstimate(pooled_spikes=pooled_spikes)
    data = DataLoader(TensorDataset(torch.randn(1, 3, side, side), torch.zeros(1, dtype=torch.long)))
    with tempfile.TemporaryDirectory() as folder:
        trainer = L.Trainer(
            accelerator="cpu",
            callbacks=[estimate],
            default_root_dir=folder,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        trainer.test(model, data, verbose=False)
    return estimate


def main() -> None:
    """Print the energy table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rate", type=float, default=0.2, help="firing rate of every spiking neuron")
    parser.add_argument("--time-steps", type=int, default=4, help="time steps T of one inference")
    parser.add_argument(
        "--smoke", action="store_true", help="ResNet-20 on a 16 px image, T=2: checks the script runs in seconds"
    )
    args = parser.parse_args()
    networks = (("resnet20", 16, 10),) if args.smoke else NETWORKS
    if args.smoke:
        args.time_steps = 2
    print(f"mJ per sample, every neuron firing at {args.rate}, T={args.time_steps}, 45nm_fp32")
    print("| network | pooled spikes as AC (papers) | as MAC | AC + memory | ANN | ANN + memory |")
    print("|---|---|---|---|---|---|")
    for arch, side, classes in networks:
        papers = energy(arch, side, classes, args.rate, args.time_steps, "ac").report
        as_mac = energy(arch, side, classes, args.rate, args.time_steps, "mac").report
        figures = (
            papers.energy_pj,
            as_mac.energy_pj,
            papers.energy_with_memory_pj,
            papers.ann_energy_pj,
            papers.ann_energy_with_memory_pj,
        )
        print(f"| {arch} {side} px | " + " | ".join(f"{value * 1e-9:.3f}" for value in figures) + " |", flush=True)


if __name__ == "__main__":
    main()
