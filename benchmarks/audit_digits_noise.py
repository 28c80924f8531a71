"""What the array audit reads on scikit-learn's digits with label noise planted two ways — the README's numbers for
`ambiguous_labels` beside `random_labels`. No images on disk, no training beyond the audit's own heads; about half a
minute on 2 CPU cores.

400 random digits are kept as the verified split; the other 1,397 get `random_labels` or `ambiguous_labels` at 10%,
20% and 40% (lossaudit.training.corruptions, seed 0), and `lossaudit.audit_arrays` reads them from the pixels as
features (its cross-fitted heads, fitted once here and passed on) against the verified labels. Printed per setting:
the share truly flipped, the estimate with its interval, the bounds that hold whatever the noise looks like
(lossaudit.audit.transition.bounds), the AUROC of the score for the flipped examples, the heads' error on the
verified split, and the share of flipped examples whose new label the heads predict (the flips no reading from predictions sees).

    python benchmarks/audit_digits_noise.py
"""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_digits

from lossaudit.analysis.separability import auroc
from lossaudit.audit.arrays import audit
from lossaudit.audit.heads import cross_fitted
from lossaudit.training.corruptions import corrupt

SETTINGS = [(kind, share) for kind in ("random_labels", "ambiguous_labels") for share in (0.1, 0.2, 0.4)]


def main() -> None:
    x, y = load_digits(return_X_y=True)
    order = np.random.default_rng(0).permutation(len(y))
    x_test, test_labels, x, true = x[order[:400]], y[order[:400]], x[order[400:]], y[order[400:]]
    images = (x.reshape(-1, 1, 8, 8) * 16).clip(0, 255).astype(np.uint8)  # the corruption's input: uint8 images
    print(f"{len(true):,} digits audited, {len(test_labels)} verified; features: the 64 pixels\n")
    print("| noise | planted | truly flipped | estimate (interval) | bounds, any noise | AUROC | "
          "heads' error on the verified split | flips the heads agree with |")
    print("|---|---|---|---|---|---|---|---|")
    for kind, share in SETTINGS:
        labels = corrupt(images, true, 10, f"{kind}:{share}", 0).label
        flipped = labels != true
        heads = cross_fitted(x, labels, 10, test_features=x_test)  # what audit_arrays(features=x, ...) fits
        result = audit(labels, pred_probs=heads.probs, reader=heads.reader, test_labels=test_labels,
                       test_pred_probs=heads.test_probs)
        error = np.mean([(t.argmax(1) != test_labels).mean() for t in heads.test_probs])
        hidden = np.mean(flipped & (heads.probs.argmax(1) == labels))
        lo, hi = result.noise_interval
        floor, ceiling = result.noise_bounds
        print(f"| {kind} | {share:.0%} | {flipped.mean():.1%} | {result.noise_share:.1%} ({lo:.1%}–{hi:.1%}) | "
              f"{floor:.1%}–{ceiling:.1%} | "
              f"{auroc(flipped, result.examples.score.to_numpy()):.3f} | {error:.1%} | {hidden:.1%} |", flush=True)


if __name__ == "__main__":
    main()
