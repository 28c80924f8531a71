-- lossaudit database schema. The columns are the contract between the trainer (the only writer)
-- and every reader (queries, metrics, report, audit). Each column is documented twice: here, and
-- inside the database itself (COMMENT ON), so `select comment from duckdb_columns()` explains it.
--
-- Glossary: run_id identifies one training run; example_id is the stable index of an example in
-- the clean training split; step counts optimizer steps from 0; epoch counts passes of a fresh
-- permutation of the training set as candidates; backprops counts examples back-propagated.

create table if not exists meta (
    key   varchar primary key,
    value varchar
);

create table if not exists runs (
    run_id          integer primary key,
    experiment_id   varchar,
    experiment      varchar,
    arm             varchar,
    method          varchar not null,
    dataset         varchar not null,
    model           varchar not null,
    corruption      varchar not null,
    corruption_kind varchar,
    corrupt_frac    double not null,
    seed            integer not null,
    n_train         integer not null,
    n_test          integer not null,
    n_classes       integer not null,
    classes         varchar[] not null,
    epochs          integer not null,
    epochs_done     integer not null,
    config          json not null,
    command         varchar,
    version         varchar not null,
    torch_version   varchar,
    device          varchar,
    host            varchar,
    pid             integer,
    started_at      timestamptz not null,
    finished_at     timestamptz,
    status          varchar not null check (status in ('running', 'complete', 'failed', 'interrupted')),
    error           varchar
);

create table if not exists examples (
    run_id       integer not null,
    example_id   integer not null,
    label        smallint not null,
    true_label   smallint not null,
    corruption_kind varchar,
    is_corrupted boolean not null,
    source       varchar not null,
    role         varchar not null default 'train' check (role in ('train', 'holdout', 'canary', 'replaced',
                                                                 'validation')),
    irreducible_loss float
);

create table if not exists observations (
    run_id      integer not null,
    step        integer not null,
    epoch       integer not null,
    example_id  integer not null,
    mode        varchar not null,
    loss        float not null,
    entropy     float not null,
    margin      float not null,
    p_true      float not null,
    pred        smallint not null,
    select_prob float not null,
    picked      smallint not null,
    stale       boolean not null
);

create table if not exists steps (
    run_id            integer not null,
    step              integer not null,
    epoch             integer not null,
    lr                double not null,
    n_scored          integer not null,
    n_backprop        integer not null,
    forwards_scoring  bigint not null,
    forwards_training bigint not null,
    backprops         bigint not null,
    selection_candidates bigint,
    selection_picks   bigint,
    train_loss        float not null,
    state             map(varchar, double),
    seconds           double not null,
    forwards_logging  bigint
);

create table if not exists evals (
    run_id            integer not null,
    step              integer not null,
    epoch             integer not null,
    backprops         bigint not null,
    forwards          bigint not null,
    forwards_scoring  bigint not null,
    forwards_training bigint not null,
    seconds           double not null,
    test_loss         double not null,
    test_error        double not null,
    train_loss        double,
    forwards_logging  bigint,
    val_loss          double,
    val_error         double
);

create table if not exists predictions (
    run_id     integer not null,
    example_id integer not null,
    epoch      integer not null,
    probs      float[] not null
);

create table if not exists test_predictions (
    run_id     integer not null,
    example_id integer not null,
    epoch      integer not null,
    label      smallint not null,
    probs      float[] not null
);

create table if not exists example_summaries (
    run_id         integer not null,
    example_id     integer not null,
    n_observations integer not null,
    modes          varchar,
    picks          bigint,
    scores         map(varchar, double) not null
);

create table if not exists audits (
    run_id        integer primary key,
    verdict       varchar not null check (verdict in ('safe', 'caution', 'unsafe', 'unknown')),
    verdict_line  varchar not null,
    verdict_rule  varchar not null,
    fold_runs     integer[],
    n_examples    integer not null,
    canaries      map(varchar, integer) not null,
    score         varchar not null,
    noise_share   double,
    noise_low     double,
    noise_high    double,
    noise_bound_low  double,
    noise_bound_high double,
    noise_by_kind map(varchar, double),
    uniform_weight double,
    noise_method  varchar not null,
    noise_reference varchar,
    n_trusted     integer,
    transition    json,
    n_suspects    integer not null,
    threshold     double,
    canary_recall map(varchar, double) not null,
    score_table   json not null,
    per_class     json,
    confusion     json,
    replay        json not null,
    replay_modes  json not null,
    notes         varchar[] not null,
    suspects_file varchar,
    scores_file   varchar,
    method_verdicts json
);

