"""The audit's reading against trusted labels: the noise share, per given label and overall, and each example's
probability of being mislabeled, when the data come with a correctly labelled set (the dataset's test split).

Why it works where canaries cannot: a proxy trained on the noisy examples predicts a held-out example from how the
image looks, whatever its label. So its held-out predictions of the examples whose true class is k look like its
predictions of the trusted examples of class k (same proxy, same epochs) — and the examples *given* label j are a
mixture of the true classes, in the shares π_jk (the transition: of the examples labelled j, the share that truly are
k). With C[:, k] the mean probability vector of the trusted examples of class k and μ_j that of the examples labelled
j, μ_j = C π_j: K linear equations in K unknowns per given label, solved by least squares (black-box shift estimation,
one given label at a time). The columns of C and μ_j sum to 1, so π_j does too. π_j is not constrained to be >= 0:
on clean data the sampling error of C and μ_j then averages out around 0 instead of piling up as noise.

Assumptions, stated with the result: the trusted labels are correct; the noise depends on the true class, not on
the image (class-conditional). Human errors fall more on ambiguous images, which also look less like their true
class to the proxy; the estimate is then low, by how much depends on the data.

With the transition, Bayes' rule gives each example the probability that its label is wrong: with r_k(p) =
q(k | p) / prior_k, q a multinomial logistic regression of the trusted labels on the log-probabilities (the density
ratio of p under class k, up to a constant; one per proxy, fitted on its own predictions of the trusted examples),
P(mislabeled | p, given j) = 1 - π_jj r_j(p) / Σ_k π_jk r_k(p).

Whatever the noise looks like, two inequalities bound it (`bounds`): an example whose label is wrong either disagrees
with the proxy's top class or the proxy is wrong about it, and an example the proxy disagrees with is either
mislabeled or misread by it. So with d the share of audited examples whose proxy's top class is not their given label
and e the proxies' error on the trusted labels, d - e <= noise share <= d + e — taking e as the proxies' error on the
audited examples' true classes too, which holds as both are held out from the same proxies and drawn alike. Wide, as
it assumes nothing about the noise; noise that falls on ambiguous images, and that the proxies learn to repeat, reads
low against the transition but stays inside these bounds.

Pure numpy and scikit-learn over arrays; lossaudit.audit.noise feeds it the proxies' predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BOOTSTRAP = 200
MIN_TRUSTED_PER_CLASS = 5  # trusted examples of a class below which its column of C is not estimated
FLOOR = 1e-3  # share of the posterior's transition spread evenly, so that a class read as clean still ranks its examples
METHOD = ("read against trusted labels: for each given label j, the mean out-of-sample probability vector of its "
          "examples solved as a mixture of the mean probability vectors of the trusted examples of each class (same "
          "proxy, same epochs), by least squares; noise share = 1 - the weight of class j, averaged over the given "
          "labels by their counts. Interval: 5-95% over 200 bootstrap resamples of the trusted examples (within "
          "their class) and of the audited ones (within their given label). Assumes the trusted labels are correct "
          "and the noise depends on the true class only")
BOUNDS = ("whatever the noise looks like: the share of audited examples whose proxy's top class is not their given "
          "label (d) minus and plus the proxies' error on the trusted labels (e); 5th percentile of d - e and 95th of "
          "d + e over the same bootstrap resamples")


@dataclass
class Trusted:
    """What the proxies predicted. user: the audited examples' out-of-sample probabilities (n, K), given labels (n,)
    and which proxy predicted each (n,); trusted: every proxy's probabilities of the trusted examples (R, m, K) and
    their labels (m,)."""

    user_probs: np.ndarray
    user_label: np.ndarray
    user_reader: np.ndarray
    trusted_probs: np.ndarray
    trusted_label: np.ndarray

    @property
    def n_classes(self) -> int:
        return self.user_probs.shape[1]

    def rows(self, keep: np.ndarray) -> "Trusted":
        """The same readings for the audited examples in `keep` only."""
        return Trusted(self.user_probs[keep], self.user_label[keep], self.user_reader[keep], self.trusted_probs,
                       self.trusted_label)

    def missing_classes(self) -> list[int]:
        """Classes with fewer than MIN_TRUSTED_PER_CLASS trusted examples (their mixture component is unknown)."""
        counts = np.bincount(self.trusted_label, minlength=self.n_classes)
        return [int(k) for k in np.flatnonzero(counts < MIN_TRUSTED_PER_CLASS)]


@dataclass(kw_only=True)
class TransitionEstimate:
    share: float  # estimated share of mislabeled examples among the audited ones
    low: float  # 5% bootstrap point
    high: float  # 95% bootstrap point: a 95% upper confidence bound, which a "safe" verdict needs
    per_class: np.ndarray  # (K,) estimated share mislabeled among the examples of each given label
    matrix: np.ndarray  # (K, K) given label (rows) → true class (columns): shares, >= 0, rows summing to 1
    counts: np.ndarray  # (K,) audited examples per given label
    n_trusted: int
    bounds: tuple[float, float]  # the noise share's bounds whatever the noise looks like (`bounds`; BOUNDS)
    disagreement: float  # d: share of audited examples whose proxy's top class is not their given label
    trusted_error: float  # e: the proxies' error on the trusted labels, weighted as they predicted the audited ones


def class_means(probs: np.ndarray, label: np.ndarray, k: int) -> np.ndarray:
    """(K, k) matrix whose column c is the mean probability vector of the rows labelled c (NaN for an absent c)."""
    out = np.full((probs.shape[1], k), np.nan)
    for c in range(k):
        mine = label == c
        if mine.any():
            out[:, c] = probs[mine].mean(0)
    return out


def transition(data: Trusted, user: np.ndarray | None = None, trusted: np.ndarray | None = None) -> np.ndarray:
    """The unconstrained transition (K, K), rows given label j, columns true class k (rows sum to 1, entries may be
    slightly negative). user, trusted: indices of the examples to use (a bootstrap resample), default all.

    Each proxy r gives its own C_r (its predictions of the trusted examples) and μ_rj (of the examples it held out);
    for given label j both are averaged over the proxies, weighted by how many of j's examples each predicted."""
    k = data.n_classes
    u = np.arange(len(data.user_label)) if user is None else user
    t = np.arange(len(data.trusted_label)) if trusted is None else trusted
    probs, label, reader = data.user_probs[u], data.user_label[u], data.user_reader[u]
    readers = range(data.trusted_probs.shape[0])
    trusted_means = [class_means(data.trusted_probs[r][t], data.trusted_label[t], k) for r in readers]
    matrix = np.zeros((k, k))
    for j in range(k):
        mine = label == j
        if not mine.any():
            matrix[j, j] = 1.0
            continue
        weights = np.array([np.sum(mine & (reader == r)) for r in readers], dtype=float)
        weights /= weights.sum()
        c = sum(w * m for w, m in zip(weights, trusted_means) if w > 0)
        mu = sum(w * probs[mine & (reader == r)].mean(0) for r, w in zip(readers, weights) if w > 0)
        matrix[j] = np.linalg.lstsq(c, mu, rcond=None)[0]
    return matrix


