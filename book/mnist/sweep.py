"""The learning-rate sweep that picks the separable net's rate (chapter 2, Appendix A1).

Each rate of :data:`SWEEP_RATES` trains LeNet-5 DSC on the first :data:`SWEEP_IMAGES` training
images for at most :data:`SWEEP_EPOCHS` epochs (the stored runs ``lenet5_dsc_lr<rate>``, reused
once finished); the rate whose kept epoch has the lowest validation loss is chosen. Defined once,
so the chapter and the appendices that rebuild the nets reuse the same runs and the same choice.
"""

from __future__ import annotations

from book.mnist.data import MNISTTensors
from book.mnist.models import LeNet5DSC
from book.mnist.training import TrainConfig, TrainResult, train

__all__ = ["SWEEP_EPOCHS", "SWEEP_IMAGES", "SWEEP_RATES", "learning_rate_sweep"]

SWEEP_RATES = (0.01, 0.02, 0.04)  # the first is Part a's rate, TrainConfig's default
SWEEP_IMAGES, SWEEP_EPOCHS = 10_000, 8  # training images, and the most epochs, per rate


def learning_rate_sweep(data: MNISTTensors) -> tuple[dict[float, TrainResult], float]:
    """Every rate's run (trained, or reused from ``results/``) and the rate chosen: the one
    whose kept epoch has the lowest validation loss."""
    runs = {lr: train(f"lenet5_dsc_lr{lr:g}", LeNet5DSC, data,
                      TrainConfig(lr=lr, train_limit=SWEEP_IMAGES, max_epochs=SWEEP_EPOCHS))
            for lr in SWEEP_RATES}
    return runs, min(SWEEP_RATES, key=lambda lr: runs[lr].kept("val_loss"))
