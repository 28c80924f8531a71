"""`lossaudit audit DATASET --backbone NAME --weights FILE`: the user's own pretrained torchvision model, read from a
local weights file (nothing is downloaded), as the audit's eyes.

Every image, resized to the model's input size (224 by default, bilinear and antialiased; grey images repeated to
three channels) and normalised with ImageNet's channel statistics, goes through the model; the input of its last
linear layer (the classifier) is the image's embedding. The audit then fits its cross-fitted heads on these
embeddings (lossaudit.audit.heads, `--features`): the backbone stays frozen, so no head ever sees the label of an
image it judges, and the backbone's training never saw the audited labels unless the user's did.

With `--fine-tune-epochs N` the backbone itself is cross-fitted instead (`fine_tuned`): the images are dealt into
five folds stratified by label, as for the heads; for each fold a copy of the model, its classifier replaced by one
for the dataset's classes, trains every weight on the other folds for N epochs (SGD with momentum 0.9 from
FINE_TUNE_LR falling to 0 by a cosine, batches of BATCH in a new order each epoch, random horizontal flips) and
predicts its own fold and the test images. Five trainings of the whole model: meant for a GPU (`--device cuda`),
slow on a CPU at 224 × 224.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lossaudit.core.errors import UserError

IMAGE_SIZE = 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, which torchvision's weights were trained with
BATCH = 64
FINE_TUNE_LR = 0.01
MOMENTUM = 0.9
EXAMPLES = "resnet18, resnet50, convnext_tiny, vit_b_16"


def load(name: str, weights: Path):
    """The torchvision model `name` with the state dict in `weights`, in eval mode; one line for anything wrong."""
    import torch
    try:
        import torchvision
    except ImportError:
        raise UserError("--backbone needs torchvision: pip install torchvision") from None
    if name not in torchvision.models.list_models():
        raise UserError(f"--backbone {name!r}: not a torchvision model; valid: a name from "
                        f"torchvision.models.list_models(), e.g. {EXAMPLES}")
    weights = Path(weights).expanduser()
    if not weights.is_file():
        raise UserError(f"--weights {str(weights)!r}: no such file; give the model's state dict saved with torch.save")
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # any unreadable file is the user's to fix
        raise UserError(f"--weights {str(weights)!r}: not a readable state dict ({type(err).__name__})") from None
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    if not isinstance(state, dict):
        raise UserError(f"--weights {str(weights)!r}: holds a {type(state).__name__}, not a state dict")
    model = torchvision.models.get_model(name, weights=None)
    expected = model.state_dict()
    head = _last_linear(model)
    # the classifier may have been trained for another number of classes: it is never used
    skip = {k for k in expected if k.startswith(f"{head}.")}
    missing = sorted(set(expected) - set(state) - skip)
    unexpected = sorted(set(state) - set(expected))
    wrong = sorted(k for k in set(expected) & set(state) - skip if tuple(state[k].shape) != tuple(expected[k].shape))
    if missing or unexpected or wrong:
        first = (f"lacks {missing[0]!r}" if missing else f"has {unexpected[0]!r}, which {name} does not"
                 if unexpected else f"gives {wrong[0]!r} shape {tuple(state[wrong[0]].shape)}, {name} needs "
                 f"{tuple(expected[wrong[0]].shape)}")
        raise UserError(f"--weights {str(weights)!r}: not weights of {name}: it {first} "
                        f"({len(missing)} missing, {len(unexpected)} unexpected, {len(wrong)} of another shape)")
    model.load_state_dict({**expected, **{k: v for k, v in state.items() if k not in skip}})
    return model.eval(), head


def _last_linear(model) -> str:
    import torch
    names = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    if not names:
        raise UserError("--backbone: the model has no linear classifier whose input could serve as the embedding")
    return names[-1]


def _inputs(chunk, size: int):
    """uint8 images (B, C, H, W) as the model's input: three channels, size × size, ImageNet-normalised floats."""
    import torch
    from torch.nn import functional as F

    images = chunk.float() / 255.0
    images = images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images[:, :3]
    if images.shape[-2:] != (size, size):
        images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    mean = torch.tensor(MEAN, device=images.device)[None, :, None, None]
    std = torch.tensor(STD, device=images.device)[None, :, None, None]
    return (images - mean) / std


