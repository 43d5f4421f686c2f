"""mixup and CutMix on the training batches of StaticImageDataModule (embedded digits): soft targets, images, eval untouched."""

from __future__ import annotations

import math
import pickle
import re

import lightning
import pytest
import torch
from lightning.fabric.utilities.data import _replace_dunder_methods
from lightning.pytorch.utilities.data import _update_dataloader
from torch.utils.data import DataLoader, DistributedSampler

from snn_lightning.data import MixupCutmixCollate, StaticImageDataModule
from snn_lightning.errors import ConfigurationError

CLASSES = 10


@pytest.fixture(scope="module")
def clean_samples() -> list[tuple[torch.Tensor, int]]:
    """Return one unaugmented training sample of each of the 10 digit classes, in class order."""
    data = StaticImageDataModule(augment=False)
    data.setup("fit")
    first = {}
    for index in range(len(data.train_set)):
        image, label = data.train_set[index]
        first.setdefault(label, image)
        if len(first) == CLASSES:
            break
    return [(first[label], label) for label in range(CLASSES)]


def partners(targets: torch.Tensor) -> tuple[torch.Tensor, list[int]]:
    """Return λ (the weight of each sample's own class) and the sample each row was mixed with (its own when λ = 1).

    The samples are one per class in class order, so the second class in a target row is the partner's index.
    """
    assert targets.shape == (CLASSES, CLASSES) and targets.dtype == torch.float32
    assert torch.allclose(targets.sum(1), torch.ones(CLASSES))
    own = targets.diagonal()
    others = []
    for row in range(CLASSES):
        nonzero = [c for c in targets[row].nonzero().flatten().tolist() if c != row]
        assert len(nonzero) <= 1, f"row {row} mixes more than two classes: {targets[row]}"
        others.append(nonzero[0] if nonzero else row)
    return own, others


def is_mixup(images: torch.Tensor, clean: torch.Tensor, targets: torch.Tensor) -> bool:
    """Return whether every image is λ·own + (1−λ)·partner with λ read from its target."""
    own, others = partners(targets)
    expected = own.view(-1, 1, 1, 1) * clean + (1 - own.view(-1, 1, 1, 1)) * clean[others]
    return torch.allclose(images, expected, atol=1e-5)


def is_cutmix(images: torch.Tensor, clean: torch.Tensor, targets: torch.Tensor) -> bool:
    """Return whether every pixel comes from the image or its partner, the pasted ones within a box of area (1−λ)·H·W."""
    own, others = partners(targets)
    height, width = images.shape[-2:]
    from_own = (images == clean).all(1)
    from_partner = (images == clean[others]).all(1)
    if not (from_own | from_partner).all():
        return False
    pasted = (~from_own).any(0).nonzero()  # torchvision pastes one box at the same place in every image
    box_area = (1 - own) * height * width
    assert torch.allclose(box_area, box_area[0].expand(CLASSES)), "one λ per batch"
    assert math.isclose(box_area[0].item(), round(box_area[0].item()), abs_tol=1e-4), "λ is 1 − box area / image area"
    if len(pasted) == 0:
        return True
    spanned = (pasted[:, 0].max() - pasted[:, 0].min() + 1) * (pasted[:, 1].max() - pasted[:, 1].min() + 1)
    return spanned.item() <= round(box_area[0].item())


