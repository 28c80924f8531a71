"""`lossaudit calibrate`: a scoring forward's cost in training steps on this machine, the --forward-cost of a budget
counted in cost (training.budget, training.calibrate)."""

from __future__ import annotations

import typer


def calibrate_command(
    dataset: str = typer.Option("digits", "--dataset", help="dataset spec whose images are timed"),
    model: str = typer.Option("resnet8", "--model", help="model name, as for run"),
    train_size: int = typer.Option(1000, "--train-size", help="training examples to load (a stratified subset)"),
    image_size: int = typer.Option(0, "--image-size", help="resize images to S×S; 0 = keep"),
    batch_size: int = typer.Option(128, "--batch-size", help="examples per batch, B"),
    device: str = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N"),
    threads: int = typer.Option(0, "--threads", help="CPU threads; 0 = every core this process may use"),
) -> None:
    """Measure what a scoring forward costs in training steps on this machine, per example: the --forward-cost of
    a budget counted in cost (--budget-unit cost). Nothing else should run meanwhile."""
    typer.echo(run_calibrate(dataset=dataset, model=model, train_size=train_size, image_size=image_size,
                             batch_size=batch_size, device=device, threads=threads))


def run_calibrate(*, dataset: str, model: str, train_size: int, image_size: int, batch_size: int, device: str,
                  threads: int, seed: int = 0) -> str:
    """Time the scoring forward and the training step of `model` on `dataset` here; the line to print."""
    from lossaudit.running import use_threads
    from lossaudit.training.calibrate import calibrate
    from lossaudit.training.config import RunConfig
    from lossaudit.training.prepare import prepare, train_data
    from lossaudit.training.trainer import Trainer

    n_threads = use_threads(threads)
    cfg = RunConfig(dataset=dataset, model=model, train_size=train_size, image_size=image_size,
                    batch_size=batch_size, device=device, seed=seed, epochs=1)
    c = calibrate(Trainer(cfg, train_data(prepare(cfg))))
    return (f"forward cost {c.forward_cost:.3f}: a scoring forward takes {c.forward * 1e3:.3g} ms per example, a "
            f"training step {c.step * 1e3:.3g} ms ({model}, batches of {c.batch_size}, {c.device}, {n_threads} "
            f"thread(s)); for a budget in cost: --budget-unit cost --forward-cost {c.forward_cost:.3f}")