def embed(model, head: str, x: np.ndarray, *, size: int = IMAGE_SIZE) -> np.ndarray:
    """(N, D) embeddings of uint8 images x (N, C, H, W): the input of the model's last linear layer."""
    import torch

    layer = dict(model.named_modules())[head]
    captured: list = []
    hook = layer.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].flatten(1)))
    try:
        with torch.inference_mode():
            for chunk in torch.split(torch.from_numpy(x), BATCH):
                model(_inputs(chunk, size))
    finally:
        hook.remove()
    return torch.cat(captured).double().numpy() if captured else np.zeros((0, 0))


def _predict(model, x: np.ndarray, size: int, device) -> np.ndarray:
    import torch

    model.eval()
    out = []
    with torch.inference_mode():
        for chunk in torch.split(torch.from_numpy(x), BATCH):
            out.append(torch.softmax(model(_inputs(chunk.to(device), size)).float(), 1).cpu())
    return torch.cat(out).double().numpy()


def fine_tuned(model, head: str, x: np.ndarray, label: np.ndarray, n_classes: int, *, epochs: int,
               test_x: np.ndarray | None = None, size: int = IMAGE_SIZE, seed: int = 0, device: str = "cpu",
               lr: float = FINE_TUNE_LR, batch: int = BATCH, say=None):
    """Each image's probabilities from a copy of the backbone fine-tuned on the other folds (module docstring), as
    lossaudit.audit.heads.Heads: probs (n, K), reader (n,) the fold's copy that predicted each image, test_probs
    (folds, m, K) or None. `say` gets a line per fold."""
    import copy
    import math

    import torch

    from lossaudit.audit.heads import FOLDS, Heads
    from lossaudit.core.folds import deal

    if epochs < 1:
        raise UserError(f"--fine-tune-epochs must be >= 1 to fine-tune, got {epochs}")
    counts = np.bincount(label, minlength=n_classes)
    if counts[counts > 0].min() < FOLDS:
        small = int(np.flatnonzero((counts > 0) & (counts < FOLDS))[0])
        raise UserError(f"--fine-tune-epochs: class {small} has {counts[small]} image(s); the {FOLDS} cross-fitted "
                        f"copies need at least {FOLDS} of every class present")
    fold = deal(label, FOLDS, [seed, 0x4EAD])
    probs = np.zeros((len(label), n_classes))
    test = None if test_x is None else np.zeros((FOLDS, len(test_x), n_classes))
    targets = torch.from_numpy(label.astype(np.int64))
    for k in range(FOLDS):
        torch.manual_seed(seed * FOLDS + k)
        mine = copy.deepcopy(model)
        parent, _, name = head.rpartition(".")
        owner = mine.get_submodule(parent) if parent else mine
        setattr(owner, name, torch.nn.Linear(getattr(owner, name).in_features, n_classes))
        mine.to(device).train()
        fit = np.flatnonzero(fold != k)
        steps = epochs * math.ceil(len(fit) / batch)
        optimizer = torch.optim.SGD(mine.parameters(), lr=lr, momentum=MOMENTUM)
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
        generator = torch.Generator().manual_seed(seed * FOLDS + k)
        for _ in range(epochs):
            for rows in torch.split(torch.from_numpy(fit)[torch.randperm(len(fit), generator=generator)], batch):
                if len(rows) < 2:  # batch norm cannot train on one image: the epoch's last one waits for the next
                    continue
                images = _inputs(torch.from_numpy(x[rows.numpy()]).to(device), size)
                flip = (torch.rand(len(rows), generator=generator) < 0.5).to(device)
                images[flip] = images[flip].flip(-1)
                loss = torch.nn.functional.cross_entropy(mine(images), targets[rows].to(device))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
        held = np.flatnonzero(fold == k)
        probs[held] = _predict(mine, x[held], size, device)
        if test is not None:
            test[k] = _predict(mine, test_x, size, device)
        if say is not None:
            say(f"fine-tuned copy {k + 1}/{FOLDS}: {epochs} epoch(s) on {len(fit):,} images, predicted {len(held):,}")
    return Heads(probs, fold, test)