def misread(data: Trusted) -> tuple[np.ndarray, np.ndarray]:
    """Where the proxies' top class is not the label: (n,) for the audited examples' given labels, (R, m) for every
    proxy's reading of the trusted ones. Computed once; `disagreement` averages them over any resample."""
    return (data.user_probs.argmax(1) != data.user_label,
            data.trusted_probs.argmax(2) != data.trusted_label[None, :])


def disagreement(data: Trusted, wrong: tuple[np.ndarray, np.ndarray], user: np.ndarray | None = None,
                 trusted: np.ndarray | None = None) -> tuple[float, float]:
    """(d, e): the share of audited examples whose proxy's top class is not their given label, and the proxies'
    error on the trusted labels, each proxy's weighted by the share of audited examples it predicted. wrong: `misread`
    of the data; user, trusted: indices of the examples to use (a bootstrap resample), default all."""
    u = np.arange(len(data.user_label)) if user is None else user
    t = np.arange(len(data.trusted_label)) if trusted is None else trusted
    user_wrong, trusted_wrong = wrong
    weights = np.bincount(data.user_reader[u], minlength=len(trusted_wrong)) / len(u)
    return float(user_wrong[u].mean()), float(np.dot(weights, trusted_wrong[:, t].mean(1)))


def bounds(d: np.ndarray | float, e: np.ndarray | float) -> tuple[np.ndarray, np.ndarray]:
    """The noise share's bounds whatever the noise looks like (module docstring): max(0, d - e), min(1, d + e)."""
    return np.clip(np.subtract(d, e), 0.0, 1.0), np.clip(np.add(d, e), 0.0, 1.0)