create table if not exists suspects (
    run_id          integer not null,
    rank            integer not null,
    example_id      integer not null,
    path            varchar not null,
    given_label     varchar not null,
    suggested_label varchar not null,
    suspicion_score double not null,
    signals         varchar not null,
    scores          map(varchar, double) not null
);

comment on column meta.key is 'Setting name, e.g. schema_version.';
comment on column meta.value is 'Setting value as text.';

comment on column runs.run_id is 'Run identifier, 1, 2, ... in the order runs started in this database.';
comment on column runs.experiment_id is 'Experiment: runs whose resolved configuration is identical except for the grid axes (the method with its own parameters, the corruption, the seed) share it; 12 hex digits of a hash of that configuration. Every comparison is made within one experiment.';
comment on column runs.experiment is 'Readable name of the experiment: dataset, model and epochs, then every other setting away from its default, e.g. digits · resnet8 · 10 epochs · lr=0.05.';
comment on column runs.arm is 'The method as compared: the method name as given, then any of its own parameters set away from its defaults (presets included), e.g. sb50 or sb beta=3. The method column of every analysis is this arm.';
comment on column runs.method is 'Selection method name as given (a registry name or preset, e.g. sgd, sb50; for a run recorded with lossaudit.Recorder, the name its loop gave).';
comment on column runs.dataset is 'Dataset spec, e.g. digits or imagefolder:/data/cifar10 (a recorded run: the name its loop gave).';
comment on column runs.model is 'Model name from the model registry, e.g. resnet8 or wrn-28-10 (a recorded run: the name its loop gave).';
comment on column runs.corruption is 'Corruption spec KIND:SHARE, or none; a recorded run with examples marked corrupted and no spec given: marked:SHARE.';
comment on column runs.corruption_kind is 'Corruption kind (random_labels, confusable_labels, ambiguous_labels, shuffle_pixels, gaussian; marked for a recorded run''s own ground truth); NULL for none.';
comment on column runs.corrupt_frac is 'Share of training examples selected for corruption, 0 for none.';
comment on column runs.seed is 'Seed used for model initialisation, candidate order, augmentation, selection and corruption.';
comment on column runs.n_train is 'Number of training examples (N).';
comment on column runs.n_test is 'Number of test examples.';
comment on column runs.n_classes is 'Number of classes (K).';
comment on column runs.classes is 'Class names; a label is an index into this list.';
comment on column runs.epochs is 'Planned number of epochs (passes of the training set as candidates).';
comment on column runs.epochs_done is 'Epochs whose observations, steps and evals are committed.';
comment on column runs.config is 'The resolved run configuration (every setting, defaults included) as JSON; a recorded run: its loop''s config with recorder = true and the method traits settled from what it recorded. method_traits is what the method declares of itself, read by analysis and reports instead of its name: loss_based, is_control, is_baseline, nominal_selectivity, switch (the steps.state key that is 1 while it selects and 0 while it trains every candidate, or null), diagnostics (a list of {key: a steps.state key, label, meaning, threshold: a number or null}) and upfront (in words, the work it does before its own training, or null); method_params: its parameters, derived ones included; upfront: what that work cost (backprops, forwards, forwards_scoring: the forwards that were not part of a training step, seconds, for). With the budget protocol (training.budget) it also holds schedule, budget, budget_unit and forward_cost.';
comment on column runs.command is 'The command line that started the run.';
comment on column runs.version is 'lossaudit version that wrote the run.';
comment on column runs.torch_version is 'PyTorch version used for training.';
comment on column runs.device is 'Device the run trained on, e.g. cpu or cuda:0.';
comment on column runs.host is 'Host name of the training process.';
comment on column runs.pid is 'Process id of the training process (used to detect runs killed without notice).';
comment on column runs.started_at is 'When the run started.';
comment on column runs.finished_at is 'When the run ended (complete, failed or interrupted); NULL while running.';
comment on column runs.status is 'running, complete, failed or interrupted. A run killed without notice stays running until the next lossaudit run on this host marks it interrupted.';
comment on column runs.error is 'One-line reason a run failed or was interrupted; NULL otherwise.';