def mix(
    collate: MixupCutmixCollate, samples: list[tuple[torch.Tensor, int]]
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Return the mixed images, the soft targets and the unmixed images of ``samples``."""
    images, targets = collate(samples)
    return images, targets, torch.stack([image for image, _ in samples])


def test_mixup_images_are_the_convex_combination_their_targets_state(clean_samples) -> None:
    collate = MixupCutmixCollate(CLASSES, mixup_alpha=0.8)
    torch.manual_seed(0)
    weights = set()
    for _ in range(5):
        images, targets, clean = mix(collate, clean_samples)
        assert is_mixup(images, clean, targets)
        own = targets.diagonal()
        assert torch.allclose(own, own[0].expand(CLASSES)), "one λ per batch"
        weights.add(round(own[0].item(), 6))
    assert len(weights) == 5 and all(0 < weight < 1 for weight in weights), "λ is drawn anew per batch"


def test_cutmix_images_equal_one_of_the_two_sources_pixelwise(clean_samples) -> None:
    collate = MixupCutmixCollate(CLASSES, cutmix_alpha=1.0)
    torch.manual_seed(0)
    pasted = 0
    for _ in range(5):
        images, targets, clean = mix(collate, clean_samples)
        assert is_cutmix(images, clean, targets)
        pasted += int(not torch.equal(images, clean))
    assert pasted > 0


def test_both_alphas_choose_mixup_or_cutmix_per_batch(clean_samples) -> None:
    collate = MixupCutmixCollate(CLASSES, mixup_alpha=0.8, cutmix_alpha=1.0)
    torch.manual_seed(0)
    kinds = []
    for _ in range(30):
        images, targets, clean = mix(collate, clean_samples)
        kinds.append("cutmix" if is_cutmix(images, clean, targets) else "mixup")
        assert kinds[-1] == "cutmix" or is_mixup(images, clean, targets)
    assert 5 <= kinds.count("cutmix") <= 25, kinds


def test_train_loader_batches_carry_soft_targets_and_evaluation_batches_do_not() -> None:
    plain = StaticImageDataModule(batch_size=32, val_fraction=0.2)
    mixed = StaticImageDataModule(batch_size=32, val_fraction=0.2, mixup_alpha=0.8, cutmix_alpha=1.0)
    for data in (plain, mixed):
        data.setup()
    images, targets = next(iter(mixed.train_dataloader()))
    assert images.shape == (32, 1, 8, 8) and images.dtype == torch.float32
    assert targets.shape == (32, CLASSES) and targets.dtype == torch.float32
    assert torch.allclose(targets.sum(1), torch.ones(32)) and ((targets > 0).sum(1) <= 2).all()
    assert mixed.collate_fn is None, "the mixing collate is set for the training loader only"
    for name in ("val_dataloader", "test_dataloader", "predict_dataloader"):
        assert not isinstance(getattr(mixed, name)().collate_fn, MixupCutmixCollate)
        batches = zip(getattr(mixed, name)(), getattr(plain, name)())
        for (mixed_images, mixed_labels), (plain_images, plain_labels) in batches:
            assert mixed_labels.dtype == torch.int64 and mixed_labels.shape == (len(mixed_images),)
            assert torch.equal(mixed_images, plain_images) and torch.equal(mixed_labels, plain_labels)


def test_zero_alphas_keep_integer_labels() -> None:
    data = StaticImageDataModule(batch_size=16, mixup_alpha=0.0, cutmix_alpha=0.0)
    data.setup("fit")
    loader = data.train_dataloader()
    assert not isinstance(loader.collate_fn, MixupCutmixCollate)
    _, labels = next(iter(loader))
    assert labels.shape == (16,) and labels.dtype == torch.int64


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"mixup_alpha": -0.1}, "data.mixup_alpha is -0.1; set it >= 0"),
        ({"cutmix_alpha": -1.0}, "data.cutmix_alpha is -1.0; set it >= 0"),
        ({"mixup_alpha": float("nan")}, "data.mixup_alpha is nan"),
    ],
)
def test_bad_alphas_raise_configuration_error(arguments: dict, named: str) -> None:
    with pytest.raises(ConfigurationError, match=re.escape(named)):
        StaticImageDataModule(**arguments)


def test_a_collate_without_mixing_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="mixup_alpha > 0 or cutmix_alpha > 0"):
        MixupCutmixCollate(CLASSES)


def test_the_collate_pickles_and_mixes_in_a_worker_process(clean_samples) -> None:
    collate = pickle.loads(pickle.dumps(MixupCutmixCollate(CLASSES, mixup_alpha=0.8, cutmix_alpha=1.0)))
    _, targets = collate(clean_samples)
    assert targets.shape == (CLASSES, CLASSES)
    data = StaticImageDataModule(batch_size=8, num_workers=1, cutmix_alpha=1.0)
    data.setup("fit")
    _, targets = next(iter(data.train_dataloader()))
    assert targets.shape == (8, CLASSES) and targets.dtype == torch.float32


def test_lightning_keeps_the_collate_when_it_rebuilds_the_loader_for_ddp() -> None:
    # What Lightning does under DDP: record the DataLoader's constructor arguments, rebuild it with a DistributedSampler.
    data = StaticImageDataModule(batch_size=8, mixup_alpha=0.8)
    data.setup("fit")
    with _replace_dunder_methods(DataLoader, "dataset"):
        loader = data.train_dataloader()
    rebuilt = _update_dataloader(loader, DistributedSampler(data.train_set, num_replicas=2, rank=0))
    assert isinstance(rebuilt.collate_fn, MixupCutmixCollate) and isinstance(rebuilt.sampler, DistributedSampler)


def test_trainer_fits_on_soft_targets(tmp_path) -> None:
    seen = {}

    class Linear(lightning.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.layer = torch.nn.Linear(64, CLASSES)

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> torch.Tensor:
            images, targets = batch
            seen["train"] = targets.dtype
            return torch.nn.functional.cross_entropy(self.layer(images.flatten(1)), targets)

        def validation_step(self, batch: tuple[torch.Tensor, torch.Tensor], _: int) -> None:
            seen["val"] = batch[1].dtype

        def configure_optimizers(self) -> torch.optim.Optimizer:
            return torch.optim.SGD(self.parameters(), lr=0.1)

    trainer = lightning.Trainer(
        fast_dev_run=2, accelerator="cpu", logger=False, enable_progress_bar=False, default_root_dir=tmp_path
    )
    trainer.fit(Linear(), datamodule=StaticImageDataModule(batch_size=16, mixup_alpha=0.8, cutmix_alpha=1.0))
    assert seen == {"train": torch.float32, "val": torch.int64}