def share_of(matrix: np.ndarray, counts: np.ndarray) -> float:
    """Overall mislabeled share: 1 - π_jj averaged over the given labels by their counts, clipped to [0, 1]."""
    return float(np.clip(np.sum(counts * (1 - np.diag(matrix))) / counts.sum(), 0.0, 1.0))


def shown(matrix: np.ndarray) -> np.ndarray:
    """The transition as shares: negatives (sampling error) set to 0, rows renormalised."""
    m = np.clip(matrix, 0.0, None)
    sums = m.sum(1, keepdims=True)
    return np.where(sums > 0, m / np.where(sums > 0, sums, 1.0), np.eye(len(m)))


def _stratified(rng: np.random.Generator, label: np.ndarray) -> np.ndarray:
    """A bootstrap resample of indices within each label."""
    return np.concatenate([rng.choice(idx, len(idx)) for c in np.unique(label) for idx in [np.flatnonzero(label == c)]])


def estimate(data: Trusted, *, seed: int = 0, n_boot: int = BOOTSTRAP) -> TransitionEstimate:
    """The noise share with its bootstrap interval, the per-class shares and the transition (module docstring)."""
    k = data.n_classes
    counts = np.bincount(data.user_label, minlength=k).astype(float)
    matrix = transition(data)
    share = share_of(matrix, counts)
    rng = np.random.default_rng(seed)
    wrong = misread(data)
    boots, apart = [], []
    for _ in range(n_boot):
        user, trusted = _stratified(rng, data.user_label), _stratified(rng, data.trusted_label)
        boots.append(share_of(transition(data, user, trusted), counts))
        apart.append(disagreement(data, wrong, user, trusted))
    low, high = np.quantile(boots, [0.05, 0.95]) if boots else (share, share)
    d, e = disagreement(data, wrong)
    floor, ceiling = bounds(d, e)
    if apart:
        floors, ceilings = bounds(*np.transpose(apart))
        floor = min(float(floor), float(np.quantile(floors, 0.05)))
        ceiling = max(float(ceiling), float(np.quantile(ceilings, 0.95)))
    per_class = np.where(counts > 0, np.clip(1 - np.diag(matrix), 0.0, 1.0), np.nan)
    return TransitionEstimate(share=share, low=float(min(low, share)), high=float(max(high, share)),
                              per_class=per_class, matrix=shown(matrix), counts=counts.astype(int),
                              n_trusted=int(len(data.trusted_label)), bounds=(float(floor), float(ceiling)),
                              disagreement=d, trusted_error=e)


def bounds_note(reading: TransitionEstimate) -> str:
    """The bounds in words, beside the reading they put in context."""
    low, high = reading.bounds
    return (f"whatever the noise looks like, the noise share is between {low:.1%} and {high:.1%}: the proxies' top "
            f"class differs from {reading.disagreement:.1%} of the given labels and from {reading.trusted_error:.1%} "
            f"of the trusted ones (the bounds are the first minus and plus the second); the reading "
            f"{reading.share:.1%} assumes the noise depends on the true class only — errors that fall on ambiguous "
            "images can read low against it, but not outside these bounds")


def mislabeled_probability(data: Trusted, matrix: np.ndarray) -> np.ndarray:
    """(n,) each audited example's posterior probability that its given label is wrong (module docstring), from the
    shown transition `matrix`; each proxy's density ratios fitted on its own predictions of the trusted examples."""
    from sklearn.linear_model import LogisticRegression

    k = data.n_classes
    prior = np.bincount(data.trusted_label, minlength=k) / len(data.trusted_label)
    present = np.flatnonzero(prior > 0)
    ratio = np.full((len(data.user_label), k), 1e-12)
    for r in range(data.trusted_probs.shape[0]):
        mine = data.user_reader == r
        if not mine.any():
            continue
        model = LogisticRegression(C=1.0, max_iter=2000).fit(np.log(np.clip(data.trusted_probs[r], 1e-6, 1.0)),
                                                             data.trusted_label)
        q = model.predict_proba(np.log(np.clip(data.user_probs[mine], 1e-6, 1.0)))
        ratio[np.ix_(np.flatnonzero(mine), present)] = q / prior[present]
    pi = (1 - FLOOR) * matrix + FLOOR / k
    rows, given = np.arange(len(data.user_label)), data.user_label
    return 1.0 - pi[given, given] * ratio[rows, given] / np.sum(pi[given] * ratio, axis=1)