comment on column examples.run_id is 'Run the example belongs to.';
comment on column examples.example_id is 'Stable index of the example in the clean training split.';
comment on column examples.label is 'Label as trained (after corruption).';
comment on column examples.true_label is 'Label before corruption.';
comment on column examples.corruption_kind is 'Corruption kind applied to this example (random_labels, confusable_labels, ambiguous_labels, shuffle_pixels, gaussian; a canary''s kind), NULL if none.';
comment on column examples.is_corrupted is 'True if the example was selected for corruption. For random_labels about 1/K of these keep their label by chance; label != true_label marks the changed ones.';
comment on column examples.source is 'Where the example came from: a file path, or dataset:index.';
comment on column examples.role is 'train = a candidate for training; holdout = kept out of training for the method''s own model (its method_traits.upfront); canary = a corrupted copy of a training example added as a known positive (--canaries, lossaudit audit); replaced = an original that a random-label canary stands in for, not trained; validation = carved from the training data (--val-size, labels as given) to evaluate and select by, not trained.';
comment on column examples.irreducible_loss is 'Loss of the irreducible-loss model of a method that fits one on this example (eval mode, no augmentation); NULL for other methods.';

comment on column predictions.run_id is 'A cross-fitted run (config folds > 0): it predicts the examples of its held-out fold, which it never trains.';
comment on column predictions.example_id is 'A held-out example (its examples row is in the run of the same audit or grid that trained it).';
comment on column predictions.epoch is 'Epoch (0-based) after which the prediction was made; every epoch of the later half of the run.';
comment on column predictions.probs is 'Softmax probabilities over the classes (runs.classes order), eval mode, un-augmented image: out-of-sample, since the run never trained the example.';

comment on column test_predictions.run_id is 'A cross-fitted run (config folds > 0) with a test split: it predicts every test example at the epochs it predicts its held-out fold.';
comment on column test_predictions.example_id is 'The test example (its index in the dataset''s test split, or in the stratified subset of --test-size).';
comment on column test_predictions.epoch is 'Epoch (0-based) after which the prediction was made; the epochs of the run''s predictions rows.';
comment on column test_predictions.label is 'The test example''s label (the test split is never corrupted): an audit that trusts it reads its own examples against these predictions.';
comment on column test_predictions.probs is 'Softmax probabilities over the classes (runs.classes order), eval mode, un-augmented image.';

comment on column example_summaries.run_id is 'A complete run: its per-example scores are computed once, when it completes.';
comment on column example_summaries.example_id is 'The example.';
comment on column example_summaries.n_observations is 'Observations of the example in the run (every forward mode, every epoch).';
comment on column example_summaries.modes is 'Forward modes the observations came from, e.g. score+train.';
comment on column example_summaries.picks is 'Times the example was back-propagated.';
comment on column example_summaries.scores is 'Every per-example score registered when the run completed (lossaudit.core.scores), by name; higher = more suspect. A score registered later is computed from the observations instead.';

