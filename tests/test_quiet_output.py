"""A quickstart's output: our lines, one per epoch, and none of the library messages a user would have to ignore."""

import logging
import types

import lightning as L
from conftest import REPO
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.loggers import CSVLogger, WandbLogger

from snn_lightning.callbacks import RichProgress
from snn_lightning.callbacks.progress import epoch_line
from snn_lightning.cli import main
from snn_lightning.cli.quiet import drop_unset_wandb_anonymous, quiet_library_output
from snn_lightning.modules import SNNClassifier
from snn_lightning.neurons import LIF

QUICKSTART = str(REPO / "configs" / "quickstart.yaml")
# One epoch as long as the CLI's logging interval (10 steps), so that Lightning has nothing to say about it.
SHORT = ["--model.width_multiplier", "0.25", "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "10"]
SHORT += ["--trainer.limit_val_batches", "2", "--trainer.limit_test_batches", "2"]
UNWANTED = ["litlogger", "Total FLOPs", "LeafSpec", "log_every_n_steps", "exists and is not empty", "v_num"]
UNWANTED += ["dirpath has changed", "is an instance of `nn.Module`"]


def unwanted_in(text: str) -> list[str]:
    """Return the unwanted messages found in ``text``."""
    return [message for message in UNWANTED if message in text]


def test_quickstart_fit_and_test_print_only_our_lines(in_tmp_dir, capfd, recwarn):
    main(["fit", "--config", QUICKSTART, *SHORT])
    main(["test", "--config", QUICKSTART, *SHORT, "--ckpt_path", "best"])
    out, err = capfd.readouterr()
    warned = "\n".join(str(warning.message) for warning in recwarn)
    assert unwanted_in(out + err + warned) == []
    epochs = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epochs) == 1 and epochs[0].startswith("epoch 1/1: ") and "train/loss " in epochs[0]
    assert "model complexity: " in out and "test/acc" in out
    assert (in_tmp_dir / "logs" / "quickstart" / "version_0" / "run.json").is_file()


def test_the_litlogger_tip_and_the_repeated_checkpoint_path_are_filtered_and_other_messages_kept():
    quiet_library_output()
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")

    def record(message: str) -> logging.LogRecord:
        return logger.makeRecord(logger.name, logging.INFO, __file__, 1, message, (), None)

    assert not logger.filter(record("💡 Tip: For seamless cloud logging, try installing [litlogger](...)"))
    assert not logger.filter(record("Restoring states from the checkpoint path at best.ckpt"))
    assert logger.filter(record("GPU available: False, used: False"))


def test_epoch_line_shows_epoch_level_metrics_and_the_duration():
    metrics = {"train/loss_step": 0.1, "val/acc": 0.9, "train/loss_epoch": 0.51234}
    assert epoch_line(2, 30, metrics, 1.44) == "epoch 3/30: train/loss 0.512, val/acc 0.900 (1.4 s)"
    assert epoch_line(0, -1, {}, 0.0) == "epoch 1: (0.0 s)"


def test_progress_bars_leave_out_the_logger_version(tmp_path):
    trainer = L.Trainer(logger=CSVLogger(tmp_path), default_root_dir=tmp_path, enable_progress_bar=False)
    model = BoringModel()
    assert "v_num" in TQDMProgressBar().get_metrics(trainer, model)
    assert "v_num" not in RichProgress().get_metrics(trainer, model)


def test_wandb_gets_anonymous_only_when_it_was_set(tmp_path):
    default, chosen = WandbLogger(save_dir=tmp_path, offline=True), WandbLogger(save_dir=tmp_path, anonymous=True)
    drop_unset_wandb_anonymous(types.SimpleNamespace(loggers=[default, chosen]))
    assert "anonymous" not in default._wandb_init and chosen._wandb_init["anonymous"] == "allow"


def test_a_neuron_object_is_left_out_of_the_hyperparameters_without_a_warning(recwarn):
    model = SNNClassifier(arch="resnet_mini", neuron=LIF())
    assert "neuron" not in model.hparams
    assert unwanted_in("\n".join(str(warning.message) for warning in recwarn)) == []
