"""`lossaudit audit DATASET --backbone NAME --weights FILE`: the user's own pretrained torchvision model, read from a
local weights file (nothing is downloaded), as the audit's eyes.

Every image, resized to the model's input size (224 by default, bilinear and antialiased; grey images repeated to
three channels) and normalised with ImageNet's channel statistics, goes through the model; the input of its last
linear layer (the classifier) is the image's embedding. The audit then fits its cross-fitted heads on these
embeddings (lossaudit.audit.heads, `--features`): the backbone stays frozen, so no head ever sees the label of an
image it judges, and the backbone's training never saw the audited labels unless the user's did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from lossaudit.core.errors import UserError

IMAGE_SIZE = 224
MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # ImageNet's, which torchvision's weights were trained with
BATCH = 64
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


def embed(model, head: str, x: np.ndarray, *, size: int = IMAGE_SIZE) -> np.ndarray:
    """(N, D) embeddings of uint8 images x (N, C, H, W): the input of the model's last linear layer."""
    import torch
    from torch.nn import functional as F

    layer = dict(model.named_modules())[head]
    captured: list = []
    hook = layer.register_forward_hook(lambda module, inputs, output: captured.append(inputs[0].flatten(1)))
    mean, std = torch.tensor(MEAN)[None, :, None, None], torch.tensor(STD)[None, :, None, None]
    try:
        with torch.inference_mode():
            for chunk in torch.split(torch.from_numpy(x), BATCH):
                images = chunk.float() / 255.0
                images = images.repeat(1, 3, 1, 1) if images.shape[1] == 1 else images[:, :3]
                if images.shape[-2:] != (size, size):
                    images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True,
                                           align_corners=False)
                model((images - mean) / std)
    finally:
        hook.remove()
    return torch.cat(captured).double().numpy() if captured else np.zeros((0, 0))