comment on column audits.run_id is 'The (first) proxy run of a `lossaudit audit` (its examples and observations are in the other tables).';
comment on column audits.fold_runs is 'Every proxy run of the audit, one per cross-fitting fold (each trained on the other folds and predicted its own); NULL for an audit of one run (lossaudit before 0.3).';
comment on column audits.verdict is 'safe, caution, unsafe, or unknown when the noise share could not be estimated; by verdict_rule.';
comment on column audits.verdict_line is 'The verdict with the numbers behind it, as printed.';
comment on column audits.verdict_rule is 'The rule that turned the numbers into the verdict.';
comment on column audits.n_examples is 'User examples audited: every training example, the originals that label canaries trained in place of included (scored from their copy''s held-out prediction); canaries not counted.';
comment on column audits.canaries is 'Canaries added, by kind (random_labels, confusable_labels, shuffle_pixels, gaussian).';
comment on column audits.score is 'The suspicion score: the candidate that found the label canaries best (mean AUROC over the uniform and confusable ones).';
comment on column audits.noise_share is 'Estimated share of mislabeled examples (noise_method): read against trusted labels when noise_reference says so, else against the label canaries at the estimated mix of uniform and confusable flips; NULL when it could not be estimated.';
comment on column audits.noise_low is 'Bottom of the noise share''s interval (never above noise_share). Against trusted labels: the 5th percentile over bootstrap resamples of the trusted and the audited examples (the top, the 95th, is a 95% upper confidence bound); against canaries: the lowest 5th percentile over bootstrap resamples (of the canaries and the examples) of the estimate at the mix and against each canary kind alone.';
comment on column audits.noise_high is 'Top of the interval: the 95th percentile, or the highest of those (never below noise_share); the verdict is safe only when it is below the caution line.';
comment on column audits.noise_bound_low is 'Read against trusted labels: the lowest the noise share can be whatever the noise looks like (also when it falls on ambiguous images, which the transition reads low): d - e, d the share of audited examples whose proxy''s top class is not their given label, e the proxies'' error on the trusted labels, at its 5th bootstrap percentile; NULL otherwise or when the share cannot be given (schema 8).';
comment on column audits.noise_bound_high is 'The highest it can be whatever the noise looks like: d + e at its 95th bootstrap percentile; NULL as noise_bound_low.';
comment on column audits.noise_by_kind is 'The noise share estimated against one kind of label canary alone (random_labels: uniform flips, confusable_labels: flips to a class the proxy confuses): how much the estimate depends on what the noise is assumed to look like.';
comment on column audits.uniform_weight is 'Share of the label noise that looks like uniform flips rather than confusable ones, from the label pairs of the examples above the threshold (the mix noise_share is read at).';
comment on column audits.noise_method is 'How the noise share was estimated.';
comment on column audits.noise_reference is 'What the noise share was read against: trusted labels (the test split''s, taken as correct; lossaudit.audit.transition) or canaries (noise_by_kind, uniform_weight); NULL before lossaudit 0.4 (canaries).';
comment on column audits.n_trusted is 'Trusted (test) examples the noise share was read against; NULL when read against the canaries.';
comment on column audits.transition is 'JSON object, read against trusted labels: given label → true class → estimated share of the examples with that label (shares under 0.05% left out); NULL otherwise.';
comment on column audits.n_suspects is 'Examples listed as suspects (round(noise_share × n_examples)); they are in the suspects table.';
comment on column audits.threshold is 'Suspicion score of the last suspect; NULL when there is none.';
comment on column audits.canary_recall is 'Share of each canary kind at or above the threshold.';
comment on column audits.per_class is 'JSON list, one object per given label: class, n (its audited examples), noise_share (estimated), suspects (how many), suggested (the classes its suspects most likely are, with their shares).';
comment on column audits.confusion is 'JSON object: among the suspects, given label → suggested label → count.';
comment on column audits.score_table is 'JSON list, one object per candidate score: score (name), auroc_<kind> (AUROC of ranking that canary kind above the user examples) and auroc_labels (their mean over the label canary kinds, which chooses the score).';
comment on column audits.replay is 'JSON list, one object per replayed method and replay mode: method, replay (pick rule or as run), share_of_picks_on_suspects, suspects_share_of_data, overpick_ratio, selecting_share (share of observations whose round was selected from).';
comment on column audits.method_verdicts is 'JSON list, one object per method replayed by its pick rule: method, verdict (safe, caution, unsafe or unknown, by the lines of verdict_rule with that method in the place of the reference), ratio (how many times as often as a random example it would back-propagate a suspect), line (in words); NULL for audits written before schema 6.';
comment on column audits.replay_modes is 'JSON object: replay mode → what it replays.';
comment on column audits.notes is 'Caveats of this audit, one line each.';
comment on column audits.suspects_file is 'The CSV the suspects were also written to.';
comment on column audits.scores_file is 'The CSV every audited example was written to: rank, path, example id, given and suggested label, suspicion score, suspect (true for the listed ones), out-of-sample probabilities of the given and suggested label, signals and the candidate scores.';

comment on column suspects.run_id is 'The proxy run of the audit.';
comment on column suspects.rank is 'Rank by suspicion score, 1 = most suspect.';
comment on column suspects.example_id is 'The example (examples.example_id of the proxy run).';
comment on column suspects.path is 'Where the example came from: a file path, or dataset:index.';
comment on column suspects.given_label is 'Class name of the label the example has.';
comment on column suspects.suggested_label is 'Class with the highest mean out-of-sample probability: predicted by the proxy that held the example out, over the later half of its epochs.';
comment on column suspects.suspicion_score is 'Value of the chosen suspicion score (higher = more suspect).';
comment on column suspects.signals is 'Comma-separated audit signals (in-sample and out-of-sample) that would also have listed this example among the top n_suspects.';
comment on column suspects.scores is 'Its per-example scores that the audit uses as signals, by score name (higher = more suspect).';

comment on column observations.run_id is 'Run of the observation.';
comment on column observations.step is 'Optimizer step about to be taken when this forward ran (0-based).';
comment on column observations.epoch is 'Epoch (0-based) in which the example was a candidate.';
comment on column observations.example_id is 'Example observed.';
comment on column observations.mode is 'Forward that produced the row: score = no-grad eval-mode scoring forward; train = train-mode forward of a training step.';
comment on column observations.loss is 'Cross-entropy of the label as trained, in nats.';
comment on column observations.entropy is 'Entropy of the predicted distribution, -sum p log p, in nats; NaN when a recorded loop gave losses but no logits (as are margin and p_true).';
comment on column observations.margin is 'Logit of the label as trained minus the largest other logit (negative = misclassified).';
comment on column observations.p_true is 'Softmax probability of the label as trained.';
comment on column observations.pred is 'Predicted class (argmax of the logits); -1 when a recorded loop gave no logits.';
comment on column observations.select_prob is 'Probability the method gave this example of being picked (per draw for samplers with replacement); 1 when everything is trained; a recorded loop that picked without giving probabilities: the share of its observe call picked.';
comment on column observations.picked is 'Number of times the example was picked for back-propagation from this observation (can exceed 1 for sampling with replacement).';
comment on column observations.stale is 'True if the values came from a cached earlier forward instead of a fresh one.';

comment on column steps.run_id is 'Run of the step.';
comment on column steps.step is 'Optimizer step index (0-based).';
comment on column steps.epoch is 'Epoch the step belongs to.';
comment on column steps.lr is 'Learning rate used for this step (NaN when a recorded loop did not give it).';
comment on column steps.n_scored is 'Examples scored by no-grad forwards since the previous step.';
comment on column steps.n_backprop is 'Examples back-propagated in this step (the batch size, except an epoch''s last step).';
comment on column steps.forwards_scoring is 'Cumulative examples forwarded for scoring (no grad) up to and including this step.';
comment on column steps.forwards_training is 'Cumulative examples forwarded in training (with grad) up to and including this step.';
comment on column steps.forwards_logging is 'Cumulative examples forwarded (no grad) only to log their statistics, by a method whose picks never read them (the uniform control with --uniform-scoring): charged to no cost; NULL in databases written before schema 6 and for recorded runs.';
comment on column steps.backprops is 'Cumulative examples back-propagated up to and including this step.';
comment on column steps.selection_candidates is 'Cumulative candidates offered to the method''s selection (rounds in which it selected; not warm-up epochs, not rounds with the method''s switch off); NULL in databases written before schema 2.';
comment on column steps.selection_picks is 'Cumulative picks the method made from those candidates; selection_picks / selection_candidates is the realised selectivity.';
comment on column steps.train_loss is 'Mean training loss of the step''s batch (as optimised).';
comment on column steps.state is 'Method state after the step: its switch and diagnostics (runs.config.method_traits) and anything else it logs, e.g. history_size for sb.';
comment on column steps.seconds is 'Training wall-clock seconds since the run started: scoring, selection and training steps; evaluation and logging excluded.';

comment on column evals.run_id is 'Run of the evaluation.';
comment on column evals.step is 'Optimizer steps taken before the evaluation.';
comment on column evals.epoch is 'Epoch during which the evaluation ran.';
comment on column evals.backprops is 'Cumulative examples back-propagated before the evaluation (the paper''s x-axis).';
comment on column evals.forwards is 'Cumulative examples forwarded (scoring plus training).';
comment on column evals.forwards_scoring is 'Cumulative examples forwarded for scoring (no grad).';
comment on column evals.forwards_training is 'Cumulative examples forwarded in training (with grad).';
comment on column evals.forwards_logging is 'Cumulative examples forwarded only to log (see steps.forwards_logging); not in forwards, charged to no cost; NULL before schema 6.';
comment on column evals.seconds is 'Training wall-clock seconds before the evaluation: scoring, selection and training steps; evaluation and logging excluded.';
comment on column evals.test_loss is 'Mean cross-entropy on the test split (never corrupted).';
comment on column evals.test_error is 'Share of test examples misclassified, 0..1.';
comment on column evals.train_loss is 'Mean training loss of the steps since the previous evaluation; NULL at step 0.';
comment on column evals.val_loss is 'Mean cross-entropy on the validation split (--val-size examples carved from the training data, with its labels as given: corrupted where the training data is); NULL without one, and before schema 7.';
comment on column evals.val_error is 'Share of validation examples misclassified against their labels as given, 0..1: what a user can select a model by (never the test split); NULL without a validation split.';
